"""Intra-block ordering: no-GTC/IOC actions, then cancels, then GTC/IOC actions."""

from __future__ import annotations

from protocol.actions import (
    BatchModifyAction,
    CancelAction,
    CancelByCloidAction,
    CancelByCloidWire,
    CancelWire,
    ModifyWire,
    NoopAction,
    OrderAction,
    ScheduleCancelAction,
    TradingAction,
)
from protocol.block import (
    CLASS_CANCEL,
    CLASS_GTC_IOC,
    CLASS_NO_GTC_IOC,
    action_class,
    order_block_actions,
)
from tests.protocol.conftest import BTC, limit, trigger

GTC = OrderAction((limit(BTC, True, "99000", "0.1"),))
IOC = OrderAction((limit(BTC, True, "99000", "0.1", "Ioc"),))
ALO = OrderAction((limit(BTC, True, "99000", "0.1", "Alo"),))
ALO_AND_GTC = OrderAction((limit(BTC, True, "99000", "0.1", "Alo"), limit(BTC, True, "1", "1")))
TPSL = OrderAction((trigger(BTC, False, "90000", "0.1", "90000", "sl"),))
CANCEL = CancelAction((CancelWire(BTC, 1),))
CANCEL_CLOID = CancelByCloidAction((CancelByCloidWire(BTC, "0x" + "0" * 32),))
MODIFY_TO_ALO = BatchModifyAction((ModifyWire(1, limit(BTC, True, "99000", "0.1", "Alo")),))
MODIFY_TO_GTC = BatchModifyAction((ModifyWire(1, limit(BTC, True, "99000", "0.1")),))


def test_classes() -> None:
    """Each action lands in the documented class; a modify counts as the order it places."""
    assert action_class(ALO) == CLASS_NO_GTC_IOC
    assert action_class(TPSL) == CLASS_NO_GTC_IOC
    assert action_class(NoopAction()) == CLASS_NO_GTC_IOC
    assert action_class(ScheduleCancelAction(time=5)) == CLASS_NO_GTC_IOC
    assert action_class(MODIFY_TO_ALO) == CLASS_NO_GTC_IOC
    assert action_class(CANCEL) == CLASS_CANCEL
    assert action_class(CANCEL_CLOID) == CLASS_CANCEL
    assert action_class(GTC) == CLASS_GTC_IOC
    assert action_class(IOC) == CLASS_GTC_IOC
    assert action_class(ALO_AND_GTC) == CLASS_GTC_IOC
    assert action_class(MODIFY_TO_GTC) == CLASS_GTC_IOC


def test_order_is_stable_within_a_class() -> None:
    """Classes run in order 0, 1, 2 and keep the proposer's order inside each class."""
    arrived: list[tuple[str, TradingAction]] = [
        ("u1", GTC),
        ("u2", CANCEL),
        ("u3", ALO),
        ("u4", IOC),
        ("u5", CANCEL_CLOID),
        ("u6", TPSL),
        ("u7", MODIFY_TO_GTC),
        ("u8", NoopAction()),
    ]
    ordered = order_block_actions(arrived, lambda entry: entry[1])
    assert [user for user, _ in ordered] == ["u3", "u6", "u8", "u2", "u5", "u1", "u4", "u7"]
