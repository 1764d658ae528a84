"""Node config: defaults, the `[node]` table, overrides, and one error type for both halves."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from node.config import ConfigError, NodeConfig, load_config, override, parse_config
from protocol.markets import ConfigError as MarketsConfigError
from protocol.oracle import ConstantSource

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "devnet.toml"


def test_default_config_loads_with_default_node_settings() -> None:
    config = load_config(CONFIG)
    assert (config.block_time_ms, config.data_dir, config.port) == (1000, "data", 3001)
    assert config.source == str(CONFIG)
    assert config.markets.by_coin["BTC"].asset == 0
    assert config.markets.by_coin["PURR/USDC"].asset == 10_000


def test_node_table_sets_node_settings() -> None:
    raw = tomllib.loads(CONFIG.read_text())
    raw["node"] = {
        "block_time_ms": 250,
        "mining": "manual",
        "data_dir": "/tmp/devnet",
        "port": 0,
        "snapshot_every": 50,
        "verify_processes": 2,
    }
    config = parse_config(raw, "inline")
    assert config == NodeConfig(
        config.markets,
        config.oracle_sources,
        config.lending,
        config.dev_accounts,
        config.market_maker,
        config.quoting,
        250,
        "manual",
        "/tmp/devnet",
        0,
        50,
        2,
        "inline",
    )


def test_market_maker_table() -> None:
    raw = tomllib.loads(CONFIG.read_text())
    raw["market_maker"] = {"levels": 2, "spread_bps": 5, "level_usdc": "1000.5"}
    config = parse_config(raw, "inline")
    assert config.market_maker.enabled
    assert (config.quoting.levels, config.quoting.spread_bps) == (2, 5)
    assert config.quoting.level_micro == 1_000_500_000
    # PURR/USDC (asset 10000, 8 - szDecimals 0 = 8 price decimals) has no perp: 0.2 from the
    # default spot_prices.
    assert config.quoting.spot_refs == ((10_000, 20_000_000),)
    assert not override(config, market_maker=False).market_maker.enabled


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"levels": 0}, "market_maker.levels"),
        ({"spread_bps": 0}, "market_maker.spread_bps"),
        ({"level_usdc": "-1"}, "market_maker.level_usdc"),
        ({"spot_prices": {"NOPE": "1"}}, "no NOPE/USDC spot pair"),
        ({"spot": {"NOPE": "1"}}, "market_maker.spot: unknown token"),
        ({"colour": "red"}, "market_maker"),
        ({"supply": {"USDC": "100000001"}}, "more than market_maker.spot holds"),
    ],
)
def test_bad_market_maker_table(table: dict[str, object], message: str) -> None:
    raw = tomllib.loads(CONFIG.read_text())
    raw["market_maker"] = table
    with pytest.raises(MarketsConfigError, match=message):
        parse_config(raw, "inline")


def test_unknown_mining_mode() -> None:
    raw = tomllib.loads(CONFIG.read_text())
    raw["node"] = {"mining": "sometimes"}
    with pytest.raises(ConfigError, match=r"node\.mining"):
        parse_config(raw, "inline")


@pytest.mark.parametrize("processes", [-1, 65])
def test_verify_processes_out_of_range(processes: int) -> None:
    raw = tomllib.loads(CONFIG.read_text())
    raw["node"] = {"verify_processes": processes}
    with pytest.raises(ConfigError, match=r"node\.verify_processes"):
        parse_config(raw, "inline")


def test_override_replaces_and_checks() -> None:
    config = load_config(CONFIG)
    changed = override(config, block_time_ms=10, port=4000)
    assert (changed.block_time_ms, changed.data_dir, changed.port) == (10, "data", 4000)
    assert override(config) == config
    with pytest.raises(ConfigError, match=r"node\.block_time_ms"):
        override(config, block_time_ms=0)


def test_one_except_catches_both_halves() -> None:
    assert issubclass(ConfigError, MarketsConfigError)
    with pytest.raises(MarketsConfigError, match="genesis"):
        parse_config({"genesis": {"perps": "BTC"}})


def test_default_config_prices_every_perp() -> None:
    """Every perp of the default genesis has an oracle source, at its price scale."""
    config = load_config(CONFIG)
    assert set(config.oracle_sources) == {perp.asset for perp in config.markets.perps}
    assert config.oracle_sources[0] == ConstantSource(1_000_000)  # BTC 100000, 1 decimal
    raw = tomllib.loads(CONFIG.read_text())
    del raw["oracle"]["ETH"]
    with pytest.raises(MarketsConfigError, match=r"oracle\.ETH"):
        parse_config(raw, "inline")
