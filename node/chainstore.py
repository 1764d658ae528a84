"""The chain on disk: a data directory holding the block log (genesis first, then every block
with its state hash and part digests), from which a node resumes and a replay re-executes.

Invariants:
- A block's record (with its state hash) is durable in the log before any of its results are
  reported: `ChainStore.commit` returns only after the log's fsync.
- Resuming and replaying rebuild the chain from the genesis record alone (the config text it
  started with and its time) and the block records, and check every block's state hash; the
  config file on disk is not read again.
- A replay that ends a block with another state than the log's raises `ReplayMismatchError`
  naming the height and the parts of the state that differ (from the record's part digests).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec
import structlog

from node.blocklog import BlockLog
from node.config import NodeConfig, parse_config
from node.devaccounts import genesis_funding
from protocol.chain import Action, Chain
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

log = structlog.get_logger(__name__)


class ReplayMismatchError(Exception):
    """A replayed block ended with another state than the log recorded: `parts` names the parts
    whose digests differ (empty when the log records no part digests, or when they all match
    and only the recorded hash differs)."""

    def __init__(self, height: int, record: BlockRecord, replayed: StateDigest) -> None:
        self.height = height
        self.parts = differing_parts(record.parts, replayed.parts) if record.parts else []
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
    fund_genesis(chain, genesis_funding(config.dev_accounts, config.markets), genesis_time_ms)
    return chain


class ChainStore:
    """Appends each block to the log, chaining its state hash to the previous one."""

    def __init__(self, block_log: BlockLog, last_hash: bytes = GENESIS_HASH) -> None:
        self.log = block_log
        self.last_hash = last_hash

    def commit(
        self, chain: Chain, height: int, time: int, proposed: list[tuple[str, Action]]
    ) -> bytes:
        """Hash the state the block left, and make the block durable; returns the hash."""
        digest = state_digest(chain, self.last_hash)
        actions = tuple(ProposedAction(user, action) for user, action in proposed)
        record = BlockRecord(height, time, actions, digest.hash, digest.parts)
        self.log.append(encode_record(record))
        self.last_hash = digest.hash
        return digest.hash


class Fixture(msgspec.Struct, frozen=True):
    """A replay vector: the genesis and every block with its expected state hash, in JSON so a
    changed hash shows as a reviewed diff (like Ethereum's blockchain tests)."""

    records: tuple[LogRecord, ...]


def export_fixture(data_dir: Path) -> bytes:
    """The log of `data_dir` as a fixture (formatted JSON)."""
    block_log, payloads = BlockLog.open(data_dir)
    block_log.close()
    fixture = Fixture(tuple(decode_record(p) for p in payloads))
    return msgspec.json.format(msgspec.json.encode(fixture), indent=1)


def replay_fixture(text: bytes, source: str) -> Loaded:
    """Replay a fixture, checking every block's state hash."""
    fixture = msgspec.json.decode(text, type=Fixture)
    return replay_records([encode_record(r) for r in fixture.records], source)


class Loaded(msgspec.Struct):
    """A chain rebuilt from a data directory."""

    config: NodeConfig
    genesis_time_ms: int
    chain: Chain
    height: int
    time: int
    last_hash: bytes


def _genesis_config(record: GenesisRecord, source: str) -> NodeConfig:
    config = parse_config(tomllib.loads(record.config), source)
    return msgspec.structs.replace(config, text=record.config)


def replay_records(
    payloads: list[bytes], source: str, to_height: int | None = None, verify: bool = True
) -> Loaded:
    """Rebuild the chain from log payloads, up to `to_height` (all by default), checking each
    block's state hash and part digests when `verify`."""
    if not payloads:
        raise BadLogError("the log is empty: no genesis record")
    genesis = decode_record(payloads[0])
    if not isinstance(genesis, GenesisRecord):
        raise BadLogError("the first record is not the genesis")
    config = _genesis_config(genesis, source)
    chain = new_chain(config, genesis.time)
    height, time, last_hash = 0, genesis.time, GENESIS_HASH
    for index, payload in enumerate(payloads[1:], start=1):
        record = decode_record(payload)
        if not isinstance(record, BlockRecord) or record.height != height + 1:
            raise BadLogError(f"record {index} is not block {height + 1}")
        if to_height is not None and record.height > to_height:
            break
        chain.apply_block(record.height, record.time, [(p.user, p.action) for p in record.actions])
        digest = state_digest(chain, last_hash)
        if verify and (
            digest.hash != record.state_hash or (record.parts and digest.parts != record.parts)
        ):
            raise ReplayMismatchError(record.height, record, digest)
        height, time, last_hash = record.height, record.time, record.state_hash
    return Loaded(config, genesis.time, chain, height, time, last_hash)


def open_store(
    data_dir: Path, config: NodeConfig, config_text: str, genesis_time_ms: int
) -> tuple[ChainStore, Loaded]:
    """Open the data directory: resume the chain it holds, or start a new one from `config`
    (recording `config_text` and `genesis_time_ms` as its genesis)."""
    block_log, payloads = BlockLog.open(data_dir)
    if payloads:
        loaded = replay_records(payloads, str(data_dir / "blocks.log"))
        log.info("resumed", height=loaded.height, data_dir=str(data_dir))
    else:
        block_log.append(encode_record(GenesisRecord(config_text, genesis_time_ms)))
        chain = new_chain(config, genesis_time_ms)
        loaded = Loaded(config, genesis_time_ms, chain, 0, genesis_time_ms, GENESIS_HASH)
    return ChainStore(block_log, loaded.last_hash), loaded
