"""The /info history index: fills, order statuses, ledger and funding updates, funding rates,
candles, volumes, fed block by block from real chains.

Units (configs/devnet.toml): BTC price 1 decimal (100000 -> 1_000_000), size 5 decimals; PURR
spot price 8 decimals, size 0, wei 5 decimals; USDC spot wei 8 decimals; perp USDC 6.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from node.api.history import (
    CANDLES_KEPT,
    FILLS_KEPT,
    ORDERS_KEPT,
    DayStats,
    FundingRateRecord,
    History,
    candle_close,
    candle_open,
)
from node.api.wire import event_hash
from node.config import load_config
from protocol.actions import (
    CancelAction,
    CancelWire,
    CreateSubAccountAction,
    OrderAction,
    UsdClassTransferAction,
    UserSetAbstractionAction,
)
from protocol.book import RestingOrder
from protocol.chain import Action, BlockOutput, Chain
from protocol.exchange import Fill, OrderUpdate
from protocol.ledger import AccountClassTransfer, Deposit
from tests.protocol.conftest import BTC, PURR_TOKEN, PURR_USDC, USD, USDC_TOKEN, limit, trigger

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "configs" / "devnet.toml"
T = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC, a Tuesday
A, B, D = "0x" + "a1" * 20, "0x" + "b2" * 20, "0x" + "d4" * 20
CLOID = "0x00000000000000000000000000000001"
SPOT_WEI = 10**8
PURR_WEI = 10**5
BTC_PX = 1_000_000  # 100000.0


class Run:
    """A chain and the history fed every block it runs."""

    def __init__(self, chain: Chain, start: int = T) -> None:
        self.chain = chain
        self.history = History(start)
        self.outputs: list[BlockOutput] = []

    def block(self, time: int, actions: list[tuple[str, Action]]) -> BlockOutput:
        output = self.chain.apply_block(len(self.outputs) + 1, time, actions)
        self.history.on_block(output, self.chain)
        self.outputs.append(output)
        return output


def hand_priced_chain() -> Chain:
    """The default markets and reserves, marks set by hand (no oracle), BTC marked at 100000."""
    config = load_config(CONFIG)
    chain = Chain(config.markets, start_time=T, lending=config.lending)
    chain.clearinghouse.set_mark(BTC, BTC_PX)
    return chain


def trading_run() -> Run:
    """Three blocks, one second apart:
    1. A rests a BTC sell 0.1 @ 100000 (oid 1, CLOID), a BTC buy 0.05 @ 90000 (oid 2) and a
       PURR sell 100 @ 0.2 (oid 3); D switches to the unified account.
    2. B buys 0.04 BTC (oid 4, tid 1), D 0.01 BTC (oid 5, tid 2), B 100 PURR (oid 6, tid 3),
       all IOC against A.
    3. A parks a stop loss buy 0.05 @ trigger 110000 (oid 7) and creates a sub-account, B moves
       100 USDC to spot, then A cancels oid 2.
    Genesis: A and B 100,000 USDC on perps, D 10,000; A 1,000 USDC and 1,000 PURR on spot,
    B 1,000 USDC on spot."""
    chain = hand_priced_chain()
    clearinghouse = chain.clearinghouse
    chain.deposit(A, 100_000 * USD, T)
    chain.deposit(B, 100_000 * USD, T)
    chain.deposit(D, 10_000 * USD, T)
    clearinghouse.credit_spot(A, USDC_TOKEN, 1_000 * SPOT_WEI)
    clearinghouse.credit_spot(A, PURR_TOKEN, 1_000 * PURR_WEI)
    clearinghouse.credit_spot(B, USDC_TOKEN, 1_000 * SPOT_WEI)
    run = Run(chain)
    run.block(
        T + 1000,
        [
            (A, OrderAction((limit(BTC, False, "100000", "0.1", cloid=CLOID),))),
            (A, OrderAction((limit(BTC, True, "90000", "0.05"),))),
            (A, OrderAction((limit(PURR_USDC, False, "0.2", "100"),))),
            (D, UserSetAbstractionAction(user=D, abstraction="unifiedAccount")),
        ],
    )
    run.block(
        T + 2000,
        [
            (B, OrderAction((limit(BTC, True, "100000", "0.04", "Ioc"),))),
            (D, OrderAction((limit(BTC, True, "100000", "0.01", "Ioc"),))),
            (B, OrderAction((limit(PURR_USDC, True, "0.2", "100", "Ioc"),))),
        ],
    )
    run.block(
        T + 3000,
        [
            (A, CancelAction((CancelWire(BTC, 2),))),
            (A, OrderAction((trigger(BTC, True, "120000", "0.05", "110000", "sl"),))),
            (A, CreateSubAccountAction("trading")),
            (B, UsdClassTransferAction(amount="100", to_perp=False)),
        ],
    )
    return run


def test_fills_are_kept_per_user_with_the_crossing_orders_hash() -> None:
    """Each side of a trade is filed under its own user, oldest first; both sides carry the
    hash of the order that crossed, and a liquidation-free fill keeps the exchange's `dir`."""
    history = trading_run().history
    a_fills = history.fills(A)
    assert [(r.fill.tid, r.fill.oid, r.fill.crossed) for r in a_fills] == [
        (1, 1, False),
        (2, 1, False),
        (3, 3, False),
    ]
    assert [r.hash for r in a_fills] == [
        event_hash("order", 2, 4),
        event_hash("order", 2, 5),
        event_hash("order", 2, 6),
    ]
    assert [r.direction for r in a_fills] == ["Open Short", "Open Short", "Sell"]
    b_fills = history.fills(B)
    assert [(r.fill.tid, r.fill.oid, r.hash) for r in b_fills] == [
        (1, 4, event_hash("order", 2, 4)),
        (3, 6, event_hash("order", 2, 6)),
    ]
    assert history.fills("0x" + "e5" * 20) == []


def test_order_records_follow_the_latest_status() -> None:
    """An order's record is its latest status (resting size then), found by oid or cloid;
    historicalOrders lists the most recently updated first."""
    history = trading_run().history
    sell = history.order(A, 1)
    assert sell is not None and sell.status == "open" and sell.time == T + 1000
    assert isinstance(sell.order, RestingOrder) and sell.order.sz == 10_000  # 0.1 as it rested
    assert history.order_by_cloid(A, CLOID) == sell
    cancelled = history.order(A, 2)
    assert cancelled is not None and (cancelled.status, cancelled.time) == ("canceled", T + 3000)
    filled = history.order(B, 4)
    assert filled is not None and filled.status == "filled"
    assert history.order(A, 4) is None  # another user's order
    parked = history.order(A, 7)
    assert parked is not None and parked.status == "open" and parked.trigger == parked.order
    # Block 3 ran the trigger order before the cancel (cancels form the later class).
    assert [r.order.oid for r in history.orders(A)] == [2, 7, 3, 1]
    assert [r.status for r in history.orders(A)] == ["canceled", "open", "filled", "open"]


def test_ledger_updates_are_filed_under_every_account_they_touch() -> None:
    """Genesis deposits arrive with the first block (at the genesis time); a class transfer is
    the sender's; each update has its own hash."""
    history = trading_run().history
    a_ledger = history.ledger(A)
    assert [(r.update.time, r.update.delta, r.hash) for r in a_ledger] == [
        (T, Deposit(100_000 * USD), event_hash("ledger", 1, 0))
    ]
    b_ledger = history.ledger(B)
    assert [(r.update.time, r.update.delta) for r in b_ledger] == [
        (T, Deposit(100_000 * USD)),
        (T + 3000, AccountClassTransfer(100 * USD, False)),
    ]
    assert b_ledger[1].hash == event_hash("ledger", 3, 0)


def test_requests_volumes_and_spot_cost_basis() -> None:
    """Request counts per action (orders and cancels per entry), traded notional on both
    sides, perp pnl net of fees, and the USDC paid for a spot balance."""
    history = trading_run().history
    assert history.request_count(A) == 6  # 3 orders, 1 cancel, 1 trigger, 1 sub-account
    assert history.request_count(B) == 3
    # A: 4000 + 1000 BTC as maker, 20 USDC of PURR; fees 0.6 + 0.15 on perps.
    assert history.totals(A) == (5_020 * USD, 5_000 * USD, -750_000)
    assert history.totals(B) == (4_020 * USD, 4_000 * USD, -1_800_000)
    assert history.window(A, T + 2000) == history.totals(A)  # the hour counts whole
    assert history.window(A, 1_700_002_800_000) == (0, 0, 0)  # from the next hour on
    assert history.spot_entry_notional(B, PURR_TOKEN) == 20 * SPOT_WEI
    assert history.spot_entry_notional(A, PURR_TOKEN) == 0
    days = history.daily_volumes(B)
    assert len(days) == 15 and days[-1].day == T // 86_400_000
    assert (days[-1].cross, days[-1].add, days[-1].exchange) == (4_020 * USD, 0, 5_020 * USD)
    assert (days[-2].cross, days[-2].add, days[-2].exchange) == (0, 0, 0)


def test_spot_cost_basis_leaves_with_the_share_sold() -> None:
    """Selling 40 PURR takes the sold share of the balance off the basis, whatever the price."""
    run = trading_run()
    run.block(T + 4000, [(A, OrderAction((limit(PURR_USDC, True, "0.3", "200"),)))])
    run.block(T + 5000, [(B, OrderAction((limit(PURR_USDC, False, "0.3", "40", "Ioc"),)))])
    # B held 99.93 PURR (100 less the 0.07 fee), so 40 is 40/99.93 of it.
    assert run.history.spot_entry_notional(B, PURR_TOKEN) == 2_000_000_000 - (
        2_000_000_000 * 4_000_000 // 9_993_000
    )


def test_candles_aggregate_trades_per_interval() -> None:
    """Open, close, high, low, size, notional and count per candle; a new candle starts at the
    next interval's open; candles are kept per interval."""
    run = trading_run()
    eth = 1
    run.chain.clearinghouse.set_mark(eth, 300_000)
    # ETH: 3000 and 3020 in the trading run's minute, 2990 in the next one (0.5 each).
    for time, px in ((T + 4000, "3000"), (T + 6000, "3020"), (T + 40_000, "2990")):
        run.block(time, [(A, OrderAction((limit(eth, False, px, "0.5"),)))])
        run.block(time + 1000, [(B, OrderAction((limit(eth, True, px, "0.5", "Ioc"),)))])
    minute = T - 20_000  # 22:13:00
    candles = run.history.candles("ETH", "1m", 0, T + 60_000)
    assert [(c.open_time, c.close_time) for c in candles] == [
        (minute, minute + 59_999),
        (minute + 60_000, minute + 119_999),
    ]
    first, second = candles
    assert (first.open, first.close, first.high, first.low) == (300_000, 302_000, 302_000, 300_000)
    assert (first.volume, first.trades) == (10_000, 2)  # 1 ETH
    assert first.notional == 1_500 * USD + 1_510 * USD
    assert (second.open, second.close, second.low, second.volume) == (
        299_000,
        299_000,
        299_000,
        5_000,
    )
    hour = run.history.candles("ETH", "1h", T, T)
    assert len(hour) == 1 and (hour[0].trades, hour[0].high, hour[0].low) == (3, 302_000, 299_000)
    assert hour[0].close == 299_000 and hour[0].coin == "ETH" and hour[0].interval == "1h"
    assert run.history.candles("ETH", "1m", minute + 60_000, T + 10**9) == [second]
    btc = run.history.candles("BTC", "1m", 0, T + 10**9)
    assert [(c.open, c.volume, c.trades) for c in btc] == [(BTC_PX, 5_000, 2)]
    assert run.history.candles("SOL", "1m", 0, T + 10**9) == []


def test_candle_intervals_align_to_utc() -> None:
    """Fixed intervals align to the epoch, weeks to Monday, months to the 1st."""
    assert candle_open("1m", T) == 1_699_999_980_000
    assert candle_open("1h", T) == 1_699_999_200_000
    assert candle_close("1h", 1_699_999_200_000) == 1_700_002_799_999
    assert candle_open("1d", T) == 1_699_920_000_000  # 2023-11-14
    assert candle_open("1w", T) == 1_699_833_600_000  # Monday 2023-11-13
    assert candle_close("1w", 1_699_833_600_000) == 1_700_438_399_999
    assert candle_open("1M", T) == 1_698_796_800_000  # 2023-11-01
    assert candle_close("1M", 1_698_796_800_000) == 1_701_388_799_999  # 2023-11-30 end
    assert candle_close("1M", 1_701_388_800_000) == 1_704_067_199_999  # December, year's end


def test_day_stats_take_the_last_24_hours_of_minute_candles() -> None:
    """Volume counts the last day's trades; the previous day's price is the close before the
    window (or the first trade in it when nothing traded before)."""
    run = trading_run()
    assert run.history.day_stats("BTC") == DayStats(BTC_PX, 5_000 * USD, 5_000)
    assert run.history.day_stats("ETH") == DayStats(None, 0, 0)
    later = T + 25 * 3_600_000
    run.block(later, [(A, OrderAction((limit(BTC, False, "99000", "0.01"),)))])
    run.block(later + 1000, [(B, OrderAction((limit(BTC, True, "99000", "0.01", "Ioc"),)))])
    assert run.history.day_stats("BTC") == DayStats(BTC_PX, 990 * USD, 1_000)


NEXT_HOUR = 1_700_002_800_000  # the first hour boundary after T


def funding_run() -> Run:
    """The oracle driving prices (BTC constant at 100000, empty books so no premium): A sells
    0.1 BTC to B, then the first block of the next hour settles funding."""
    config = load_config(CONFIG)
    chain = Chain(config.markets, config.oracle_sources, T, lending=config.lending)
    chain.deposit(A, 100_000 * USD, T)
    chain.deposit(B, 100_000 * USD, T)
    run = Run(chain)
    run.block(T + 1000, [(A, OrderAction((limit(BTC, False, "100000", "0.1"),)))])
    run.block(T + 2000, [(B, OrderAction((limit(BTC, True, "100000", "0.1", "Ioc"),)))])
    run.block(NEXT_HOUR + 500, [])
    return run


def test_funding_rates_and_payments_settle_at_the_hour() -> None:
    """The hour's rate (0.01% / 8 with no premium) is recorded for every perp when the first
    block of the next hour settles it, and each holder's payment on 0.1 BTC at the 100000
    oracle: 0.125 USDC, the long paying the short, from the hour's one premium sample."""
    run = funding_run()
    rates = run.history.funding_rates("BTC")
    assert rates == [FundingRateRecord("BTC", NEXT_HOUR + 500, 12_500_000, 0)]
    assert len(run.history.funding_rates("DOGE")) == 1
    b_funding = run.history.funding(B)
    assert [(r.update.usdc, r.update.szi, r.update.n_samples) for r in b_funding] == [
        (-125_000, 10_000, 1)
    ]
    a_funding = run.history.funding(A)
    assert [(r.update.usdc, r.update.szi) for r in a_funding] == [(125_000, -10_000)]
    index = [u.user for u in run.outputs[2].funding].index(A)
    assert a_funding[0].hash == event_hash("funding", 3, index)
    assert run.history.window(A, T)[2] == 125_000 - 1_500_000  # funding less the maker fee


def test_an_index_started_mid_hour_has_no_rate_for_that_hour() -> None:
    """Without the block before a settlement the index cannot know the settled rate."""
    config = load_config(CONFIG)
    chain = Chain(config.markets, config.oracle_sources, T, lending=config.lending)
    chain.apply_block(1, T + 1000, [])
    late = History(T + 1000)
    late.on_block(chain.apply_block(2, NEXT_HOUR, []), chain)
    assert late.funding_rates("BTC") == []


def _fill(user: str, oid: int, tid: int, time: int) -> Fill:
    return Fill(
        user, BTC, "BTC", BTC_PX, 1, True, time, 0, "Open Long", 0, oid, tid, True, 0, "USDC", None
    )


def _order(user: str, oid: int, cloid: str | None = None) -> RestingOrder:
    return RestingOrder(oid, user, BTC, True, BTC_PX, 1, 1, T, 0, False, cloid)


def test_memory_is_bounded_where_hyperliquid_bounds_answers() -> None:
    """Past the caps the oldest fills, orders and candles go; an evicted order's cloid goes
    with it."""
    chain = hand_priced_chain()
    history = History(T)
    extra = 5
    fills = tuple(_fill(A, i, i, T) for i in range(1, FILLS_KEPT + extra + 1))
    updates = [OrderUpdate(_order(A, 1, CLOID), "canceled", T)]
    updates += [OrderUpdate(_order(A, oid), "canceled", T) for oid in range(2, ORDERS_KEPT + 2)]
    history.on_block(BlockOutput(1, T, (), fills, tuple(updates), (), ()), chain)
    kept = history.fills(A)
    assert len(kept) == FILLS_KEPT and kept[0].fill.tid == extra + 1
    assert len(history.orders(A)) == ORDERS_KEPT
    assert history.order(A, 1) is None and history.order_by_cloid(A, CLOID) is None
    assert history.order(A, ORDERS_KEPT + 1) is not None
    minutes = tuple(_fill(B, i, i, T + i * 60_000) for i in range(1, CANDLES_KEPT + extra + 1))
    history.on_block(BlockOutput(2, T + 1, (), minutes, (), (), ()), chain)
    candles = history.candles("BTC", "1m", 0, T + 10**10)
    assert len(candles) == CANDLES_KEPT
    assert candles[0].open_time == candle_open("1m", T + (extra + 1) * 60_000)


def test_the_same_blocks_give_the_same_index() -> None:
    """Two indexes of two runs of the same blocks hold the same records."""
    first, second = trading_run().history, trading_run().history
    encode = msgspec.msgpack.encode
    for user in (A, B, D):
        assert encode(first.fills(user)) == encode(second.fills(user))
        assert encode(first.orders(user)) == encode(second.orders(user))
        assert encode(first.ledger(user)) == encode(second.ledger(user))
    assert encode(first.candles("BTC", "1m", 0, T * 2)) == encode(
        second.candles("BTC", "1m", 0, T * 2)
    )
