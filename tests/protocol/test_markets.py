"""Markets loaded from the genesis config."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.markets import ConfigError, Markets, load_markets


def test_default_genesis_names_and_ids(markets: Markets) -> None:
    """Perp ids are universe indices; spot pairs are 10000 + index with testnet-style names."""
    assert [p.name for p in markets.perps][:5] == ["BTC", "ETH", "SOL", "HYPE", "OP"]
    assert markets.by_coin["BTC"].asset == 0
    assert [t.name for t in markets.tokens] == ["USDC", "PURR", "HYPE", "UBTC"]
    assert [p.name for p in markets.pairs] == ["PURR/USDC", "@1", "@2"]
    assert markets.by_coin["PURR/USDC"].asset == 10_000
    assert markets.by_coin["@1"].asset == 10_001


def test_scales_follow_sz_decimals(markets: Markets) -> None:
    """Price decimals are (6 perp | 8 spot) - szDecimals; spot lots are in base wei."""
    btc = markets.by_coin["BTC"]
    assert (btc.sz_decimals, btc.px_decimals) == (5, 1)
    purr = markets.by_coin["PURR/USDC"]
    assert (purr.sz_decimals, purr.px_decimals, purr.base_wei_per_lot) == (0, 8, 10**5)
    ubtc = markets.by_coin["@2"]
    assert (ubtc.sz_decimals, ubtc.px_decimals, ubtc.base_wei_per_lot) == (5, 3, 10**5)


def test_default_fees(markets: Markets) -> None:
    """Perps 0.015% / 0.045%, spot 0.040% / 0.070%, in millionths."""
    fees = markets.fees
    assert (fees.perp_maker, fees.perp_taker, fees.spot_maker, fees.spot_taker) == (
        150,
        450,
        400,
        700,
    )


def test_margin_tables(markets: Markets) -> None:
    """Configured tiers load in micro-USDC; an id below 50 is one tier at that leverage."""
    table = markets.margin_table(56)
    assert [(t.lower_bound, t.max_leverage) for t in table.tiers] == [
        (0, 40),
        (10_000 * 10**6, 25),
        (50_000 * 10**6, 10),
    ]
    assert [(t.lower_bound, t.max_leverage) for t in markets.margin_table(20).tiers] == [(0, 20)]


def _genesis(**overrides: Any) -> dict[str, Any]:
    genesis: dict[str, Any] = {
        "perps": [{"name": "BTC", "sz_decimals": 5, "max_leverage": 40}],
        "spot_tokens": [
            {"name": "USDC", "sz_decimals": 8, "wei_decimals": 8, "token_id": "0x" + "0" * 32},
            {"name": "PURR", "sz_decimals": 0, "wei_decimals": 5, "token_id": "0x" + "1" * 32},
        ],
        "spot_pairs": [{"base": "PURR", "quote": "USDC", "canonical": True}],
    }
    genesis.update(overrides)
    return genesis


def test_bad_configs_are_refused() -> None:
    """Malformed genesis sections raise ConfigError naming the problem."""
    load_markets(_genesis())
    with pytest.raises(ConfigError, match="unknown token"):
        load_markets(_genesis(spot_pairs=[{"base": "DOGE", "quote": "USDC"}]))
    with pytest.raises(ConfigError, match="quote needs weiDecimals 8"):
        load_markets(_genesis(spot_pairs=[{"base": "USDC", "quote": "PURR"}]))
    with pytest.raises(ConfigError, match="unknown margin table"):
        load_markets(
            _genesis(perps=[{"name": "X", "sz_decimals": 1, "max_leverage": 5, "margin_table": 77}])
        )
    with pytest.raises(ConfigError, match=r"fees\.perp_taker"):
        load_markets(_genesis(fees={"perp_taker": "0.1234567"}))
    with pytest.raises(ConfigError, match="genesis"):
        load_markets(_genesis(perps=[{"name": "X"}]))
    bad_tiers = [
        {
            "id": 60,
            "tiers": [
                {"lower_bound": "0", "max_leverage": 10},
                {"lower_bound": "5", "max_leverage": 20},
            ],
        }
    ]
    with pytest.raises(ConfigError, match="tiers must rise"):
        load_markets(_genesis(margin_tables=bad_tiers))


def test_the_spot_pair_and_the_perp_of_a_token(markets: Markets) -> None:
    usdc, hype, ubtc, purr = (markets.token_by_name(n) for n in ("USDC", "HYPE", "UBTC", "PURR"))
    assert usdc and hype and ubtc and purr
    assert markets.pair_market(hype.index, usdc.index) == markets.by_coin["@1"]
    assert markets.pair_market(usdc.index, hype.index) is None
    assert markets.perp_of(hype) == markets.by_coin["HYPE"]
    assert markets.perp_of(ubtc) == markets.by_coin["BTC"]  # without its leading "U"
    assert markets.perp_of(purr) is None
