"""The built-in market maker: its prices and sizes by hand, when it requotes, and a fresh
devnet with two-sided books on every market after its first block."""

from __future__ import annotations

from pathlib import Path

from node.chainstore import new_chain
from node.config import load_config
from node.market_maker import MARKET_MAKER, MarketMaker, quote_cloid
from protocol.actions import CancelByCloidAction, OrderAction
from protocol.orders import Resting

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "devnet.toml"
GENESIS_MS = 1_700_000_000_000
BTC, HYPE, HYPE_SPOT, UBTC_SPOT, PURR_SPOT = 0, 3, 10_001, 10_002, 10_000


def maker() -> MarketMaker:
    config = load_config(CONFIG)
    return MarketMaker(config.markets, config.quoting)


def oracle(btc: int = 1_000_000) -> dict[int, int]:
    """The default config's oracle prices at each perp's scale (BTC 100000.0 at 1 decimal)."""
    config = load_config(CONFIG)
    chain = new_chain(config, GENESIS_MS)
    prices = dict(chain.oracle.prices)
    prices[BTC] = btc
    return prices


def test_first_quotes_cancel_every_level_and_place_three_levels_a_side() -> None:
    mm = maker()
    cancels, orders = mm.quote(oracle(), frozenset())
    assert isinstance(cancels, CancelByCloidAction) and isinstance(orders, OrderAction)
    # 8 perps + 3 spot pairs, 3 levels, 2 sides.
    assert len(cancels.cancels) == 11 * 6
    btc = [o for o in orders.orders if o.a == BTC]
    # BTC at 100,000: levels 10, 20, 30 bps out; 20,000 USDC each, sizes rounded down to
    # 5 decimals: 20000 / 99900 = 0.200200.. -> 0.2002.
    assert [(o.b, o.p, o.s) for o in btc] == [
        (True, "99900", "0.2002"),
        (False, "100100", "0.1998"),
        (True, "99800", "0.2004"),
        (False, "100200", "0.1996"),
        (True, "99700", "0.2006"),
        (False, "100300", "0.1994"),
    ]
    assert btc[0].c == quote_cloid(BTC, True, 0) == "0x" + "0" * 16 + "0" * 7 + "1" + "0" * 8


def test_spot_quotes_follow_the_perp_or_the_configured_price() -> None:
    _, orders = maker().quote(oracle(), frozenset())
    assert isinstance(orders, OrderAction)
    first_bid: dict[int, str] = {}
    for o in orders.orders:
        if o.b:
            first_bid.setdefault(o.a, o.p)
    # @1 = HYPE/USDC at HYPE's oracle 30; @2 = UBTC/USDC at BTC's 100,000; PURR at 0.2.
    assert first_bid[HYPE_SPOT] == "29.97"
    assert first_bid[UBTC_SPOT] == "99900"
    assert first_bid[PURR_SPOT] == "0.1998"


def test_requotes_only_what_moved_or_traded() -> None:
    mm = maker()
    mm.quote(oracle(), frozenset())
    assert mm.quote(oracle(), frozenset()) == []
    # BTC moved: BTC and UBTC/USDC (priced from BTC) are requoted.
    cancels, orders = mm.quote(oracle(btc=1_010_000), frozenset())
    assert isinstance(cancels, CancelByCloidAction) and isinstance(orders, OrderAction)
    assert sorted({c.asset for c in cancels.cancels}) == [BTC, UBTC_SPOT]
    assert sorted({o.a for o in orders.orders}) == [BTC, UBTC_SPOT]
    # The maker traded on HYPE: its HYPE levels are put back.
    cancels, orders = mm.quote(oracle(btc=1_010_000), frozenset({HYPE}))
    assert isinstance(orders, OrderAction)
    assert {o.a for o in orders.orders} == {HYPE}


def test_a_fresh_chain_has_two_sided_books_after_the_first_block() -> None:
    config = load_config(CONFIG)
    chain = new_chain(config, GENESIS_MS)
    actions = [(MARKET_MAKER, a) for a in maker().quote(dict(chain.oracle.prices), frozenset())]
    block = chain.apply_block(1, GENESIS_MS + 1000, list(actions))
    order_response = block.actions[-1].response
    statuses = getattr(order_response, "statuses", ())
    assert statuses and all(isinstance(s, Resting) for s in statuses)
    for asset, book in chain.exchange.books.items():
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is not None and ask is not None and bid < ask, asset
