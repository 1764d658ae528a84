"""Trading actions as they arrive on the wire, and the answers the exchange gives them.

Invariants:
- One struct per action `type`, tagged by that field, with the SDK's own key names, so the API
  decodes a request body straight into the `TradingAction` union.
- Answers mirror Hyperliquid's response shapes: order statuses per order, cancel statuses per
  cancel, `default` for the rest, and one error string when the whole action is refused.
"""

from __future__ import annotations

import msgspec

from protocol.orders import OrderError, OrderStatus, OrderWire


class _Action(msgspec.Struct, frozen=True, gc=False, tag_field="type", omit_defaults=True):
    """Actions, their wire parts and their responses are frozen and hold only decoded values,
    so they can form no reference cycle: `gc=False` keeps them out of the cyclic collector,
    which otherwise walks every order of every request waiting for its block."""


class BuilderWire(msgspec.Struct, frozen=True, gc=False):
    b: str
    f: int


class OrderAction(_Action, frozen=True, tag="order"):
    orders: tuple[OrderWire, ...]
    grouping: str = "na"
    builder: BuilderWire | None = None


class CancelWire(msgspec.Struct, frozen=True, gc=False):
    a: int
    o: int


class CancelAction(_Action, frozen=True, tag="cancel"):
    cancels: tuple[CancelWire, ...]


class CancelByCloidWire(msgspec.Struct, frozen=True, gc=False):
    asset: int
    cloid: str


class CancelByCloidAction(_Action, frozen=True, tag="cancelByCloid"):
    cancels: tuple[CancelByCloidWire, ...]


class ModifyWire(msgspec.Struct, frozen=True, gc=False):
    oid: int | str
    order: OrderWire


class BatchModifyAction(_Action, frozen=True, tag="batchModify"):
    modifies: tuple[ModifyWire, ...]


class ScheduleCancelAction(_Action, frozen=True, tag="scheduleCancel"):
    time: int | None = None


class NoopAction(_Action, frozen=True, tag="noop"):
    pass


class UpdateLeverageAction(_Action, frozen=True, tag="updateLeverage", rename="camel"):
    asset: int
    is_cross: bool
    leverage: int


class UpdateIsolatedMarginAction(_Action, frozen=True, tag="updateIsolatedMargin", rename="camel"):
    asset: int
    is_buy: bool
    ntli: int  # micro-USDC, signed: negative removes margin


ExchangeAction = (
    OrderAction
    | CancelAction
    | CancelByCloidAction
    | BatchModifyAction
    | ScheduleCancelAction
    | NoopAction
)
TradingAction = ExchangeAction | UpdateLeverageAction | UpdateIsolatedMarginAction


class UserSigned(_Action, frozen=True, kw_only=True, rename="camel"):
    """A user-signed action (EIP-712 HyperliquidSignTransaction): the signature fields travel
    in the action and are checked by the API layer."""

    hyperliquid_chain: str | None = None
    signature_chain_id: str | None = None


# User-signed transfers: amounts are decimal strings as the SDK sends them.


class UsdClassTransferAction(UserSigned, frozen=True, tag="usdClassTransfer", rename="camel"):
    amount: str
    to_perp: bool
    nonce: int = 0


class UsdSendAction(UserSigned, frozen=True, tag="usdSend", rename="camel"):
    destination: str
    amount: str
    time: int = 0


class SpotSendAction(UserSigned, frozen=True, tag="spotSend", rename="camel"):
    destination: str
    token: str
    amount: str
    time: int = 0


class Withdraw3Action(UserSigned, frozen=True, tag="withdraw3", rename="camel"):
    destination: str
    amount: str
    time: int = 0


class SendAssetAction(UserSigned, frozen=True, tag="sendAsset", rename="camel"):
    destination: str
    source_dex: str
    destination_dex: str
    token: str
    amount: str
    from_sub_account: str = ""
    nonce: int = 0


class CreateSubAccountAction(_Action, frozen=True, tag="createSubAccount"):
    name: str


class SubAccountTransferAction(_Action, frozen=True, tag="subAccountTransfer", rename="camel"):
    sub_account_user: str
    is_deposit: bool
    usd: int  # micro-USDC


class SubAccountSpotTransferAction(
    _Action, frozen=True, tag="subAccountSpotTransfer", rename="camel"
):
    sub_account_user: str
    is_deposit: bool
    token: str
    amount: str


class UserSetAbstractionAction(UserSigned, frozen=True, tag="userSetAbstraction", rename="camel"):
    user: str
    abstraction: str
    nonce: int = 0


class AgentSetAbstractionAction(_Action, frozen=True, tag="agentSetAbstraction"):
    abstraction: str  # "i" (disabled), "u" (unifiedAccount), "p" (portfolioMargin)


AccountModeAction = UserSetAbstractionAction | AgentSetAbstractionAction


class BorrowLendAction(_Action, frozen=True, tag="borrowLend"):
    operation: str  # "supply" | "withdraw" | "borrow" | "repay"
    token: int
    amount: str | None = None  # None: everything (withdraw the supply, repay the debt)


class ApproveAgentAction(UserSigned, frozen=True, tag="approveAgent", rename="camel"):
    agent_address: str
    agent_name: str | None = None
    nonce: int = 0


class SetReferrerAction(_Action, frozen=True, tag="setReferrer"):
    code: str


class VaultTransferAction(_Action, frozen=True, tag="vaultTransfer", rename="camel"):
    vault_address: str
    is_deposit: bool
    usd: int  # micro-USDC


AgentAction = ApproveAgentAction | SetReferrerAction | VaultTransferAction


# Devnet controls: put in a block by the node (POST /devnet), never signed by a user.


class SetOraclePriceAction(_Action, frozen=True, tag="devnetSetOraclePrice"):
    coin: str
    px: str


class FundAction(_Action, frozen=True, tag="devnetFund"):
    user: str
    token: str  # "USDC" funds perp cash; any spot token name funds spot
    amount: str


class SnapshotAction(_Action, frozen=True, tag="devnetSnapshot"):
    pass


class RevertAction(_Action, frozen=True, tag="devnetRevert"):
    id: int


DevnetAction = SetOraclePriceAction | FundAction | SnapshotAction | RevertAction


TransferAction = (
    UsdClassTransferAction
    | UsdSendAction
    | SpotSendAction
    | Withdraw3Action
    | SendAssetAction
    | CreateSubAccountAction
    | SubAccountTransferAction
    | SubAccountSpotTransferAction
)


class OrderResponse(msgspec.Struct, frozen=True, gc=False, tag="order"):
    statuses: tuple[OrderStatus, ...]


class CancelResponse(msgspec.Struct, frozen=True, gc=False, tag="cancel"):
    statuses: tuple[str | OrderError, ...]


class DefaultResponse(msgspec.Struct, frozen=True, gc=False, tag="default"):
    pass


class CreateSubAccountResponse(msgspec.Struct, frozen=True, gc=False, tag="createSubAccount"):
    address: str


class ErrorResponse(msgspec.Struct, frozen=True, gc=False, tag="err"):
    error: str


class SnapshotResponse(msgspec.Struct, frozen=True, gc=False, tag="snapshot"):
    id: int


ActionResponse = (
    OrderResponse
    | CancelResponse
    | DefaultResponse
    | CreateSubAccountResponse
    | ErrorResponse
    | SnapshotResponse
)


UserAction = TradingAction | TransferAction | AccountModeAction | BorrowLendAction | AgentAction


class SignedAction(_Action, frozen=True, tag="signed", rename="camel"):
    """An action that came through POST /exchange with a valid signature. Its proposal's user is
    the signer; the chain checks the nonce and works out whom the signer acts for (itself, its
    master when it is an API wallet, or `vault_address`) when the block executes it, since
    both depend on chain state."""

    action: UserAction
    nonce: int
    vault_address: str | None = None
    expires_after: int | None = None
