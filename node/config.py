"""Node configuration: one TOML file with the `[genesis]` markets, the `[oracle]` price source of
every perp, the optional `[lending]` reserves (the pre-alpha defaults when absent), the optional
`[dev_accounts]` and `[market_maker]` (funding and quoting), and optional `[node]` settings.

Invariants:
- A `NodeConfig` is valid once built: `load_config`, `parse_config` and `override` check every
  setting and raise `ConfigError` naming the problem, never a bare KeyError or decode error.
- `ConfigError` here subclasses `protocol.markets.ConfigError`, so one `except` catches both a
  bad genesis and a bad node setting.
- Unknown top-level tables and unknown `[node]` keys are refused, as protocol/ refuses unknown
  genesis keys: a typo fails at start instead of being silently ignored.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from node.devaccounts import DevAccountsSpec, parse_funding
from node.market_maker import MarketMakerSpec, Quoting, maker_funding, parse_quoting
from protocol.lending import ReserveParams, load_lending
from protocol.markets import ConfigError as MarketsConfigError
from protocol.markets import Markets, load_markets
from protocol.oracle import Source, load_oracle_sources

DEFAULT_CONFIG_PATH = "configs/devnet.toml"
DEFAULT_BLOCK_TIME_MS = 1000
DEFAULT_DATA_DIR = "data"
DEFAULT_PORT = 3001
DEFAULT_SNAPSHOT_EVERY = 1000
# Worker processes checking /exchange signatures off the node's thread (node/api/verifier.py).
DEFAULT_VERIFY_PROCESSES = 1
MAX_VERIFY_PROCESSES = 64
MAX_PORT = 65_535
KNOWN_TABLES = frozenset({"genesis", "node", "oracle", "lending", "dev_accounts", "market_maker"})
MINING_MODES = ("interval", "instant", "mixed", "manual")

SpecT = TypeVar("SpecT", bound=msgspec.Struct)


class ConfigError(MarketsConfigError):
    """The node part of the config (the file itself, `[node]`, a command-line override) is bad."""


class NodeConfig(msgspec.Struct, frozen=True):
    markets: Markets
    oracle_sources: dict[int, Source]
    lending: dict[int, ReserveParams]
    dev_accounts: DevAccountsSpec
    market_maker: MarketMakerSpec
    quoting: Quoting  # the market maker's settings, parsed
    block_time_ms: int = DEFAULT_BLOCK_TIME_MS
    mining: str = "interval"  # one of MINING_MODES
    data_dir: str = DEFAULT_DATA_DIR
    port: int = DEFAULT_PORT
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY  # blocks between snapshots of the chain
    verify_processes: int = DEFAULT_VERIFY_PROCESSES  # 0: signatures checked on the node's thread
    source: str = "<config>"  # where the config came from, for messages and the banner
    text: str = ""  # the TOML text itself, recorded as the chain's genesis


class _NodeSpec(msgspec.Struct, forbid_unknown_fields=True):
    """The `[node]` table as written."""

    block_time_ms: int = DEFAULT_BLOCK_TIME_MS
    mining: str = "interval"
    data_dir: str = DEFAULT_DATA_DIR
    port: int = DEFAULT_PORT
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY
    verify_processes: int = DEFAULT_VERIFY_PROCESSES


def _check_settings(block_time_ms: int, mining: str, data_dir: str, port: int) -> None:
    if mining not in MINING_MODES:
        raise ConfigError(f"node.mining: {mining!r} is not one of {', '.join(MINING_MODES)}")
    if block_time_ms < 1:
        raise ConfigError(f"node.block_time_ms: {block_time_ms} is not a positive number of ms")
    if not data_dir:
        raise ConfigError("node.data_dir: must not be empty")
    if not 0 <= port <= MAX_PORT:
        raise ConfigError(f"node.port: {port} is not a TCP port (0 to {MAX_PORT})")


def _defaults_kept(
    spec: SpecT, table: dict[str, Any], field: str, keep: Callable[[str], object]
) -> SpecT:
    """`spec` with its dict `field` cut down to the entries whose name `keep` accepts, unless
    the table sets that field: the defaults name tokens this genesis may not have."""
    if field in table:
        return spec
    kept = {name: value for name, value in getattr(spec, field).items() if keep(name)}
    return msgspec.structs.replace(spec, **{field: kept})


def parse_config(raw: dict[str, Any], source: str = "<config>") -> NodeConfig:
    """A `NodeConfig` from a config already parsed from TOML."""
    unknown = sorted(set(raw) - KNOWN_TABLES)
    if unknown:
        raise ConfigError(
            f"unknown table(s) {', '.join(unknown)}; "
            "expected genesis, oracle, lending, dev_accounts, market_maker and node"
        )
    genesis = raw.get("genesis")
    if genesis is None:
        raise ConfigError("missing [genesis] table")
    if not isinstance(genesis, dict):
        raise ConfigError("genesis must be a table")
    markets = load_markets(genesis)
    oracle = raw.get("oracle", {})
    if not isinstance(oracle, dict):
        raise ConfigError("oracle must be a table")
    sources = load_oracle_sources(oracle, markets, {})
    lending = raw.get("lending")
    if lending is not None and not isinstance(lending, dict):
        raise ConfigError("lending must be a table")
    reserves = load_lending(lending, markets)
    dev_table = raw.get("dev_accounts", {})
    try:
        dev = msgspec.convert(dev_table, DevAccountsSpec)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"dev_accounts: {exc}") from exc
    if not 0 <= dev.count <= 1000:
        raise ConfigError(f"dev_accounts.count: {dev.count} is not in [0, 1000]")
    dev = _defaults_kept(dev, dev_table, "spot", markets.token_by_name)
    parse_funding(dev, markets)  # refuse bad amounts at load time
    maker_table = raw.get("market_maker", {})
    try:
        maker = msgspec.convert(maker_table, MarketMakerSpec)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"market_maker: {exc}") from exc
    maker = _defaults_kept(maker, maker_table, "spot", markets.token_by_name)
    # After spot: the default supply covers only the tokens the maker is still funded with.
    maker = _defaults_kept(maker, maker_table, "supply", lambda name: name in maker.spot)
    maker = _defaults_kept(maker, maker_table, "spot_prices", markets.token_by_name)
    maker_funding(maker, markets)
    quoting = parse_quoting(maker, markets)
    try:
        spec = msgspec.convert(raw.get("node", {}), _NodeSpec)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"node: {exc}") from exc
    _check_settings(spec.block_time_ms, spec.mining, spec.data_dir, spec.port)
    if spec.snapshot_every < 1:
        raise ConfigError(f"node.snapshot_every: {spec.snapshot_every} is not a positive number")
    if not 0 <= spec.verify_processes <= MAX_VERIFY_PROCESSES:
        raise ConfigError(
            f"node.verify_processes: {spec.verify_processes} is not in [0, {MAX_VERIFY_PROCESSES}]"
        )
    return NodeConfig(
        markets,
        sources,
        reserves,
        dev,
        maker,
        quoting,
        spec.block_time_ms,
        spec.mining,
        spec.data_dir,
        spec.port,
        spec.snapshot_every,
        spec.verify_processes,
        source,
    )


def parse_config_text(text: str, source: str) -> NodeConfig:
    """A `NodeConfig` from TOML text, recording the text as the genesis (raises
    tomllib.TOMLDecodeError and the config errors)."""
    config = parse_config(tomllib.loads(text), source)
    return msgspec.structs.replace(config, text=text)


def load_config(path: str | Path) -> NodeConfig:
    """Read and check the TOML config file at `path`, once (the text parsed is the text
    recorded); every error message starts with it."""
    try:
        with open(path, "rb") as file:
            text = file.read().decode("utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from exc
    try:
        return parse_config_text(text, str(path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except MarketsConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def override(
    config: NodeConfig,
    *,
    block_time_ms: int | None = None,
    mining: str | None = None,
    data_dir: str | None = None,
    port: int | None = None,
    market_maker: bool | None = None,
) -> NodeConfig:
    """`config` with the given settings replaced (command-line options), checked again."""
    block_time_ms = config.block_time_ms if block_time_ms is None else block_time_ms
    mining = config.mining if mining is None else mining
    data_dir = config.data_dir if data_dir is None else data_dir
    port = config.port if port is None else port
    _check_settings(block_time_ms, mining, data_dir, port)
    maker = config.market_maker
    if market_maker is not None:
        maker = msgspec.structs.replace(maker, enabled=market_maker)
    return msgspec.structs.replace(
        config,
        block_time_ms=block_time_ms,
        mining=mining,
        data_dir=data_dir,
        port=port,
        market_maker=maker,
    )
