"""Golden replay vectors: every fixture in tests/vectors replays with the recorded state hash at
every block (regenerate with scripts/make_vector.py when a hash change is intended)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from node.chainstore import Fixture, ReplayMismatchError, replay_fixture
from node.cli import main
from protocol.actions import OrderAction
from protocol.records import BlockRecord
from protocol.state_hash import PARTS

VECTORS = sorted((Path(__file__).resolve().parents[1] / "vectors").glob("*.json"))
BASIC = Path(__file__).resolve().parents[1] / "vectors" / "basic.json"


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_vector_replays(path: Path) -> None:
    """Replaying the fixture reproduces every recorded state hash and part digest."""
    text = path.read_bytes()
    fixture = msgspec.json.decode(text, type=Fixture)
    last = fixture.records[-1]
    assert isinstance(last, BlockRecord)
    assert all(
        [name for name, _ in r.parts] == list(PARTS)
        for r in fixture.records[1:]
        if isinstance(r, BlockRecord)
    )
    loaded = replay_fixture(text, str(path))
    assert (loaded.height, loaded.last_hash) == (last.height, last.state_hash)


def test_a_changed_action_in_the_vector_names_the_parts() -> None:
    """In block 3 of the basic vector, an IOC buy of 2 ETH takes a resting sell of 2 ETH. Made
    an IOC of 1, it leaves 1 ETH of the sell resting: the replay stops at height 3 naming the
    accounts (smaller positions), the perp fees and the book."""
    fixture = msgspec.json.decode(BASIC.read_bytes(), type=Fixture)
    block = fixture.records[3]
    assert isinstance(block, BlockRecord)
    sell, buy = block.actions
    assert isinstance(buy.action, OrderAction)
    [wire] = buy.action.orders
    assert (wire.b, wire.s, wire.t.limit and wire.t.limit.tif) == (True, "2", "Ioc")
    smaller = msgspec.structs.replace(buy.action, orders=(msgspec.structs.replace(wire, s="1"),))
    forged = msgspec.structs.replace(
        block, actions=(sell, msgspec.structs.replace(buy, action=smaller))
    )
    records = (*fixture.records[:3], forged, *fixture.records[4:])
    with pytest.raises(ReplayMismatchError) as exc:
        replay_fixture(msgspec.json.encode(Fixture(records)), "forged")
    assert exc.value.height == 3
    assert exc.value.parts == [
        "clearinghouse.accounts",
        "clearinghouse.perp_fees",
        "exchange.books",
    ]


def test_vectors_exist() -> None:
    """At least the basic vector is checked in."""
    assert [p.stem for p in VECTORS] == ["basic"]


def test_export_fixture_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A data directory exported by `devnet export-fixture` replays as a vector."""
    data = str(tmp_path / "data")
    config = str(Path(__file__).resolve().parents[2] / "configs" / "devnet.toml")
    argv = ["start", "--config", config, "--data-dir", data, "--block-time", "0.01", "--port", "0"]
    assert main([*argv, "--blocks", "2"]) == 0
    out = tmp_path / "fixture.json"
    assert main(["export-fixture", data, str(out)]) == 0
    assert replay_fixture(out.read_bytes(), str(out)).height == 2
