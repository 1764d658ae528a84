"""The API's history survives a restart: saved with the chain's snapshots and fed the blocks
replayed after one, or rebuilt from the genesis when there is no snapshot to resume from."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hyperliquid.exchange import Exchange
from hyperliquid.info import Info

from node.devaccounts import ANVIL_MNEMONIC, derive_accounts
from node.pytest_plugin import Devnet, post, start_devnet, stop_devnet

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "devnet.toml"
NODE = "\n[node]\nblock_time_ms = 20\nsnapshot_every = 5\n"


def wait_for_height(url: str, height: int) -> None:
    deadline = time.monotonic() + 30
    while post(url + "/devnet", {"type": "status"})["response"]["height"] < height:
        assert time.monotonic() < deadline, "the node did not reach the height"
        time.sleep(0.05)


@pytest.mark.parametrize("keep_snapshots", [True, False])
def test_fills_and_orders_are_there_after_a_restart(tmp_path: Path, keep_snapshots: bool) -> None:
    config = tmp_path / "devnet.toml"
    config.write_text(CONFIG.read_text() + NODE)
    data = tmp_path / "data"
    accounts = derive_accounts(ANVIL_MNEMONIC, 10)
    devnet = Devnet("", accounts, data)
    user = accounts[0].address

    process, url = start_devnet(str(config), "interval", data)
    try:
        exchange = Exchange(devnet.wallet(0), url)
        opened = exchange.market_open("ETH", True, 0.2)
        assert opened["status"] == "ok", opened
        resting = exchange.order("ETH", True, 0.1, 2500.0, {"limit": {"tif": "Gtc"}})
        oid = resting["response"]["data"]["statuses"][0]["resting"]["oid"]
        before = Info(url, skip_ws=True).user_fills(user)
        assert before  # the market order filled: the prefix check below is not vacuous
        status = post(url + "/devnet", {"type": "status"})["response"]
        wait_for_height(url, status["height"] + 12)  # past two more snapshots
    finally:
        stop_devnet(process)
    snapshots = list(data.glob("snapshot-*"))
    assert snapshots  # the resume below starts from one, or from the genesis without them
    if not keep_snapshots:
        for snapshot in snapshots:
            snapshot.unlink()

    process, url = start_devnet(str(config), "interval", data)
    try:
        info = Info(url, skip_ws=True)
        assert info.user_fills(user)[: len(before)] == before
        assert info.query_order_by_oid(user, oid)["order"]["status"] == "open"
        [order] = [o for o in info.open_orders(user) if o["oid"] == oid]
        assert order["limitPx"] == "2500.0"
    finally:
        stop_devnet(process)
