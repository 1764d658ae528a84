"""Hand-computed scenarios for order placement, matching, fees, STP, cancels and modifies.

BTC: price has 1 decimal (100000 -> 1_000_000), size 5 (0.1 -> 10_000); notional px * sz is in
micro-USDC. PURR/USDC: price 8 decimals, size 0 decimals, 1 PURR = 10**5 wei, USDC wei 10**8.
"""

from __future__ import annotations

from protocol.actions import (
    BatchModifyAction,
    CancelAction,
    CancelByCloidAction,
    CancelByCloidWire,
    CancelResponse,
    CancelWire,
    DefaultResponse,
    ErrorResponse,
    ModifyWire,
    NoopAction,
    OrderAction,
    OrderResponse,
    ScheduleCancelAction,
)
from protocol.exchange import Exchange
from protocol.orders import (
    ERR_DUPLICATE_CLOID,
    ERR_IOC_CANCEL,
    ERR_PERP_MARGIN,
    ERR_REDUCE_ONLY,
    ERR_SPOT_BALANCE,
    Filled,
    OrderError,
    OrderStatus,
    OrderWire,
    Resting,
)
from tests.protocol.conftest import (
    BTC,
    HYPE_TOKEN,
    PURR_TOKEN,
    PURR_USDC,
    USD,
    USDC_TOKEN,
    fingerprint,
    limit,
)

T = 1_700_000_000_000
CLOID_1 = "0x" + "0" * 31 + "1"
CLOID_2 = "0x" + "0" * 31 + "2"


def place(ex: Exchange, user: str, *orders: OrderWire, time: int = T) -> list[OrderStatus]:
    response = ex.place_orders(user, orders, "na", time)
    assert isinstance(response, OrderResponse), response
    ex._check()
    return list(response.statuses)


def statuses_of(ex: Exchange) -> list[tuple[int, str]]:
    return [(u.order.oid, u.status) for u in ex.take_events()[1]]


def test_gtc_rests_then_fills_at_the_resting_price(exchange: Exchange) -> None:
    """A crossing sell trades at the bid's price; fees are 0.015% maker, 0.045% taker."""
    assert place(exchange, "a", limit(BTC, True, "100000", "0.1")) == [Resting(1)]
    assert exchange.books[BTC].best_bid() == 1_000_000
    exchange.take_events()
    assert place(exchange, "b", limit(BTC, False, "99000", "0.1")) == [
        Filled(2, 10_000, 1_000_000 * 10_000)
    ]
    fills, updates = exchange.take_events()
    maker, taker = fills
    assert (maker.user, maker.px, maker.sz, maker.is_buy, maker.crossed) == (
        "a",
        1_000_000,
        10_000,
        True,
        False,
    )
    assert (taker.user, taker.is_buy, taker.crossed, taker.tid) == ("b", False, True, maker.tid)
    assert (maker.direction, taker.direction) == ("Open Long", "Open Short")
    assert maker.fee == 1_500_000  # 0.015% of $10,000 = $1.50
    assert taker.fee == 4_500_000  # 0.045% of $10,000 = $4.50
    accounts = exchange.clearinghouse.accounts
    assert accounts["a"].usd == (100_000 - 10_000) * USD - 1_500_000
    assert accounts["b"].usd == (100_000 + 10_000) * USD - 4_500_000
    assert (accounts["a"].szi(BTC), accounts["b"].szi(BTC)) == (10_000, -10_000)
    assert exchange.clearinghouse.perp_fees == 6_000_000
    assert [(u.order.oid, u.status) for u in updates] == [(1, "filled"), (2, "filled")]
    assert exchange.books[BTC].best_bid() is None


def test_partial_fill_rests_the_remainder(exchange: Exchange) -> None:
    """A GTC order larger than the opposite side trades what it can and rests the rest."""
    place(exchange, "a", limit(BTC, True, "100000", "0.1"))
    assert place(exchange, "b", limit(BTC, False, "100000", "0.3")) == [Resting(2)]
    assert exchange.books[BTC].depth(is_bid=False) == [(1_000_000, 20_000, 1)]
    assert exchange.books[BTC].orders[2].orig_sz == 30_000


def test_sweep_keeps_price_time_priority(exchange: Exchange) -> None:
    """Best price first, oldest first within a price; the IOC stops at its limit."""
    place(exchange, "a", limit(BTC, True, "100000", "0.1"))
    place(exchange, "c", limit(BTC, True, "100000", "0.1"))
    place(exchange, "a", limit(BTC, True, "99900", "0.1"))
    place(exchange, "c", limit(BTC, True, "99800", "0.1"))
    exchange.take_events()
    status = place(exchange, "b", limit(BTC, False, "99900", "0.25", "Ioc"))
    assert status == [Filled(5, 25_000, 1_000_000 * 20_000 + 999_000 * 5_000)]
    fills, _ = exchange.take_events()
    makers = [(f.oid, f.px, f.sz) for f in fills if not f.crossed]
    assert makers == [(1, 1_000_000, 10_000), (2, 1_000_000, 10_000), (3, 999_000, 5_000)]
    assert exchange.books[BTC].depth(is_bid=True) == [(999_000, 5_000, 1), (998_000, 10_000, 1)]


def test_ioc_without_liquidity_is_rejected(exchange: Exchange) -> None:
    """An IOC that cannot trade gets iocCancelRejected and leaves the book as it was."""
    place(exchange, "a", limit(BTC, True, "99000", "0.1"))
    exchange.take_events()
    assert place(exchange, "b", limit(BTC, False, "99500", "0.1", "Ioc")) == [
        OrderError(ERR_IOC_CANCEL)
    ]
    assert statuses_of(exchange) == [(2, "iocCancelRejected")]
    assert exchange.books[BTC].depth(is_bid=True) == [(990_000, 10_000, 1)]
    assert exchange.clearinghouse.accounts["b"].usd == 100_000 * USD


def test_ioc_partial_fill_cancels_the_rest(exchange: Exchange) -> None:
    """An IOC that trades part of its size reports filled, and the rest is cancelled."""
    place(exchange, "a", limit(BTC, True, "100000", "0.1"))
    exchange.take_events()
    assert place(exchange, "b", limit(BTC, False, "100000", "0.3", "Ioc")) == [
        Filled(2, 10_000, 1_000_000 * 10_000)
    ]
    assert statuses_of(exchange) == [(1, "filled"), (2, "canceled")]
    assert exchange.books[BTC].best_ask() is None


def test_alo_that_would_cross_is_rejected(exchange: Exchange) -> None:
    """Post-only orders never take; the error names the bbo."""
    place(exchange, "a", limit(BTC, True, "99000", "0.1"))
    place(exchange, "a", limit(BTC, False, "100000", "0.1"))
    exchange.take_events()
    assert place(exchange, "b", limit(BTC, True, "100000", "0.1", "Alo")) == [
        OrderError("Post only order would have immediately matched, bbo was 99000@100000.")
    ]
    assert statuses_of(exchange) == [(3, "badAloPxRejected")]
    assert place(exchange, "b", limit(BTC, True, "99500", "0.1", "Alo")) == [Resting(4)]


def test_self_trade_expires_the_maker(exchange: Exchange) -> None:
    """A taker meeting its own resting order cancels it with no fill or fee, then trades
    behind it."""
    place(exchange, "a", limit(BTC, True, "100000", "0.1"))
    place(exchange, "c", limit(BTC, True, "99900", "0.1"))
    exchange.take_events()
    assert place(exchange, "a", limit(BTC, False, "99900", "0.2", "Ioc")) == [
        Filled(3, 10_000, 999_000 * 10_000)
    ]
    fills, updates = exchange.take_events()
    assert [(f.user, f.oid) for f in fills] == [("c", 2), ("a", 3)]
    assert [(u.order.oid, u.status) for u in updates] == [
        (1, "selfTradeCanceled"),
        (2, "filled"),
        (3, "canceled"),
    ]
    # Only the trade with c moved cash: a sold 0.1 at 99900 and paid the taker fee.
    assert exchange.clearinghouse.accounts["a"].usd == 100_000 * USD + 9_990 * USD - 4_495_500


def test_closing_and_flipping_positions_report_pnl(exchange: Exchange) -> None:
    """Closing trades report closedPnl against the entry price; a flip says Long > Short."""
    place(exchange, "b", limit(BTC, False, "100000", "0.1"))
    place(exchange, "a", limit(BTC, True, "100000", "0.1", "Ioc"))
    place(exchange, "b", limit(BTC, True, "110000", "0.3"))
    exchange.take_events()
    place(exchange, "a", limit(BTC, False, "110000", "0.3", "Ioc"))
    fills, _ = exchange.take_events()
    taker = fills[-1]
    assert taker.direction == "Long > Short"
    assert taker.start_position == 10_000
    assert taker.closed_pnl == 1_000 * USD  # 0.1 x (110000 - 100000)
    position = exchange.clearinghouse.accounts["a"].positions[BTC]
    assert (position.szi, position.entry_ntl) == (-20_000, 1_100_000 * 20_000)
    maker = fills[0]
    assert (maker.direction, maker.closed_pnl) == ("Short > Long", -1_000 * USD)


def test_reduce_only_rules(exchange: Exchange) -> None:
    """Reduce-only orders are refused without an opposite position, are capped at the
    position size, and a resting one that stops reducing is cancelled at its next fill."""
    assert place(exchange, "a", limit(BTC, False, "100000", "0.1", reduce_only=True)) == [
        OrderError(ERR_REDUCE_ONLY)
    ]
    place(exchange, "b", limit(BTC, False, "100000", "0.1"))
    place(exchange, "a", limit(BTC, True, "100000", "0.1", "Ioc"))  # a is long 0.1
    assert place(exchange, "a", limit(BTC, True, "90000", "0.1", reduce_only=True)) == [
        OrderError(ERR_REDUCE_ONLY)
    ]
    assert place(exchange, "a", limit(BTC, False, "101000", "0.3", reduce_only=True)) == [
        Resting(5)
    ]
    assert exchange.books[BTC].orders[5].sz == 10_000  # capped to the position
    # a closes the position elsewhere; the resting reduce-only order no longer reduces.
    place(exchange, "c", limit(BTC, True, "99000", "0.1"))
    place(exchange, "a", limit(BTC, False, "99000", "0.1", "Ioc"))
    exchange.take_events()
    assert place(exchange, "b", limit(BTC, True, "101000", "0.1", "Ioc")) == [
        OrderError(ERR_IOC_CANCEL)
    ]
    assert statuses_of(exchange) == [(5, "reduceOnlyCanceled"), (8, "iocCancelRejected")]


def test_insufficient_margin_at_placement_and_at_fill(exchange: Exchange) -> None:
    """The collateral seam refuses an order at placement (perpMarginRejected) and cancels a
    resting order that no longer passes when it is matched (marginCanceled)."""
    clearinghouse = exchange.clearinghouse
    clearinghouse.set_mark(BTC, 1_000_000)
    clearinghouse.credit_usd("d", 100 * USD)  # default 20x: up to $2,000 of notional
    assert place(exchange, "d", limit(BTC, True, "100000", "0.025")) == [
        OrderError(ERR_PERP_MARGIN)
    ]
    assert place(exchange, "d", limit(BTC, True, "100000", "0.015")) == [Resting(2)]
    assert clearinghouse.orders_reserved(clearinghouse.accounts["d"]) == 75 * USD
    clearinghouse.credit_usd("d", -95 * USD)  # equity $5 < $75 of margin
    exchange.take_events()
    assert place(exchange, "b", limit(BTC, False, "100000", "0.015", "Ioc")) == [
        OrderError(ERR_IOC_CANCEL)
    ]
    assert statuses_of(exchange) == [(2, "marginCanceled"), (3, "iocCancelRejected")]
    assert clearinghouse.accounts["d"].order_ntl == {}


def test_spot_trade_moves_tokens_and_fees(exchange: Exchange) -> None:
    """A resting buy holds its quote; the buyer's fee is taken in base, the seller's in quote."""
    accounts = exchange.clearinghouse.accounts
    assert place(exchange, "a", limit(PURR_USDC, True, "0.2", "100")) == [Resting(1)]
    assert accounts["a"].spot_hold[USDC_TOKEN] == 20 * 10**8
    exchange.take_events()
    assert place(exchange, "b", limit(PURR_USDC, False, "0.2", "100")) == [
        Filled(2, 100, 20_000_000 * 100)
    ]
    a, b = accounts["a"], accounts["b"]
    assert a.spot_hold[USDC_TOKEN] == 0
    assert a.spot_total[USDC_TOKEN] == (100_000 - 20) * 10**8
    assert a.spot_total[PURR_TOKEN] == (1_000_100) * 10**5 - 4_000  # 0.04% of 100 PURR
    assert b.spot_total[PURR_TOKEN] == (1_000_000 - 100) * 10**5
    assert b.spot_total[USDC_TOKEN] == (100_000 + 20) * 10**8 - 1_400_000  # 0.07% of 20 USDC
    fills, _ = exchange.take_events()
    assert [(f.user, f.fee, f.fee_token, f.direction) for f in fills] == [
        ("a", 4_000, "PURR", "Buy"),
        ("b", 1_400_000, "USDC", "Sell"),
    ]
    assert exchange.clearinghouse.spot_fees == {PURR_TOKEN: 4_000, USDC_TOKEN: 1_400_000}


def test_spot_balance_counts_holds(exchange: Exchange) -> None:
    """A second buy that the free balance cannot cover is refused; cancelling frees the hold."""
    assert place(exchange, "a", limit(PURR_USDC, True, "0.6", "100000")) == [Resting(1)]
    assert place(exchange, "a", limit(PURR_USDC, True, "0.6", "100000")) == [
        OrderError(ERR_SPOT_BALANCE)
    ]
    assert place(exchange, "a", limit(PURR_USDC, False, "1", "2000000")) == [
        OrderError(ERR_SPOT_BALANCE)
    ]
    assert exchange.cancel("a", PURR_USDC, 1, T) == "success"
    assert exchange.clearinghouse.accounts["a"].spot_hold[USDC_TOKEN] == 0
    assert place(exchange, "a", limit(PURR_USDC, True, "0.6", "100000")) == [Resting(4)]


def test_cancels(exchange: Exchange) -> None:
    """Only the owner can cancel, once; the error names the asset."""
    place(exchange, "a", limit(BTC, True, "99000", "0.1"))
    missing = OrderError("Order was never placed, already canceled, or filled. asset=0")
    assert exchange.cancel("b", BTC, 1, T) == missing
    assert exchange.cancel("a", 1, 1, T) == OrderError(
        "Order was never placed, already canceled, or filled. asset=1"
    )
    assert exchange.cancel("a", BTC, 1, T) == "success"
    assert exchange.cancel("a", BTC, 1, T) == missing
    assert exchange.books[BTC].best_bid() is None
    exchange._check()


def test_cloids_cancel_and_duplicates(exchange: Exchange) -> None:
    """A live cloid is unique per account, usable by cancelByCloid, and free again after."""
    assert place(exchange, "a", limit(BTC, True, "99000", "0.1", cloid=CLOID_1)) == [
        Resting(1, CLOID_1)
    ]
    assert place(exchange, "a", limit(BTC, True, "98000", "0.1", cloid=CLOID_1)) == [
        OrderError(ERR_DUPLICATE_CLOID)
    ]
    assert place(exchange, "b", limit(BTC, True, "98000", "0.1", cloid=CLOID_1)) == [
        Resting(2, CLOID_1)
    ]
    assert exchange.cancel_by_cloid("a", BTC, CLOID_1, T) == "success"
    assert exchange.cancel_by_cloid("a", BTC, CLOID_1, T) == OrderError(
        "Order was never placed, already canceled, or filled. asset=0"
    )
    assert place(exchange, "a", limit(BTC, True, "97000", "0.1", cloid=CLOID_1)) == [
        Resting(3, CLOID_1)
    ]


def test_batch_modify_keeps_the_cloid(exchange: Exchange) -> None:
    """A modify cancels the old order and places the new one under a new oid; the cloid moves
    with it, so cancelByCloid reaches the new order."""
    place(exchange, "a", limit(BTC, True, "99000", "0.1", cloid=CLOID_1))
    place(exchange, "a", limit(BTC, True, "98000", "0.1"))
    exchange.take_events()
    action = BatchModifyAction(
        (
            ModifyWire(CLOID_1, limit(BTC, True, "99500", "0.2")),
            ModifyWire(2, limit(BTC, True, "98500", "0.1", cloid=CLOID_2)),
            ModifyWire(77, limit(BTC, True, "98500", "0.1")),
        )
    )
    response = exchange.execute("a", action, T)
    assert response == OrderResponse(
        (
            Resting(3, CLOID_1),
            Resting(4, CLOID_2),
            OrderError("Order was never placed, already canceled, or filled."),
        )
    )
    assert statuses_of(exchange) == [(1, "canceled"), (3, "open"), (2, "canceled"), (4, "open")]
    assert exchange.books[BTC].depth(is_bid=True) == [(995_000, 20_000, 1), (985_000, 10_000, 1)]
    assert exchange.cancel_by_cloid("a", BTC, CLOID_1, T) == "success"
    exchange._check()


def test_schedule_cancel(exchange: Exchange) -> None:
    """The dead man's switch needs >= 5 s of notice, cancels everything when due, and fires at
    most 10 times a day."""
    place(exchange, "a", limit(BTC, True, "99000", "0.1"))
    place(exchange, "a", limit(PURR_USDC, True, "0.2", "100"))
    assert isinstance(exchange.schedule_cancel("a", T + 4_999, T), ErrorResponse)
    assert exchange.schedule_cancel("a", T + 10_000, T) == DefaultResponse()
    exchange.take_events()
    exchange.on_block_time(T + 9_999)
    assert exchange.user_orders["a"] == {1: BTC, 2: PURR_USDC}
    exchange.on_block_time(T + 10_000)
    assert statuses_of(exchange) == [(1, "scheduledCancel"), (2, "scheduledCancel")]
    assert "a" not in exchange.user_orders
    assert exchange.clearinghouse.accounts["a"].spot_hold[USDC_TOKEN] == 0
    for i in range(9):
        assert exchange.schedule_cancel("a", T + 20_000 + i, T + 10_000 + i) == DefaultResponse()
        exchange.on_block_time(T + 20_000 + i)
    assert isinstance(exchange.schedule_cancel("a", T + 40_000, T + 30_000), ErrorResponse)
    next_day = T + 86_400_000
    assert exchange.schedule_cancel("a", next_day + 10_000, next_day) == DefaultResponse()
    assert exchange.schedule_cancel("a", None, next_day) == DefaultResponse()
    assert exchange.scheduled_cancels == {}


def test_execute_dispatches_every_action(exchange: Exchange) -> None:
    """Action structs route to their handlers and answer in Hyperliquid's shapes."""
    order = OrderAction((limit(BTC, True, "99000", "0.1"),))
    assert exchange.execute("a", order, T) == OrderResponse((Resting(1),))
    assert exchange.execute("a", CancelAction((CancelWire(BTC, 1), CancelWire(BTC, 1))), T) == (
        CancelResponse(
            ("success", OrderError("Order was never placed, already canceled, or filled. asset=0"))
        )
    )
    place(exchange, "a", limit(BTC, True, "99000", "0.1", cloid=CLOID_1))
    by_cloid = CancelByCloidAction((CancelByCloidWire(BTC, CLOID_1),))
    assert exchange.execute("a", by_cloid, T) == CancelResponse(("success",))
    assert exchange.execute("a", NoopAction(), T) == DefaultResponse()
    assert exchange.execute("a", ScheduleCancelAction(), T) == DefaultResponse()


def test_malformed_orders_change_nothing(exchange: Exchange) -> None:
    """Every malformed order gets its error and leaves the whole state byte-for-byte as it
    was: no oid consumed, no hold, no event."""
    place(exchange, "a", limit(BTC, True, "99000", "0.1", cloid=CLOID_1))
    place(exchange, "b", limit(BTC, False, "101000", "0.1"))
    exchange.take_events()
    before = fingerprint(exchange)
    bad_batches: list[tuple[OrderWire, ...]] = [
        (),
        (limit(12345, True, "1", "1"),),  # unknown asset
        (limit(BTC, True, "99000.5", "0.1"),),  # bad tick
        (limit(BTC, True, "99000", "0.000001"),),  # bad lot
        (limit(BTC, True, "99000", "0"),),  # zero size
        (limit(BTC, True, "99000", "-0.1"),),  # negative size
        (limit(BTC, True, "99000", "0.0001"),),  # $9.90 < $10
        (limit(BTC, True, "99000", "0.1", "Day"),),  # unknown tif
        (limit(BTC, True, "99000", "0.1", cloid="0x1234"),),  # bad cloid
        (limit(BTC, True, "98000", "0.1", cloid=CLOID_1),),  # duplicate cloid
    ]
    for batch in bad_batches:
        response = exchange.execute("a", OrderAction(batch), T)
        if isinstance(response, OrderResponse):
            assert all(isinstance(s, OrderError) for s in response.statuses), batch
        else:
            assert isinstance(response, ErrorResponse), batch
        assert fingerprint(exchange) == before, batch
        assert exchange.take_events() == ([], [])


def test_hype_spot_sell_checks_base_balance(exchange: Exchange) -> None:
    """A spot sell holds base tokens; selling more than the free base is refused."""
    hype = 10_001
    assert place(exchange, "a", limit(hype, False, "30", "600")) == [Resting(1)]
    assert exchange.clearinghouse.accounts["a"].spot_hold[HYPE_TOKEN] == 600 * 10**8
    assert place(exchange, "a", limit(hype, False, "30", "500")) == [OrderError(ERR_SPOT_BALANCE)]
