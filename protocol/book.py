"""One asset's limit order book: price-time priority over resting orders.

Invariants (checked by `OrderBook._check`):
- Never crossed at rest: best bid < best ask whenever both sides have orders.
- A level's `total` and `count` equal the sum of sizes and the number of its live orders.
- `orders` (the id index) holds exactly the live orders found in the levels, each once.
- Every level in a side's `levels` has at least one live order and its key on the side's heap.

The book knows prices, sizes and arrival order, nothing about accounts, margin or fees: the
exchange drives matching through `best`, `head`, `fill_head` and `remove`.

Why the shape: resting orders are frozen; a partial fill replaces the head order. A cancel
drops the order from the id index and the level totals at once and leaves its entry in the
level's queue, to be skipped when it reaches the head (an entry is live iff the index maps its
oid to that very object). Queues are compacted when dead entries outnumber live ones, and the
price heaps (lazy like the queues) are rebuilt when stale keys outnumber live levels, so memory
stays proportional to what rests.
"""

from __future__ import annotations

from collections import deque
from heapq import heapify, heappop, heappush

import msgspec

TIF_GTC = 0
TIF_IOC = 1
TIF_ALO = 2


class RestingOrder(msgspec.Struct, frozen=True, gc=False):
    oid: int
    user: str
    asset: int
    is_buy: bool
    px: int
    sz: int  # remaining
    orig_sz: int
    timestamp: int
    tif: int
    reduce_only: bool
    cloid: str | None


class Level:
    """Orders at one price, oldest first; `queue` may hold cancelled entries (see module doc)."""

    __slots__ = ("count", "px", "queue", "total")

    def __init__(self, px: int) -> None:
        self.px = px
        self.queue: deque[RestingOrder] = deque()
        self.total = 0
        self.count = 0


class BookSide:
    """Levels of one side; `keys` is a min-heap of price keys (-px for bids) with stale entries."""

    __slots__ = ("is_bid", "keys", "levels")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels: dict[int, Level] = {}
        self.keys: list[int] = []

    def best_level(self) -> Level | None:
        keys = self.keys
        levels = self.levels
        while keys:
            level = levels.get(-keys[0] if self.is_bid else keys[0])
            if level is not None:
                return level
            heappop(keys)
        return None

    def sorted_levels(self) -> list[Level]:
        """Levels best first (for snapshots and depth queries, not the hot path)."""
        return [self.levels[px] for px in sorted(self.levels, reverse=self.is_bid)]


class OrderBook:
    __slots__ = ("asks", "asset", "bids", "orders")

    def __init__(self, asset: int) -> None:
        self.asset = asset
        self.bids = BookSide(is_bid=True)
        self.asks = BookSide(is_bid=False)
        self.orders: dict[int, RestingOrder] = {}

    def best_bid(self) -> int | None:
        level = self.bids.best_level()
        return None if level is None else level.px

    def best_ask(self) -> int | None:
        level = self.asks.best_level()
        return None if level is None else level.px

    def rest(self, order: RestingOrder) -> None:
        """Queue `order` behind the orders already at its price."""
        side = self.bids if order.is_buy else self.asks
        level = side.levels.get(order.px)
        if level is None:
            level = Level(order.px)
            side.levels[order.px] = level
            heappush(side.keys, -order.px if order.is_buy else order.px)
            if len(side.keys) > 2 * len(side.levels) + 64:
                side.keys = [-px if side.is_bid else px for px in side.levels]
                heapify(side.keys)
        level.queue.append(order)
        level.total += order.sz
        level.count += 1
        self.orders[order.oid] = order

    def remove(self, oid: int) -> RestingOrder | None:
        """Take a resting order off the book; None if it is not resting."""
        order = self.orders.pop(oid, None)
        if order is None:
            return None
        side = self.bids if order.is_buy else self.asks
        level = side.levels[order.px]
        level.total -= order.sz
        level.count -= 1
        if level.count == 0:
            del side.levels[order.px]
        elif len(level.queue) > 2 * level.count + 8:
            orders = self.orders
            level.queue = deque(o for o in level.queue if orders.get(o.oid) is o)
        return order

    def head(self, level: Level) -> RestingOrder:
        """The oldest live order of a non-empty level."""
        queue = level.queue
        orders = self.orders
        order = queue[0]
        while orders.get(order.oid) is not order:
            queue.popleft()
            order = queue[0]
        return order

    def fill_head(self, side: BookSide, level: Level, order: RestingOrder, size: int) -> None:
        """Take `size` off `order`, the head of `level`; a full fill removes it."""
        level.total -= size
        if size == order.sz:
            del self.orders[order.oid]
            level.queue.popleft()
            level.count -= 1
            if level.count == 0:
                del side.levels[level.px]
        else:
            remaining = msgspec.structs.replace(order, sz=order.sz - size)
            level.queue[0] = remaining
            self.orders[order.oid] = remaining

    def depth(self, is_bid: bool) -> list[tuple[int, int, int]]:
        """(px, total size, order count) per level, best first."""
        side = self.bids if is_bid else self.asks
        return [(lv.px, lv.total, lv.count) for lv in side.sorted_levels()]

    def resting_in_priority(self) -> list[RestingOrder]:
        """Every resting order: bids best first then asks best first, time order in a level."""
        result: list[RestingOrder] = []
        for side in (self.bids, self.asks):
            for level in side.sorted_levels():
                result.extend(o for o in level.queue if self.orders.get(o.oid) is o)
        return result

    def _check(self) -> None:
        seen: set[int] = set()
        for side in (self.bids, self.asks):
            live_keys = {-k if side.is_bid else k for k in side.keys}
            for px, level in side.levels.items():
                assert level.px == px, "level keyed under a different price"
                assert px in live_keys, f"level {px} missing from the price heap"
                live = [o for o in level.queue if self.orders.get(o.oid) is o]
                assert live, f"empty level {px} kept"
                assert level.count == len(live), f"level {px} count {level.count} != {len(live)}"
                total = sum(o.sz for o in live)
                assert level.total == total, f"level {px} total {level.total} != {total}"
                for o in live:
                    assert o.px == px and o.is_buy == side.is_bid, f"order {o.oid} misfiled"
                    assert o.sz > 0, f"order {o.oid} rests with size {o.sz}"
                    assert o.oid not in seen, f"order {o.oid} rests twice"
                    seen.add(o.oid)
        assert seen == set(self.orders), "id index and levels disagree"
        bid, ask = self.best_bid(), self.best_ask()
        assert bid is None or ask is None or bid < ask, f"crossed at rest: {bid} >= {ask}"
