"""The canonical state hash that ends every block.

Invariants:
- `chain_snapshot` captures everything in the chain that determines its future behaviour, as
  frozen structs of tuples in a canonical order: accounts by address, positions and leverage by
  asset, balances by token, resting orders in priority order (bids best first, then asks, time
  order within a level), triggers by oid, every index by its key. Two chains in the same state
  give equal snapshots whatever order their dicts were filled in. The one exception is the
  sub-accounts, kept in creation order: `sub_accounts_of` lists them in that order, so it is
  state, and an address-sorted list would lose it.
- Left out: caches of pure functions (`Clearinghouse.notional_limits`); what the genesis fixes
  (markets, margin tables, default leverage, reserve params; the liquidator's address is kept,
  being cheap); the books' internals that do not change matching (lazy heap keys, cancelled
  queue entries, level totals and counts, all derived from the live orders); and the events
  waiting to be taken (fills, order updates, ledger updates).
- msgpack holds no int outside [-2**63, 2**64): every int that can grow without a bound the
  protocol enforces (balances, prices and sizes from the wire, times a user picks) is encoded
  as its decimal string when it does not fit (`Big`). The nested snapshot() methods do the
  same for their big ints.
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

from protocol.clearinghouse import Account, SubAccount
from protocol.funding import FundingSnapshot
from protocol.lending import LendingSnapshot
from protocol.mark import MarkSnapshot
from protocol.oracle import OracleSnapshot

if TYPE_CHECKING:
    from protocol.chain import Chain

GENESIS_HASH = bytes(32)

Big = int | str  # an int, or its decimal string when msgpack cannot hold it

_MIN_INT = -(2**63)
_MAX_INT = 2**64


def big(value: int) -> Big:
    """`value` itself when msgpack can hold it, else its decimal string."""
    return value if _MIN_INT <= value < _MAX_INT else str(value)


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


class RestingSnapshot(msgspec.Struct, frozen=True):
    """A `RestingOrder` with its wire-sized ints made safe for msgpack."""

    oid: int
    user: str
    asset: int
    is_buy: bool
    px: Big
    sz: Big
    orig_sz: Big
    timestamp: int
    tif: int
    reduce_only: bool
    cloid: str | None


class BookSnapshot(msgspec.Struct, frozen=True):
    asset: int
    orders: tuple[RestingSnapshot, ...]  # priority order


class TriggerSnapshot(msgspec.Struct, frozen=True):
    """A parked `TriggerOrder` with its wire-sized ints made safe for msgpack."""

    oid: int
    user: str
    asset: int
    is_buy: bool
    px: Big
    sz: Big
    timestamp: int
    reduce_only: bool
    cloid: str | None
    is_market: bool
    trigger_px: Big
    is_tp: bool
    group: int
    parent: int
    is_position_tpsl: bool


class UserOrders(msgspec.Struct, frozen=True):
    user: str
    orders: tuple[tuple[int, int], ...]  # (oid, asset) by oid


class ScheduledCancelDay(msgspec.Struct, frozen=True):
    user: str
    day: Big
    triggers: int


class ExchangeSnapshot(msgspec.Struct, frozen=True):
    next_oid: int
    next_tid: int
    books: tuple[BookSnapshot, ...]  # by asset
    triggers: tuple[TriggerSnapshot, ...]  # by oid
    children: tuple[tuple[int, tuple[int, ...]], ...]  # by parent oid; children in list order
    user_orders: tuple[UserOrders, ...]  # by user
    cloids: tuple[tuple[str, str, int], ...]  # (user, cloid, oid) by (user, cloid)
    scheduled_cancels: tuple[tuple[str, Big], ...]  # by user
    scheduled_cancel_days: tuple[ScheduledCancelDay, ...]  # by user


# Liquidator and the whole chain.


class LiquidatorSnapshot(msgspec.Struct, frozen=True):
    address: str
    last_partial: tuple[tuple[str, int], ...]  # by user


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


def exchange_snapshot(chain: Chain) -> ExchangeSnapshot:
    ex = chain.exchange
    books = tuple(
        BookSnapshot(
            asset,
            tuple(
                RestingSnapshot(
                    o.oid,
                    o.user,
                    o.asset,
                    o.is_buy,
                    big(o.px),
                    big(o.sz),
                    big(o.orig_sz),
                    o.timestamp,
                    o.tif,
                    o.reduce_only,
                    o.cloid,
                )
                for o in ex.books[asset].resting_in_priority()
            ),
        )
        for asset in sorted(ex.books)
    )
    triggers = tuple(
        TriggerSnapshot(
            t.oid,
            t.user,
            t.asset,
            t.is_buy,
            big(t.px),
            big(t.sz),
            t.timestamp,
            t.reduce_only,
            t.cloid,
            t.trigger.is_market,
            big(t.trigger.trigger_px),
            t.trigger.is_tp,
            t.group,
            t.parent,
            t.is_position_tpsl,
        )
        for t in (ex.triggers[oid] for oid in sorted(ex.triggers))
    )
    return ExchangeSnapshot(
        next_oid=ex.next_oid,
        next_tid=ex.next_tid,
        books=books,
        triggers=triggers,
        children=tuple((parent, tuple(ex.children[parent])) for parent in sorted(ex.children)),
        user_orders=tuple(
            UserOrders(user, tuple(sorted(ex.user_orders[user].items())))
            for user in sorted(ex.user_orders)
        ),
        cloids=tuple((user, cloid, oid) for (user, cloid), oid in sorted(ex.cloids.items())),
        scheduled_cancels=tuple(
            (user, big(ex.scheduled_cancels[user])) for user in sorted(ex.scheduled_cancels)
        ),
        scheduled_cancel_days=tuple(
            ScheduledCancelDay(user, big(day), count)
            for user, (day, count) in sorted(ex.scheduled_cancel_days.items())
        ),
    )


def chain_snapshot(chain: Chain) -> ChainSnapshot:
    """Everything the chain's future depends on, in canonical order (see the module doc)."""
    liquidator = chain.liquidator
    return ChainSnapshot(
        prices_driven=chain.prices_driven,
        mark_time=chain.mark_time,
        clearinghouse=clearinghouse_snapshot(chain),
        exchange=exchange_snapshot(chain),
        liquidator=LiquidatorSnapshot(
            liquidator.address, tuple(sorted(liquidator.last_partial.items()))
        ),
        oracle=chain.oracle.snapshot(),
        marks=tuple((asset, chain.marks[asset].snapshot()) for asset in sorted(chain.marks)),
        funding=chain.funding.snapshot(),
        lending=chain.lending.snapshot(),
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


def state_digest(chain: Chain, previous: bytes) -> StateDigest:
    """The chained state hash of `chain` (what `state_hash` returns) and its part digests."""
    whole = hashlib.sha256(previous)
    parts: list[bytes] = []
    _feed(chain_snapshot(chain), _LAYOUT, whole, parts)
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


def state_diff(a: ChainSnapshot, b: ChainSnapshot) -> list[str]:
    """The parts where `a` and `b` differ, in field order: top-level fields by name, the
    clearinghouse's and the exchange's fields as `clearinghouse.marks`, and accounts one by
    one as `clearinghouse.accounts[address]`. Empty when they are equal."""
    diffs: list[str] = []
    for field in msgspec.structs.fields(ChainSnapshot):
        name = field.name
        left, right = getattr(a, name), getattr(b, name)
        if left == right:
            continue
        if name not in _NESTED:
            diffs.append(name)
            continue
        for sub in msgspec.structs.fields(type(left)):
            sub_left, sub_right = getattr(left, sub.name), getattr(right, sub.name)
            if sub_left == sub_right:
                continue
            if sub.name == "accounts":
                diffs.extend(
                    f"clearinghouse.accounts[{address}]"
                    for address in _differing_accounts(sub_left, sub_right)
                )
            else:
                diffs.append(f"{name}.{sub.name}")
    return diffs


def _differing_accounts(
    a: tuple[AccountSnapshot, ...], b: tuple[AccountSnapshot, ...]
) -> list[str]:
    left = {account.address: account for account in a}
    right = {account.address: account for account in b}
    return [
        address
        for address in sorted(left.keys() | right.keys())
        if left.get(address) != right.get(address)
    ]
