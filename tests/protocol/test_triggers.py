"""TP/SL trigger orders: parked off the book, fired by the mark price, OCO grouping."""

from __future__ import annotations

from protocol.actions import OrderResponse
from protocol.exchange import Exchange, slippage_price
from protocol.markets import Markets
from protocol.orders import (
    ERR_BAD_TRIGGER,
    WAITING_FOR_FILL,
    WAITING_FOR_TRIGGER,
    Filled,
    OrderError,
    OrderStatus,
    OrderWire,
    Resting,
)
from tests.protocol.conftest import BTC, PURR_USDC, limit, trigger

T = 1_700_000_000_000


def place(ex: Exchange, user: str, *orders: OrderWire, grouping: str = "na") -> list[OrderStatus]:
    response = ex.place_orders(user, orders, grouping, T)
    assert isinstance(response, OrderResponse), response
    ex._check()
    return list(response.statuses)


def go_long(ex: Exchange) -> None:
    """a buys 0.1 BTC at 100000 from b (oids 1, 2)."""
    place(ex, "b", limit(BTC, False, "100000", "0.1"))
    place(ex, "a", limit(BTC, True, "100000", "0.1", "Ioc"))


def updates(ex: Exchange) -> list[tuple[int, str]]:
    return [(u.order.oid, u.status) for u in ex.take_events()[1]]


def test_stop_market_fires_on_mark_with_slippage(exchange: Exchange) -> None:
    """A stop loss on a long sells when mark <= trigger, as an IOC 10% through the mark."""
    go_long(exchange)
    place(exchange, "c", limit(BTC, True, "94000", "0.1"))  # oid 3
    assert place(exchange, "a", trigger(BTC, False, "95000", "0.1", "95000", "sl")) == [Resting(4)]
    assert 4 not in exchange.books[BTC].orders
    exchange.take_events()
    exchange.on_mark(BTC, 960_000, T + 1)
    assert updates(exchange) == []
    exchange.on_mark(BTC, 940_000, T + 2)
    assert updates(exchange) == [(4, "triggered"), (3, "filled"), (4, "filled")]
    assert exchange.clearinghouse.accounts["a"].szi(BTC) == 0
    exchange._check()


def test_take_profit_limit_rests_at_its_price(exchange: Exchange) -> None:
    """A take profit on a long fires when mark >= trigger and rests as a GTC at its limit."""
    go_long(exchange)
    take_profit = trigger(BTC, False, "104000", "0.1", "105000", "tp", is_market=False)
    assert place(exchange, "a", take_profit) == [Resting(3)]
    exchange.take_events()
    exchange.on_mark(BTC, 1_049_000, T + 1)
    assert updates(exchange) == []
    exchange.on_mark(BTC, 1_060_000, T + 2)
    assert updates(exchange) == [(3, "triggered"), (3, "open")]
    assert exchange.books[BTC].depth(is_bid=False) == [(1_040_000, 10_000, 1)]


def test_position_tpsl_siblings_cancel_each_other(exchange: Exchange) -> None:
    """positionTpsl legs wait for their trigger; the first to fire cancels the other."""
    go_long(exchange)
    place(exchange, "c", limit(BTC, True, "89000", "0.1"))  # oid 3
    legs = (
        trigger(BTC, False, "110000", "0.1", "110000", "tp"),
        trigger(BTC, False, "90000", "0.1", "90000", "sl"),
    )
    assert place(exchange, "a", *legs, grouping="positionTpsl") == [
        WAITING_FOR_TRIGGER,
        WAITING_FOR_TRIGGER,
    ]
    exchange.take_events()
    exchange.on_mark(BTC, 890_000, T + 1)
    assert updates(exchange) == [
        (5, "triggered"),
        (4, "siblingFilledCanceled"),
        (3, "filled"),
        (5, "filled"),
    ]
    assert exchange.triggers == {}


def test_normal_tpsl_children_wait_for_the_parent(exchange: Exchange) -> None:
    """normalTpsl children stay unarmed until the parent fills fully, then work as OCO."""
    batch = (
        limit(BTC, True, "99000", "0.1"),
        trigger(BTC, False, "110000", "0.1", "110000", "tp"),
        trigger(BTC, False, "90000", "0.1", "90000", "sl"),
    )
    assert place(exchange, "a", *batch, grouping="normalTpsl") == [
        Resting(1),
        WAITING_FOR_FILL,
        WAITING_FOR_FILL,
    ]
    exchange.on_mark(BTC, 800_000, T + 1)  # would fire the stop, but it is not armed yet
    assert exchange.triggers[3].parent == 1
    place(exchange, "b", limit(BTC, False, "99000", "0.1"))  # parent fills
    assert exchange.triggers[3].parent == 0
    place(exchange, "c", limit(BTC, True, "89000", "0.1"))
    exchange.take_events()
    exchange.on_mark(BTC, 890_000, T + 2)
    assert updates(exchange) == [
        (3, "triggered"),
        (2, "siblingFilledCanceled"),
        (5, "filled"),
        (3, "filled"),
    ]


def test_cancelling_the_parent_cancels_waiting_children(exchange: Exchange) -> None:
    """Children of a cancelled parent are cancelled with it."""
    batch = (
        limit(BTC, True, "99000", "0.1"),
        trigger(BTC, False, "90000", "0.1", "90000", "sl"),
    )
    place(exchange, "a", *batch, grouping="normalTpsl")
    exchange.take_events()
    assert exchange.cancel("a", BTC, 1, T) == "success"
    assert updates(exchange) == [(1, "canceled"), (2, "canceled")]
    assert exchange.triggers == {} and exchange.children == {}
    exchange._check()


def test_parent_filled_at_once_arms_children(exchange: Exchange) -> None:
    """A parent that fills on placement arms its children immediately."""
    place(exchange, "b", limit(BTC, False, "100000", "0.1"))
    batch = (
        limit(BTC, True, "100000", "0.1", "Ioc"),
        trigger(BTC, False, "90000", "0.1", "90000", "sl"),
    )
    assert place(exchange, "a", *batch, grouping="normalTpsl") == [
        Filled(2, 10_000, 1_000_000 * 10_000),
        WAITING_FOR_TRIGGER,
    ]
    assert exchange.triggers[3].parent == 0


def test_bad_trigger_orders(exchange: Exchange) -> None:
    """A bad trigger price is badTriggerPx; spot has no positions to protect."""
    assert place(exchange, "a", trigger(BTC, False, "95000", "0.1", "95000.55", "sl")) == [
        OrderError(ERR_BAD_TRIGGER)
    ]
    assert place(exchange, "a", trigger(PURR_USDC, False, "0.2", "100", "0.2", "sl")) == [
        OrderError("Reduce only order would increase position.")
    ]
    assert exchange.triggers == {}


def test_slippage_price_is_a_valid_tick(markets: Markets) -> None:
    """Market triggers trade 10% through the mark, rounded to 5 significant figures."""
    btc = markets.by_coin["BTC"]
    assert slippage_price(940_000, False, btc) == 846_000
    assert slippage_price(1_234_567, True, btc) == 1_358_100  # 135802.37 -> 135810 rounded up
    eth = markets.by_coin["ETH"]  # 2 price decimals
    assert slippage_price(312_345, False, eth) == 281_110  # 2811.105 -> 2811.1
