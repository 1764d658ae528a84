"""Golden replay vectors: every fixture in tests/vectors replays with the recorded state hash at
every block (regenerate with scripts/make_vector.py when a hash change is intended)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from node.chainstore import Fixture, replay_fixture
from node.cli import main
from protocol.records import BlockRecord

VECTORS = sorted((Path(__file__).resolve().parents[1] / "vectors").glob("*.json"))


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_vector_replays(path: Path) -> None:
    """Replaying the fixture reproduces every recorded state hash."""
    text = path.read_bytes()
    fixture = msgspec.json.decode(text, type=Fixture)
    last = fixture.records[-1]
    assert isinstance(last, BlockRecord)
    loaded = replay_fixture(text, str(path))
    assert (loaded.height, loaded.last_hash) == (last.height, last.state_hash)


def test_vectors_exist() -> None:
    """At least the basic vector is checked in."""
    assert [p.stem for p in VECTORS] == ["basic"]


def test_export_fixture_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A data directory exported by `devnet export-fixture` replays as a vector."""
    data = str(tmp_path / "data")
    config = str(Path(__file__).resolve().parents[2] / "configs" / "devnet.toml")
    argv = ["start", "--config", config, "--data-dir", data, "--block-time", "0.01"]
    assert main([*argv, "--blocks", "2"]) == 0
    out = tmp_path / "fixture.json"
    assert main(["export-fixture", data, str(out)]) == 0
    assert replay_fixture(out.read_bytes(), str(out)).height == 2
