"""The SDK with the devnet's controls: a liquidation after setOraclePrice, portfolio margin's
auto-borrow seen through /info, and the /devnet control answers. A node of its own (the
oracle moves here)."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from hyperliquid.exchange import Exchange
from hyperliquid.info import Info

from node.pytest_plugin import Devnet


def funded(devnet: Devnet, **tokens: str) -> Any:
    """A new key whose account the devnet funds (USDC goes to perps)."""
    wallet = Account.create()
    for token, amount in tokens.items():
        answer = devnet.control(
            {"type": "fund", "user": wallet.address, "token": token, "amount": amount}
        )
        assert answer["status"] == "ok", answer
    return wallet


def test_status_and_time_controls(devnet: Devnet) -> None:
    before = devnet.control({"type": "status"})["response"]
    assert before["mining"] == "instant" and before["stateHash"].startswith("0x")
    mined = devnet.control({"type": "mine", "blocks": 2, "dt": 1})["response"]
    assert mined["height"] == before["height"] + 2
    assert mined["time"] == before["time"] + 2000
    advanced = devnet.control({"type": "advanceTime", "seconds": 60})["response"]
    assert advanced["chainTime"] >= mined["time"] + 60_000
    assert devnet.control({"type": "mine", "blocks": 0})["status"] == "err"
    assert devnet.control({"type": "setMining", "mode": "sometimes"})["status"] == "err"
    refused = devnet.control({"type": "setOraclePrice", "coin": "NOPE", "px": "1"})
    assert refused == {"status": "err", "response": "Unknown perp 'NOPE'."}


def test_a_liquidation_after_set_oracle_price(devnet: Devnet) -> None:
    info = Info(devnet.url, skip_ws=True)
    wallet = funded(devnet, USDC="1000")
    trader = Exchange(wallet, devnet.url)
    opened = trader.market_open("BTC", True, 0.15)
    assert opened["status"] == "ok" and "filled" in opened["response"]["data"]["statuses"][0]
    assert info.user_state(wallet.address)["assetPositions"]
    assert devnet.control({"type": "setOraclePrice", "coin": "BTC", "px": "94000"})["status"] == (
        "ok"
    )
    # The oracle publishes every 3 s of block time; the maker then requotes around it and the
    # mark follows the book; the account (1,000 USDC, 0.15 BTC bought near 100,100) is then
    # below maintenance and liquidated through the book.
    devnet.control({"type": "mine", "blocks": 3, "dt": 3})
    state = info.user_state(wallet.address)
    assert state["assetPositions"] == []
    fills = info.user_fills(wallet.address)
    assert any("liquidation" in fill for fill in fills), fills
    devnet.control({"type": "setOraclePrice", "coin": "BTC", "px": "100000"})


def test_portfolio_margin_borrows_for_a_spot_buy(devnet: Devnet) -> None:
    info = Info(devnet.url, skip_ws=True)
    wallet = funded(devnet, USDC="12000", HYPE="200")
    trader = Exchange(wallet, devnet.url)
    mode = trader.user_set_abstraction(wallet.address, "portfolioMargin")
    assert mode["status"] == "ok", mode
    assert info.post("/info", {"type": "userAbstraction", "user": wallet.address}) == (
        "portfolioMargin"
    )
    # Its 200 HYPE on spot is collateral: 200 x 30 x LTV 0.5, capped at 1,000 USDC.
    # 0.125 UBTC at the maker's ~100,100 costs ~12,512 USDC: more than the 12,000 held.
    bought = trader.order("@2", True, 0.125, 101_000.0, {"limit": {"tif": "Ioc"}})
    assert "filled" in bought["response"]["data"]["statuses"][0], bought
    state = info.post("/info", {"type": "borrowLendUserState", "user": wallet.address})
    borrowed = {int(token): entry for token, entry in state["tokenToState"]}
    assert float(borrowed[0]["borrow"]["value"]) == pytest.approx(512, abs=20)
    balances = {b["coin"]: b for b in info.spot_user_state(wallet.address)["balances"]}
    assert float(balances["UBTC"]["total"]) == pytest.approx(0.125, abs=0.001)


def test_snapshot_and_revert(devnet: Devnet) -> None:
    info = Info(devnet.url, skip_ws=True)
    wallet = funded(devnet, USDC="5000")
    taken = devnet.control({"type": "snapshot"})["response"]
    assert taken["type"] == "snapshot" and taken["id"] >= 1
    trader = Exchange(wallet, devnet.url)
    assert trader.market_open("ETH", False, 0.5)["status"] == "ok"
    assert info.user_state(wallet.address)["assetPositions"]
    reverted = devnet.control({"type": "revert", "id": taken["id"]})
    assert reverted["status"] == "ok" and reverted["response"]["height"] > taken["height"]
    assert info.user_state(wallet.address)["assetPositions"] == []
    # A snapshot is used up by reverting to it.
    again = devnet.control({"type": "revert", "id": taken["id"]})
    assert again == {"status": "err", "response": f"Unknown snapshot id {taken['id']}."}
    # The maker requoted after the revert: the books are two-sided again.
    book = info.l2_snapshot("ETH")
    assert book["levels"][0] and book["levels"][1]
