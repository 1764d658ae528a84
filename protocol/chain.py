"""The whole chain state, the one entry point for actions, and the block's fixed phases.

Invariants:
- Every action goes through `Chain.execute`, which routes it to the module owning its rule and
  returns Hyperliquid's response shape; an action that is refused changes nothing.
- `apply_block` runs the phases of a block in one fixed order (the order is written in
  `apply_block` and the README): prices, actions in the three-class order, then the passes
  driven by time and price. Nothing in it depends on anything but the chain state, the block
  time and the actions.
- Funding moves cash between positions only: what payers lose, receivers gain, exactly.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import msgspec

from protocol.actions import (
    ActionResponse,
    AgentSetAbstractionAction,
    ApproveAgentAction,
    BatchModifyAction,
    BorrowLendAction,
    CancelAction,
    CancelByCloidAction,
    CreateSubAccountAction,
    DefaultResponse,
    DevnetAction,
    ErrorResponse,
    FundAction,
    NoopAction,
    OrderAction,
    RevertAction,
    ScheduleCancelAction,
    SendAssetAction,
    SetOraclePriceAction,
    SetReferrerAction,
    SignedAction,
    SnapshotAction,
    SnapshotResponse,
    SpotSendAction,
    SubAccountSpotTransferAction,
    SubAccountTransferAction,
    UpdateIsolatedMarginAction,
    UpdateLeverageAction,
    UsdClassTransferAction,
    UsdSendAction,
    UserAction,
    UserSetAbstractionAction,
    UserSigned,
    VaultTransferAction,
    Withdraw3Action,
)
from protocol.agents import AgentBook
from protocol.block import order_block_actions
from protocol.borrow_lend import borrow_lend
from protocol.clearinghouse import Clearinghouse
from protocol.exchange import Exchange, Fill, OrderUpdate
from protocol.fixed import parse_fixed
from protocol.funding import (
    FundingSettlement,
    FundingState,
    funding_payments,
    impact_notional_for,
    impact_price,
    premium,
)
from protocol.ledger import Deposit, FundingUpdate, LedgerUpdate
from protocol.lending import Lending, ReserveParams, load_lending
from protocol.leverage import update_isolated_margin, update_leverage
from protocol.liquidation import LIQUIDATOR, Liquidator
from protocol.mark import MarkState
from protocol.markets import Markets
from protocol.modes import set_abstraction
from protocol.nonces import NonceState
from protocol.oracle import ConstantSource, OracleState, Source
from protocol.portfolio_margin import PortfolioMargin
from protocol.transfers import apply_transfer, parse_usdc

Action = UserAction | DevnetAction | SignedAction

# What a devnet snapshot leaves out: the snapshots themselves (a revert keeps the earlier ones)
# and the events the block has produced so far.
_NOT_SAVED = frozenset({"saved", "next_snapshot_id", "ledger"})


class ExecutedAction(msgspec.Struct, frozen=True, gc=False):
    """One action of a block: `index` is its position in the block as proposed; `user` is whom
    it acted for and `action` the action itself (a signed one unwrapped)."""

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
    funding: tuple[FundingUpdate, ...]


class Chain:
    def __init__(
        self,
        markets: Markets,
        oracle_sources: dict[int, Source] | None = None,
        start_time: int = 0,
        liquidator: str = LIQUIDATOR,
        lending: dict[int, ReserveParams] | None = None,
    ) -> None:
        """Without `oracle_sources` the chain's prices are set by hand
        (`Clearinghouse.set_mark`): the oracle, marks, triggers and funding phases are off.
        That is the mode of the protocol tests; the node always passes the config's sources.
        `lending` defaults to the pre-alpha reserves."""
        self.markets = markets
        self.clearinghouse = Clearinghouse(markets)
        self.exchange = Exchange(markets, self.clearinghouse)
        self.liquidator = Liquidator(self.exchange, liquidator)
        sources = dict(oracle_sources or {})
        for perp in markets.perps:
            sources.setdefault(perp.asset, ConstantSource(1))
        self.oracle = OracleState(markets, sources, start_time)
        self.prices_driven = oracle_sources is not None
        self.marks = {perp.asset: MarkState() for perp in markets.perps}
        self.mark_time = start_time
        self.funding = FundingState(perp.asset for perp in markets.perps)
        reserves = load_lending(None, markets) if lending is None else lending
        self.lending = Lending(reserves, start_time)
        self.clearinghouse.lending = self.lending
        self.portfolio = PortfolioMargin(self.exchange, self.lending)
        self.clearinghouse.portfolio = self.portfolio
        self.agents = AgentBook()
        self.nonces = NonceState()
        # Devnet snapshots (POST /devnet): (block time, pickled state) by id, ids never reused.
        self.saved: dict[int, tuple[int, bytes]] = {}
        self.next_snapshot_id = 1
        self.ledger: list[LedgerUpdate] = []
        if self.prices_driven:
            self._update_marks(start_time)

    def execute_proposal(
        self, user: str, action: Action, time: int
    ) -> tuple[str, Action, ActionResponse]:
        """Execute one proposed action: who it acted for, the action itself (a signed one
        unwrapped) and its answer."""
        if not isinstance(action, SignedAction):
            return user, action, self.execute(user, action, time)
        acting = self.acting_user(user, action, time)
        if isinstance(acting, ErrorResponse):
            return user, action.action, acting
        return acting, action.action, self.execute(acting, action.action, time)

    def acting_user(self, signer: str, signed: SignedAction, time: int) -> str | ErrorResponse:
        """Whom a verified signer acts for; records the nonce. The devnet's order: expiry, a
        signer the chain knows (a user, or an API wallet for an L1 action), the nonce, the
        vault (a sub-account of the acting user)."""
        if signed.expires_after is not None and time > signed.expires_after:
            return ErrorResponse(f"Action expired at {signed.expires_after}, block time {time}.")
        user_signed = isinstance(signed.action, UserSigned)
        master = None if user_signed else self.agents.master_of(signer)
        if master is None and signer not in self.clearinghouse.accounts:
            return ErrorResponse(f"User or API Wallet {signer} does not exist.")
        error = self.nonces.check_and_record(signer, signed.nonce, time)
        if error is not None:
            return error
        acting = signer if master is None else master
        if signed.vault_address is not None:
            vault = signed.vault_address.lower()
            if self.clearinghouse.master_of(vault) != acting:
                return ErrorResponse(f"Vault not registered: {vault}")
            acting = vault
        return acting

    def execute(self, user: str, action: UserAction | DevnetAction, time: int) -> ActionResponse:
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
            case UserSetAbstractionAction() | AgentSetAbstractionAction():
                return set_abstraction(self.exchange, user, action)
            case BorrowLendAction():
                response, updates = borrow_lend(
                    self.clearinghouse, self.lending, user, action, time
                )
                self.ledger.extend(updates)
                return response
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
            case ApproveAgentAction():
                refused = self.agents.approve(user, action.agent_address, action.agent_name)
                return DefaultResponse() if refused is None else refused
            case SetReferrerAction():
                # The devnet has no referral program: the code is accepted and not kept.
                return DefaultResponse()
            case VaultTransferAction():
                return ErrorResponse("Vault not found.")
            case SetOraclePriceAction():
                return self._set_oracle_price(action)
            case FundAction():
                return self._fund(action, time)
            case SnapshotAction():
                return SnapshotResponse(self._save(time))
            case RevertAction():
                if action.id not in self.saved:
                    return ErrorResponse(f"Unknown snapshot id {action.id}.")
                self._restore(action.id)
                return DefaultResponse()

    def _save(self, time: int) -> int:
        """Keep a copy of the whole state under a new id. The node runs a snapshot alone in a
        block, where it executes first, so no event of the block is pending in the copy."""
        snapshot_id = self.next_snapshot_id
        self.next_snapshot_id += 1
        state = {k: v for k, v in vars(self).items() if k not in _NOT_SAVED}
        self.saved[snapshot_id] = (time, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        return snapshot_id

    def _restore(self, snapshot_id: int) -> None:
        """Back to the state saved under `snapshot_id` (time does not go back: the next block
        accrues interest and funding samples over the gap). That snapshot and every later one
        are dropped, as Anvil's evm_revert does; earlier ones stay."""
        vars(self).update(pickle.loads(self.saved[snapshot_id][1]))
        for later in [i for i in self.saved if i >= snapshot_id]:
            del self.saved[later]

    # The devnet's own controls (POST /devnet), logged in blocks like any action.

    def _set_oracle_price(self, action: SetOraclePriceAction) -> ActionResponse:
        market = self.markets.by_coin.get(action.coin)
        if market is None or market.is_spot:
            return ErrorResponse(f"Unknown perp {action.coin!r}.")
        px = parse_fixed(action.px, market.px_decimals)
        if px is None or px <= 0:
            return ErrorResponse(f"Invalid price {action.px!r} for {action.coin}.")
        self.oracle.set_price(market.asset, px)
        return DefaultResponse()

    def _fund(self, action: FundAction, time: int) -> ActionResponse:
        user = action.user.lower()
        if action.token == "USDC":
            micro = parse_usdc(action.amount)
            if micro is None:
                return ErrorResponse(f"Invalid amount {action.amount!r}.")
            self.deposit(user, micro, time)
            return DefaultResponse()
        token = self.markets.token_by_name(action.token)
        if token is None:
            return ErrorResponse(f"Unknown token {action.token!r}.")
        wei = parse_fixed(action.amount, token.wei_decimals)
        if wei is None or wei <= 0:
            return ErrorResponse(f"Invalid amount {action.amount!r}.")
        self.clearinghouse.credit_spot(user, token.index, wei)
        return DefaultResponse()

    def deposit(self, user: str, micro_usdc: int, time: int) -> None:
        """USDC arriving from outside (genesis funding, the devnet's faucet) into perp cash,
        recorded as a `deposit` ledger update."""
        self.clearinghouse.credit_usd(user, micro_usdc)
        self.ledger.append(LedgerUpdate(time, (user,), Deposit(micro_usdc)))

    def apply_block(
        self, height: int, time: int, proposed: list[tuple[str, Action]]
    ) -> BlockOutput:
        """Run one block: the phases below, in this order. The node's actors run the same
        phases one message each (node/actors.py); this sequential form is what replay and the
        protocol tests use, so the two cannot drift apart.
        1. prices: the oracle publishes (every 3 s) and the marks follow;
        2. interest: every lending reserve accrues to the block time;
        3. the actions, sorted into the three classes (stable within a class);
        4. TP/SL triggers on the marks (assets in order), scheduled cancels due, funding
           (a premium sample every 5 s, settlement at each UTC hour);
        5. portfolio margin settles: shortfalls borrowed, surpluses repaid, idle USDC supplied;
        6. liquidation: standard accounts below maintenance, then portfolio-margin accounts
           whose ratio is above 0.95."""
        published = self.publish_oracle(time)
        self.accrue_interest(time)  # reads no price: its place before the marks is free
        self.update_marks(time, published)
        executed = self.execute_actions(time, proposed)
        funding = self.run_timed_passes(time)
        self.settle_portfolio()
        self.liquidate(time)
        return self.end_block(height, time, executed, funding)

    # The phases, each the rule of one actor.

    def publish_oracle(self, time: int) -> bool:
        """Phase 1 (oracle): whether the oracle published new prices at `time`."""
        return self.prices_driven and self.oracle.update(time)

    def update_marks(self, time: int, published: bool) -> None:
        """Phase 1 (matching, which holds the books the marks read): after a publication every
        perp's mark follows the new oracle price and the book."""
        if published:
            self._update_marks(time)

    def accrue_interest(self, time: int) -> None:
        """Phase 2 (lending)."""
        self.lending.accrue(time)

    def execute_actions(
        self, time: int, proposed: Sequence[tuple[str, Action]]
    ) -> list[ExecutedAction]:
        """Phase 3 (matching): the block's actions in the three-class order."""
        ordered = order_block_actions(list(enumerate(proposed)), lambda entry: entry[1][1])
        executed = []
        for index, (user, action) in ordered:
            acting, done, response = self.execute_proposal(user, action, time)
            executed.append(ExecutedAction(index, acting, done, response))
        return executed

    def run_timed_passes(self, time: int) -> list[FundingUpdate]:
        """Phase 4 (matching): TP/SL triggers, scheduled cancels, funding."""
        if self.prices_driven:
            for perp in self.markets.perps:
                self.exchange.on_mark(perp.asset, self.clearinghouse.mark(perp.asset), time)
        self.exchange.on_block_time(time)
        if not self.prices_driven:
            return []
        # Premiums are read from the books only when this block takes the slot's sample.
        premiums = self._premiums() if self.funding.wants_sample(time) else {}
        settlement = self.funding.on_block(time, premiums)
        return [] if settlement is None else self._pay_funding(settlement)

    def settle_portfolio(self) -> None:
        """Phase 5 (lending): portfolio-margin debts move to their targets, idle USDC is
        supplied."""
        self.portfolio.settle()

    def liquidate(self, time: int) -> None:
        """Phase 6 (margin monitor): standard accounts, then portfolio-margin accounts."""
        self.ledger.extend(self.liquidator.run(time))
        self.ledger.extend(self.portfolio.liquidate(time))

    def end_block(
        self,
        height: int,
        time: int,
        executed: Sequence[ExecutedAction],
        funding: Sequence[FundingUpdate],
    ) -> BlockOutput:
        """The block's output: its actions and the events its phases left."""
        fills, updates = self.exchange.take_events()
        ledger, self.ledger = self.ledger, []
        return BlockOutput(
            height,
            time,
            tuple(executed),
            tuple(fills),
            tuple(updates),
            tuple(ledger),
            tuple(funding),
        )

    def _update_marks(self, time: int) -> None:
        elapsed = time - self.mark_time
        self.mark_time = time
        for perp in self.markets.perps:
            book = self.exchange.books[perp.asset]
            mark = self.marks[perp.asset].update(
                self.oracle.price(perp.asset),
                book.best_bid(),
                book.best_ask(),
                self.clearinghouse.last_trade.get(perp.asset),
                elapsed,
            )
            self.clearinghouse.set_mark(perp.asset, mark)
            self.clearinghouse.oracle_px[perp.asset] = self.oracle.price(perp.asset)

    def _premiums(self) -> dict[int, int]:
        premiums: dict[int, int] = {}
        for perp in self.markets.perps:
            book = self.exchange.books[perp.asset]
            notional = impact_notional_for(perp.name)
            bid = impact_price(book.depth(is_bid=True), notional)
            ask = impact_price(book.depth(is_bid=False), notional)
            premiums[perp.asset] = premium(bid, ask, self.oracle.price(perp.asset))
        return premiums

    def _pay_funding(self, settlement: FundingSettlement) -> list[FundingUpdate]:
        """Pay each asset's hourly rate on oracle notional, into cross cash or the isolated
        cash leg, and add it to the positions' cumulative funding."""
        clearinghouse = self.clearinghouse
        updates: list[FundingUpdate] = []
        for rate in settlement.rates:
            asset = rate.asset
            holders = [
                (user, account.positions[asset].szi)
                for user, account in sorted(clearinghouse.accounts.items())
                if asset in account.positions and account.positions[asset].szi
            ]
            if not holders or rate.rate == 0:
                continue
            oracle_px = self.oracle.price(asset)
            coin = self.markets.perps[asset].name
            for user, change in funding_payments(holders, oracle_px, rate.rate).items():
                account = clearinghouse.accounts[user]
                position = account.positions[asset]
                if clearinghouse.leverage_of(account, asset).is_cross:
                    account.usd += change
                else:
                    position.isolated_raw += change
                position.funding_all_time -= change
                position.funding_since_open -= change
                position.funding_since_change -= change
                updates.append(
                    FundingUpdate(
                        settlement.time,
                        user,
                        coin,
                        change,
                        position.szi,
                        rate.rate,
                        rate.n_samples,
                    )
                )
        return updates

    def _check(self) -> None:
        self.exchange._check()
        self.oracle._check()
        self.funding._check()
        for mark in self.marks.values():
            mark._check()
        self.lending._check()
        self.agents._check()
        self.nonces._check()
