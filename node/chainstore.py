"""The chain on disk: a data directory holding the block log (genesis first, then every block
with its state hash and part digests) and snapshots of the chain, from which a node resumes and
a replay re-executes.

Invariants:
- A block's record (with its state hash) is durable in the log before any of its results are
  reported: `ChainStore.commit` returns only after the log's fsync.
- Every `snapshot_every` blocks, after the block's record is durable, `ChainStore.commit` writes
  a snapshot of the whole chain (`SavedChain`: the `Chain` object, its height, block time, the
  previous block's hash and its own, and the node's `Index` after the same block), keeping the
  `KEEP_SNAPSHOTS` newest. A snapshot is a
  shortcut, never a source of truth: the log alone defines the chain.
- Resuming rebuilds the chain from the newest snapshot that checks out, else from the genesis
  record alone (the config text it started with and its time), then replays the block records
  after it, checking every block's state hash; the config file on disk is not read again. A
  snapshot checks out when it unpickles into a `SavedChain` written by this very protocol code
  (`CODE_FINGERPRINT`), its height is a block of the log, and re-hashing its chain on its
  previous hash gives the state hash the log recorded at that height; any other is skipped
  with a warning. The index resumes with the snapshot and is fed every block replayed after
  it; from the genesis, a new index is fed every block, so it never misses one.
- A replay that ends a block with another state than the log's raises `ReplayMismatchError`
  naming the height and the parts of the state that differ (from the record's part digests).

Snapshots are `pickle`s of the live `Chain`: pickle rebuilds the object graph exactly (shared
references, dict orders, the books' internals), which no hand-written format would without
mirroring every class. Unpickling runs whatever the bytes say, so it is only acceptable for
files the node wrote itself: the data directory is the node's own, as trusted as its code, and
a snapshot is still crc-checked and re-hashed against the log before use.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import msgspec
import structlog

import protocol
from node.blocklog import LOG_NAME, BlockLog, prune_snapshots, read_records, snapshots
from node.config import DEFAULT_SNAPSHOT_EVERY, NodeConfig, parse_config_text
from node.devaccounts import genesis_funding
from node.market_maker import maker_funding
from protocol.chain import Action, BlockOutput, Chain
from protocol.genesis import fund_genesis
from protocol.records import (
    BlockRecord,
    GenesisRecord,
    LogRecord,
    ProposedAction,
    decode_record,
    encode_record,
)
from protocol.state_hash import GENESIS_HASH, StateDigest, differing_parts, state_digest

KEEP_SNAPSHOTS = 2  # the newest, and one to fall back on if it is damaged

log = structlog.get_logger(__name__)


def _code_fingerprint() -> bytes:
    """sha256 of protocol/'s sources and of the index a snapshot carries (the API's history).
    A snapshot pickles their objects by their attributes: other code (a field added, a class
    renamed) could unpickle them into objects that hash like the log's and still lack what the
    new code needs."""
    digest = hashlib.sha256()
    sources = sorted(Path(protocol.__file__).parent.glob("*.py"))
    for path in [*sources, Path(__file__).parent / "api" / "history.py"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.digest()


class Index(Protocol):
    """What the node keeps beside the chain, derived from the blocks' outputs (the API's
    history): fed every block, saved with the chain's snapshots, so resuming from a snapshot
    restores it and feeds it the blocks replayed after."""

    def on_block(self, output: BlockOutput, chain: Chain) -> None: ...


CODE_FINGERPRINT = _code_fingerprint()


class ReplayMismatchError(Exception):
    """A replayed block ended with another state than the log recorded: `parts` names the parts
    whose digests differ (empty when the log records no part digests in this code's layout,
    or when they all match and only the recorded hash differs)."""

    def __init__(self, height: int, record: BlockRecord, replayed: StateDigest) -> None:
        self.height = height
        self.parts = differing_parts(record.digests, replayed.parts)
        if not record.parts:
            detail = "the log records no part digests to name the differing parts"
        elif self.parts:
            detail = "differing parts: " + ", ".join(self.parts)
        else:
            detail = "every part digest matches: the recorded hash is not this state's"
        super().__init__(
            f"state hash mismatch at height {height}: log {record.state_hash.hex()}, "
            f"replay {replayed.hash.hex()}; {detail}"
        )


class BadLogError(Exception):
    """The log's records are not a genesis followed by consecutive blocks."""


def new_chain(config: NodeConfig, genesis_time_ms: int) -> Chain:
    """The chain at height 0: markets, prices, reserves, and the genesis funding of the dev
    accounts and liquidators, all from the config."""
    chain = Chain(config.markets, config.oracle_sources, genesis_time_ms, lending=config.lending)
    maker = maker_funding(config.market_maker, config.markets)
    funding = genesis_funding(config.dev_accounts, config.markets, (maker,))
    fund_genesis(chain, funding, genesis_time_ms)
    return chain


class SavedChain(msgspec.Struct, frozen=True):
    """What a snapshot file holds, pickled: the chain after block `height`, with what resuming
    from it needs and what checks it against the log."""

    code: bytes  # CODE_FINGERPRINT of the code that wrote it
    height: int
    time: int  # the block's time
    previous_hash: bytes  # the state hash of block height - 1
    state_hash: bytes  # the state hash of block height, as the log records it
    chain: Chain
    index: Index | None = None  # the node's index after the same block, if it keeps one


class ChainStore:
    """Appends each block to the log, chaining its state hash to the previous one, and writes a
    snapshot of the chain every `snapshot_every` blocks."""

    def __init__(
        self,
        block_log: BlockLog,
        last_hash: bytes = GENESIS_HASH,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
    ) -> None:
        if snapshot_every < 1:
            raise ValueError(f"snapshot_every must be positive, got {snapshot_every}")
        self.log = block_log
        self.last_hash = last_hash
        self.snapshot_every = snapshot_every
        # The index saved with each snapshot; it must already hold the block being committed.
        self.index: Index | None = None

    def commit(
        self, chain: Chain, height: int, time: int, proposed: Sequence[tuple[str, Action]]
    ) -> bytes:
        """Hash the state the block left, and make the block durable; returns the hash. On a
        snapshot height, then write the snapshot."""
        digest = state_digest(chain, self.last_hash)
        actions = tuple(ProposedAction(user, action) for user, action in proposed)
        record = BlockRecord(height, time, actions, digest.hash, digest.parts)
        self.log.append(encode_record(record))
        if height % self.snapshot_every == 0:
            saved = SavedChain(
                CODE_FINGERPRINT, height, time, self.last_hash, digest.hash, chain, self.index
            )
            self._write_snapshot(saved)
        self.last_hash = digest.hash
        return digest.hash

    def _write_snapshot(self, saved: SavedChain) -> None:
        """A snapshot that cannot be written costs only a longer replay on the next start: the
        block is already durable, so the node goes on, with a warning."""
        payload = pickle.dumps(saved, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.log.write_snapshot(saved.height, payload)
            prune_snapshots(self.log.data_dir, KEEP_SNAPSHOTS)
        except OSError as error:
            log.warning("snapshot not written", height=saved.height, reason=str(error))


class Fixture(msgspec.Struct, frozen=True):
    """A replay vector: the genesis and every block with its expected state hash, in JSON so a
    changed hash shows as a reviewed diff (like Ethereum's blockchain tests)."""

    records: tuple[LogRecord, ...]


def export_fixture(data_dir: Path) -> bytes:
    """The log of `data_dir` as a fixture (formatted JSON)."""
    payloads = read_records(data_dir)
    fixture = Fixture(tuple(decode_record(p) for p in payloads))
    return msgspec.json.format(msgspec.json.encode(fixture), indent=1)


def replay_fixture(text: bytes, source: str) -> Loaded:
    """Replay a fixture, checking every block's state hash."""
    fixture = msgspec.json.decode(text, type=Fixture)
    return replay_records([encode_record(r) for r in fixture.records], source)


class Loaded(msgspec.Struct):
    """A chain rebuilt from a data directory; `start_height` is where the replay of the log
    began (0: the genesis, else the height of the snapshot it resumed from)."""

    config: NodeConfig
    genesis_time_ms: int
    chain: Chain
    height: int
    time: int
    last_hash: bytes
    start_height: int = 0
    index: Index | None = None  # fed every replayed block, when asked for


class _UnusableSnapshotError(Exception):
    """Why a snapshot was not used."""


def _check_snapshot(height: int, payload: bytes, payloads: list[bytes]) -> SavedChain:
    """The snapshot of `height`, if it checks out against the log (see the module doc); else
    `_UnusableSnapshotError` says why."""
    try:
        saved = pickle.loads(payload)
    except Exception as error:  # unpickling can raise nearly any exception; none is fatal here
        raise _UnusableSnapshotError(f"does not unpickle: {error!r}") from None
    if not isinstance(saved, SavedChain):
        raise _UnusableSnapshotError(f"holds a {type(saved).__name__}, not a SavedChain")
    if saved.code != CODE_FINGERPRINT:
        raise _UnusableSnapshotError("written by other protocol code")
    if saved.height != height:
        raise _UnusableSnapshotError(f"holds height {saved.height}")
    record = decode_record(payloads[height])
    if not isinstance(record, BlockRecord) or record.height != height:
        raise _UnusableSnapshotError(f"log record {height} is not block {height}")
    if saved.time != record.time or saved.state_hash != record.state_hash:
        raise _UnusableSnapshotError("its block time or state hash is not the log's")
    if state_digest(saved.chain, saved.previous_hash).hash != record.state_hash:
        raise _UnusableSnapshotError("its chain does not hash to the log's state hash")
    return saved


def _latest_saved_chain(data_dir: Path, payloads: list[bytes], at_most: int) -> SavedChain | None:
    """The newest snapshot of `data_dir` at most `at_most` that checks out, if any."""
    for height, payload in snapshots(data_dir, at_most):
        try:
            return _check_snapshot(height, payload, payloads)
        except _UnusableSnapshotError as error:
            log.warning("snapshot skipped", height=height, reason=str(error))
    return None


def replay_records(
    payloads: list[bytes],
    source: str,
    to_height: int | None = None,
    verify: bool = True,
    *,
    snapshot_dir: Path | None = None,
    on_block: Callable[[int, bytes], None] | None = None,
    index: Callable[[Index | None], Index] | None = None,
) -> Loaded:
    """Rebuild the chain from log payloads, up to `to_height` (all by default), checking each
    block's state hash and part digests when `verify`. With `snapshot_dir`, start from its
    newest snapshot that checks out (at most `to_height`), else from the genesis. `on_block`
    gets each replayed block's height and state hash. `index` makes the node's index from the
    one saved with the snapshot started from (None: from the genesis, or a snapshot without
    one); it is fed every replayed block and returned in `Loaded.index`."""
    if not payloads:
        raise BadLogError("the log is empty: no genesis record")
    genesis = decode_record(payloads[0])
    if not isinstance(genesis, GenesisRecord):
        raise BadLogError("the first record is not the genesis")
    config = parse_config_text(genesis.config, source)
    last = len(payloads) - 1 if to_height is None else min(to_height, len(payloads) - 1)
    saved = None if snapshot_dir is None else _latest_saved_chain(snapshot_dir, payloads, last)
    if saved is None:
        chain = new_chain(config, genesis.time)
        height, time, last_hash = 0, genesis.time, GENESIS_HASH
    else:
        chain = saved.chain
        height, time, last_hash = saved.height, saved.time, saved.state_hash
    start_height = height
    kept = None if index is None else index(None if saved is None else saved.index)
    for position in range(height + 1, len(payloads)):
        record = decode_record(payloads[position])
        if not isinstance(record, BlockRecord) or record.height != height + 1:
            raise BadLogError(f"record {position} is not block {height + 1}")
        if to_height is not None and record.height > to_height:
            break
        proposed = [(p.user, p.action) for p in record.actions]
        output = chain.apply_block(record.height, record.time, proposed)
        if kept is not None:
            kept.on_block(output, chain)
        digest = state_digest(chain, last_hash)
        if verify and (
            digest.hash != record.state_hash or (record.digests and digest.parts != record.digests)
        ):
            raise ReplayMismatchError(record.height, record, digest)
        if on_block is not None:
            on_block(record.height, digest.hash)
        height, time, last_hash = record.height, record.time, record.state_hash
    return Loaded(config, genesis.time, chain, height, time, last_hash, start_height, kept)


def open_store(
    data_dir: Path,
    config: NodeConfig,
    config_text: str,
    genesis_time_ms: int,
    *,
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
    index: Callable[[Index | None], Index] | None = None,
) -> tuple[ChainStore, Loaded]:
    """Open the data directory: resume the chain it holds (from its newest good snapshot and
    the log after it), or start a new one from `config` (recording `config_text` and
    `genesis_time_ms` as its genesis). The store snapshots every `snapshot_every` blocks.
    `index`, as for `replay_records`, also makes the index of a new chain (from None); the
    store then saves it with every snapshot."""
    block_log, payloads = BlockLog.open(data_dir)
    if payloads:
        loaded = replay_records(
            payloads, str(data_dir / LOG_NAME), snapshot_dir=data_dir, index=index
        )
        log.info(
            "resumed",
            height=loaded.height,
            from_snapshot=loaded.start_height,
            data_dir=str(data_dir),
        )
    else:
        block_log.append(encode_record(GenesisRecord(config_text, genesis_time_ms)))
        chain = new_chain(config, genesis_time_ms)
        kept = None if index is None else index(None)
        loaded = Loaded(config, genesis_time_ms, chain, 0, genesis_time_ms, GENESIS_HASH, 0, kept)
    store = ChainStore(block_log, loaded.last_hash, snapshot_every)
    store.index = loaded.index
    return store, loaded
