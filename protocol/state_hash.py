"""The canonical state hash that ends every block.

Invariants:
- `chain_snapshot` captures everything in the chain that determines its future behaviour, as
  frozen structs of tuples in a canonical order: accounts by address, positions and leverage by
  asset, balances by token, every index by its key. Two chains in the same state give equal
  snapshots whatever order their dicts were filled in. The one exception is the sub-accounts,
  kept in creation order: `sub_accounts_of` lists them in that order, so it is state, and an
  address-sorted list would lose it.
- The parts that grow with use, each book's resting orders and the parked TP/SL orders, enter
  as order-set digests (`BookDigest`, `TriggersDigest`): how many orders, and the sum modulo
  2**256 of sha256 over each order's canonical encoding (`entry_digest` in protocol/book.py).
  A resting order's term covers its arrival key too, and the keys strictly increase along each
  level's queue (an `OrderBook` invariant), so a book's digest fixes its price-time priority,
  not only its orders: a fresh order's key is its own oid, a fired TP/SL, which keeps an older
  oid and queues behind newer orders, gets the next key after its level's last live order.
- The digests are kept up to date at the cost of what changed: the book notes each order
  resting at the last hash that it fills or removes since (a dict update on the order path;
  an order resting fresh costs a comparison, found later as an oid above the last hash's), the
  exchange each TP/SL it parks, arms or removes, and taking the snapshot applies the notes
  (`OrderBook.settle`, `Exchange.settle_triggers`): a block's hash costs in proportion to the
  orders the block changed, not to the orders resting. `from_scratch=True` computes the same
  digests over every order without touching the chain, for the tests and the `_check`s.
- Why a sum: its terms can be taken out and put in one order at a time, in any order, and the
  sum depends only on the set of terms, so dict order and history do not matter. Two different
  order sets collide with chance 2**-256 unless someone crafts them: a generalized-birthday
  search over many crafted orders finds equal sums far sooner than 2**128 steps. That is
  acceptable here because the hash checks a node's execution against its own log (live against
  replay, a snapshot against the log), and the log alone defines the chain; comparing hashes
  with untrusted peers would need a wider modulus or a lattice hash.
- What keys a fired TP/SL took is part of the state: two books holding the same orders in the
  same priority can differ in such a key when they got there by different paths (the key
  depends on the level's last live order when it rested), and then hash differently. Live
  and replay run the same path and agree; so does any pair of chains without fired TP/SL
  orders resting in the same level behind orders that have since left.
- Left out: caches of pure functions (`Clearinghouse.notional_limits`); what the genesis fixes
  (markets, margin tables, default leverage, reserve params; the liquidator's address is kept,
  being cheap); the books' internals that do not change matching (lazy heap keys, cancelled
  queue entries, level totals and counts, `top`); the exchange's indexes over the live orders
  (`user_orders`, `cloids`, `children`), each exactly a function of the books and the parked
  orders (`Exchange._check` asserts it), so they add nothing; and the events waiting to be
  taken (fills, order updates, ledger updates).
- msgpack holds no int outside [-2**63, 2**64): every int that can grow without a bound the
  protocol enforces (balances, prices and sizes from the wire, times a user picks) is encoded
  as its decimal string when it does not fit (`Big`; `encode_canonical` for the orders). The
  nested snapshot() methods do the same for their big ints.
- `state_hash(chain, previous) = sha256(previous + msgpack(snapshot))`, the encoding
  deterministic (msgspec `order="deterministic"`), so the hash is the same in every process,
  whatever PYTHONHASHSEED.
- `state_digest` gives that same hash and, from the same encoding pass, a short digest of each
  part of the state (`PARTS`: the snapshot's top-level fields, the clearinghouse's and the
  exchange's fields one by one), so a block record can say which parts a replay must match
  without holding the state. It encodes the snapshot piece by piece and feeds the pieces to the
  chained hash in order: msgspec writes a struct as a map of its fields in definition order,
  so the pieces are exactly the bytes of the whole encoding. A part digest is the first
  `PART_DIGEST_SIZE` bytes of the sha256 of the part's encoding: enough to tell parts apart
  in a report, while the chained hash stays the integrity check. The digests come as one
  bytes string in `PARTS` order: the names are fixed by the code, so a record stores only the
  digests.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import msgspec

from protocol.agents import AgentsSnapshot
from protocol.book import DIGEST_BITS, MSGPACK_MAX_INT, MSGPACK_MIN_INT, set_digest
from protocol.clearinghouse import Account, SubAccount
from protocol.funding import FundingSnapshot
from protocol.lending import LendingSnapshot
from protocol.mark import MarkSnapshot
from protocol.nonces import NoncesSnapshot
from protocol.oracle import OracleSnapshot

if TYPE_CHECKING:
    from protocol.chain import Chain

GENESIS_HASH = bytes(32)

Big = int | str  # an int, or its decimal string when msgpack cannot hold it


def big(value: int) -> Big:
    """`value` itself when msgpack can hold it, else its decimal string."""
    return value if MSGPACK_MIN_INT <= value < MSGPACK_MAX_INT else str(value)


# Clearinghouse.


class PositionSnapshot(msgspec.Struct, frozen=True):
    asset: int
    szi: Big
    entry_ntl: Big
    isolated_raw: Big
    funding_all_time: Big
    funding_since_open: Big
    funding_since_change: Big


class LeverageSnapshot(msgspec.Struct, frozen=True):
    """A setting the account stored (the defaults are not stored and not listed)."""

    asset: int
    is_cross: bool
    value: int


class OrderNotional(msgspec.Struct, frozen=True):
    """Resting perp notional of one asset, the basis of the account's order margin."""

    asset: int
    buy: Big
    sell: Big


class AccountSnapshot(msgspec.Struct, frozen=True):
    address: str
    abstraction: str
    usd: Big
    positions: tuple[PositionSnapshot, ...]  # by asset
    leverage: tuple[LeverageSnapshot, ...]  # by asset
    order_ntl: tuple[OrderNotional, ...]  # by asset
    spot_total: tuple[tuple[int, Big], ...]  # by token
    spot_hold: tuple[tuple[int, Big], ...]  # by token


class ClearinghouseSnapshot(msgspec.Struct, frozen=True):
    accounts: tuple[AccountSnapshot, ...]  # by address
    perp_fees: Big
    spot_fees: tuple[tuple[int, Big], ...]  # by token
    marks: tuple[tuple[int, Big], ...]  # by asset
    oracle_px: tuple[tuple[int, Big], ...]  # by asset
    last_trade: tuple[tuple[int, Big], ...]  # by asset
    sub_accounts: tuple[SubAccount, ...]  # in creation order (see the module doc)
    withdrawn: Big
    withdraw_fees: Big


# Exchange.


class BookDigest(msgspec.Struct, frozen=True):
    """One book's resting orders, as their order-set digest (see the module doc)."""

    asset: int
    orders: int  # how many rest
    digest: bytes  # DIGEST_BITS bits, big-endian


class TriggersDigest(msgspec.Struct, frozen=True):
    """The parked TP/SL orders, as their order-set digest."""

    orders: int
    digest: bytes


class ScheduledCancelDay(msgspec.Struct, frozen=True):
    user: str
    day: Big
    triggers: int


class ExchangeSnapshot(msgspec.Struct, frozen=True):
    next_oid: int
    next_tid: int
    books: tuple[BookDigest, ...]  # by asset
    triggers: TriggersDigest
    scheduled_cancels: tuple[tuple[str, Big], ...]  # by user
    scheduled_cancel_days: tuple[ScheduledCancelDay, ...]  # by user


# Liquidator and the whole chain.


class LiquidatorSnapshot(msgspec.Struct, frozen=True):
    address: str
    last_partial: tuple[tuple[str, int], ...]  # by user


class DevnetSnapshots(msgspec.Struct, frozen=True):
    """The devnet's saved states, by id with the block time each was taken at: what a saved
    state holds is the chain's state at that time, which the chained hash already commits to."""

    saved: tuple[tuple[int, int], ...]
    next_id: int


class ChainSnapshot(msgspec.Struct, frozen=True):
    prices_driven: bool
    mark_time: int
    clearinghouse: ClearinghouseSnapshot
    exchange: ExchangeSnapshot
    liquidator: LiquidatorSnapshot
    oracle: OracleSnapshot
    marks: tuple[tuple[int, MarkSnapshot], ...]  # by asset
    funding: FundingSnapshot
    lending: LendingSnapshot
    agents: AgentsSnapshot
    nonces: NoncesSnapshot
    devnet_snapshots: DevnetSnapshots


def _ints(mapping: dict[int, int]) -> tuple[tuple[int, Big], ...]:
    return tuple((key, big(mapping[key])) for key in sorted(mapping))


def _account(address: str, account: Account) -> AccountSnapshot:
    positions = tuple(
        PositionSnapshot(
            asset,
            big(p.szi),
            big(p.entry_ntl),
            big(p.isolated_raw),
            big(p.funding_all_time),
            big(p.funding_since_open),
            big(p.funding_since_change),
        )
        for asset, p in sorted(account.positions.items())
    )
    leverage = tuple(
        LeverageSnapshot(asset, lev.is_cross, lev.value)
        for asset, lev in sorted(account.leverage.items())
    )
    order_ntl = tuple(
        OrderNotional(asset, big(ntl[0]), big(ntl[1]))
        for asset, ntl in sorted(account.order_ntl.items())
    )
    return AccountSnapshot(
        address,
        account.abstraction,
        big(account.usd),
        positions,
        leverage,
        order_ntl,
        _ints(account.spot_total),
        _ints(account.spot_hold),
    )


def clearinghouse_snapshot(chain: Chain) -> ClearinghouseSnapshot:
    ch = chain.clearinghouse
    return ClearinghouseSnapshot(
        accounts=tuple(_account(user, ch.accounts[user]) for user in sorted(ch.accounts)),
        perp_fees=big(ch.perp_fees),
        spot_fees=_ints(ch.spot_fees),
        marks=_ints(ch.marks),
        oracle_px=_ints(ch.oracle_px),
        last_trade=_ints(ch.last_trade),
        sub_accounts=tuple(ch.sub_accounts.values()),
        withdrawn=big(ch.withdrawn),
        withdraw_fees=big(ch.withdraw_fees),
    )


def _digest_bytes(value: int) -> bytes:
    return value.to_bytes(DIGEST_BITS // 8, "big")


def exchange_snapshot(chain: Chain, from_scratch: bool = False) -> ExchangeSnapshot:
    """The exchange's state; the order-set digests brought up to date from the orders changed
    since the last call, or, `from_scratch`, computed over every order (O(state), for checks;
    nothing is updated then)."""
    ex = chain.exchange
    books = []
    for asset in sorted(ex.books):
        book = ex.books[asset]
        digest = set_digest(book.orders, book.late) if from_scratch else book.settle()
        books.append(BookDigest(asset, len(book.orders), _digest_bytes(digest)))
    triggers = set_digest(ex.triggers, {}) if from_scratch else ex.settle_triggers()
    return ExchangeSnapshot(
        next_oid=ex.next_oid,
        next_tid=ex.next_tid,
        books=tuple(books),
        triggers=TriggersDigest(len(ex.triggers), _digest_bytes(triggers)),
        scheduled_cancels=tuple(
            (user, big(ex.scheduled_cancels[user])) for user in sorted(ex.scheduled_cancels)
        ),
        scheduled_cancel_days=tuple(
            ScheduledCancelDay(user, big(day), count)
            for user, (day, count) in sorted(ex.scheduled_cancel_days.items())
        ),
    )


def chain_snapshot(chain: Chain, from_scratch: bool = False) -> ChainSnapshot:
    """Everything the chain's future depends on, in canonical order (see the module doc);
    `from_scratch` as for `exchange_snapshot`."""
    liquidator = chain.liquidator
    return ChainSnapshot(
        prices_driven=chain.prices_driven,
        mark_time=chain.mark_time,
        clearinghouse=clearinghouse_snapshot(chain),
        exchange=exchange_snapshot(chain, from_scratch),
        liquidator=LiquidatorSnapshot(
            liquidator.address, tuple(sorted(liquidator.last_partial.items()))
        ),
        oracle=chain.oracle.snapshot(),
        marks=tuple((asset, chain.marks[asset].snapshot()) for asset in sorted(chain.marks)),
        funding=chain.funding.snapshot(),
        lending=chain.lending.snapshot(),
        agents=chain.agents.snapshot(),
        nonces=chain.nonces.snapshot(),
        devnet_snapshots=DevnetSnapshots(
            tuple((i, chain.saved[i][0]) for i in sorted(chain.saved)), chain.next_snapshot_id
        ),
    )


_ENCODER = msgspec.msgpack.Encoder(order="deterministic")


def encode_snapshot(snapshot: ChainSnapshot) -> bytes:
    return _ENCODER.encode(snapshot)


def state_hash(chain: Chain, previous: bytes) -> bytes:
    """sha256 of the previous block's hash followed by the encoded snapshot of the chain."""
    return state_digest(chain, previous).hash


# Part digests and mismatch reports.

_NESTED = ("clearinghouse", "exchange")  # the parts split into their own fields
PART_DIGEST_SIZE = 8

PartDigests = tuple[tuple[str, bytes], ...]  # (part name, digest) in `PARTS` order


class StateDigest(msgspec.Struct, frozen=True):
    hash: bytes  # the chained state hash
    parts: bytes  # the part digests, PART_DIGEST_SIZE bytes each, in `PARTS` order


class _Field(msgspec.Struct, frozen=True):
    """One field of a snapshot struct as `state_digest` walks it."""

    attr: str
    part: str  # its part name, dotted under a split parent
    key: bytes  # its name as msgpack encodes it, the map key before its value
    nested: tuple[_Field, ...] | None  # the fields of a split part, else None


def _map_header(size: int) -> bytes:
    """msgpack's header of a map of `size` entries (a fixmap below 16, else a map 16)."""
    return bytes([0x80 | size]) if size < 16 else b"\xde" + size.to_bytes(2, "big")


def _layout(struct: type[msgspec.Struct], prefix: str) -> tuple[_Field, ...]:
    layout = []
    for field in msgspec.structs.fields(struct):
        name = prefix + field.name
        nested = None
        if not prefix and field.name in _NESTED:
            nested = _layout(field.type, name + ".")
        layout.append(_Field(field.name, name, _ENCODER.encode(field.encode_name), nested))
    return tuple(layout)


_LAYOUT = _layout(ChainSnapshot, "")
PARTS = tuple(sub.part for field in _LAYOUT for sub in (field.nested if field.nested else (field,)))


def state_digest(chain: Chain, previous: bytes, from_scratch: bool = False) -> StateDigest:
    """The chained state hash of `chain` (what `state_hash` returns) and its part digests;
    `from_scratch` as for `exchange_snapshot` (the same result, at O(state))."""
    whole = hashlib.sha256(previous)
    parts: list[bytes] = []
    _feed(chain_snapshot(chain, from_scratch), _LAYOUT, whole, parts)
    return StateDigest(whole.digest(), b"".join(parts))


def _feed(
    struct: msgspec.Struct,
    layout: tuple[_Field, ...],
    whole: hashlib._Hash,
    parts: list[bytes],
) -> None:
    """Feed `struct`'s encoding to `whole` piece by piece, digesting each part on the way."""
    whole.update(_map_header(len(layout)))
    for field in layout:
        whole.update(field.key)
        value = getattr(struct, field.attr)
        if field.nested is not None:
            _feed(value, field.nested, whole, parts)
            continue
        encoded = _ENCODER.encode(value)
        whole.update(encoded)
        parts.append(hashlib.sha256(encoded).digest()[:PART_DIGEST_SIZE])


def named_parts(digests: bytes) -> PartDigests:
    """The (part name, digest) pairs of `digests` (a `StateDigest.parts`); empty when its
    length is not this layout's (a log without part digests, or from other code)."""
    size = PART_DIGEST_SIZE
    if len(digests) != len(PARTS) * size:
        return ()
    return tuple((name, digests[i * size : (i + 1) * size]) for i, name in enumerate(PARTS))


def differing_parts(recorded: bytes, replayed: bytes) -> list[str]:
    """The parts whose digests differ, in `PARTS` order; empty when either side is not in
    this layout."""
    theirs, ours = named_parts(recorded), named_parts(replayed)
    if not theirs or not ours:
        return []
    return [name for (name, mine), (_, their) in zip(ours, theirs, strict=True) if mine != their]
