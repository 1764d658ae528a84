"""Intra-block ordering of actions (hypercore/order-book).

Invariants:
- Actions fall into three classes, executed in this order: actions that send no GTC or IOC order
  to any book (ALO orders, trigger orders, transfers, leverage changes, ...), then cancels, then
  actions that send at least one GTC or IOC order.
- Within a class, actions keep the order in which the block lists them (the sort is stable).
- A modify counts as the order it places; a signed action as the action it wraps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from protocol.actions import (
    BatchModifyAction,
    CancelAction,
    CancelByCloidAction,
    OrderAction,
    SignedAction,
)
from protocol.orders import OrderWire

CLASS_NO_GTC_IOC = 0
CLASS_CANCEL = 1
CLASS_GTC_IOC = 2

T = TypeVar("T")


def _sends_gtc_or_ioc(orders: Sequence[OrderWire]) -> bool:
    return any(o.t.limit is not None and o.t.limit.tif in ("Gtc", "Ioc") for o in orders)


def action_class(action: object) -> int:
    if isinstance(action, SignedAction):
        action = action.action
    if isinstance(action, CancelAction | CancelByCloidAction):
        return CLASS_CANCEL
    if isinstance(action, OrderAction) and _sends_gtc_or_ioc(action.orders):
        return CLASS_GTC_IOC
    if isinstance(action, BatchModifyAction) and _sends_gtc_or_ioc(
        [m.order for m in action.modifies]
    ):
        return CLASS_GTC_IOC
    return CLASS_NO_GTC_IOC


def order_block_actions(entries: Sequence[T], action_of: Callable[[T], object]) -> list[T]:
    """The block's entries in execution order; `action_of` reads the action from an entry."""
    return sorted(entries, key=lambda entry: action_class(action_of(entry)))
