"""What /info answers that the chain state does not keep: an in-memory index of the blocks'
fills, order statuses, ledger and funding updates, settled funding rates, candles and volumes.

Invariants:
- It is fed every block in height order (`on_block`), with the `Chain` as that block left it.
  It reads the chain only to price and name what the block recorded, and never changes it.
- Deterministic: the same blocks give the same index, hashes included. Nothing depends on a
  clock; times are block times.
- Memory is bounded where Hyperliquid bounds its answers: per user the 10,000 most recent
  fills, funding updates, non-funding ledger updates and orders (historicalOrders shows 2,000
  of them); per coin and interval the 5,000 most recent candles; per user hourly volume and
  pnl for the last 30 days and daily maker/taker volume for the last 15. Settled funding rates
  grow by one per perp and hour, as on Hyperliquid (fundingHistory pages through them).
- A settled funding rate is the rate the hour's samples gave, read from the chain after the
  block before the one that settled it (nothing moves the samples in between). An index
  started after genesis has no rate for the hour it started in.
- Every fill of one crossing order in a block shares a hash; ledger and funding updates each
  get their own (`wire.event_hash`).
- Candles are built from trades (one per trade id, counted on its crossing fill) and exist
  only for intervals that had a trade.
- The records hold only frozen protocol values, never a reference back into the index, so no
  record is in a reference cycle: they are kept out of the cyclic collector (`gc=False`), which
  otherwise scanned the tens of thousands of them kept under load again and again.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from datetime import date
from typing import TypeVar

import msgspec

from node.api.wire import event_hash, fill_hash
from protocol.actions import BatchModifyAction, CancelAction, CancelByCloidAction, OrderAction
from protocol.borrow_lend import value_of
from protocol.chain import BlockOutput, Chain, ExecutedAction
from protocol.clearinghouse import SPOT_USDC_PER_MICRO
from protocol.exchange import DAY_MS, Fill, LiveOrder, TriggerOrder
from protocol.funding import HOUR_MS, FundingRate
from protocol.ledger import FundingUpdate, LedgerUpdate, Liquidation, Send, SpotTransfer

FILLS_KEPT = 10_000
ORDERS_KEPT = 10_000
UPDATES_KEPT = 10_000
CANDLES_KEPT = 5_000
VOLUME_HOURS_KEPT = 30 * 24
VOLUME_DAYS_KEPT = 15

_MINUTE_MS = 60_000
_FIXED_INTERVALS = {
    "1m": _MINUTE_MS,
    "3m": 3 * _MINUTE_MS,
    "5m": 5 * _MINUTE_MS,
    "15m": 15 * _MINUTE_MS,
    "30m": 30 * _MINUTE_MS,
    "1h": HOUR_MS,
    "2h": 2 * HOUR_MS,
    "4h": 4 * HOUR_MS,
    "8h": 8 * HOUR_MS,
    "12h": 12 * HOUR_MS,
    "1d": DAY_MS,
    "3d": 3 * DAY_MS,
}
INTERVALS = (*_FIXED_INTERVALS, "1w", "1M")
_WEEK_MS = 7 * DAY_MS
_MONDAY_OFFSET_MS = 3 * DAY_MS  # 1970-01-01 was a Thursday; weeks start on Monday
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def candle_open(interval: str, time: int) -> int:
    """Open time of the `interval` candle holding `time`: fixed intervals are aligned to the
    epoch, weeks start on Monday 00:00 UTC, months on the 1st."""
    length = _FIXED_INTERVALS.get(interval)
    if length is not None:
        return time - time % length
    if interval == "1w":
        return (time + _MONDAY_OFFSET_MS) // _WEEK_MS * _WEEK_MS - _MONDAY_OFFSET_MS
    day = date.fromordinal(EPOCH_ORDINAL + time // DAY_MS)
    return (date(day.year, day.month, 1).toordinal() - EPOCH_ORDINAL) * DAY_MS


def candle_close(interval: str, open_time: int) -> int:
    """Close time of the candle opened at `open_time`: the next candle's open, less 1 ms."""
    length = _FIXED_INTERVALS.get(interval)
    if length is not None:
        return open_time + length - 1
    if interval == "1w":
        return open_time + _WEEK_MS - 1
    day = date.fromordinal(EPOCH_ORDINAL + open_time // DAY_MS)
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return (date(year, month, 1).toordinal() - EPOCH_ORDINAL) * DAY_MS - 1


class FillRecord(msgspec.Struct, frozen=True, gc=False):
    fill: Fill
    hash: str
    direction: str  # `dir` as Hyperliquid names it (a liquidated account's fills renamed)


class OrderRecord(msgspec.Struct, frozen=True, gc=False):
    """An order's latest status. `order.sz` is what was open when the status was set (not
    meaningful for `filled`); `trigger` is the TP/SL the order began as, kept after it fired."""

    order: LiveOrder
    status: str
    time: int
    trigger: TriggerOrder | None = None


class LedgerRecord(msgspec.Struct, frozen=True, gc=False):
    update: LedgerUpdate
    hash: str
    usdc_value: int  # micro-USDC: a token transfer's value, a liquidation's notional; else 0


class FundingRecord(msgspec.Struct, frozen=True, gc=False):
    update: FundingUpdate
    hash: str


class FundingRateRecord(msgspec.Struct, frozen=True, gc=False):
    """One settled hour of one perp, at RATE_SCALE, stamped with the settling block's time."""

    coin: str
    time: int
    rate: int
    premium: int


class Candle(msgspec.Struct, frozen=True):
    """Prices at the market's price scale, volume at its size scale, notional in micro-USDC
    (perps) or quote wei (spot)."""

    coin: str
    interval: str
    open_time: int
    close_time: int
    open: int
    close: int
    high: int
    low: int
    volume: int
    notional: int
    trades: int


class DayStats(msgspec.Struct, frozen=True):
    """The last 24 h of a coin's trades, from its 1-minute candles: the price before the
    window (its first trade's price when nothing traded before it; None when nothing traded),
    and the notional and size traded in it."""

    prev_day_px: int | None
    notional: int
    volume: int


class DailyVolume(msgspec.Struct, frozen=True):
    """One UTC day (days since the epoch) of a user's taker and maker notional and the whole
    exchange's, micro-USDC."""

    day: int
    cross: int
    add: int
    exchange: int


class _Bar:
    """A candle being built (the frozen `Candle` is what queries hand out)."""

    __slots__ = (
        "close",
        "close_time",
        "high",
        "low",
        "notional",
        "open",
        "open_time",
        "trades",
        "volume",
    )

    def __init__(self, open_time: int, close_time: int, px: int) -> None:
        self.open_time = open_time
        self.close_time = close_time
        self.open = self.close = self.high = self.low = px
        self.volume = 0
        self.notional = 0
        self.trades = 0


_Record = TypeVar("_Record", LedgerRecord, FundingRecord)

# Hourly user stats: [volume, perp volume, perp pnl]; daily: [taker, maker]; micro-USDC.
_VOLUME, _PERP_VOLUME, _PNL = 0, 1, 2
_CROSS, _ADD = 0, 1


class History:
    def __init__(self, time: int = 0) -> None:
        """An empty index whose clock starts at `time` (the genesis time)."""
        self.height = 0
        self.time = time
        self._fills: dict[str, deque[FillRecord]] = {}
        self._orders: dict[str, OrderedDict[int, OrderRecord]] = {}
        self._cloids: dict[tuple[str, str], int] = {}
        self._ledger: dict[str, deque[LedgerRecord]] = {}
        self._funding: dict[str, deque[FundingRecord]] = {}
        self._rates: dict[str, list[FundingRateRecord]] = {}
        self._pending: tuple[FundingRate, ...] | None = None
        self._bars: dict[tuple[str, str], deque[_Bar]] = {}
        self._spot_entry: dict[tuple[str, int], int] = {}
        self._requests: dict[str, int] = {}
        self._totals: dict[str, list[int]] = {}
        self._hours: dict[str, dict[int, list[int]]] = {}
        self._days: dict[str, dict[int, list[int]]] = {}
        self._exchange_days: dict[int, list[int]] = {}  # day -> [crossed notional]

    # Feeding.

    def on_block(self, output: BlockOutput, chain: Chain) -> None:
        """Index one block; `chain` is the state the block left."""
        if self._pending is not None and output.time // HOUR_MS > self.time // HOUR_MS:
            self._settle_rates(self._pending, output.time, chain)
        self._pending = chain.funding.pending_rates() if chain.prices_driven else None
        self.height, self.time = output.height, output.time
        for executed in output.actions:
            self._requests[executed.user] = self._requests.get(executed.user, 0) + _weight(executed)
        takers = {fill.tid: fill.oid for fill in output.fills if fill.crossed}
        for fill in output.fills:
            self._add_fill(fill, fill_hash(output.height, takers[fill.tid]), chain)
        for update in output.order_updates:
            self._add_order(update.order, update.status, update.time)
        for index, ledger in enumerate(output.ledger):
            hash_ = event_hash("ledger", output.height, index)
            ledger_record = LedgerRecord(ledger, hash_, _usdc_value(ledger, chain))
            for user in ledger.users:
                _append(self._ledger, user, ledger_record)
        for index, funding in enumerate(output.funding):
            funding_record = FundingRecord(funding, event_hash("funding", output.height, index))
            _append(self._funding, funding.user, funding_record)
            self._stat(funding.user, funding.time, _PNL, funding.usdc)

    def _settle_rates(self, rates: tuple[FundingRate, ...], time: int, chain: Chain) -> None:
        """The block at `time` entered a new hour: the chain settled the rates the previous
        block left pending."""
        perps = chain.markets.perps
        for rate in rates:
            coin = perps[rate.asset].name
            record = FundingRateRecord(coin, time, rate.rate, rate.premium)
            self._rates.setdefault(coin, []).append(record)

    def _add_fill(self, fill: Fill, hash_: str, chain: Chain) -> None:
        markets = chain.markets
        market = markets.by_asset[fill.asset]
        record = FillRecord(fill, hash_, _direction(fill, chain))
        fills = self._fills.get(fill.user)
        if fills is None:
            fills = self._fills[fill.user] = deque(maxlen=FILLS_KEPT)
        fills.append(record)
        notional = fill.px * fill.sz
        micro = notional // SPOT_USDC_PER_MICRO if market.is_spot else notional
        self._stat(fill.user, fill.time, _VOLUME, micro)
        if not market.is_spot:
            self._stat(fill.user, fill.time, _PERP_VOLUME, micro)
            self._stat(fill.user, fill.time, _PNL, fill.closed_pnl - fill.fee)
        self._day(fill.user, fill.time, _CROSS if fill.crossed else _ADD, micro)
        if market.is_spot and market.quote_token == chain.clearinghouse.usdc_token:
            self._track_entry(fill, market.base_token, market.base_wei_per_lot)
        if fill.crossed:
            _bucket(self._exchange_days, fill.time // DAY_MS, VOLUME_DAYS_KEPT, 1)[0] += micro
            for interval in INTERVALS:
                self._add_trade(fill.coin, interval, fill.time, fill.px, fill.sz, notional)

    def _track_entry(self, fill: Fill, token: int, wei_per_lot: int) -> None:
        """Spot cost basis: a buy adds the USDC paid; a sell takes off the sold share of the
        balance it started from. Transfers leave it as it is."""
        key = (fill.user, token)
        entry = self._spot_entry.get(key, 0)
        if fill.is_buy:
            entry += fill.px * fill.sz
        else:
            sold = fill.sz * wei_per_lot
            start = fill.start_position
            entry = 0 if start <= sold else entry - entry * sold // start
        self._spot_entry[key] = entry

    def _add_trade(
        self, coin: str, interval: str, time: int, px: int, sz: int, notional: int
    ) -> None:
        bars = self._bars.get((coin, interval))
        if bars is None:
            bars = self._bars[(coin, interval)] = deque(maxlen=CANDLES_KEPT)
        # Times never go back, so only a trade past the last bar's close starts a bar (and
        # needs its open time worked out).
        if not bars or time > bars[-1].close_time:
            open_time = candle_open(interval, time)
            bars.append(_Bar(open_time, candle_close(interval, open_time), px))
        bar = bars[-1]
        bar.close = px
        bar.high = max(bar.high, px)
        bar.low = min(bar.low, px)
        bar.volume += sz
        bar.notional += notional
        bar.trades += 1

    def _add_order(self, order: LiveOrder, status: str, time: int) -> None:
        orders = self._orders.get(order.user)
        if orders is None:
            orders = self._orders[order.user] = OrderedDict()
        previous = orders.pop(order.oid, None)
        if type(order) is TriggerOrder:
            trigger: TriggerOrder | None = order
        else:
            trigger = None if previous is None else previous.trigger
        orders[order.oid] = OrderRecord(order, status, time, trigger)
        if order.cloid is not None:
            self._cloids[(order.user, order.cloid)] = order.oid
        if len(orders) > ORDERS_KEPT:
            _, evicted = orders.popitem(last=False)
            key = (order.user, evicted.order.cloid or "")
            if self._cloids.get(key) == evicted.order.oid:
                del self._cloids[key]

    def _stat(self, user: str, time: int, field: int, amount: int) -> None:
        totals = self._totals.get(user)
        if totals is None:
            totals = self._totals[user] = [0, 0, 0]
        totals[field] += amount
        hours = self._hours.get(user)
        if hours is None:
            hours = self._hours[user] = {}
        _bucket(hours, time // HOUR_MS, VOLUME_HOURS_KEPT, 3)[field] += amount

    def _day(self, user: str, time: int, side: int, micro: int) -> None:
        days = self._days.get(user)
        if days is None:
            days = self._days[user] = {}
        _bucket(days, time // DAY_MS, VOLUME_DAYS_KEPT, 2)[side] += micro

    # Queries.

    def fills(self, user: str) -> list[FillRecord]:
        """The user's kept fills, oldest first."""
        return list(self._fills.get(user, ()))

    def order(self, user: str, oid: int) -> OrderRecord | None:
        orders = self._orders.get(user)
        return None if orders is None else orders.get(oid)

    def order_by_cloid(self, user: str, cloid: str) -> OrderRecord | None:
        """The user's latest order with this cloid (a cloid is free again once its order
        ended)."""
        oid = self._cloids.get((user, cloid))
        return None if oid is None else self.order(user, oid)

    def orders(self, user: str) -> list[OrderRecord]:
        """The user's kept orders, the most recently updated first."""
        return list(reversed(self._orders.get(user, {}).values()))

    def ledger(self, user: str) -> list[LedgerRecord]:
        """The user's non-funding ledger updates, oldest first."""
        return list(self._ledger.get(user, ()))

    def funding(self, user: str) -> list[FundingRecord]:
        """The user's funding updates, oldest first."""
        return list(self._funding.get(user, ()))

    def funding_rates(self, coin: str) -> list[FundingRateRecord]:
        """The coin's settled hours, oldest first."""
        return list(self._rates.get(coin, ()))

    def candles(self, coin: str, interval: str, start: int, end: int) -> list[Candle]:
        """The coin's candles of `interval` overlapping [start, end], oldest first."""
        picked: list[Candle] = []
        # Bars are kept in time order and do not overlap: scan from the newest, as a query
        # mostly asks for recent ones.
        for bar in reversed(self._bars.get((coin, interval), ())):
            if bar.close_time < start:
                break
            if bar.open_time <= end:
                picked.append(
                    Candle(
                        coin,
                        interval,
                        bar.open_time,
                        bar.close_time,
                        bar.open,
                        bar.close,
                        bar.high,
                        bar.low,
                        bar.volume,
                        bar.notional,
                        bar.trades,
                    )
                )
        picked.reverse()
        return picked

    def day_stats(self, coin: str) -> DayStats:
        """The 24 h before the latest block, at 1-minute resolution: a minute candle counts
        when it closes inside the window."""
        start = self.time - DAY_MS
        notional = volume = 0
        first: int | None = None
        for bar in reversed(self._bars.get((coin, "1m"), ())):
            if bar.close_time < start:
                return DayStats(bar.close, notional, volume)
            notional += bar.notional
            volume += bar.volume
            first = bar.open
        return DayStats(first, notional, volume)

    def spot_entry_notional(self, user: str, token: int) -> int:
        """USDC paid for the user's balance of `token` (8 decimals), from its spot fills."""
        return self._spot_entry.get((user, token), 0)

    def request_count(self, user: str) -> int:
        """Actions the user sent, a batch counting one per order or cancel in it."""
        return self._requests.get(user, 0)

    def totals(self, user: str) -> tuple[int, int, int]:
        """(volume, perp volume, perp pnl) of all the user's history, micro-USDC: notional
        traded as maker and taker; closed pnl less fees plus funding."""
        volume, perp_volume, pnl = self._totals.get(user, (0, 0, 0))
        return volume, perp_volume, pnl

    def window(self, user: str, since: int) -> tuple[int, int, int]:
        """`totals` of the user's hours that end after `since`, so the hour holding `since`
        counts whole (hours older than 30 days are not kept)."""
        totals = [0, 0, 0]
        for hour, bucket in self._hours.get(user, {}).items():
            if (hour + 1) * HOUR_MS > since:  # the hour overlaps the window
                for field in (_VOLUME, _PERP_VOLUME, _PNL):
                    totals[field] += bucket[field]
        return totals[_VOLUME], totals[_PERP_VOLUME], totals[_PNL]

    def daily_volumes(self, user: str) -> list[DailyVolume]:
        """The last 15 UTC days up to the latest block, oldest first."""
        today = self.time // DAY_MS
        days = self._days.get(user, {})
        result: list[DailyVolume] = []
        for day in range(today - VOLUME_DAYS_KEPT + 1, today + 1):
            cross, add = days.get(day, (0, 0))
            result.append(DailyVolume(day, cross, add, self._exchange_days.get(day, [0])[0]))
        return result


def _weight(executed: ExecutedAction) -> int:
    """Hyperliquid's per-address request count: a batch counts each order or cancel."""
    action = executed.action
    if isinstance(action, OrderAction):
        return len(action.orders)
    if isinstance(action, BatchModifyAction):
        return len(action.modifies)
    if isinstance(action, CancelAction | CancelByCloidAction):
        return len(action.cancels)
    return 1


def _bucket(buckets: dict[int, list[int]], key: int, keep: int, fields: int) -> list[int]:
    """The totals of `key` (an hour or a day), made when first needed; making one drops the
    buckets `keep` or more keys older, so each index keeps a fixed window."""
    bucket = buckets.get(key)
    if bucket is None:
        bucket = buckets[key] = [0] * fields
        for old in [k for k in buckets if k <= key - keep]:
            del buckets[old]
    return bucket


def _append(index: dict[str, deque[_Record]], user: str, record: _Record) -> None:
    records = index.get(user)
    if records is None:
        records = index[user] = deque(maxlen=UPDATES_KEPT)
    records.append(record)


def _direction(fill: Fill, chain: Chain) -> str:
    """Hyperliquid's `dir`: deleveraging fills are "Auto-Deleveraging"; the liquidated
    account's own fills "Liquidated Cross Long" and the like; the rest as the exchange named
    them."""
    info = fill.liquidation
    if info is None:
        return fill.direction
    if info.method == "adl":
        return "Auto-Deleveraging"
    if fill.user != info.liquidated_user:
        return fill.direction
    clearinghouse = chain.clearinghouse
    account = clearinghouse.accounts.get(fill.user)
    cross = account is None or clearinghouse.leverage_of(account, fill.asset).is_cross
    closed = "Short" if fill.is_buy else "Long"
    return f"Liquidated {'Cross' if cross else 'Isolated'} {closed}"


def _usdc_value(update: LedgerUpdate, chain: Chain) -> int:
    """What a ledger update moved, in micro-USDC at the block's prices: a token transfer's
    amount, or the notional of a liquidation's positions at the mark."""
    clearinghouse = chain.clearinghouse
    markets = chain.markets
    delta = update.delta
    if isinstance(delta, SpotTransfer | Send):
        token = markets.token_by_name(delta.token)
        return 0 if token is None else value_of(clearinghouse, token, delta.amount, up=False)
    if isinstance(delta, Liquidation):
        return sum(
            abs(position.szi) * clearinghouse.mark(markets.by_coin[position.coin].asset)
            for position in delta.liquidated_positions
        )
    return 0
