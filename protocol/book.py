"""One asset's limit order book: price-time priority over resting orders.

Invariants (checked by `OrderBook._check`):
- Never crossed at rest: best bid < best ask whenever both sides have orders.
- A level's `total` and `count` equal the sum of sizes and the number of its live orders.
- `orders` (the id index) holds exactly the live orders found in the levels, each once.
- Every level in a side's `levels` has at least one live order and its key on the side's heap.
- Arrival keys: every live order has one, `late[oid]` if it is there, else `(oid, 0)`, and
  they strictly increase along each level's queue, so the set of (key, order) pairs fixes the
  time priority exactly. An order placed fresh rests right after its oid was allocated, behind
  every order resting then, so its oid is its key; a fired TP/SL keeps its older oid and
  rests behind newer orders, so it gets the next key after its level's last live order
  (`(major, minor + 1)`), kept in `late`. `top` is the highest oid that rested here: it bounds
  every key's major, so an order above it needs no look at its level.
- The order-set digest (`set_digest(orders, late)`, see `entry_digest`) is `digest`, its value
  at the last `settle`, updated for: the orders in `changed`, each at or below `settled_top`
  (the `top` of that settle) and rested, filled or removed since, mapped to the order as
  `digest` counts it (None: not counted, only for a fired TP/SL that rested since and still
  does); and the orders above `settled_top`, all rested since, found without a note as the
  last entries of `orders` (a dict keeps insertion order). An order that rests and leaves
  between two settles leaves no note, so `changed` holds at most the orders resting now and
  at the last settle; `late` keeps the keys of orders that left and are still noted, which the
  next settle needs to take their terms out.

The book knows prices, sizes and arrival order, nothing about accounts, margin or fees: the
exchange drives matching through `best`, `head`, `fill_head` and `remove`.

Why the shape: resting orders are frozen; a partial fill replaces the head order. A cancel
drops the order from the id index and the level totals at once and leaves its entry in the
level's queue, to be skipped when it reaches the head (an entry is live iff the index maps its
oid to that very object). Queues are compacted when dead entries outnumber live ones, and the
price heaps (lazy like the queues) are rebuilt when stale keys outnumber live levels, so memory
stays proportional to what rests.

The digest is kept off the order path: a fill or cancel of an order older than the last settle
notes it (one dict operation), anything else costs a comparison; `settle`, run once per block
by the state hash, hashes the orders changed since, so a block costs in proportion to what it
changed, not to what rests.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Mapping
from heapq import heapify, heappop, heappush
from typing import TypeVar

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


# Order-set digests: the sum, modulo 2**256, of sha256 over the canonical msgpack encoding of
# each (arrival key, order) pair. A sum is what lets one order's change be applied alone, in
# any order (addition commutes), and the sum of distinct random 256-bit terms tells sets apart
# but for a 2**-256 chance.
DIGEST_BITS = 256
_DIGEST_MASK = (1 << DIGEST_BITS) - 1
_ENCODER = msgspec.msgpack.Encoder(order="deterministic")
MSGPACK_MIN_INT = -(2**63)  # msgpack holds ints in [MSGPACK_MIN_INT, MSGPACK_MAX_INT)
MSGPACK_MAX_INT = 2**64

Key = tuple[int, int]  # an arrival key (see the module doc)
Entry = TypeVar("Entry", bound=msgspec.Struct)


def msgpack_safe(value: object) -> object:
    """`value` with every int msgpack cannot hold, in nested structs and tuples too, replaced
    by its decimal string (a `str` where a field says `int`: msgspec does not check types when
    replacing), so that it encodes; a string never encodes like an int, so values stay apart."""
    if isinstance(value, tuple):
        return tuple(msgpack_safe(item) for item in value)
    if isinstance(value, msgspec.Struct):
        changes = {
            name: safe
            for name in value.__struct_fields__
            if (safe := msgpack_safe(getattr(value, name))) is not getattr(value, name)
        }
        return msgspec.structs.replace(value, **changes) if changes else value
    if isinstance(value, int) and not MSGPACK_MIN_INT <= value < MSGPACK_MAX_INT:
        return str(value)
    return value


def encode_canonical(value: object) -> bytes:
    """The deterministic msgpack encoding of `value`, ints msgpack cannot hold as decimal
    strings. Encoding first and converting only on overflow gives the same bytes as converting
    first, since a struct holding ints in range encodes the same whatever its field types."""
    try:
        return _ENCODER.encode(value)
    except OverflowError:
        return _ENCODER.encode(msgpack_safe(value))


def entry_digest(entry: msgspec.Struct, key: Key | None) -> int:
    """One term of an order-set digest: `key` is the arrival key when it is not the oid's."""
    encoded = encode_canonical((key, entry))
    return int.from_bytes(hashlib.sha256(encoded).digest())


def digest_sum(pairs: Iterable[tuple[Key | None, msgspec.Struct]]) -> int:
    """The sum of the `entry_digest` of each (key, entry), not reduced: the block's new orders
    go through here, so the calls are unrolled into one loop."""
    encode, sha256, from_bytes = _ENCODER.encode, hashlib.sha256, int.from_bytes
    total = 0
    for pair in pairs:
        try:
            encoded = encode(pair)
        except OverflowError:
            encoded = encode(msgpack_safe(pair))
        total += from_bytes(sha256(encoded).digest())
    return total


def set_digest(entries: Mapping[int, Entry], keys: Mapping[int, Key]) -> int:
    """The digest of `entries` (by oid) computed from scratch: what `updated_digest` keeps."""
    # Summing in dict order is safe: addition commutes.
    return digest_sum((keys.get(oid), entry) for oid, entry in entries.items()) & _DIGEST_MASK


def updated_digest(
    value: int,
    changes: Mapping[int, Entry | None],
    entries: Mapping[int, Entry],
    keys: Mapping[int, Key],
) -> int:
    """`value`, the digest of the entries as `changes` gives them (by oid, None: absent) for
    the oids it names and as `entries` gives them for the others, made the digest of
    `entries`."""
    for oid, before in changes.items():  # any order: addition commutes
        after = entries.get(oid)
        if after is before:
            continue
        key = keys.get(oid)
        if before is not None:
            value -= entry_digest(before, key)
        if after is not None:
            value += entry_digest(after, key)
    return value & _DIGEST_MASK


def note_change(changes: dict[int, Entry | None], oid: int, before: Entry | None) -> None:
    """Record that the entry of `oid`, now `before` (None: absent), is replaced or added."""
    if oid not in changes:
        changes[oid] = before


def note_removal(changes: dict[int, Entry | None], oid: int, before: Entry) -> None:
    """Record that the entry of `oid`, now `before`, is removed. One added since the digest
    was last updated is forgotten: it is in neither the digest nor the set."""
    if oid not in changes:
        changes[oid] = before
    elif changes[oid] is None:
        del changes[oid]


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
    __slots__ = (
        "asks",
        "asset",
        "bids",
        "changed",
        "digest",
        "late",
        "orders",
        "settled_top",
        "top",
    )

    def __init__(self, asset: int) -> None:
        self.asset = asset
        self.bids = BookSide(is_bid=True)
        self.asks = BookSide(is_bid=False)
        self.orders: dict[int, RestingOrder] = {}
        self.late: dict[int, Key] = {}  # oid -> arrival key, when it is not (oid, 0)
        self.top = 0  # the highest oid that rested here
        # The order-set digest as of the last `settle`, `top` then, and the orders at or
        # below it changed since: oid -> the order as `digest` counts it (None: not counted).
        self.digest = 0
        self.settled_top = 0
        self.changed: dict[int, RestingOrder | None] = {}

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
        oid = order.oid
        if oid > self.top:
            self.top = oid  # and nothing to note: `settle` finds it above `settled_top`
        else:
            self._key_late(level, oid)
            if oid <= self.settled_top:
                note_change(self.changed, oid, None)
        level.queue.append(order)
        level.total += order.sz
        level.count += 1
        self.orders[oid] = order

    def _key_late(self, level: Level, oid: int) -> None:
        """Give `oid`, about to rest behind `level`'s orders, a key above theirs if its own
        is not (a fired TP/SL is older than the orders it queues behind)."""
        orders = self.orders
        for tail in reversed(level.queue):
            if orders.get(tail.oid) is tail:
                major, minor = self.key(tail)
                if oid < major:
                    self.late[oid] = (major, minor + 1)
                return

    def remove(self, oid: int) -> RestingOrder | None:
        """Take a resting order off the book; None if it is not resting."""
        order = self.orders.pop(oid, None)
        if order is None:
            return None
        self._note_removal(order)
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
        oid = order.oid
        if size == order.sz:
            del self.orders[oid]
            self._note_removal(order)
            level.queue.popleft()
            level.count -= 1
            if level.count == 0:
                del side.levels[level.px]
        else:
            remaining = msgspec.structs.replace(order, sz=order.sz - size)
            level.queue[0] = remaining
            self.orders[oid] = remaining
            if oid <= self.settled_top and oid not in self.changed:
                self.changed[oid] = order

    def _note_removal(self, order: RestingOrder) -> None:
        """Note for the digest that `order` left the book. One above `settled_top`, or noted as
        not counted, rested since the last settle: nothing to take out, and its arrival key
        goes with it, as no settle will need it."""
        oid = order.oid
        if oid <= self.settled_top:
            changed = self.changed
            before = changed.pop(oid, order)  # one lookup whatever the case
            if before is not None:
                changed[oid] = before
                return
        if self.late:
            self.late.pop(oid, None)

    def settle(self) -> int:
        """The book's order-set digest, brought up to date with the orders changed since the
        last call: O(orders changed)."""
        self.digest = self._pending_digest()
        late = self.late
        if late:
            for oid in self.changed:
                if oid not in self.orders:
                    late.pop(oid, None)
        self.changed = {}
        self.settled_top = self.top
        return self.digest

    def _rested_since_settle(self) -> list[int]:
        """The oids above `settled_top`, which rested since the last settle: `orders` keeps
        insertion order (a partial fill replaces a value in place), so they are among the last
        entries, mixed only with fired TP/SL orders noted in `changed` as not counted."""
        found = []
        settled, changed = self.settled_top, self.changed
        for oid in reversed(self.orders):
            if oid > settled:
                found.append(oid)
            elif oid not in changed or changed[oid] is not None:
                break  # it was resting at the last settle, and so are those before it
        return found

    def _pending_digest(self) -> int:
        """The order-set digest of the orders now."""
        value = self.digest
        if self.changed:
            value = updated_digest(value, self.changed, self.orders, self.late)
        orders, late = self.orders, self.late
        value += digest_sum((late.get(oid), orders[oid]) for oid in self._rested_since_settle())
        return value & _DIGEST_MASK

    def key(self, order: RestingOrder) -> Key:
        """The arrival key of a live order (see the module doc)."""
        return self.late.get(order.oid, (order.oid, 0))

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
        for side in (self.bids, self.asks):
            for level in side.levels.values():
                keys = [self.key(o) for o in level.queue if self.orders.get(o.oid) is o]
                assert keys == sorted(set(keys)), f"arrival keys out of order at {level.px}"
                assert all(major <= self.top for major, _ in keys), "key above top"
        assert all(o.oid <= self.top for o in self.orders.values()), "order above top"
        assert self.settled_top <= self.top, "settled above top"
        for oid, before in self.changed.items():
            assert oid <= self.settled_top, f"order {oid} above settled_top noted"
            assert before is not None or oid in self.orders, f"order {oid} rested, left, noted"
        pending = {oid for oid, before in self.changed.items() if before is not None}
        assert set(self.late) <= seen | pending, "arrival key of an order gone and settled"
        recent = {oid for oid in self.orders if oid > self.settled_top}
        assert recent == set(self._rested_since_settle()), "recent orders out of insertion order"
        assert self._pending_digest() == set_digest(self.orders, self.late), "digest drifted"
        bid, ask = self.best_bid(), self.best_ask()
        assert bid is None or ask is None or bid < ask, f"crossed at rest: {bid} >= {ask}"
