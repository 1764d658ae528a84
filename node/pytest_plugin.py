"""A pytest plugin for client test suites: the `devnet` fixture starts a node on a free loopback
port, as a subprocess with its own data directory, and yields its URL and funded wallets.

    def test_order_rests(devnet):
        exchange = Exchange(devnet.wallet(0), devnet.url)
        result = exchange.order("ETH", True, 0.1, 2900.0, {"limit": {"tif": "Gtc"}})
        assert result["status"] == "ok"

Installed with the package (entry point `pytest11`), so any suite that has `hl-devnet`
installed gets the fixture. Options: `--devnet-config PATH` (default: the package's
configs/devnet.toml) and `--devnet-mining MODE` (default: instant, so an action is answered as
soon as it is sent). The node lives for the test module (`devnet` is module-scoped) and is
stopped with SIGTERM afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from eth_account import Account

from node.config import DEFAULT_CONFIG_PATH, load_config
from node.devaccounts import DevAccount, derive_accounts

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / DEFAULT_CONFIG_PATH


class Devnet(msgspec.Struct):
    url: str  # http://127.0.0.1:PORT, the base URL a Hyperliquid client takes
    accounts: tuple[DevAccount, ...]  # the funded dev accounts, with their keys
    data_dir: Path

    def wallet(self, index: int = 0) -> Any:
        """The eth-account `LocalAccount` of dev account `index` (what the SDK signs with)."""
        return Account.from_key(self.accounts[index].private_key)

    def control(self, request: dict[str, Any]) -> Any:
        """POST /devnet (mine, setOraclePrice, fund, advanceTime, setMining, status)."""
        return post(self.url + "/devnet", request)

    def info(self, request: dict[str, Any]) -> Any:
        return post(self.url + "/info", request)


def post(url: str, body: dict[str, Any]) -> Any:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("devnet")
    group.addoption("--devnet-config", default=str(DEFAULT_CONFIG), help="devnet config file")
    group.addoption("--devnet-mining", default="instant", help="mining mode of the devnet")


def start_devnet(config: str, mining: str, data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    """Start `devnet start` on a free port; returns the process and its URL once it listens."""
    argv = [sys.executable, "-m", "node.cli", "start", "--config", config, "--port", "0"]
    argv += ["--data-dir", str(data_dir), "--mining", mining, "--log-format", "json"]
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    for line in process.stderr:
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("event") == "devnet started":
            # Keep reading stderr in the background so the node never blocks on a full pipe.
            _drain(process)
            return process, str(event["api"])
    process.kill()
    raise RuntimeError(f"the devnet did not start (exit {process.wait()})")


def _drain(process: subprocess.Popen[str]) -> None:
    def read() -> None:
        assert process.stderr is not None
        for _ in process.stderr:
            pass

    threading.Thread(target=read, daemon=True).start()


def stop_devnet(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def devnet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Devnet]:
    config = request.config.getoption("--devnet-config")
    mining = request.config.getoption("--devnet-mining")
    data_dir = tmp_path_factory.mktemp("devnet")
    process, url = start_devnet(config, mining, data_dir)
    try:
        spec = load_config(config).dev_accounts
        yield Devnet(url, derive_accounts(spec.mnemonic, spec.count), data_dir)
    finally:
        stop_devnet(process)
