"""The chain on disk: every block logged with its state hash and part digests before replies,
snapshots, resume from a snapshot or the genesis, replay and its mismatch reports."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
import structlog
import trio
import trio.testing

from node.blocklog import BlockLog, read_records, snapshot_path, snapshots, write_snapshot
from node.blocks import BlockProducer
from node.chainstore import (
    CODE_FINGERPRINT,
    ReplayMismatchError,
    SavedChain,
    open_store,
    replay_records,
)
from node.cli import main
from node.config import load_config
from node.devaccounts import derive_accounts
from protocol.actions import (
    CreateSubAccountAction,
    UpdateLeverageAction,
    UsdSendAction,
)
from protocol.chain import Action, Chain
from protocol.records import (
    BlockRecord,
    GenesisRecord,
    ProposedAction,
    decode_record,
    encode_record,
)
from protocol.state_hash import PART_DIGEST_SIZE, PARTS, chain_snapshot, state_digest
from tests.protocol.conftest import limit_action

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "devnet.toml"
GENESIS_MS = 1_700_000_000_000
ALICE = "0x" + "a1" * 20


async def run_blocks(data_dir: Path, blocks: int) -> BlockProducer:
    """A producer on the default config writing to `data_dir`, with a few actions."""
    config = load_config(CONFIG)
    store, loaded = open_store(data_dir, config, config.text, GENESIS_MS)
    producer = BlockProducer(
        loaded.chain,
        last_time=loaded.time,
        block_time_ms=config.block_time_ms,
        store=store,
        height=loaded.height,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run, blocks)
        actions: list[Action] = [
            CreateSubAccountAction(f"sub{loaded.height}"),
            UpdateLeverageAction(0, False, 5),
            limit_action(0, True, "100000", "0.01"),
        ]
        for action in actions[:blocks]:  # each waits for its block
            await producer.submit(ALICE, action)
    store.log.close()
    return producer


async def test_blocks_are_logged_and_replay_to_the_same_hashes(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The log holds the genesis and every block; replaying it gives the recorded hashes."""
    producer = await run_blocks(tmp_path, 4)
    assert producer.height == 4
    payloads = read_records(tmp_path)
    records = [decode_record(p) for p in payloads]
    assert isinstance(records[0], GenesisRecord) and records[0].time == GENESIS_MS
    blocks = [r for r in records[1:] if isinstance(r, BlockRecord)]
    assert [b.height for b in blocks] == [1, 2, 3, 4]
    assert sum(len(b.actions) for b in blocks) == 3
    loaded = replay_records(payloads, "test")
    assert (loaded.height, loaded.last_hash) == (4, blocks[-1].state_hash)
    assert replay_records(payloads, "test", to_height=2).last_hash == blocks[1].state_hash


async def test_restart_resumes_from_the_log(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A second run on the same data directory continues at the next height, and the whole
    log still replays."""
    await run_blocks(tmp_path, 3)
    producer = await run_blocks(tmp_path, 2)
    assert producer.height == 5
    payloads = read_records(tmp_path)
    assert replay_records(payloads, "test").height == 5
    assert producer.chain.clearinghouse.sub_accounts_of(ALICE)[1].name == "sub3"


async def test_a_changed_record_is_a_mismatch(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Replay names the first height whose state hash differs from the log's; when only the
    recorded hash was changed, every part digest still matches and no part is named."""
    await run_blocks(tmp_path, 3)
    payloads = read_records(tmp_path)
    second = decode_record(payloads[2])
    assert isinstance(second, BlockRecord)
    payloads[2] = encode_record(msgspec.structs.replace(second, state_hash=bytes(32)))
    with pytest.raises(ReplayMismatchError, match="height 2") as exc:
        replay_records(payloads, "test")
    assert exc.value.height == 2
    assert exc.value.parts == []
    assert str(exc.value).endswith(
        "every part digest matches: the recorded hash is not this state's"
    )


# Logs written block by block through a ChainStore, with two funded dev accounts.

CONFIG_TEXT = CONFIG.read_text()
DEV_A, DEV_B = (
    account.address for account in derive_accounts(load_config(CONFIG).dev_accounts.mnemonic, 2)
)


def blocks() -> list[list[tuple[str, Action]]]:
    """Five blocks: a resting BTC bid, a USDC send, a leverage change, two empty blocks."""
    return [
        [(DEV_A, limit_action(0, True, "99000", "0.01"))],
        [(DEV_B, UsdSendAction(DEV_A, "100"))],
        [(DEV_A, UpdateLeverageAction(1, True, 7))],
        [],
        [],
    ]


def write_log(data_dir: Path, proposed: list[list[tuple[str, Action]]], every: int = 1000) -> Chain:
    """The blocks committed one by one to a new data directory; returns the chain at the end."""
    config = load_config(CONFIG)
    store, loaded = open_store(data_dir, config, CONFIG_TEXT, GENESIS_MS, snapshot_every=every)
    for height, block in enumerate(proposed, start=1):
        time = GENESIS_MS + height * 1000
        loaded.chain.apply_block(height, time, block)
        store.commit(loaded.chain, height, time, block)
    store.log.close()
    return loaded.chain


def block(payloads: list[bytes], height: int) -> BlockRecord:
    record = decode_record(payloads[height])
    assert isinstance(record, BlockRecord)
    return record


def test_records_hold_the_part_digests(tmp_path: Path) -> None:
    """Each block record holds one digest per part of the state, the ones a replay computes;
    a part's digest changes with that part only."""
    chain = write_log(tmp_path, blocks())
    payloads = read_records(tmp_path)
    last = block(payloads, 5)
    assert [name for name, _ in last.parts] == list(PARTS)
    assert last.digests == state_digest(chain, block(payloads, 4).state_hash).parts
    assert len(last.digests) == len(PARTS) * PART_DIGEST_SIZE

    def changed(height: int) -> list[str]:
        before, after = dict(block(payloads, height - 1).parts), dict(block(payloads, height).parts)
        return [name for name in PARTS if before[name] != after[name]]

    # Every block moves the funding clock (its last block time) and the reserves' accrual time.
    assert changed(5) == ["funding", "lending"]
    # The send moves two balances.
    assert changed(2) == ["clearinghouse.accounts", "funding", "lending"]
    # At 3 s the oracle publishes and the marks follow; the leverage change is A's.
    assert changed(3) == [
        "mark_time",
        "clearinghouse.accounts",
        "clearinghouse.marks",
        "oracle",
        "marks",
        "funding",
        "lending",
    ]


@pytest.mark.parametrize(
    ("height", "forged", "parts"),
    [
        # A bid twice as big: A's resting notional and the book.
        (
            1,
            (DEV_A, limit_action(0, True, "99000", "0.02")),
            ["clearinghouse.accounts", "exchange.books"],
        ),
        # Another amount sent: the two balances only.
        (2, (DEV_B, UsdSendAction(DEV_A, "101")), ["clearinghouse.accounts"]),
    ],
)
def test_a_changed_action_names_the_differing_parts(
    tmp_path: Path, height: int, forged: tuple[str, Action], parts: list[str]
) -> None:
    """A forged action changes the state its block ends with: replay names that height and
    exactly the parts the action touches."""
    write_log(tmp_path, blocks())
    payloads = read_records(tmp_path)
    record = block(payloads, height)
    forged_action = ProposedAction(*forged)
    payloads[height] = encode_record(msgspec.structs.replace(record, actions=(forged_action,)))
    with pytest.raises(ReplayMismatchError) as exc:
        replay_records(payloads, "test")
    assert (exc.value.height, exc.value.parts) == (height, parts)
    assert f"mismatch at height {height}" in str(exc.value)
    assert str(exc.value).endswith("differing parts: " + ", ".join(parts))
    assert replay_records(payloads, "test", verify=False).height == 5


def test_a_changed_part_digest_is_a_mismatch(tmp_path: Path) -> None:
    """A record whose state hash is right but one part digest is not is refused too, naming
    that part."""
    write_log(tmp_path, blocks())
    payloads = read_records(tmp_path)
    record = block(payloads, 3)
    digests = b"".join(bytes(8) if n == "funding" else d for n, d in record.parts)
    payloads[3] = encode_record(msgspec.structs.replace(record, digests=digests))
    with pytest.raises(ReplayMismatchError, match="height 3") as exc:
        replay_records(payloads, "test")
    assert exc.value.parts == ["funding"]


class OldBlockRecord(msgspec.Struct, frozen=True, tag="block"):
    """A block record as logs were written before the part digests."""

    height: int
    time: int
    actions: tuple[ProposedAction, ...]
    state_hash: bytes


def test_old_records_without_parts_decode_and_replay(tmp_path: Path) -> None:
    """A log written before the part digests existed decodes (no parts) and replays by its
    state hashes; a mismatch in it is reported without parts."""
    write_log(tmp_path, blocks())
    payloads = read_records(tmp_path)
    old_encoder = msgspec.msgpack.Encoder(order="deterministic")
    for height in range(1, 6):
        record = block(payloads, height)
        old = OldBlockRecord(record.height, record.time, record.actions, record.state_hash)
        payloads[height] = old_encoder.encode(old)
        decoded = block(payloads, height)
        assert decoded.parts == ()
        assert decoded.state_hash == record.state_hash
    assert replay_records(payloads, "test").last_hash == block(payloads, 5).state_hash
    record = block(payloads, 2)
    forged = OldBlockRecord(
        2, record.time, (ProposedAction(DEV_B, UsdSendAction(DEV_A, "7")),), record.state_hash
    )
    payloads[2] = old_encoder.encode(forged)
    with pytest.raises(ReplayMismatchError, match="height 2") as exc:
        replay_records(payloads, "test")
    assert exc.value.parts == []
    assert str(exc.value).endswith("the log records no part digests to name the differing parts")


class NamedPartsBlockRecord(msgspec.Struct, frozen=True, tag="block"):
    """A block record as logs were written when each part digest was stored with its name."""

    height: int
    time: int
    actions: tuple[ProposedAction, ...]
    state_hash: bytes
    parts: tuple[tuple[str, bytes], ...] = ()


def test_records_with_named_parts_decode_without_them(tmp_path: Path) -> None:
    """A record of the earlier layout, every digest stored with its part name, decodes with
    no digests (they were of other parts) and replays by its state hash. Storing the digests
    alone saves the names in every record: more than 300 bytes of each."""
    write_log(tmp_path, blocks())
    payloads = read_records(tmp_path)
    old_encoder = msgspec.msgpack.Encoder(order="deterministic")
    for height in range(1, 6):
        record = block(payloads, height)
        named = NamedPartsBlockRecord(
            record.height, record.time, record.actions, record.state_hash, record.parts
        )
        payloads[height] = old_encoder.encode(named)
        assert len(payloads[height]) - len(encode_record(record)) > 300
        decoded = block(payloads, height)
        assert (decoded.digests, decoded.parts) == (b"", ())
    assert replay_records(payloads, "test").last_hash == block(payloads, 5).state_hash


def test_digests_of_another_layout_name_no_parts(tmp_path: Path) -> None:
    """Digests that do not fit this code's part layout (a record from other code) are not
    paired with names: a mismatch is reported without parts."""
    write_log(tmp_path, blocks())
    payloads = read_records(tmp_path)
    record = block(payloads, 2)
    forged = msgspec.structs.replace(record, digests=record.digests[:-1], state_hash=bytes(32))
    payloads[2] = encode_record(forged)
    assert block(payloads, 2).parts == ()
    with pytest.raises(ReplayMismatchError, match="height 2") as exc:
        replay_records(payloads, "test")
    assert exc.value.parts == []


# Snapshots.


def test_snapshots_hold_the_chain_and_its_hashes(tmp_path: Path) -> None:
    """Every `snapshot_every` blocks the whole chain is saved with its height, time, previous
    and own state hashes; only the two newest are kept."""
    write_log(tmp_path, blocks(), every=2)
    payloads = read_records(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("snapshot-*")) == [
        "snapshot-2.bin",
        "snapshot-4.bin",
    ]
    assert next(snapshots(tmp_path))[0] == 4
    payload = next(snapshots(tmp_path))[1]
    saved = pickle.loads(payload)
    assert isinstance(saved, SavedChain)
    assert (saved.code, saved.height, saved.time) == (CODE_FINGERPRINT, 4, GENESIS_MS + 4000)
    assert saved.previous_hash == block(payloads, 3).state_hash
    assert saved.state_hash == block(payloads, 4).state_hash
    at_4 = replay_records(payloads, "test", to_height=4).chain
    assert chain_snapshot(saved.chain) == chain_snapshot(at_4)


def test_resume_starts_from_the_newest_snapshot(tmp_path: Path) -> None:
    """Opening the store again resumes from the snapshot at 4 and replays block 5 only, to the
    state of the full replay; the next block chains on and is logged as usual."""
    chain = write_log(tmp_path, blocks(), every=2)
    config = load_config(CONFIG)
    with structlog.testing.capture_logs() as logs:
        store, loaded = open_store(tmp_path, config, CONFIG_TEXT, GENESIS_MS, snapshot_every=2)
    assert [(e["event"], e["from_snapshot"], e["height"]) for e in logs] == [("resumed", 4, 5)]
    assert (loaded.start_height, loaded.height) == (4, 5)
    assert chain_snapshot(loaded.chain) == chain_snapshot(chain)
    assert loaded.last_hash == block(read_records(tmp_path), 5).state_hash
    time = GENESIS_MS + 6000
    loaded.chain.apply_block(6, time, [])
    digest = store.commit(loaded.chain, 6, time, [])
    store.log.close()
    assert replay_records(read_records(tmp_path), "test").last_hash == digest
    assert sorted(p.name for p in tmp_path.glob("snapshot-*")) == [
        "snapshot-4.bin",
        "snapshot-6.bin",
    ]


def damage_crc(data_dir: Path) -> str:
    path = snapshot_path(data_dir, 4)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    return "crc mismatch"


def not_a_pickle(data_dir: Path) -> str:
    write_snapshot(data_dir, 4, b"not a pickle")
    return "does not unpickle"


def resave(data_dir: Path, **changes: object) -> None:
    saved = pickle.loads(next(snapshots(data_dir))[1])
    write_snapshot(data_dir, 4, pickle.dumps(msgspec.structs.replace(saved, **changes)))


def other_code(data_dir: Path) -> str:
    resave(data_dir, code=bytes(32))
    return "written by other protocol code"


def wrong_chain(data_dir: Path) -> str:
    """The chain of height 2 passed off as height 4, with height 4's hashes."""
    older = pickle.loads(dict(snapshots(data_dir))[2])
    resave(data_dir, chain=older.chain)
    return "its chain does not hash to the log's state hash"


def wrong_time(data_dir: Path) -> str:
    resave(data_dir, time=GENESIS_MS)
    return "its block time or state hash is not the log's"


@pytest.mark.parametrize("damage", [damage_crc, not_a_pickle, other_code, wrong_chain, wrong_time])
def test_an_unusable_snapshot_is_skipped(tmp_path: Path, damage: Callable[[Path], str]) -> None:
    """A snapshot that is damaged, is not a saved chain of this code, or does not hash to the
    log's state is skipped with a warning saying why; the next older one is used."""
    chain = write_log(tmp_path, blocks(), every=2)
    reason = damage(tmp_path)
    with structlog.testing.capture_logs() as logs:
        loaded = replay_records(read_records(tmp_path), "test", snapshot_dir=tmp_path)
    assert loaded.start_height == 2
    assert chain_snapshot(loaded.chain) == chain_snapshot(chain)
    [warning] = logs
    assert (warning["log_level"], warning["height"]) == ("warning", 4)
    assert warning["reason"].startswith(reason)


def test_no_usable_snapshot_replays_from_the_genesis(tmp_path: Path) -> None:
    """With every snapshot unusable, or none at most the requested height, the replay starts
    at the genesis."""
    write_log(tmp_path, blocks(), every=2)
    payloads = read_records(tmp_path)
    assert replay_records(payloads, "test", to_height=1, snapshot_dir=tmp_path).start_height == 0
    for height in (2, 4):
        write_snapshot(tmp_path, height, b"junk")
    with structlog.testing.capture_logs() as logs:
        loaded = replay_records(payloads, "test", snapshot_dir=tmp_path)
    assert (loaded.start_height, loaded.height) == (0, 5)
    assert [e["height"] for e in logs] == [4, 2]


def test_a_snapshot_that_cannot_be_written_is_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block is already durable: a failed snapshot write is a warning, and commit returns
    the block's hash as usual."""

    def full_disk(self: BlockLog, height: int, payload: bytes) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(BlockLog, "write_snapshot", full_disk)
    with structlog.testing.capture_logs() as logs:
        chain = write_log(tmp_path, blocks()[:2], every=2)
    assert [(e["event"], e["height"]) for e in logs] == [("snapshot not written", 2)]
    assert not list(tmp_path.glob("snapshot-*"))
    last = block(read_records(tmp_path), 2)
    assert last.state_hash == state_digest(chain, block(read_records(tmp_path), 1).state_hash).hash


def test_cli_start_then_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`devnet start` writes the data directory; `devnet replay` re-executes it."""
    data = str(tmp_path / "data")
    start = [
        "start",
        "--config",
        str(CONFIG),
        "--data-dir",
        data,
        "--block-time",
        "0.01",
        "--port",
        "0",
    ]
    assert main([*start, "--blocks", "2"]) == 0
    assert main([*start, "--blocks", "1"]) == 0
    capsys.readouterr()
    assert main(["replay", data]) == 0
    assert "replayed to height 3" in capsys.readouterr().out
    assert main(["replay", str(tmp_path / "empty")]) == 1
    assert "no genesis" in capsys.readouterr().err
