"""The canonical state hash: deterministic, canonical, blind to pure caches, and kept
incrementally: the order-set digests equal the ones computed from scratch after any blocks,
see every kind of change to an order, fix the price-time priority, and cost in proportion to
what changed."""

from __future__ import annotations

import functools
import hashlib
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import msgspec
import pytest

import protocol.book
from protocol.actions import (
    BatchModifyAction,
    CancelAction,
    CancelWire,
    CreateSubAccountAction,
    OrderAction,
    OrderResponse,
    ScheduleCancelAction,
    UpdateLeverageAction,
    UsdSendAction,
)
from protocol.book import TIF_GTC, Key, OrderBook, RestingOrder, entry_digest, set_digest
from protocol.chain import Action, BlockOutput, Chain
from protocol.exchange import Exchange, TriggerOrder
from protocol.fixed import WAD, format_fixed
from protocol.lending import YEAR_MS
from protocol.markets import Markets
from protocol.orders import OPEN, OrderWire, Trigger
from protocol.state_hash import (
    GENESIS_HASH,
    ChainSnapshot,
    chain_snapshot,
    differing_parts,
    encode_snapshot,
    state_digest,
    state_hash,
)
from tests.protocol.conftest import (
    BTC,
    ETH,
    PURR_TOKEN,
    PURR_USDC,
    USD,
    USDC_TOKEN,
    default_markets,
    limit,
    trigger,
)
from tests.protocol.test_chain import sources
from tests.protocol.test_chain_stress import BLOCKS, LADDER, StressRun

ROOT = Path(__file__).resolve().parents[2]
HOUR = 3_600_000
START = 500 * HOUR - 10_000  # 10 s before an hour boundary: funding settles in the run
U, M, B = "0x" + "1" * 40, "0x" + "2" * 40, "0x" + "3" * 40
Block = list[tuple[str, Action]]


def new_chain(markets: Markets, users: tuple[str, ...] = (U, M, B)) -> Chain:
    """A chain whose `users` have 1M USDC on perps and 10k USDC, 1M PURR on spot."""
    chain = Chain(markets, sources(markets), START)
    for user in users:
        chain.clearinghouse.credit_usd(user, 1_000_000 * USD)
        chain.clearinghouse.credit_spot(user, USDC_TOKEN, 10_000 * 10**8)
        chain.clearinghouse.credit_spot(user, PURR_TOKEN, 1_000_000 * 10**5)
    return chain


def scenario() -> list[Block]:
    """Trades, resting orders on perp and spot, a TP/SL, leverage, a scheduled cancel, a
    sub-account, a send, and an hour boundary (funding)."""
    return [
        [
            (
                M,
                OrderAction((limit(BTC, False, "100000", "0.2"), limit(BTC, True, "99000", "0.2"))),
            ),
            (U, UpdateLeverageAction(ETH, False, 10)),
        ],
        [
            (U, OrderAction((limit(BTC, True, "100000", "0.1", "Ioc"),))),
            (M, OrderAction((limit(PURR_USDC, False, "0.2", "1000"),))),
            (U, OrderAction((trigger(BTC, False, "90000", "0.1", "90000", "sl"),))),
        ],
        [
            (B, OrderAction((limit(PURR_USDC, True, "0.2", "400"),))),
            (M, ScheduleCancelAction(START + 60_000)),
            (U, CreateSubAccountAction("trading")),
        ],
        [(B, UsdSendAction(U, "12.5"))],
        [(B, OrderAction((limit(ETH, True, "90", "2", cloid="0x" + "ab" * 16),)))],
        [],
        [(U, OrderAction((limit(BTC, True, "100000", "0.05", "Ioc"),)))],
    ]


def run(chain: Chain, blocks: list[Block]) -> list[bytes]:
    """Apply the blocks, 3 s apart, and return the hash chain after each."""
    hashes: list[bytes] = []
    previous = GENESIS_HASH
    for height, actions in enumerate(blocks, start=1):
        chain.apply_block(height, START + 3_000 * height, actions)
        previous = state_hash(chain, previous)
        hashes.append(previous)
    return hashes


def test_same_actions_give_the_same_hash_at_every_block() -> None:
    """Two chains built separately and fed the same blocks agree on every block's hash."""
    first, second = new_chain(default_markets()), new_chain(default_markets())
    hashes = run(first, scenario())
    assert hashes == run(second, scenario())
    assert len(set(hashes)) == len(hashes)
    assert all(len(h) == 32 for h in hashes)
    snapshot = chain_snapshot(first)
    assert snapshot.exchange.triggers.orders and snapshot.clearinghouse.sub_accounts
    assert any(book.orders for book in snapshot.exchange.books)
    assert snapshot.exchange.scheduled_cancels and first.exchange.cloids


def test_a_different_action_changes_the_hash() -> None:
    """One order's size differs in block 5: the hashes agree before it and differ from it."""
    other = scenario()
    other[4] = [(B, OrderAction((limit(ETH, True, "90", "3", cloid="0x" + "ab" * 16),)))]
    hashes = run(new_chain(default_markets()), scenario())
    changed = run(new_chain(default_markets()), other)
    assert hashes[:4] == changed[:4]
    assert all(a != b for a, b in zip(hashes[4:], changed[4:], strict=True))


def test_hash_does_not_depend_on_dict_insertion_order() -> None:
    """Accounts, balances and leverage settings created in opposite orders hash the same."""
    markets = default_markets()
    forward = new_chain(markets, (U, M, B))
    backward = new_chain(markets, (B, M, U))
    for user in (U, M, B):
        forward.clearinghouse.credit_spot(user, USDC_TOKEN, 5)
        forward.clearinghouse.credit_spot(user, PURR_TOKEN, 7)
    for user in (B, M, U):
        backward.clearinghouse.credit_spot(user, PURR_TOKEN, 7)
        backward.clearinghouse.credit_spot(user, USDC_TOKEN, 5)
    assert list(forward.clearinghouse.accounts) != list(backward.clearinghouse.accounts)
    assert state_hash(forward, GENESIS_HASH) == state_hash(backward, GENESIS_HASH)
    run(
        forward,
        [[(U, UpdateLeverageAction(ETH, False, 10))], [(U, UpdateLeverageAction(BTC, True, 5))]],
    )
    run(
        backward,
        [[(U, UpdateLeverageAction(BTC, True, 5))], [(U, UpdateLeverageAction(ETH, False, 10))]],
    )
    assert list(forward.clearinghouse.accounts[U].leverage) == [ETH, BTC]
    assert list(backward.clearinghouse.accounts[U].leverage) == [BTC, ETH]
    assert chain_snapshot(forward) == chain_snapshot(backward)
    assert state_hash(forward, GENESIS_HASH) == state_hash(backward, GENESIS_HASH)


_SCRIPT = """
from tests.protocol.test_state_hash import new_chain, run, scenario
from tests.protocol.conftest import default_markets
print(run(new_chain(default_markets()), scenario())[-1].hex())
"""


def test_hash_is_stable_across_hash_seeds() -> None:
    """Processes with different PYTHONHASHSEED print the same final hash as this one."""
    printed = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", _SCRIPT],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        printed.append(result.stdout.strip())
    expected = run(new_chain(default_markets()), scenario())[-1].hex()
    assert printed == [expected, expected]


def test_part_digests_name_the_differing_parts() -> None:
    """Equal states have equal part digests; a changed account, book, oracle and liquidator
    are each named by the part they belong to."""

    def parts_of(chain: Chain) -> bytes:
        return state_digest(chain, GENESIS_HASH).parts

    first, second = new_chain(default_markets()), new_chain(default_markets())
    run(first, scenario())
    run(second, scenario())
    assert differing_parts(parts_of(first), parts_of(second)) == []
    second.clearinghouse.accounts[M].usd += 1
    second.exchange.books[BTC].remove(second.exchange.books[BTC].resting_in_priority()[0].oid)
    second.oracle.set_price(ETH, 123)
    assert differing_parts(parts_of(first), parts_of(second)) == [
        "clearinghouse.accounts",
        "exchange.books",
        "oracle",
    ]
    third = new_chain(default_markets())
    run(third, scenario())
    third.clearinghouse.account("0x" + "9" * 40)
    third.liquidator.last_partial[U] = START
    assert differing_parts(parts_of(first), parts_of(third)) == [
        "clearinghouse.accounts",
        "liquidator",
    ]


def test_pure_cache_does_not_change_the_hash() -> None:
    """Filling `notional_limits` (a cache of a pure function) leaves the hash unchanged."""
    chain = new_chain(default_markets())
    run(chain, scenario())
    before = state_hash(chain, GENESIS_HASH)
    cache = chain.clearinghouse.notional_limits
    cache.clear()
    empty = state_hash(chain, GENESIS_HASH)
    for perp in chain.markets.perps:
        for leverage in range(1, perp.max_leverage + 1):
            chain.clearinghouse.within_tier(perp.asset, leverage, 0)
    assert cache
    assert state_hash(chain, GENESIS_HASH) == empty == before


def test_ints_above_64_bits_encode() -> None:
    """Lending indexes after decades of accrual and a huge balance exceed 2**64 and still
    hash, as decimal strings; the encoding round-trips to the same snapshot."""
    chain = new_chain(default_markets())
    reserve = chain.lending.reserves[USDC_TOKEN]
    reserve.scaled_borrow = reserve.borrows[U] = 10**8
    reserve.scaled_supply = reserve.supplies[M] = 10**8
    reserve.cash = 0
    chain.lending.accrue(START + 40 * YEAR_MS)
    assert reserve.borrow_index > 2**64 > WAD
    chain.clearinghouse.credit_usd(B, 2**70)
    snapshot = chain_snapshot(chain)
    assert snapshot.clearinghouse.accounts[2].usd == str(1_000_000 * USD + 2**70)
    assert int(snapshot.lending.reserves[0].borrow_index) == reserve.borrow_index
    encoded = encode_snapshot(snapshot)
    assert msgspec.msgpack.decode(encoded, type=ChainSnapshot) == snapshot
    expected = hashlib.sha256(GENESIS_HASH + encoded).digest()
    assert state_hash(chain, GENESIS_HASH) == expected


# The order-set digests, kept incrementally.


def five_figures(dollars: int) -> int:
    """`dollars` rounded down to 5 significant figures, a valid price at any tick."""
    unit: int = 10 ** max(0, len(str(dollars)) - 5)
    return dollars // unit * unit


class HashedRun(StressRun):
    """A chain stress run (tests/protocol/test_chain_stress.py) with limit TP/SL orders added,
    that takes the state hash after a random half of the blocks (so changes also pile up over
    several blocks) and checks it, part digests included, against the hash from scratch.

    The added orders: OCO pairs whose stop fires in the block it is placed and rests at a
    price the maker quotes in that block, so often behind the maker's newer order (a late
    arrival key), its take profit cancelled as its sibling; and brackets, a GTC parent at a
    quoted price with TP/SL children waiting for it to fill. `seen` counts each kind of change
    to a resting or parked order the run made."""

    def __init__(self, seed: int) -> None:
        self.hash_rng = random.Random(-seed)
        self.previous = GENESIS_HASH
        self.seen: Counter[str] = Counter()
        self.rested: set[int] = set()
        super().__init__(seed)

    def _apply(self, actions: list[tuple[str, Action]]) -> BlockOutput:
        waiting = {oid for oid, t in self.chain.exchange.triggers.items() if t.parent}
        block = super()._apply(actions)
        self._see(block, waiting)
        if self.hash_rng.random() < 0.5:
            self.check_hash()
        return block

    def check_hash(self) -> None:
        scratch = state_digest(self.chain, self.previous, from_scratch=True)
        kept = state_digest(self.chain, self.previous)
        assert kept == scratch, (
            f"height {self.height}: {differing_parts(scratch.parts, kept.parts)}"
        )
        self.previous = kept.hash

    def _see(self, block: BlockOutput, waiting: set[int]) -> None:
        exchange = self.chain.exchange
        seen = self.seen
        for update in block.order_updates:
            order = update.order
            if isinstance(order, TriggerOrder):
                seen[f"trigger {update.status}"] += 1
            elif update.status == OPEN:
                self.rested.add(order.oid)
                seen["rest"] += 1
            elif order.oid in self.rested:
                seen[f"resting {update.status}"] += 1
        for fill in block.fills:
            if not fill.crossed and fill.oid in exchange.books[fill.asset].orders:
                seen["resting partly filled"] += 1
        armed = [oid for oid in waiting if oid in exchange.triggers]
        seen["trigger armed"] += sum(not exchange.triggers[oid].parent for oid in armed)
        seen["modify"] += sum(
            isinstance(executed.action, BatchModifyAction)
            and isinstance(executed.response, OrderResponse)
            for executed in block.actions
        )
        seen["resting with a late key"] += sum(
            oid in book.orders for book in exchange.books.values() for oid in book.late
        )

    # Limit TP/SL orders.

    def _stop_loss(self, user: str, asset: int) -> Action | None:
        roll = self.rng.random()
        if roll < 0.4:
            return super()._stop_loss(user, asset)
        if roll < 0.7:
            return self._tpsl_pair(user, asset)
        return self._bracket(asset)

    def _quoted(self, asset: int, is_buy: bool) -> int:
        """A price (whole dollars) the maker quotes on that side in this block."""
        center = self._dollars(asset, self.chain.oracle.price(asset))
        offset = self.rng.choice(LADDER[asset])[0]
        return five_figures(max(1, center - offset) if is_buy else center + offset)

    def _tpsl_pair(self, user: str, asset: int) -> Action | None:
        szi = self.chain.clearinghouse.accounts[user].szi(asset)
        if not szi:
            return None
        size = format_fixed(abs(szi), self.chain.markets.by_asset[asset].sz_decimals)
        mark = self._dollars(asset, self.chain.clearinghouse.mark(asset))
        closing_buy = szi < 0
        # A sell stop fires at mark <= trigger, a buy stop at mark >= trigger.
        stop = five_figures(max(1, mark - 1) if closing_buy else mark + 1)
        take = five_figures(max(1, mark // 2) if closing_buy else mark * 2)
        px = str(self._quoted(asset, closing_buy))
        return OrderAction(
            (
                trigger(asset, closing_buy, px, size, str(stop), "sl", is_market=False),
                trigger(asset, closing_buy, px, size, str(take), "tp", is_market=False),
            ),
            "positionTpsl",
        )

    def _bracket(self, asset: int) -> Action:
        is_buy = self.rng.random() < 0.5
        parent = self._perp_wire(asset, is_buy, self._quoted(asset, is_buy), 200, "Gtc")
        mark = self._dollars(asset, self.chain.clearinghouse.mark(asset))
        up, down = five_figures(mark * 11 // 10), five_figures(max(1, mark * 9 // 10))
        take, stop = (up, down) if is_buy else (down, up)
        children = (
            trigger(asset, not is_buy, str(take), parent.s, str(take), "tp", is_market=False),
            trigger(asset, not is_buy, str(stop), parent.s, str(stop), "sl", is_market=False),
        )
        return OrderAction((parent, *children), "normalTpsl")


@functools.cache
def hashed_run(seed: int) -> HashedRun:
    run = HashedRun(seed)
    run.run(BLOCKS)
    run.check_hash()
    return run


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_incremental_hash_equals_the_hash_from_scratch(seed: int) -> None:
    """After every hashed block of a seeded stress run, the digests kept from the changes
    equal the ones computed over every order (each `_check` also compares them)."""
    run = hashed_run(seed)
    assert run.counts["blocks"] == BLOCKS + 1
    assert run.chain.exchange.books[BTC].orders


CHANGES = (
    "rest",
    "resting partly filled",
    "resting filled",
    "resting canceled",
    "resting reduceOnlyCanceled",
    "resting marginCanceled",
    "resting liquidatedCanceled",
    "resting scheduledCancel",
    "resting selfTradeCanceled",
    "modify",
    "trigger open",
    "trigger armed",
    "trigger triggered",
    "trigger siblingFilledCanceled",
    "trigger canceled",
    "resting with a late key",
)


def test_the_runs_make_every_kind_of_order_change() -> None:
    """The runs above rest, partly fill, fill and cancel orders in every way (by the user, by
    a modify, reduce-only, margin, liquidation, scheduled and self-trade cancels), park, arm,
    fire and cancel TP/SL orders, and rest fired ones behind newer orders: so the equality
    they check covers every path by which a book or the parked orders change."""
    seen: Counter[str] = Counter()
    for seed in (1, 2, 3, 4):
        seen.update(hashed_run(seed).seen)
    print(dict(sorted(seen.items())))
    assert [change for change in CHANGES if not seen[change]] == []


def test_the_same_state_by_different_paths_hashes_the_same() -> None:
    """Two chains end in the same state by different paths: accounts created in the other
    order, two cancels in the other order, one in another block, and one chain hashed after
    every block while the other is hashed only at the end, so their digests were kept through
    different changes. They hash the same, as the hash from scratch does."""
    markets = default_markets()
    bids = OrderAction(
        tuple(limit(BTC, True, px, "0.1") for px in ("99000", "99000", "98000", "99000"))
    )
    asks = OrderAction((limit(BTC, False, "101000", "0.3"), limit(BTC, False, "102000", "0.1")))
    cancel_2, cancel_5 = CancelAction((CancelWire(BTC, 2),)), CancelAction((CancelWire(BTC, 5),))
    take = OrderAction((limit(BTC, False, "99000", "0.15", "Ioc"),))
    first: list[Block] = [[(U, bids), (M, asks)], [(U, cancel_2), (M, cancel_5)], [(B, take)], []]
    second: list[Block] = [[(U, bids), (M, asks)], [(M, cancel_5)], [(B, take), (U, cancel_2)], []]
    hashed_each_block = new_chain(markets, (U, M, B))
    run(hashed_each_block, first)
    hashed_at_the_end = new_chain(markets, (B, M, U))
    for height, actions in enumerate(second, start=1):
        hashed_at_the_end.apply_block(height, START + 3_000 * height, actions)
    book = hashed_at_the_end.exchange.books[BTC]
    assert book.settled_top == 0 and len(book.orders) == 3  # no digest kept yet
    assert list(hashed_each_block.clearinghouse.accounts) != list(
        hashed_at_the_end.clearinghouse.accounts
    )
    ends = [state_hash(chain, GENESIS_HASH) for chain in (hashed_each_block, hashed_at_the_end)]
    assert ends[0] == ends[1] == state_digest(hashed_each_block, GENESIS_HASH, True).hash


def _another_cloid(wire: OrderWire) -> OrderWire:
    assert wire.c is not None
    return msgspec.structs.replace(wire, c=wire.c[:-1] + "f")


ONE_UNIT: dict[str, Callable[[OrderWire], OrderWire]] = {
    "one lot more": lambda wire: msgspec.structs.replace(wire, s="0.1001"),
    "one tick up": lambda wire: msgspec.structs.replace(wire, p="2900.1"),
    "another cloid": _another_cloid,
    "ALO": lambda wire: limit(ETH, True, wire.p, wire.s, "Alo", cloid=wire.c),
}


@pytest.mark.parametrize("position", [0, 1, 2])
@pytest.mark.parametrize("change", list(ONE_UNIT))
def test_a_one_unit_change_in_a_book_changes_the_hash(position: int, change: str) -> None:
    """Three bids rest at one price; the same chain with one of them (first, middle or last
    in the queue) one unit different hashes differently, and the parts name the book."""
    orders = [limit(ETH, True, "2900", "0.1", cloid=f"0x{i:032x}") for i in range(3)]
    changed = list(orders)
    changed[position] = ONE_UNIT[change](orders[position])
    assert changed != orders
    digests = []
    for wires in (orders, changed):
        chain = new_chain(default_markets())
        run(chain, [[(U, OrderAction(tuple(wires)))]])
        assert len(chain.exchange.books[ETH].orders) == 3
        digests.append(state_digest(chain, GENESIS_HASH))
        assert digests[-1] == state_digest(chain, GENESIS_HASH, from_scratch=True)
    assert digests[0].hash != digests[1].hash
    assert "exchange.books" in differing_parts(digests[0].parts, digests[1].parts)


def test_every_field_of_a_resting_order_is_in_its_book_digest() -> None:
    """A book of three orders against the same book with one field of one order one unit
    off (an int one more, a flag flipped, a string one character off): every such change, of
    every order, changes the digest."""

    def build(orders: list[RestingOrder]) -> int:
        book = OrderBook(ETH)
        for order in orders:
            book.rest(order)
        digest = book.settle()  # (a flipped side may cross the book: no _check)
        assert digest == set_digest(book.orders, book.late)
        return digest

    orders = [
        RestingOrder(10 * i, U, ETH, True, 290_000 - i, 100 + i, 200, START, TIF_GTC, False, None)
        for i in (1, 2, 3)
    ]
    base = build(orders)
    for index, order in enumerate(orders):
        for field in msgspec.structs.fields(RestingOrder):
            value = getattr(order, field.name)
            if isinstance(value, bool):
                other: object = not value
            elif isinstance(value, int):
                other = value + 1
            elif isinstance(value, str):
                other = value[:-1] + chr(ord(value[-1]) + 1)
            else:
                other = "0x" + "0" * 32
            changed = list(orders)
            changed[index] = msgspec.structs.replace(order, **{field.name: other})
            assert build(changed) != base, (index, field.name)


def test_a_priority_change_changes_the_hash(exchange: Exchange) -> None:
    """A take profit (oid 3) fires and rests behind a newer order at its price (oid 4): its
    arrival key (4, 1) puts it second, as the book does when matching. A book holding the same
    two orders the other way round (oid 3 first) has another digest."""
    exchange.place_orders("b", (limit(BTC, False, "100000", "0.1"),), "na", START)
    exchange.place_orders("a", (limit(BTC, True, "100000", "0.1", "Ioc"),), "na", START)
    take_profit = trigger(BTC, False, "104000", "0.1", "105000", "tp", is_market=False)
    exchange.place_orders("a", (take_profit,), "na", START)
    exchange.place_orders("c", (limit(BTC, False, "104000", "0.2"),), "na", START)
    exchange.on_mark(BTC, 1_060_000, START + 1)
    book = exchange.books[BTC]
    assert book.late == {3: (4, 1)}
    assert [o.oid for o in book.resting_in_priority()] == [4, 3]
    exchange._check()
    fired_late = book.settle()

    other_way = OrderBook(BTC)
    for oid in (3, 4):
        other_way.rest(book.orders[oid])
    assert other_way.orders == book.orders and other_way.late == {}
    assert [o.oid for o in other_way.resting_in_priority()] == [3, 4]
    assert other_way.settle() != fired_late

    # The key is real priority: a buyer takes oid 4 first, then part of oid 3, whose key
    # stays (4, 1) while it rests and leaves with it.
    exchange.take_events()
    exchange.place_orders("b", (limit(BTC, True, "104000", "0.25", "Ioc"),), "na", START + 2)
    fills = [(f.oid, f.sz) for f in exchange.take_events()[0] if not f.crossed]
    assert fills == [(4, 20_000), (3, 5_000)]
    assert book.late == {3: (4, 1)}
    exchange._check()
    exchange.cancel("a", BTC, 3, START + 3)
    assert book.settle() == set_digest(book.orders, book.late) and book.late == {}


def test_a_block_hashes_only_the_orders_it_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    """With 400 orders resting, a block that cancels two, rests three and partly fills one
    hashes 2 + 3 + 2 order terms (the filled one before and after), nothing for the rest."""
    chain = new_chain(default_markets())
    ladder = [limit(BTC, True, str(90_000 + i), "0.01") for i in range(200)]
    ladder += [limit(BTC, False, str(100_000 + i), "0.01") for i in range(200)]
    run(chain, [[(U, OrderAction(tuple(ladder[:200]))), (M, OrderAction(tuple(ladder[200:])))]])
    terms: list[msgspec.Struct] = []
    real, real_sum = protocol.book.entry_digest, protocol.book.digest_sum

    def counted(entry: msgspec.Struct, key: Key | None) -> int:
        terms.append(entry)
        return real(entry, key)

    def counted_sum(pairs: Iterable[tuple[Key | None, msgspec.Struct]]) -> int:
        listed = list(pairs)
        terms.extend(entry for _, entry in listed)
        return real_sum(listed)

    monkeypatch.setattr(protocol.book, "entry_digest", counted)
    monkeypatch.setattr(protocol.book, "digest_sum", counted_sum)
    block: Block = [
        (U, CancelAction((CancelWire(BTC, 1), CancelWire(BTC, 2)))),
        (B, OrderAction(tuple(limit(BTC, True, "80000", "0.01") for _ in range(3)))),
        (B, OrderAction((limit(BTC, True, "100000", "0.005", "Ioc"),))),
    ]
    chain.apply_block(2, START + 6_000, block)
    state_hash(chain, GENESIS_HASH)
    assert sorted(o.oid for o in terms if isinstance(o, RestingOrder)) == [
        1,
        2,
        201,
        201,
        401,
        402,
        403,
    ]


def test_orders_that_rest_and_leave_between_hashes_leave_no_note() -> None:
    """Without any hash taken (the matching benchmark's case), orders resting and leaving
    leave nothing behind: memory stays proportional to what rests. After a hash, leaving
    notes the order once, to take its term out."""
    book = OrderBook(BTC)
    orders = [
        RestingOrder(oid, U, BTC, True, 990_000, 10, 10, START, TIF_GTC, False, None)
        for oid in range(1, 1_001)
    ]
    for order in orders:
        book.rest(order)
    for order in orders[:-1]:
        book.remove(order.oid)
    assert book.changed == {} and book.late == {}
    book.settle()
    book.rest(RestingOrder(1_001, U, BTC, True, 990_000, 10, 10, START, TIF_GTC, False, None))
    book.remove(1_001)
    assert book.changed == {}
    book.remove(1_000)
    assert book.changed == {1_000: orders[-1]}
    book._check()
    assert book.settle() == 0 and book.changed == {}


def test_orders_with_ints_above_64_bits_are_digested() -> None:
    """A resting order and a parked one holding ints msgpack cannot hold (a nested trigger
    price too) enter their digests as decimal strings, one unit still telling them apart."""
    huge = RestingOrder(1, U, BTC, True, 2**64, 2**70, 2**70, START, TIF_GTC, False, None)
    book = OrderBook(BTC)
    book.rest(huge)
    assert book.settle() == set_digest(book.orders, book.late)
    assert entry_digest(huge, None) != entry_digest(
        msgspec.structs.replace(huge, sz=2**70 + 1), None
    )
    parked = TriggerOrder(
        2, U, BTC, False, 1, 1, START, True, None, Trigger(True, 2**64 + 1, True), 0, 0, False
    )
    higher = msgspec.structs.replace(parked, trigger=Trigger(True, 2**64 + 2, True))
    assert entry_digest(parked, None) != entry_digest(higher, None)
