"""`devnet replay` on a data directory with varied activity: the same hashes in every process,
snapshots used on resume and by `--from-snapshot`, and a mismatch reported with its parts."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from node.blocklog import LOG_NAME, BlockLog, read_records
from node.chainstore import open_store, replay_records
from node.cli import main
from node.config import load_config
from node.devaccounts import derive_accounts
from protocol.actions import (
    CancelByCloidAction,
    CancelByCloidWire,
    SpotSendAction,
    UpdateLeverageAction,
    UsdSendAction,
)
from protocol.chain import Action
from protocol.records import BlockRecord, decode_record, encode_record
from tests.protocol.conftest import limit_action

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "devnet.toml"
GENESIS_MS = 1_767_225_600_000
BLOCK_MS = 1_000
BLOCKS = 300
SNAPSHOT_EVERY = 100
PURR = "PURR:0xc4bf3f870c0e9465323c0b6ed28096c2"
# asset -> (reference price and price step in units of 10**-decimals, decimals, size): BTC and
# ETH perps, PURR/USDC spot, at their default config prices.
MARKETS = {0: (100_000, 5, 0, "0.002"), 1: (3_000, 1, 0, "0.05"), 10000: (2_000, 10, 4, "500")}
Block = list[tuple[str, Action]]


def _price(units: int, decimals: int) -> str:
    if decimals == 0:
        return str(units)
    return f"{units // 10**decimals}.{units % 10**decimals:0{decimals}d}"


def activity(rng: random.Random, users: list[str], cloids: list[tuple[str, int, str]]) -> Block:
    """One block of random actions: orders around the reference price (half of them cross the
    spread and fill), cancels of earlier orders by cloid, USDC and PURR sends, leverage."""
    proposed: Block = []
    for _ in range(rng.randrange(5)):
        user = rng.choice(users)
        kind = rng.random()
        if kind < 0.6:
            asset = rng.choice(list(MARKETS))
            ref, step, decimals, sz = MARKETS[asset]
            is_buy = rng.random() < 0.5
            # Passive orders sit 1-10 steps behind the reference, crossing ones 1-3 past it.
            offset = rng.randint(1, 10) if rng.random() < 0.5 else -rng.randint(1, 3)
            px = _price(ref - offset * step if is_buy else ref + offset * step, decimals)
            cloid = f"0x{len(cloids):032x}"
            cloids.append((user, asset, cloid))
            tif = rng.choice(("Gtc", "Gtc", "Ioc"))
            proposed.append((user, limit_action(asset, is_buy, px, sz, tif, cloid=cloid)))
        elif kind < 0.75 and cloids:
            owner, asset, cloid = rng.choice(cloids)
            proposed.append((owner, CancelByCloidAction((CancelByCloidWire(asset, cloid),))))
        elif kind < 0.85:
            proposed.append((user, UsdSendAction(rng.choice(users), str(rng.randint(1, 500)))))
        elif kind < 0.95:
            proposed.append((user, SpotSendAction(rng.choice(users), PURR, "10")))
        else:
            leverage = UpdateLeverageAction(rng.choice((0, 1)), True, rng.randint(1, 20))
            proposed.append((user, leverage))
    return proposed


def build_data_dir(data_dir: Path, blocks: int = BLOCKS, seed: int = 1) -> Counter[str]:
    """A data directory of `blocks` blocks of `activity`, snapshotted every SNAPSHOT_EVERY;
    returns what happened (fills, cancels, resting orders, ledger updates) to show it is
    varied."""
    config = load_config(CONFIG)
    users = [account.address for account in derive_accounts(config.dev_accounts.mnemonic, 10)]
    rng = random.Random(seed)
    cloids: list[tuple[str, int, str]] = []
    store, loaded = open_store(
        data_dir, config, config.text, GENESIS_MS, snapshot_every=SNAPSHOT_EVERY
    )
    chain = loaded.chain
    seen: Counter[str] = Counter()
    for height in range(1, blocks + 1):
        proposed = activity(rng, users, cloids)
        time = GENESIS_MS + height * BLOCK_MS
        output = chain.apply_block(height, time, proposed)
        store.commit(chain, height, time, proposed)
        seen["fills"] += len(output.fills)
        seen["ledger"] += len(output.ledger)
        seen.update(update.status for update in output.order_updates)
    store.log.close()
    seen["resting"] = sum(len(book.resting_in_priority()) for book in chain.exchange.books.values())
    return seen


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replay") / "data"
    seen = build_data_dir(path)
    # Varied: trades, orders resting at the end, cancels by the users, sends.
    assert seen["fills"] > 50
    assert seen["resting"] > 20
    assert seen["canceled"] > 10
    assert seen["ledger"] > 20
    return path


def recorded(data_dir: Path) -> list[BlockRecord]:
    records = [decode_record(p) for p in read_records(data_dir)[1:]]
    assert all(isinstance(r, BlockRecord) for r in records)
    return [r for r in records if isinstance(r, BlockRecord)]


def test_replay_hashes_are_the_same_whatever_the_hash_seed(data_dir: Path) -> None:
    """`devnet replay --print-hashes` in two processes with different PYTHONHASHSEED prints
    the same height and hash for every block, and they are the hashes the log recorded."""
    expected = [f"{r.height} {r.state_hash.hex()}" for r in recorded(data_dir)]
    assert len(expected) == BLOCKS
    printed = []
    for seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-m", "node.cli", "replay", str(data_dir), "--print-hashes"],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        lines = result.stdout.splitlines()
        assert lines[-1] == f"replayed to height {BLOCKS}, state hash {expected[-1][4:]}"
        printed.append(lines[:-1])
    assert printed[0] == printed[1] == expected


def test_snapshots_are_written_and_pruned(data_dir: Path) -> None:
    """Every SNAPSHOT_EVERY blocks a snapshot is written; the two newest are kept."""
    names = sorted(p.name for p in data_dir.iterdir() if p.name.startswith("snapshot-"))
    assert names == ["snapshot-200.bin", "snapshot-300.bin"]


def test_resume_from_a_snapshot_is_the_full_replay(data_dir: Path) -> None:
    """Replays from the newest snapshot at most --to end where the replay from the genesis
    does, with the same state, and go on to the same hashes."""
    payloads = read_records(data_dir)
    records = recorded(data_dir)
    full = replay_records(payloads, "test", to_height=250)
    resumed = replay_records(payloads, "test", to_height=250, snapshot_dir=data_dir)
    assert (full.start_height, resumed.start_height) == (0, 200)
    assert full.last_hash == resumed.last_hash == records[249].state_hash
    hashes: list[list[tuple[int, bytes]]] = [[], []]
    replay_records(payloads, "test", on_block=lambda h, d: hashes[0].append((h, d)))
    latest = replay_records(
        payloads, "test", snapshot_dir=data_dir, on_block=lambda h, d: hashes[1].append((h, d))
    )
    assert latest.start_height == BLOCKS and hashes[1] == []
    assert hashes[0] == [(r.height, r.state_hash) for r in records]


def test_cli_replay_from_snapshot(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--from-snapshot` starts at the newest snapshot at most --to and prints only the blocks
    it replays."""
    records = recorded(data_dir)
    assert main(["replay", str(data_dir), "--from-snapshot", "--to", "203", "--print-hashes"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        *(f"{r.height} {r.state_hash.hex()}" for r in records[200:203]),
        f"replayed to height 203 from the snapshot at height 200, "
        f"state hash {records[202].state_hash.hex()}",
    ]


def test_cli_replay_names_the_mismatch(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log whose block 150 recorded another oracle digest (its state hash intact) replays to
    149, then exits 1 naming the height and the part."""
    copy = tmp_path / "data"
    copy.mkdir()
    payloads = read_records(data_dir)
    record = decode_record(payloads[150])
    assert isinstance(record, BlockRecord)
    digests = b"".join(bytes(8) if name == "oracle" else d for name, d in record.parts)
    payloads[150] = encode_record(msgspec.structs.replace(record, digests=digests))
    with BlockLog(copy / LOG_NAME) as forged:
        for payload in payloads:
            forged.append(payload)
    assert main(["replay", str(copy), "--print-hashes"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[-1].startswith("149 ")
    assert "state hash mismatch at height 150" in err
    assert err.strip().endswith("differing parts: oracle")
