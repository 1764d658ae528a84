"""The official hyperliquid-python-sdk against a live devnet (the `devnet` fixture of the
package's pytest plugin), with only its base URL changed."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from hyperliquid.exchange import Exchange
from hyperliquid.info import Info

from node.pytest_plugin import Devnet


@pytest.fixture(scope="module")
def info(devnet: Devnet) -> Info:
    return Info(devnet.url, skip_ws=True)


def exchange(devnet: Devnet, index: int = 0) -> Exchange:
    return Exchange(devnet.wallet(index), devnet.url)


def oid_of(result: dict[str, Any]) -> int:
    assert result["status"] == "ok", result
    status = result["response"]["data"]["statuses"][0]
    return int((status.get("resting") or status["filled"])["oid"])


def test_meta_names_every_market(info: Info) -> None:
    names = [asset["name"] for asset in info.meta()["universe"]]
    assert names[:2] == ["BTC", "ETH"]
    assert info.name_to_asset("ETH") == 1
    assert info.name_to_asset("PURR/USDC") == 10_000


def test_an_order_rests_and_is_cancelled(devnet: Devnet, info: Info) -> None:
    trader = exchange(devnet, 1)
    user = devnet.accounts[1].address
    result = trader.order("ETH", True, 0.1, 2800.0, {"limit": {"tif": "Gtc"}})
    oid = oid_of(result)
    assert "resting" in result["response"]["data"]["statuses"][0]
    [order] = [o for o in info.open_orders(user) if o["oid"] == oid]
    assert (order["coin"], order["side"], order["limitPx"], order["sz"]) == (
        "ETH",
        "B",
        "2800.0",
        "0.1",
    )
    cancelled = trader.cancel("ETH", oid)
    assert cancelled["response"]["data"]["statuses"] == ["success"]
    assert all(o["oid"] != oid for o in info.open_orders(user))


def test_market_open_and_close_against_the_market_maker(devnet: Devnet, info: Info) -> None:
    trader = exchange(devnet, 2)
    user = devnet.accounts[2].address
    opened = trader.market_open("BTC", True, 0.01)
    assert opened["status"] == "ok", opened
    filled = opened["response"]["data"]["statuses"][0]["filled"]
    assert filled["totalSz"] == "0.01"
    # The maker's first ask is 10 bps over the oracle's 100,000.
    assert float(filled["avgPx"]) == pytest.approx(100_100, rel=1e-3)
    [position] = info.user_state(user)["assetPositions"]
    assert position["position"]["coin"] == "BTC" and position["position"]["szi"] == "0.01"
    closed = trader.market_close("BTC")
    assert closed["status"] == "ok", closed
    assert info.user_state(user)["assetPositions"] == []
    fills = info.user_fills(user)
    assert [f["dir"] for f in fills[:2]] == ["Close Long", "Open Long"]


def test_leverage_and_a_transfer(devnet: Devnet, info: Info) -> None:
    trader = exchange(devnet, 3)
    user = devnet.accounts[3].address
    assert trader.update_leverage(7, "ETH", is_cross=False)["status"] == "ok"
    sent = trader.usd_transfer(12.5, devnet.accounts[4].address)
    assert sent == {"status": "ok", "response": {"type": "default"}}
    summary = info.user_state(user)["marginSummary"]
    assert float(summary["accountValue"]) == pytest.approx(1_000_000 - 12.5)


def test_an_agent_trades_for_its_master(devnet: Devnet, info: Info) -> None:
    master = exchange(devnet, 5)
    approved, agent_key = master.approve_agent("bot")
    assert approved["status"] == "ok", approved
    agent = Exchange(
        Account.from_key(agent_key), devnet.url, account_address=devnet.accounts[5].address
    )
    oid = oid_of(agent.order("ETH", False, 0.1, 3200.0, {"limit": {"tif": "Alo"}}))
    assert any(o["oid"] == oid for o in info.open_orders(devnet.accounts[5].address))


def test_an_unknown_signer_is_refused(devnet: Devnet) -> None:
    stranger = Exchange(Account.create(), devnet.url)
    refused = stranger.order("ETH", True, 0.1, 2800.0, {"limit": {"tif": "Gtc"}})
    assert refused["status"] == "err"
    assert refused["response"].startswith("User or API Wallet 0x")


def test_market_order_fills(devnet: Devnet) -> None:
    """The README's example, as written there."""
    exchange = Exchange(devnet.wallet(1), devnet.url)
    result = exchange.market_open("BTC", True, 0.01)
    assert "filled" in result["response"]["data"]["statuses"][0]
    info = Info(devnet.url, skip_ws=True)
    [position] = info.user_state(devnet.accounts[1].address)["assetPositions"]
    assert position["position"]["szi"] == "0.01"


def test_modify_moves_an_order_under_a_new_oid(devnet: Devnet, info: Info) -> None:
    trader = exchange(devnet, 6)
    user = devnet.accounts[6].address
    oid = oid_of(trader.order("SOL", True, 1.0, 140.0, {"limit": {"tif": "Gtc"}}))
    modified = trader.modify_order(oid, "SOL", True, 2.0, 141.0, {"limit": {"tif": "Gtc"}})
    assert modified["status"] == "ok", modified
    [order] = [o for o in info.open_orders(user) if o["coin"] == "SOL"]
    assert (order["limitPx"], order["sz"]) == ("141.0", "2.0") and order["oid"] != oid
    status = info.query_order_by_oid(user, oid)
    assert status["order"]["status"] == "canceled"


def test_take_profit_and_stop_loss_rest_as_triggers(devnet: Devnet, info: Info) -> None:
    trader = exchange(devnet, 7)
    user = devnet.accounts[7].address
    assert trader.market_open("ETH", True, 0.5)["status"] == "ok"
    tp = {"trigger": {"triggerPx": 3300.0, "isMarket": True, "tpsl": "tp"}}
    sl = {"trigger": {"triggerPx": 2700.0, "isMarket": True, "tpsl": "sl"}}
    placed = trader.bulk_orders(
        [
            {
                "coin": "ETH",
                "is_buy": False,
                "sz": 0.5,
                "limit_px": 3300.0,
                "order_type": tp,
                "reduce_only": True,
            },
            {
                "coin": "ETH",
                "is_buy": False,
                "sz": 0.5,
                "limit_px": 2700.0,
                "order_type": sl,
                "reduce_only": True,
            },
        ],
        grouping="positionTpsl",
    )
    assert placed["status"] == "ok", placed
    frontend = [o for o in info.frontend_open_orders(user) if o["coin"] == "ETH"]
    assert sorted(o["orderType"] for o in frontend) == ["Stop Market", "Take Profit Market"]
    assert all(o["isTrigger"] and o["reduceOnly"] for o in frontend)


def test_spot_order_and_balances(devnet: Devnet, info: Info) -> None:
    trader = exchange(devnet, 8)
    user = devnet.accounts[8].address
    bought = trader.order("@1", True, 10.0, 31.0, {"limit": {"tif": "Ioc"}})  # HYPE/USDC
    filled = bought["response"]["data"]["statuses"][0]["filled"]
    assert filled["totalSz"] == "10.0"
    balances = {b["coin"]: b for b in info.spot_user_state(user)["balances"]}
    assert float(balances["HYPE"]["total"]) == pytest.approx(10_010, abs=0.01)  # less the fee


def test_sub_account_and_transfers(devnet: Devnet, info: Info) -> None:
    master = exchange(devnet, 9)
    user = devnet.accounts[9].address
    created = master.create_sub_account("desk")
    assert created["status"] == "ok", created
    sub = created["response"]["data"]
    assert master.sub_account_transfer(sub, True, 1_000_000_000)["status"] == "ok"  # 1,000 USDC
    [listed] = info.query_sub_accounts(user)
    assert listed["subAccountUser"] == sub and listed["name"] == "desk"
    assert listed["clearinghouseState"]["marginSummary"]["accountValue"] == "1000.0"
    moved = master.usd_class_transfer(100.0, to_perp=False)
    assert moved["status"] == "ok", moved
    [purr] = [t for t in info.spot_meta()["tokens"] if t["name"] == "PURR"]
    receiver = devnet.accounts[0].address

    def purr_of(address: str) -> float:
        balances = info.spot_user_state(address)["balances"]
        return sum(float(b["total"]) for b in balances if b["coin"] == "PURR")

    before = purr_of(receiver)
    sent = master.spot_transfer(5.0, receiver, f"PURR:{purr['tokenId']}")
    assert sent == {"status": "ok", "response": {"type": "default"}}
    assert purr_of(receiver) == before + 5
