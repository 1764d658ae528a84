"""`devnet start`: runs blocks, stops cleanly, and refuses a bad config with exit status 2."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from node.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "devnet.toml")
GENESIS = """
[oracle.BTC]
source = "constant"
px = "100000"

[[genesis.perps]]
name = "BTC"
sz_decimals = 5
max_leverage = 40

[[genesis.spot_tokens]]
name = "USDC"
sz_decimals = 8
wei_decimals = 8
token_id = "0xeb62eee3685fc4c43992febcd9e75443"

[[genesis.spot_tokens]]
name = "PURR"
sz_decimals = 0
wei_decimals = 5
token_id = "0xc4bf3f870c0e9465323c0b6ed28096c2"

[[genesis.spot_pairs]]
base = "PURR"
quote = "USDC"
canonical = true
"""


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node writes its data directory (default `data`) under the working directory."""
    monkeypatch.chdir(tmp_path)


def json_events(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_start_runs_two_blocks(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["start", "--config", CONFIG, "--blocks", "2", "--block-time", "0.01", "--port", "0"]
    assert main([*argv, "--log-format", "json"]) == 0
    out, err = capsys.readouterr()
    blocks = [e for e in json_events(err) if e["event"] == "block"]
    # Block 1 holds the market maker's first quotes: its cancels (of nothing yet) and orders.
    assert [(b["height"], b["actions"], b["fills"]) for b in blocks] == [(1, 2, 0), (2, 0, 0)]
    first, second = (b["time"] for b in blocks)
    assert isinstance(first, int) and isinstance(second, int) and second > first
    assert json_events(err)[-1]["event"] == "devnet stopped"
    # The banner: every market with its asset id, the block time, the data dir, the API note.
    assert "mining      interval, block time 10 ms" in out
    assert "market maker 0xcccccccccccccccccccccccccccccccccccccccc quoting" in out
    assert "data dir    data" in out
    for asset, coin in [(0, "BTC"), (7, "AVAX"), (10000, "PURR/USDC"), (10002, "@2")]:
        assert f"{asset:>5}  {coin}" in out
    assert "HTTP API    http://127.0.0.1:" in out and "/ws" in out


def test_console_log_is_the_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(ROOT)  # the default --config is relative to the repository
    data = str(tmp_path / "data")
    argv = ["start", "--blocks", "2", "--block-time", "0.01", "--port", "0"]
    assert main([*argv, "--data-dir", data]) == 0
    out, err = capsys.readouterr()
    block_lines = [line for line in err.splitlines() if " block " in line]
    assert len(block_lines) == 2
    assert "height=1" in block_lines[0] and "height=2" in block_lines[1]
    assert "configs/devnet.toml" in out


def test_command_line_overrides_the_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "devnet.toml"
    config.write_text(GENESIS + "\n[node]\nblock_time_ms = 5000\nport = 4000\n")
    argv = ["start", "--config", str(config), "--blocks", "1", "--block-time", "0.002"]
    options = ["--mining", "mixed", "--no-market-maker"]
    assert main([*argv, *options, "--data-dir", "elsewhere", "--port", "4001"]) == 0
    out, _ = capsys.readouterr()
    assert "mining      mixed, block time 2 ms" in out
    assert "off (funded, not quoting)" in out
    assert "data dir    elsewhere" in out
    assert "http://127.0.0.1:4001" in out


def check_refused(capsys: pytest.CaptureFixture[str], argv: list[str], *expected: str) -> None:
    assert main(["start", *argv, "--blocks", "1"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("devnet: error: ")
    assert "Traceback" not in err
    for text in expected:
        assert text in err


def test_missing_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    check_refused(capsys, ["--config", str(path)], str(path), "not found")


def test_config_path_is_a_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    check_refused(capsys, ["--config", str(tmp_path)], str(tmp_path), "cannot read config file")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[genesis\nperps = []\n", "not valid TOML"),
        ("[node]\nport = 3001\n", "missing [genesis] table"),
        ("genesis = 3\n", "genesis must be a table"),
        (GENESIS + "[nodes]\nport = 1\n", "unknown table(s) nodes"),
        ("[genesis]\nperps = []\n", "genesis: Object missing required field `spot_tokens`"),
        (GENESIS.replace("max_leverage = 40", "max_leverage = 0"), "perp BTC"),
        (GENESIS + "[node]\nblock_time_ms = 0\n", "node.block_time_ms"),
        (GENESIS + "[node]\nblock_time = 1000\n", "node: Object contains unknown field"),
        (GENESIS + '[node]\nport = "3001"\n', "node: Expected `int`, got `str` - at `$.port`"),
        (GENESIS + "[node]\nport = 70000\n", "node.port: 70000"),
        (GENESIS + '[node]\ndata_dir = ""\n', "node.data_dir"),
    ],
)
def test_malformed_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, expected: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    check_refused(capsys, ["--config", str(config)], f"devnet: error: {config}: ", expected)


def test_bad_override(capsys: pytest.CaptureFixture[str]) -> None:
    check_refused(capsys, ["--config", CONFIG, "--port", "-1"], "node.port: -1")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["stop"],
        ["start", "--blocks", "0"],
        ["start", "--block-time", "0"],
        ["start", "--block-time", "nan"],
        ["start", "--port", "http"],
        ["start", "--log-format", "xml"],
    ],
)
def test_bad_command_line_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: devnet" in capsys.readouterr().err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stop_signal_exits_cleanly(signum: signal.Signals, tmp_path: Path) -> None:
    """The real entry point in a process of its own: Ctrl-C (SIGINT) or SIGTERM between blocks
    ends it with status 0."""
    data = str(tmp_path / "data")
    argv = [sys.executable, "-m", "node.cli", "start", "--config", CONFIG, "--data-dir", data]
    with subprocess.Popen(
        [*argv, "--block-time", "0.02", "--port", "0", "--log-format", "json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None
        try:
            for line in proc.stderr:  # wait for the node to produce a block
                if json.loads(line)["event"] == "block":
                    break
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=10)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    events = json_events(err)
    assert [e["signal"] for e in events if e["event"] == "stopping"] == [signum.name]
    assert events[-1]["event"] == "devnet stopped"


def test_a_port_in_use_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        data = str(tmp_path / "data")
        argv = ["start", "--config", CONFIG, "--blocks", "1", "--port", port]
        assert main([*argv, "--data-dir", data]) == 2
    _, err = capsys.readouterr()
    assert f"devnet: error: cannot listen on 127.0.0.1:{port}: " in err
    assert "Traceback" not in err
