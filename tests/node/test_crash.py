"""kill -9 in the middle of a load, then restart: every block the node reported is in the log,
the log replays to its recorded hashes, and the node resumes after it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "devnet.toml"
# Every perp on a fast random walk: the market maker requotes every market every 3 s of block
# time, so the node is busy with actions when it is killed.
WALK = 'source = "random_walk"\nstep_bps = 30\nseed = {seed}\npx = '


def walking_config(path: Path) -> Path:
    text = CONFIG.read_text()
    seed = 1
    while 'source = "constant"\npx = ' in text:
        text = text.replace('source = "constant"\npx = ', WALK.format(seed=seed), 1)
        seed += 1
    path.write_text(text)
    return path


def devnet(*args: str) -> list[str]:
    return [sys.executable, "-m", "node.cli", *args]


def test_kill_9_mid_load_loses_nothing_reported(tmp_path: Path) -> None:
    config = walking_config(tmp_path / "walk.toml")
    data = tmp_path / "data"
    start = [
        "start",
        "--config",
        str(config),
        "--data-dir",
        str(data),
        "--block-time",
        "0.005",
        "--port",
        "0",
    ]
    node = subprocess.Popen(
        devnet(*start, "--log-format", "json"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "random"},
    )
    assert node.stderr is not None
    reported: list[int] = []
    actions = 0
    for line in node.stderr:
        event = json.loads(line)
        if event["event"] == "block":
            reported.append(event["height"])
            actions += event["actions"]
            if len(reported) >= 700:  # > 3 s of block time: several requotes of every market
                break
    node.send_signal(signal.SIGKILL)
    node.wait()
    assert actions > 2

    replay = subprocess.run(
        devnet("replay", str(data)), capture_output=True, text=True, check=False
    )
    assert replay.returncode == 0, replay.stderr
    height = int(replay.stdout.split("replayed to height ")[1].split(",")[0])
    assert height >= reported[-1]  # every block reported before the kill is durable

    again = subprocess.run(
        devnet(*start, "--blocks", "3", "--log-format", "json"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    heights = [
        e["height"] for e in map(json.loads, again.stderr.splitlines()) if e["event"] == "block"
    ]
    assert heights == [height + 1, height + 2, height + 3]
    final = subprocess.run(devnet("replay", str(data)), capture_output=True, text=True, check=False)
    assert final.returncode == 0, final.stderr
    assert f"replayed to height {height + 3}," in final.stdout
