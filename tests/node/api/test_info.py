"""POST /info answers in Hyperliquid's shapes, from chains run through real blocks, and the
official SDK's Info reading them.

Scenarios (tests/node/api/test_history.py): `trading_run` (A quotes BTC and PURR; B and the
unified account D take; A parks a stop loss, opens a sub-account, cancels), `funding_run` (one
hour of funding on 0.1 BTC), and `pm_run` here (a portfolio-margin account buying HYPE on
borrowed USDC). Every expected value is worked out in the comments from those actions.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hyperliquid.api import API
from hyperliquid.info import Info
from hyperliquid.utils.error import ClientError
from hyperliquid.utils.types import Cloid

from node.api.info import answer_info
from node.api.wire import event_hash
from protocol.actions import (
    ApproveAgentAction,
    BorrowLendAction,
    CreateSubAccountResponse,
    OrderAction,
    UserSetAbstractionAction,
)
from protocol.orders import ERR_DESERIALIZE
from tests.node.api.test_history import (
    CLOID,
    NEXT_HOUR,
    SPOT_WEI,
    A,
    B,
    D,
    Run,
    T,
    funding_run,
    hand_priced_chain,
    trading_run,
)
from tests.protocol.conftest import BTC, HYPE_PERP, HYPE_TOKEN, HYPE_USDC, USD, USDC_TOKEN, limit

C = "0x" + "c3" * 20
ETH = 1
ZERO_SUMMARY = {"accountValue": "0.0", "totalNtlPos": "0.0", "totalRawUsd": "0.0"} | {
    "totalMarginUsed": "0.0"
}
NO_FUNDING = {"allTime": "0.0", "sinceOpen": "0.0", "sinceChange": "0.0"}


def ask(run: Run, request: object) -> Any:
    """The 200 answer to `request`, through JSON as the server would send it."""
    status, body = answer_info(request, run.chain, run.history)
    assert status == 200, body
    return json.loads(msgspec.json.encode(body))


@pytest.fixture(scope="module")
def trading() -> Run:
    return trading_run()


@pytest.fixture(scope="module")
def pm() -> Run:
    return pm_run()


def pm_run() -> Run:
    """All blocks at T, so no interest accrues and amounts stay exact. HYPE perp marked at 30.
    Genesis: A 100,000 USDC on perps, 10,000 USDC and 1,000 HYPE on spot; C 10,000 USDC on
    perps and 100 HYPE on spot.
    1. A supplies 5,000 USDC (Earn); C enters portfolio margin (its 10,000 USDC move to spot
       and are supplied at the end of the block); A offers 350 HYPE @ 30 on @1.
    2. C buys the 350 HYPE (10,500 USDC): its 10,000 supply is withdrawn and 500 USDC
       borrowed; the end-of-block settlement keeps the 500 debt (C's own funds are -500)."""
    chain = hand_priced_chain()
    chain.clearinghouse.set_mark(HYPE_PERP, 300_000)
    chain.deposit(A, 100_000 * USD, T)
    chain.deposit(C, 10_000 * USD, T)
    chain.clearinghouse.credit_spot(A, USDC_TOKEN, 10_000 * SPOT_WEI)
    chain.clearinghouse.credit_spot(A, HYPE_TOKEN, 1_000 * SPOT_WEI)
    chain.clearinghouse.credit_spot(C, HYPE_TOKEN, 100 * SPOT_WEI)
    run = Run(chain)
    run.block(
        T,
        [
            (A, BorrowLendAction("supply", USDC_TOKEN, "5000")),
            (C, UserSetAbstractionAction(user=C, abstraction="portfolioMargin")),
            (A, OrderAction((limit(HYPE_USDC, False, "30", "350"),))),
        ],
    )
    run.block(T, [(C, OrderAction((limit(HYPE_USDC, True, "30", "350", "Ioc"),)))])
    return run


def sub_account(run: Run) -> str:
    response = next(
        executed.response
        for executed in run.outputs[2].actions
        if isinstance(executed.response, CreateSubAccountResponse)
    )
    return response.address


# Metadata.


def test_meta_lists_the_perp_universe_and_margin_tables(trading: Run) -> None:
    """Universe entries in Hyperliquid's key order; margin tables as [id, table] pairs with
    decimal lower bounds; USDC (token 0) as collateral."""
    meta = ask(trading, {"type": "meta", "dex": ""})
    assert len(meta["universe"]) == 8
    assert list(meta["universe"][0].items()) == [
        ("szDecimals", 5),
        ("name", "BTC"),
        ("maxLeverage", 40),
        ("marginTableId", 56),
    ]
    assert meta["universe"][2] == {
        "szDecimals": 2,
        "name": "SOL",
        "maxLeverage": 20,
        "marginTableId": 20,
    }
    assert meta["marginTables"] == [
        [
            55,
            {
                "description": "tiered 25x",
                "marginTiers": [
                    {"lowerBound": "0.0", "maxLeverage": 25},
                    {"lowerBound": "20000.0", "maxLeverage": 10},
                ],
            },
        ],
        [
            56,
            {
                "description": "tiered 40x",
                "marginTiers": [
                    {"lowerBound": "0.0", "maxLeverage": 40},
                    {"lowerBound": "10000.0", "maxLeverage": 25},
                    {"lowerBound": "50000.0", "maxLeverage": 10},
                ],
            },
        ],
    ]
    assert meta["collateralToken"] == 0
    assert ask(trading, {"type": "meta"}) == meta


def test_spot_meta_lists_pairs_and_tokens(trading: Run) -> None:
    spot = ask(trading, {"type": "spotMeta"})
    assert list(spot) == ["universe", "tokens"]
    assert spot["universe"] == [
        {"tokens": [1, 0], "name": "PURR/USDC", "index": 0, "isCanonical": True},
        {"tokens": [2, 0], "name": "@1", "index": 1, "isCanonical": False},
        {"tokens": [3, 0], "name": "@2", "index": 2, "isCanonical": False},
    ]
    assert list(spot["tokens"][0].items()) == [
        ("name", "USDC"),
        ("szDecimals", 8),
        ("weiDecimals", 8),
        ("index", 0),
        ("tokenId", "0xeb62eee3685fc4c43992febcd9e75443"),
        ("isCanonical", True),
        ("evmContract", None),
        ("fullName", "USD Coin"),
    ]
    assert [t["name"] for t in spot["tokens"]] == ["USDC", "PURR", "HYPE", "UBTC"]
    assert ask(trading, {"type": "perpDexs"}) == [None]


def test_perp_asset_contexts(trading: Run) -> None:
    """BTC after the trading run: 0.05 BTC open (B 0.04 + D 0.01 long), 5,000 USDC traded at
    100000 in the last day, the hour's pending rate 0.01%/8 with no premium sampled yet (no
    oracle here, so the oracle price shown is the mark), one-sided book: no mid, no impact."""
    meta, contexts = ask(trading, {"type": "metaAndAssetCtxs"})
    assert meta == ask(trading, {"type": "meta"})
    assert len(contexts) == 8
    assert list(contexts[BTC].items()) == [
        ("funding", "0.0000125"),
        ("openInterest", "0.05"),
        ("prevDayPx", "100000.0"),
        ("dayNtlVlm", "5000.0"),
        ("premium", None),
        ("oraclePx", "100000.0"),
        ("markPx", "100000.0"),
        ("midPx", None),
        ("impactPxs", None),
        ("dayBaseVlm", "0.05"),
    ]


def test_spot_asset_contexts(trading: Run) -> None:
    """PURR/USDC: 100 PURR traded at 0.2 (20 USDC); the 1,000 PURR of the chain are A's 900,
    B's 99.93 and the 0.07 fee. @2 (UBTC) has no trade: its price is the BTC perp's."""
    spot_meta, contexts = ask(trading, {"type": "spotMetaAndAssetCtxs"})
    assert spot_meta == ask(trading, {"type": "spotMeta"})
    assert list(contexts[0].items()) == [
        ("prevDayPx", "0.2"),
        ("dayNtlVlm", "20.0"),
        ("markPx", "0.2"),
        ("midPx", None),
        ("circulatingSupply", "1000.0"),
        ("coin", "PURR/USDC"),
        ("totalSupply", "1000.0"),
        ("dayBaseVlm", "100.0"),
    ]
    assert contexts[2]["coin"] == "@2" and contexts[2]["markPx"] == "100000.0"
    assert contexts[2]["dayNtlVlm"] == "0.0" and contexts[2]["totalSupply"] == "0.0"


def test_all_mids_fall_back_to_the_last_trade_and_the_mark(trading: Run) -> None:
    """BTC's book is one-sided (the mark), PURR's empty (the last trade), UBTC's price comes
    from the BTC perp; coins with no price at all are left out."""
    assert ask(trading, {"type": "allMids"}) == {
        "BTC": "100000.0",
        "PURR/USDC": "0.2",
        "@2": "100000.0",
    }


# Books and candles.


def eth_book_run() -> Run:
    """The trading run, then A quotes ETH: bids 2999.5 x 0.1, 2999.0 x 0.2, 2998.7 x 0.3; asks
    3000.5 x 0.1, 3001.2 x 0.2."""
    run = trading_run()
    quotes = [("2999.5", "0.1", True), ("2999", "0.2", True), ("2998.7", "0.3", True)]
    quotes += [("3000.5", "0.1", False), ("3001.2", "0.2", False)]
    orders = tuple(limit(ETH, is_buy, px, sz) for px, sz, is_buy in quotes)
    run.block(T + 4000, [(A, OrderAction(orders))])
    return run


def test_l2_book_levels_and_aggregation() -> None:
    """Full precision, then bucketed to significant figures: bids down, asks up, sizes and
    order counts summed; the mid is exact."""
    run = eth_book_run()

    def levels(**aggregation: int) -> list[list[tuple[str, str, int]]]:
        book = ask(run, {"type": "l2Book", "coin": "ETH"} | aggregation)
        assert book["coin"] == "ETH" and book["time"] == T + 4000
        return [[(lv["px"], lv["sz"], lv["n"]) for lv in side] for side in book["levels"]]

    assert levels() == [
        [("2999.5", "0.1", 1), ("2999.0", "0.2", 1), ("2998.7", "0.3", 1)],
        [("3000.5", "0.1", 1), ("3001.2", "0.2", 1)],
    ]
    assert levels(nSigFigs=3) == [[("2990.0", "0.6", 3)], [("3010.0", "0.3", 2)]]
    assert levels(nSigFigs=4) == [
        [("2999.0", "0.3", 2), ("2998.0", "0.3", 1)],
        [("3001.0", "0.1", 1), ("3002.0", "0.2", 1)],
    ]
    assert levels(nSigFigs=5, mantissa=5) == [
        [("2999.5", "0.1", 1), ("2999.0", "0.2", 1), ("2998.5", "0.3", 1)],
        [("3000.5", "0.1", 1), ("3001.5", "0.2", 1)],
    ]
    assert ask(run, {"type": "allMids"})["ETH"] == "3000.0"
    btc = ask(run, {"type": "l2Book", "coin": "BTC", "nSigFigs": None})
    assert btc["levels"] == [[], [{"px": "100000.0", "sz": "0.05", "n": 1}]]
    assert ask(run, {"type": "l2Book", "coin": "NOPE"}) is None


def test_l2_book_refuses_aggregations_hyperliquid_does_not_offer(trading: Run) -> None:
    for aggregation in ({"nSigFigs": 1}, {"nSigFigs": 4, "mantissa": 2}, {"mantissa": 5}):
        request = {"type": "l2Book", "coin": "BTC"} | aggregation
        assert answer_info(request, trading.chain, trading.history) == (422, ERR_DESERIALIZE)


def candle_request(coin: str, interval: str, start: int, end: int) -> dict[str, object]:
    req = {"coin": coin, "interval": interval, "startTime": start, "endTime": end}
    return {"type": "candleSnapshot", "req": req}


def test_candle_snapshot(trading: Run) -> None:
    """The minute of the two BTC trades (22:13:00-22:13:59.999 UTC), in Hyperliquid's keys."""
    candles = ask(trading, candle_request("BTC", "1m", T, T + 60_000))
    assert candles == [
        {
            "t": 1_699_999_980_000,
            "T": 1_700_000_039_999,
            "s": "BTC",
            "i": "1m",
            "o": "100000.0",
            "c": "100000.0",
            "h": "100000.0",
            "l": "100000.0",
            "v": "0.05",
            "n": 2,
        }
    ]
    assert ask(trading, candle_request("BTC", "1m", T + 60_000, T + 120_000)) == []
    assert ask(trading, candle_request("NOPE", "1m", T, T + 60_000)) == []
    bad = candle_request("BTC", "2m", T, T + 60_000)
    assert answer_info(bad, trading.chain, trading.history) == (422, ERR_DESERIALIZE)


# Account state.


def test_clearinghouse_state_of_a_short_with_a_resting_order(trading: Run) -> None:
    """A: cash 100,000 + 5,000 sold - 0.75 maker fees = 104,999.25; short 0.05 BTC at the
    100000 mark: value 99,999.25, initial margin 5,000 / 20 = 250, maintenance 5,000 / 80 =
    62.5; withdrawable leaves max(250 + the resting sell's 250, 10% of 5,000) = 500.
    Liquidation: (P s (L+1) + M L) / (s (L+1)) with P = 1,000,000, s = 5,000 lots, L = 80,
    M = 99,936.75 USDC: 8,399,940,000,000 / 405,000 = 20,740,592.59 -> 2074059.2 (down)."""
    state = ask(trading, {"type": "clearinghouseState", "user": A, "dex": ""})
    summary = {
        "accountValue": "99999.25",
        "totalNtlPos": "5000.0",
        "totalRawUsd": "104999.25",
        "totalMarginUsed": "250.0",
    }
    assert state == {
        "marginSummary": summary,
        "crossMarginSummary": summary,
        "crossMaintenanceMarginUsed": "62.5",
        "withdrawable": "99499.25",
        "assetPositions": [
            {
                "type": "oneWay",
                "position": {
                    "coin": "BTC",
                    "szi": "-0.05",
                    "leverage": {"type": "cross", "value": 20},
                    "entryPx": "100000.0",
                    "positionValue": "5000.0",
                    "unrealizedPnl": "0.0",
                    "returnOnEquity": "0.0",
                    "liquidationPx": "2074059.2",
                    "marginUsed": "250.0",
                    "maxLeverage": 40,
                    "cumFunding": NO_FUNDING,
                },
            }
        ],
        "time": T + 3000,
    }
    assert list(state) == [
        "marginSummary",
        "crossMarginSummary",
        "crossMaintenanceMarginUsed",
        "withdrawable",
        "assetPositions",
        "time",
    ]
    assert list(state["assetPositions"][0]["position"])[:4] == [
        "coin",
        "szi",
        "leverage",
        "entryPx",
    ]


def test_clearinghouse_state_of_a_long(trading: Run) -> None:
    """B: 100,000 - 4,000 - 1.8 taker fee - 100 moved to spot = 95,898.2 cash; long 0.04:
    value 99,898.2, margin 200, maintenance 50, withdrawable 99,898.2 - max(200, 400); its
    liquidation price would be below zero: null. Mixed-case addresses are the same user."""
    state = ask(trading, {"type": "clearinghouseState", "user": B.upper().replace("0X", "0x")})
    assert state["marginSummary"] == {
        "accountValue": "99898.2",
        "totalNtlPos": "4000.0",
        "totalRawUsd": "95898.2",
        "totalMarginUsed": "200.0",
    }
    assert (state["crossMaintenanceMarginUsed"], state["withdrawable"]) == ("50.0", "99498.2")
    position = state["assetPositions"][0]["position"]
    assert (position["szi"], position["liquidationPx"], position["marginUsed"]) == (
        "0.04",
        None,
        "200.0",
    )


def test_unified_account_shows_one_usdc_balance(trading: Run) -> None:
    """D moved its 10,000 USDC to spot when it went unified, then bought 0.01 BTC at 100000:
    perp cash -1,000.45, position worth 1,000. One USDC balance: 10,000 - 0.45 = 9,999.55,
    holding the position's 50 of initial margin; the perp view counts the spot USDC as cash."""
    spot = ask(trading, {"type": "spotClearinghouseState", "user": D})
    assert spot == {
        "balances": [
            {
                "coin": "USDC",
                "token": 0,
                "total": "9999.55",
                "hold": "50.0",
                "entryNtl": "0.0",
            }
        ],
        "tokenToAvailableAfterMaintenance": [[0, "9949.55"]],
    }
    perp = ask(trading, {"type": "clearinghouseState", "user": D})
    assert perp["marginSummary"] == {
        "accountValue": "9999.55",
        "totalNtlPos": "1000.0",
        "totalRawUsd": "8999.55",
        "totalMarginUsed": "50.0",
    }
    assert perp["withdrawable"] == "9899.55"
    assert ask(trading, {"type": "userAbstraction", "user": D}) == "unifiedAccount"
    assert ask(trading, {"type": "userAbstraction", "user": A}) == "default"


def test_spot_balances_of_standard_accounts(trading: Run) -> None:
    """A: 1,000 USDC + 20 from the PURR sale - 0.008 fee; 900 PURR left. B: 1,000 - 20 + 100
    moved from perps; 100 PURR less the 0.07 fee, bought for 20 USDC."""
    assert ask(trading, {"type": "spotClearinghouseState", "user": A}) == {
        "balances": [
            {"coin": "USDC", "token": 0, "total": "1019.992", "hold": "0.0", "entryNtl": "0.0"},
            {"coin": "PURR", "token": 1, "total": "900.0", "hold": "0.0", "entryNtl": "0.0"},
        ]
    }
    balances = ask(trading, {"type": "spotClearinghouseState", "user": B})["balances"]
    assert [(b["coin"], b["total"], b["entryNtl"]) for b in balances] == [
        ("USDC", "1080.0", "0.0"),
        ("PURR", "99.93", "20.0"),
    ]
    assert ask(trading, {"type": "spotClearinghouseState", "user": C}) == {"balances": []}


def test_sub_accounts_and_roles(trading: Run) -> None:
    """A's sub-account, empty, with both its states; roles of a master, a sub-account and a
    stranger."""
    sub = sub_account(trading)
    assert ask(trading, {"type": "subAccounts", "user": A}) == [
        {
            "name": "trading",
            "subAccountUser": sub,
            "master": A,
            "clearinghouseState": {
                "marginSummary": ZERO_SUMMARY,
                "crossMarginSummary": ZERO_SUMMARY,
                "crossMaintenanceMarginUsed": "0.0",
                "withdrawable": "0.0",
                "assetPositions": [],
                "time": T + 3000,
            },
            "spotState": {"balances": []},
        }
    ]
    assert ask(trading, {"type": "subAccounts", "user": B}) == []
    assert ask(trading, {"type": "userRole", "user": sub}) == {
        "role": "subAccount",
        "data": {"master": A},
    }
    assert ask(trading, {"type": "userRole", "user": A}) == {"role": "user"}
    assert ask(trading, {"type": "userRole", "user": C}) == {"role": "missing"}
    assert ask(trading, {"type": "extraAgents", "user": A}) == []


def test_api_wallets() -> None:
    """A's two agents (unnamed and "bot"), listed by address, each with its master's role."""
    run = trading_run()
    unnamed, bot = "0x" + "0f" * 20, "0x" + "0e" * 20
    run.block(
        T + 4000,
        [
            (A, ApproveAgentAction(agent_address=unnamed.upper().replace("0X", "0x"))),
            (A, ApproveAgentAction(agent_address=bot, agent_name="bot")),
        ],
    )
    assert ask(run, {"type": "extraAgents", "user": A}) == [
        {"name": "bot", "address": bot, "validUntil": None},
        {"name": "", "address": unnamed, "validUntil": None},
    ]
    assert ask(run, {"type": "userRole", "user": bot}) == {"role": "agent", "data": {"user": A}}
    assert ask(run, {"type": "extraAgents", "user": B}) == []


# Orders.

RESTING_SELL = {
    "coin": "BTC",
    "side": "A",
    "limitPx": "100000.0",
    "sz": "0.05",
    "oid": 1,
    "timestamp": T + 1000,
    "triggerCondition": "N/A",
    "isTrigger": False,
    "triggerPx": "0.0",
    "children": [],
    "isPositionTpsl": False,
    "reduceOnly": False,
    "orderType": "Limit",
    "origSz": "0.1",
    "tif": "Gtc",
    "cloid": CLOID,
}
STOP_LOSS = {
    "coin": "BTC",
    "side": "B",
    "limitPx": "120000.0",
    "sz": "0.05",
    "oid": 7,
    "timestamp": T + 3000,
    "triggerCondition": "Price above 110000.0",
    "isTrigger": True,
    "triggerPx": "110000.0",
    "children": [],
    "isPositionTpsl": False,
    "reduceOnly": True,
    "orderType": "Stop Market",
    "origSz": "0.05",
    "tif": None,
    "cloid": None,
}


def test_open_orders_newest_first(trading: Run) -> None:
    """A's stop loss (oid 7) and what is left of its BTC sell (oid 1)."""
    assert ask(trading, {"type": "openOrders", "user": A, "dex": ""}) == [
        {
            "coin": "BTC",
            "side": "B",
            "limitPx": "120000.0",
            "sz": "0.05",
            "oid": 7,
            "timestamp": T + 3000,
            "origSz": "0.05",
        },
        {
            "coin": "BTC",
            "side": "A",
            "limitPx": "100000.0",
            "sz": "0.05",
            "oid": 1,
            "timestamp": T + 1000,
            "origSz": "0.1",
            "cloid": CLOID,
        },
    ]
    frontend = ask(trading, {"type": "frontendOpenOrders", "user": A})
    assert frontend == [STOP_LOSS, RESTING_SELL]
    assert list(frontend[1]) == list(RESTING_SELL)  # Hyperliquid's key order
    assert ask(trading, {"type": "openOrders", "user": B}) == []


def test_order_status_by_oid_and_cloid(trading: Run) -> None:
    """A live order as it rests now; a filled one with nothing left; a cancelled one with
    what was left; other users' orders and unknown ids are unknownOid."""
    by_oid = ask(trading, {"type": "orderStatus", "user": A, "oid": 1})
    expected = {"order": RESTING_SELL, "status": "open", "statusTimestamp": T + 1000}
    assert by_oid == {"status": "order", "order": expected}
    mixed_case = "0x" + A[2:].upper()
    by_cloid = ask(trading, {"type": "orderStatus", "user": mixed_case, "oid": CLOID})
    assert by_cloid == by_oid
    filled = ask(trading, {"type": "orderStatus", "user": B, "oid": 4})["order"]
    assert (filled["status"], filled["statusTimestamp"]) == ("filled", T + 2000)
    assert filled["order"] == {
        "coin": "BTC",
        "side": "B",
        "limitPx": "100000.0",
        "sz": "0.0",
        "oid": 4,
        "timestamp": T + 2000,
        "triggerCondition": "N/A",
        "isTrigger": False,
        "triggerPx": "0.0",
        "children": [],
        "isPositionTpsl": False,
        "reduceOnly": False,
        "orderType": "Limit",
        "origSz": "0.04",
        "tif": "Ioc",
        "cloid": None,
    }
    cancelled = ask(trading, {"type": "orderStatus", "user": A, "oid": 2})["order"]
    assert (cancelled["status"], cancelled["statusTimestamp"]) == ("canceled", T + 3000)
    assert (cancelled["order"]["sz"], cancelled["order"]["limitPx"]) == ("0.05", "90000.0")
    unknown = {"status": "unknownOid"}
    assert ask(trading, {"type": "orderStatus", "user": A, "oid": 4}) == unknown
    assert ask(trading, {"type": "orderStatus", "user": A, "oid": 999}) == unknown
    other_cloid = "0x" + "f" * 32
    assert ask(trading, {"type": "orderStatus", "user": A, "oid": other_cloid}) == unknown
    bad = {"type": "orderStatus", "user": A, "oid": "0x12"}
    assert answer_info(bad, trading.chain, trading.history) == (422, ERR_DESERIALIZE)


def test_historical_orders_most_recent_first(trading: Run) -> None:
    """A's four orders by their latest status: the cancel (block 3, after the stop loss),
    the stop loss, the filled PURR sell, the BTC sell still open."""
    orders = ask(trading, {"type": "historicalOrders", "user": A})
    assert [(o["order"]["oid"], o["status"], o["statusTimestamp"]) for o in orders] == [
        (2, "canceled", T + 3000),
        (7, "open", T + 3000),
        (3, "filled", T + 2000),
        (1, "open", T + 1000),
    ]
    assert orders[1]["order"] == STOP_LOSS
    assert orders[3]["order"] == RESTING_SELL
    purr = orders[2]["order"]
    assert (purr["coin"], purr["limitPx"], purr["sz"], purr["origSz"]) == (
        "PURR/USDC",
        "0.2",
        "0.0",
        "100.0",
    )


# Fills.


def test_user_fills_newest_first(trading: Run) -> None:
    """A's three maker fills: PURR (tid 3), then BTC to D (tid 2) and to B (tid 1); each with
    the hash of the order that crossed it; fees 0.04% of 20 USDC in USDC and 0.015% on BTC."""
    fills = ask(trading, {"type": "userFills", "user": A})
    assert fills == [
        {
            "coin": "PURR/USDC",
            "px": "0.2",
            "sz": "100.0",
            "side": "A",
            "time": T + 2000,
            "startPosition": "1000.0",
            "dir": "Sell",
            "closedPnl": "0.0",
            "hash": event_hash("order", 2, 6),
            "oid": 3,
            "crossed": False,
            "fee": "0.008",
            "tid": 3,
            "feeToken": "USDC",
        },
        {
            "coin": "BTC",
            "px": "100000.0",
            "sz": "0.01",
            "side": "A",
            "time": T + 2000,
            "startPosition": "-0.04",
            "dir": "Open Short",
            "closedPnl": "0.0",
            "hash": event_hash("order", 2, 5),
            "oid": 1,
            "crossed": False,
            "fee": "0.15",
            "tid": 2,
            "cloid": CLOID,
            "feeToken": "USDC",
        },
        {
            "coin": "BTC",
            "px": "100000.0",
            "sz": "0.04",
            "side": "A",
            "time": T + 2000,
            "startPosition": "0.0",
            "dir": "Open Short",
            "closedPnl": "0.0",
            "hash": event_hash("order", 2, 4),
            "oid": 1,
            "crossed": False,
            "fee": "0.6",
            "tid": 1,
            "cloid": CLOID,
            "feeToken": "USDC",
        },
    ]
    b_purr = ask(trading, {"type": "userFills", "user": B})[0]
    assert (b_purr["side"], b_purr["crossed"], b_purr["fee"], b_purr["feeToken"]) == (
        "B",
        True,
        "0.07",
        "PURR",
    )
    assert b_purr["dir"] == "Buy" and b_purr["hash"] == fills[0]["hash"]


def test_fills_aggregated_by_time(trading: Run) -> None:
    """The two fills of A's BTC sell in block 2 become one: 0.05 at 100000, 0.75 fees, from
    the first fill's start position and trade id."""
    fills = ask(trading, {"type": "userFills", "user": A, "aggregateByTime": True})
    assert [(f["coin"], f["sz"], f["fee"], f["startPosition"], f["tid"]) for f in fills] == [
        ("PURR/USDC", "100.0", "0.008", "1000.0", 3),
        ("BTC", "0.05", "0.75", "0.0", 1),
    ]
    assert fills[1]["px"] == "100000.0"


def test_user_fills_by_time_oldest_first_in_range(trading: Run) -> None:
    request = {"type": "userFillsByTime", "user": A, "startTime": T + 2000}
    fills = ask(trading, request | {"endTime": T + 2000, "aggregateByTime": False})
    assert [f["tid"] for f in fills] == [1, 2, 3]
    assert [f["tid"] for f in ask(trading, request | {"endTime": None})] == [1, 2, 3]
    assert ask(trading, request | {"startTime": T + 2001}) == []
    assert ask(trading, request | {"endTime": T + 1999}) == []


# Funding and ledger.


def test_funding_history_and_user_funding() -> None:
    """The settled hour of BTC (0.01%/8, no premium), and B's payment on its 0.1 BTC long."""
    run = funding_run()
    rates = ask(run, {"type": "fundingHistory", "coin": "BTC", "startTime": 0})
    settled = NEXT_HOUR + 500
    assert rates == [{"coin": "BTC", "fundingRate": "0.0000125", "premium": "0.0", "time": settled}]
    later = {"type": "fundingHistory", "coin": "BTC", "startTime": settled + 1}
    assert ask(run, later) == []
    assert ask(run, later | {"startTime": 0, "endTime": settled - 1}) == []
    index = [u.user for u in run.outputs[2].funding].index(B)
    assert ask(run, {"type": "userFunding", "user": B, "startTime": T}) == [
        {
            "time": settled,
            "hash": event_hash("funding", 3, index),
            "delta": {
                "type": "funding",
                "coin": "BTC",
                "usdc": "-0.125",
                "szi": "0.1",
                "fundingRate": "0.0000125",
                "nSamples": 1,
            },
        }
    ]
    assert ask(run, {"type": "userFunding", "user": B, "startTime": settled + 1}) == []


def test_non_funding_ledger_updates(trading: Run) -> None:
    """B's genesis deposit (second of the block-1 ledger) and its class transfer to spot."""
    request = {"type": "userNonFundingLedgerUpdates", "user": B, "startTime": 0, "endTime": None}
    assert ask(trading, request) == [
        {
            "time": T,
            "hash": event_hash("ledger", 1, 1),
            "delta": {"type": "deposit", "usdc": "100000.0"},
        },
        {
            "time": T + 3000,
            "hash": event_hash("ledger", 3, 0),
            "delta": {"type": "accountClassTransfer", "usdc": "100.0", "toPerp": False},
        },
    ]
    assert len(ask(trading, request | {"startTime": T + 1})) == 1
    assert len(ask(trading, request | {"endTime": T})) == 1


# Fees, limits, portfolio.


def test_user_fees(trading: Run) -> None:
    """15 UTC days up to 2023-11-14; B took 4,020 USDC that day of the 5,020 traded; base
    rates for everyone."""
    fees = ask(trading, {"type": "userFees", "user": B})
    days = fees["dailyUserVlm"]
    assert len(days) == 15 and days[0]["date"] == "2023-10-31"
    assert days[-1] == {
        "date": "2023-11-14",
        "userCross": "4020.0",
        "userAdd": "0.0",
        "exchange": "5020.0",
    }
    assert fees["feeSchedule"] == {
        "cross": "0.00045",
        "add": "0.00015",
        "spotCross": "0.0007",
        "spotAdd": "0.0004",
        "tiers": {"vip": [], "mm": []},
        "referralDiscount": "0.0",
        "stakingDiscountTiers": [],
    }
    rates = ("userCrossRate", "userAddRate", "userSpotCrossRate", "userSpotAddRate")
    assert [fees[key] for key in rates] == ["0.00045", "0.00015", "0.0007", "0.0004"]
    assert fees["activeReferralDiscount"] == "0.0" and fees["trial"] is None


def test_rate_limit_and_referral(trading: Run) -> None:
    """A traded 5,020 USDC and sent 6 requests (3 orders, a stop loss, a sub-account, a
    cancel): its cap is 10,000 + 5,020."""
    assert ask(trading, {"type": "userRateLimit", "user": A}) == {
        "cumVlm": "5020.0",
        "nRequestsUsed": 6,
        "nRequestsCap": 15_020,
        "nRequestsSurplus": 0,
    }
    referral = ask(trading, {"type": "referral", "user": A})
    assert "referredBy" in referral and referral["referredBy"] is None
    assert referral["cumVlm"] == "5020.0" and referral["rewardHistory"] == []


def test_portfolio(trading: Run) -> None:
    """A's value: 99,999.25 on perps, + 1,019.992 USDC and 900 PURR at its 0.2 last trade
    on spot = 101,199.242; pnl -0.75 (fees); volume 5,020 (5,000 on perps)."""
    periods = ask(trading, {"type": "portfolio", "user": A})
    names = [name for name, _ in periods]
    assert names == [
        "day",
        "week",
        "month",
        "allTime",
        "perpDay",
        "perpWeek",
        "perpMonth",
        "perpAllTime",
    ]
    now = T + 3000
    assert dict(periods)["day"] == {
        "accountValueHistory": [[now, "101199.242"]],
        "pnlHistory": [[now, "-0.75"]],
        "vlm": "5020.0",
    }
    assert dict(periods)["perpAllTime"] == {
        "accountValueHistory": [[now, "99999.25"]],
        "pnlHistory": [[now, "-0.75"]],
        "vlm": "5000.0",
    }


# Portfolio margin and lending.


def test_portfolio_margin_spot_state(pm: Run) -> None:
    """C owes 500 USDC and holds 449.755 HYPE (100 + 350 - 0.245 fee) bought for 10,500.
    Ratio: (20 + 500) / (0 USDC held + min(449.755, cap 200) x 30 x 0.75 = 4,500) rounded up
    to 0.115556; 500 of its 1,000 borrow cap used."""
    assert ask(pm, {"type": "spotClearinghouseState", "user": C}) == {
        "portfolioMarginEnabled": True,
        "balances": [
            {
                "coin": "USDC",
                "token": 0,
                "total": "-500.0",
                "hold": "0.0",
                "entryNtl": "0.0",
                "ltv": "0.0",
                "borrowed": "500.0",
                "supplied": "0.0",
            },
            {
                "coin": "HYPE",
                "token": 2,
                "total": "449.755",
                "hold": "0.0",
                "entryNtl": "10500.0",
                "ltv": "0.5",
                "borrowed": "0.0",
                "supplied": "0.0",
            },
        ],
        "portfolioMarginRatio": "0.115556",
        "tokenToPortfolioBorrowRatio": [[0, "0.5"]],
        "tokenToAvailableAfterMaintenance": [[0, "0.0"], [2, "449.755"]],
    }
    assert ask(pm, {"type": "userAbstraction", "user": C}) == "portfolioMargin"
    perp = ask(pm, {"type": "clearinghouseState", "user": C})
    assert perp["marginSummary"]["accountValue"] == "0.0" and perp["withdrawable"] == "0.0"


def test_earn_supply_shows_in_a_standard_accounts_balance(pm: Run) -> None:
    """A supplied 5,000 of its 10,000 spot USDC and sold 350 HYPE for 10,500 less a 4.2 fee:
    15,495.8 USDC in spot and the 5,000 supplied."""
    usdc = ask(pm, {"type": "spotClearinghouseState", "user": A})["balances"][0]
    assert usdc == {
        "coin": "USDC",
        "token": 0,
        "total": "20495.8",
        "hold": "0.0",
        "entryNtl": "0.0",
        "ltv": "0.0",
        "borrowed": "0.0",
        "supplied": "5000.0",
    }


def test_borrow_lend_user_states(pm: Run) -> None:
    """C's debt (basis = value at index 1.0) and health factor: 200 HYPE x 30 x 0.5 = 3,000
    of borrowing power over 500 owed; A's supply; a stranger's empty state."""
    assert ask(pm, {"type": "borrowLendUserState", "user": C}) == {
        "tokenToState": [
            [
                0,
                {
                    "borrow": {"basis": "500.0", "value": "500.0"},
                    "supply": {"basis": "0.0", "value": "0.0"},
                },
            ]
        ],
        "health": "healthy",
        "healthFactor": "6.0",
    }
    a_state = ask(pm, {"type": "borrowLendUserState", "user": A})
    assert a_state["tokenToState"] == [
        [
            0,
            {
                "borrow": {"basis": "0.0", "value": "0.0"},
                "supply": {"basis": "5000.0", "value": "5000.0"},
            },
        ]
    ]
    assert a_state["healthFactor"] is None
    assert ask(pm, {"type": "borrowLendUserState", "user": D}) == {
        "tokenToState": [],
        "health": "healthy",
        "healthFactor": None,
    }


def test_reserve_states(pm: Run) -> None:
    """USDC: 5,000 supplied (A; C withdrew its 10,000), 500 borrowed: utilization 0.1, the
    0.05 base rate, suppliers 0.05 x 0.1 x 0.9; cash 5,000 - 500. HYPE: collateral only, at
    its 30 trade and mark. PURR has no reserve."""
    usdc = {
        "borrowYearlyRate": "0.05",
        "supplyYearlyRate": "0.0045",
        "balance": "4500.0",
        "utilization": "0.1",
        "oraclePx": "1.0",
        "ltv": "0.0",
        "totalSupplied": "5000.0",
        "totalBorrowed": "500.0",
    }
    assert list(ask(pm, {"type": "borrowLendReserveState", "token": 0}).items()) == list(
        usdc.items()
    )
    hype = ask(pm, {"type": "borrowLendReserveState", "token": 2})
    assert hype == {
        "borrowYearlyRate": "0.05",
        "supplyYearlyRate": "0.0",
        "balance": "0.0",
        "utilization": "0.0",
        "oraclePx": "30.0",
        "ltv": "0.5",
        "totalSupplied": "0.0",
        "totalBorrowed": "0.0",
    }
    assert ask(pm, {"type": "borrowLendReserveState", "token": 1}) is None
    everything = ask(pm, {"type": "allBorrowLendReserveStates"})
    assert [token for token, _ in everything] == [0, 2, 3]
    assert everything[0][1] == usdc and everything[1][1] == hype
    assert everything[2][1]["oraclePx"] == "100000.0"  # UBTC at the BTC mark


def test_borrow_lend_ledger_update(pm: Run) -> None:
    updates = ask(pm, {"type": "userNonFundingLedgerUpdates", "user": A, "startTime": 0})
    assert updates[-1] == {
        "time": T,
        "hash": event_hash("ledger", 1, 2),
        "delta": {
            "type": "borrowLend",
            "token": "USDC",
            "operation": "supply",
            "amount": "5000.0",
            "interestAmount": "0.0",
        },
    }


# Requests Hyperliquid would not deserialize, and queries with nothing behind them.


@pytest.mark.parametrize(
    "request_body",
    [
        {"type": "nope"},
        {"type": 1},
        {"user": A},
        ["meta"],
        "meta",
        None,
        {"type": "clearinghouseState"},
        {"type": "clearinghouseState", "user": "0x123"},
        {"type": "clearinghouseState", "user": 5},
        {"type": "clearinghouseState", "user": A, "dex": "xyz"},
        {"type": "meta", "dex": "xyz"},
        {"type": "userFillsByTime", "user": A, "startTime": "1"},
        {"type": "userFillsByTime", "user": A, "startTime": 1.5},
        {"type": "userFills", "user": A, "aggregateByTime": "yes"},
        {"type": "borrowLendReserveState", "token": "0"},
        {"type": "candleSnapshot", "req": {"coin": "BTC", "interval": "1m"}},
    ],
)
def test_undeserializable_bodies_get_a_plain_422(trading: Run, request_body: object) -> None:
    assert answer_info(request_body, trading.chain, trading.history) == (422, ERR_DESERIALIZE)


def test_queries_without_devnet_state_answer_empty_values(trading: Run) -> None:
    empty: list[tuple[dict[str, object], object]] = [
        ({"type": "userTwapSliceFills"}, []),
        ({"type": "userVaultEquities"}, []),
        ({"type": "delegations"}, []),
        ({"type": "delegatorRewards"}, []),
        ({"type": "delegatorHistory"}, []),
        ({"type": "userBorrowLendInterest", "startTime": 0}, []),
        ({"type": "userToMultiSigSigners"}, None),
        ({"type": "userDexAbstraction"}, False),
        (
            {"type": "delegatorSummary"},
            {
                "delegated": "0.0",
                "undelegated": "0.0",
                "totalPendingWithdrawal": "0.0",
                "nPendingWithdrawals": 0,
            },
        ),
    ]
    for request, expected in empty:
        assert ask(trading, request | {"user": A}) == expected
    auction = ask(trading, {"type": "perpDeployAuctionStatus"})
    assert auction["currentGas"] is None and auction["startTimeSeconds"] == (T + 3000) // 1000
    assert ask(trading, {"type": "spotDeployState", "user": A})["states"] == []


# The official SDK reading our answers.


@pytest.fixture
def sdk(trading: Run, monkeypatch: pytest.MonkeyPatch) -> Info:
    """An SDK Info whose HTTP posts are answered by answer_info, through JSON, raising on a
    4xx plain-text body as the SDK's transport does."""

    def post(self: API, url_path: str, payload: Any = None) -> Any:
        assert url_path == "/info"
        body = json.loads(json.dumps(payload or {}))
        status, answer = answer_info(body, trading.chain, trading.history)
        if status >= 400:
            raise ClientError(status, None, answer, None)
        return json.loads(msgspec.json.encode(answer))

    monkeypatch.setattr(API, "post", post)
    return Info("http://127.0.0.1:3001", skip_ws=True)


def test_the_sdk_builds_its_name_maps_from_meta_and_spot_meta(sdk: Info) -> None:
    """Perp names to asset ids, spot names to 10000 + index, the BASE/QUOTE aliases, and the
    size decimals (a spot pair's are its base token's)."""
    assert sdk.coin_to_asset["BTC"] == 0 and sdk.coin_to_asset["AVAX"] == 7
    assert sdk.coin_to_asset["PURR/USDC"] == 10_000 and sdk.coin_to_asset["@2"] == 10_002
    assert sdk.name_to_coin["HYPE/USDC"] == "@1" and sdk.name_to_coin["UBTC/USDC"] == "@2"
    assert sdk.asset_to_sz_decimals[0] == 5 and sdk.asset_to_sz_decimals[10_001] == 2
    assert sdk.name_to_asset("UBTC/USDC") == 10_002


def test_every_sdk_info_call_is_answered(sdk: Info) -> None:
    """Each /info call of the SDK's Info, with mixed-case addresses as its examples send."""
    user = "0x" + A[2:].upper()
    state = sdk.user_state(user)
    assert state["marginSummary"]["accountValue"] == "99999.25"
    assert [p["position"]["coin"] for p in state["assetPositions"]] == ["BTC"]
    assert len(sdk.spot_user_state(user)["balances"]) == 2
    assert [o["oid"] for o in sdk.open_orders(user)] == [7, 1]
    assert [o["oid"] for o in sdk.frontend_open_orders(user)] == [7, 1]
    assert sdk.all_mids()["PURR/USDC"] == "0.2"
    assert [f["tid"] for f in sdk.user_fills(user)] == [3, 2, 1]
    assert [f["tid"] for f in sdk.user_fills_by_time(user, T, T + 3000)] == [1, 2, 3]
    assert len(sdk.user_fills_by_time(user, T, None, aggregate_by_time=True)) == 2
    assert len(sdk.meta()["universe"]) == 8
    assert len(sdk.meta_and_asset_ctxs()[1]) == 8
    assert sdk.perp_dexs() == [None]
    assert len(sdk.spot_meta_and_asset_ctxs()[1]) == 3
    assert sdk.funding_history("BTC", 0) == [] and sdk.funding_history("BTC", 0, T) == []
    assert sdk.user_funding_history(user, 0) == []
    assert sdk.user_funding_history(user, 0, T) == []
    assert sdk.l2_snapshot("BTC")["levels"][1][0]["px"] == "100000.0"
    candles = sdk.candles_snapshot("BTC", "1m", T, T + 60_000)
    assert sorted(candles[0]) == ["T", "c", "h", "i", "l", "n", "o", "s", "t", "v"]
    assert sdk.user_fees(user)["userCrossRate"] == "0.00045"
    assert sdk.user_staking_summary(user)["nPendingWithdrawals"] == 0
    assert sdk.user_staking_delegations(user) == []
    assert sdk.user_staking_rewards(user) == []
    assert sdk.delegator_history(user) == []
    assert sdk.query_order_by_oid(user, 1)["order"]["status"] == "open"
    by_cloid = sdk.query_order_by_cloid(user, Cloid.from_str(CLOID))
    assert by_cloid["order"]["order"]["oid"] == 1
    assert sdk.query_order_by_cloid(user, Cloid.from_int(99)) == {"status": "unknownOid"}
    assert "referredBy" in sdk.query_referral_state(user)
    assert sdk.query_sub_accounts(user)[0]["name"] == "trading"
    assert sdk.query_user_to_multi_sig_signers(user) is None
    assert sdk.query_perp_deploy_auction_status()["durationSeconds"] == 0
    assert sdk.query_user_dex_abstraction_state(user) is False
    assert sdk.query_user_abstraction_state(user) == "default"
    assert len(sdk.historical_orders(user)) == 4
    assert len(sdk.user_non_funding_ledger_updates(user, 0)) == 1
    assert len(sdk.user_non_funding_ledger_updates(user, 0, T)) == 1
    assert sdk.portfolio(user)[0][0] == "day"
    assert sdk.user_twap_slice_fills(user) == []
    assert sdk.user_vault_equities(user) == []
    assert sdk.user_role(user) == {"role": "user"}
    assert sdk.user_rate_limit(user)["nRequestsUsed"] == 6
    assert sdk.query_spot_deploy_auction_status(user)["states"] == []
    assert sdk.extra_agents(user) == []


def test_the_sdk_raises_client_error_on_a_422(sdk: Info) -> None:
    with pytest.raises(ClientError) as raised:
        sdk.user_state("0x1234")
    assert raised.value.status_code == 422
    assert raised.value.error_message == ERR_DESERIALIZE
