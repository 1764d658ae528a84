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


class _Action(msgspec.Struct, frozen=True, tag_field="type", omit_defaults=True):
    pass


class BuilderWire(msgspec.Struct, frozen=True):
    b: str
    f: int


class OrderAction(_Action, frozen=True, tag="order"):
    orders: tuple[OrderWire, ...]
    grouping: str = "na"
    builder: BuilderWire | None = None


class CancelWire(msgspec.Struct, frozen=True):
    a: int
    o: int


class CancelAction(_Action, frozen=True, tag="cancel"):
    cancels: tuple[CancelWire, ...]


class CancelByCloidWire(msgspec.Struct, frozen=True):
    asset: int
    cloid: str


class CancelByCloidAction(_Action, frozen=True, tag="cancelByCloid"):
    cancels: tuple[CancelByCloidWire, ...]


class ModifyWire(msgspec.Struct, frozen=True):
    oid: int | str
    order: OrderWire


class BatchModifyAction(_Action, frozen=True, tag="batchModify"):
    modifies: tuple[ModifyWire, ...]


class ScheduleCancelAction(_Action, frozen=True, tag="scheduleCancel"):
    time: int | None = None


class NoopAction(_Action, frozen=True, tag="noop"):
    pass


TradingAction = (
    OrderAction
    | CancelAction
    | CancelByCloidAction
    | BatchModifyAction
    | ScheduleCancelAction
    | NoopAction
)


class OrderResponse(msgspec.Struct, frozen=True, tag="order"):
    statuses: tuple[OrderStatus, ...]


class CancelResponse(msgspec.Struct, frozen=True, tag="cancel"):
    statuses: tuple[str | OrderError, ...]


class DefaultResponse(msgspec.Struct, frozen=True, tag="default"):
    pass


class ErrorResponse(msgspec.Struct, frozen=True, tag="err"):
    error: str


ActionResponse = OrderResponse | CancelResponse | DefaultResponse | ErrorResponse
