"""The chain on disk: every block logged with its state hash before replies, resume, replay."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from node.blocklog import BlockLog
from node.blocks import BlockProducer
from node.chainstore import ReplayMismatchError, open_store, replay_records
from node.cli import main
from node.config import load_config
from protocol.actions import CreateSubAccountAction, OrderAction, UpdateLeverageAction
from protocol.chain import Action
from protocol.orders import LimitWire, OrderTypeWire, OrderWire
from protocol.records import BlockRecord, GenesisRecord, decode_record, encode_record

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "devnet.toml"
GENESIS_MS = 1_700_000_000_000
ALICE = "0x" + "a1" * 20


def order() -> OrderAction:
    kind = OrderTypeWire(limit=LimitWire("Gtc"))
    return OrderAction((OrderWire(0, True, "100000", "0.01", False, kind),))


async def run_blocks(data_dir: Path, blocks: int) -> BlockProducer:
    """A producer on the default config writing to `data_dir`, with a few actions."""
    config = load_config(CONFIG)
    store, loaded = open_store(data_dir, config, config.text, GENESIS_MS)
    producer = BlockProducer(
        loaded.chain,
        genesis_time_ms=loaded.time - loaded.height * config.block_time_ms,
        block_time_ms=config.block_time_ms,
        store=store,
        height=loaded.height,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run, blocks)
        actions: list[Action] = [
            CreateSubAccountAction(f"sub{loaded.height}"),
            UpdateLeverageAction(0, False, 5),
            order(),
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
    _, payloads = BlockLog.open(tmp_path)
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
    _, payloads = BlockLog.open(tmp_path)
    assert replay_records(payloads, "test").height == 5
    assert producer.chain.clearinghouse.sub_accounts_of(ALICE)[1].name == "sub3"


async def test_a_changed_record_is_a_mismatch(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Replay names the first height whose state hash differs from the log's."""
    await run_blocks(tmp_path, 3)
    _, payloads = BlockLog.open(tmp_path)
    second = decode_record(payloads[2])
    assert isinstance(second, BlockRecord)
    forged = BlockRecord(second.height, second.time, second.actions, bytes(32))
    payloads[2] = encode_record(forged)
    with pytest.raises(ReplayMismatchError, match="height 2") as exc:
        replay_records(payloads, "test")
    assert exc.value.height == 2


def test_cli_start_then_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`devnet start` writes the data directory; `devnet replay` re-executes it."""
    data = str(tmp_path / "data")
    start = ["start", "--config", str(CONFIG), "--data-dir", data, "--block-time", "0.01"]
    assert main([*start, "--blocks", "2"]) == 0
    assert main([*start, "--blocks", "1"]) == 0
    capsys.readouterr()
    assert main(["replay", data]) == 0
    assert "replayed to height 3" in capsys.readouterr().out
    assert main(["replay", str(tmp_path / "empty")]) == 1
    assert "no genesis" in capsys.readouterr().err
