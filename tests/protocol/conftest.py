"""Shared fixtures for protocol tests: the default markets and a funded exchange."""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec
import pytest

from protocol.actions import OrderAction
from protocol.exchange import Exchange
from protocol.markets import Markets, load_markets
from protocol.orders import LimitWire, OrderTypeWire, OrderWire, TriggerWire

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "devnet.toml"
USD = 10**6
BTC, ETH, HYPE_PERP = 0, 1, 3
PURR_USDC, HYPE_USDC = 10_000, 10_001
USDC_TOKEN, PURR_TOKEN, HYPE_TOKEN = 0, 1, 2


def default_markets() -> Markets:
    with CONFIG.open("rb") as f:
        return load_markets(tomllib.load(f)["genesis"])


@pytest.fixture
def markets() -> Markets:
    return default_markets()


@pytest.fixture
def exchange(markets: Markets) -> Exchange:
    """Users a, b, c with 100k USDC on perps and 100k USDC, 1M PURR, 1000 HYPE on spot."""
    ex = Exchange(markets)
    for user in ("a", "b", "c"):
        ex.clearinghouse.credit_usd(user, 100_000 * USD)
        ex.clearinghouse.credit_spot(user, USDC_TOKEN, 100_000 * 10**8)
        ex.clearinghouse.credit_spot(user, PURR_TOKEN, 1_000_000 * 10**5)
        ex.clearinghouse.credit_spot(user, HYPE_TOKEN, 1_000 * 10**8)
    return ex


def limit(
    asset: int,
    is_buy: bool,
    px: str,
    sz: str,
    tif: str = "Gtc",
    reduce_only: bool = False,
    cloid: str | None = None,
) -> OrderWire:
    return OrderWire(asset, is_buy, px, sz, reduce_only, OrderTypeWire(limit=LimitWire(tif)), cloid)


def limit_action(
    asset: int,
    is_buy: bool,
    px: str,
    sz: str,
    tif: str = "Gtc",
    reduce_only: bool = False,
    cloid: str | None = None,
) -> OrderAction:
    """An order action of the one `limit` order."""
    return OrderAction((limit(asset, is_buy, px, sz, tif, reduce_only, cloid),))


def trigger(
    asset: int,
    is_buy: bool,
    px: str,
    sz: str,
    trigger_px: str,
    tpsl: str,
    is_market: bool = True,
    cloid: str | None = None,
) -> OrderWire:
    kind = OrderTypeWire(trigger=TriggerWire(is_market, trigger_px, tpsl))
    return OrderWire(asset, is_buy, px, sz, True, kind, cloid)


def fingerprint(ex: Exchange) -> bytes:
    """Everything an action could change, encoded deterministically."""
    books = {
        asset: [msgspec.structs.asdict(o) for o in book.resting_in_priority()]
        for asset, book in ex.books.items()
    }
    accounts = {
        user: {
            "usd": acct.usd,
            "positions": {a: (p.szi, p.entry_ntl) for a, p in acct.positions.items()},
            "total": acct.spot_total,
            "hold": acct.spot_hold,
        }
        for user, acct in ex.clearinghouse.accounts.items()
    }
    state = {
        "books": books,
        "accounts": accounts,
        "next_oid": ex.next_oid,
        "next_tid": ex.next_tid,
        "user_orders": ex.user_orders,
        "cloids": {f"{u}{c}": o for (u, c), o in ex.cloids.items()},
        "triggers": {oid: msgspec.structs.asdict(t) for oid, t in ex.triggers.items()},
        "children": ex.children,
        "scheduled": ex.scheduled_cancels,
        "fees": (ex.clearinghouse.perp_fees, ex.clearinghouse.spot_fees),
    }
    return msgspec.msgpack.Encoder(order="deterministic").encode(_canonical(state))


def _canonical(value: object) -> object:
    """Dicts become key-sorted pair lists, so non-str keys encode deterministically too."""
    if isinstance(value, dict):
        return [[k, _canonical(v)] for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))]
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value
