"""The whole chain state, the one entry point for actions, and the block's fixed phases.

Invariants:
- Every action goes through `Chain.execute`, which routes it to the module owning its rule and
  returns Hyperliquid's response shape; an action that is refused changes nothing.
- `apply_block` runs the phases of a block in one fixed order (the order is written in
  `apply_block` and the README): actions in the three-class order, then time-driven passes.
  Nothing in it depends on anything but the chain state, the block time and the actions.
"""

from __future__ import annotations

import msgspec

from protocol.actions import (
    ActionResponse,
    BatchModifyAction,
    CancelAction,
    CancelByCloidAction,
    CreateSubAccountAction,
    NoopAction,
    OrderAction,
    ScheduleCancelAction,
    SendAssetAction,
    SpotSendAction,
    SubAccountSpotTransferAction,
    SubAccountTransferAction,
    TradingAction,
    TransferAction,
    UpdateIsolatedMarginAction,
    UpdateLeverageAction,
    UsdClassTransferAction,
    UsdSendAction,
    Withdraw3Action,
)
from protocol.block import order_block_actions
from protocol.clearinghouse import Clearinghouse
from protocol.exchange import Exchange, Fill, OrderUpdate
from protocol.ledger import LedgerUpdate
from protocol.leverage import update_isolated_margin, update_leverage
from protocol.markets import Markets
from protocol.transfers import apply_transfer

Action = TradingAction | TransferAction


class ExecutedAction(msgspec.Struct, frozen=True):
    """One action of a block: `index` is its position in the block as proposed."""

    index: int
    user: str
    action: Action
    response: ActionResponse


class BlockOutput(msgspec.Struct, frozen=True):
    """What a block did: its actions in execution order with their answers, and its events."""

    height: int
    time: int
    actions: tuple[ExecutedAction, ...]
    fills: tuple[Fill, ...]
    order_updates: tuple[OrderUpdate, ...]
    ledger: tuple[LedgerUpdate, ...]


class Chain:
    def __init__(self, markets: Markets) -> None:
        self.markets = markets
        self.clearinghouse = Clearinghouse(markets)
        self.exchange = Exchange(markets, self.clearinghouse)
        self.ledger: list[LedgerUpdate] = []

    def execute(self, user: str, action: Action, time: int) -> ActionResponse:
        match action:
            case (
                OrderAction()
                | CancelAction()
                | CancelByCloidAction()
                | BatchModifyAction()
                | ScheduleCancelAction()
                | NoopAction()
            ):
                return self.exchange.execute(user, action, time)
            case UpdateLeverageAction():
                return update_leverage(self.clearinghouse, user, action)
            case UpdateIsolatedMarginAction():
                return update_isolated_margin(self.clearinghouse, user, action)
            case (
                UsdClassTransferAction()
                | UsdSendAction()
                | SpotSendAction()
                | Withdraw3Action()
                | SendAssetAction()
                | CreateSubAccountAction()
                | SubAccountTransferAction()
                | SubAccountSpotTransferAction()
            ):
                response, updates = apply_transfer(self.clearinghouse, user, action, time)
                self.ledger.extend(updates)
                return response

    def apply_block(
        self, height: int, time: int, proposed: list[tuple[str, Action]]
    ) -> BlockOutput:
        """Run one block. Phases, in this order:
        1. the actions, sorted into the three classes (stable within a class);
        2. scheduled cancels due at the block time."""
        ordered = order_block_actions(list(enumerate(proposed)), lambda entry: entry[1][1])
        executed = [
            ExecutedAction(index, user, action, self.execute(user, action, time))
            for index, (user, action) in ordered
        ]
        self.exchange.on_block_time(time)
        fills, updates = self.exchange.take_events()
        ledger, self.ledger = self.ledger, []
        return BlockOutput(
            height, time, tuple(executed), tuple(fills), tuple(updates), tuple(ledger)
        )

    def _check(self) -> None:
        self.exchange._check()
