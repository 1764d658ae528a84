"""Markets: perp assets, spot tokens and pairs, margin tables and fees, from the genesis config.

Invariants:
- A perp's asset id is its index in the perp universe; a spot pair's is 10000 + its index.
- Every market carries the integer scales its prices and sizes use: a price has
  (6 for perps, 8 for spot) - szDecimals decimals, a size szDecimals.
- Every spot quote token has weiDecimals 8, so a spot notional px * sz (8 decimals) is already
  quote wei; a config that breaks this is refused when loaded.
- Margin tiers are sorted by lower bound with non-increasing max leverage; a table id below 50
  is the single tier with max leverage = id, as on Hyperliquid.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import msgspec

from protocol.fixed import (
    FEE_SCALE,
    PERP_MAX_DECIMALS,
    SPOT_MAX_DECIMALS,
    USD_DECIMALS,
    parse_fixed,
)

SPOT_ASSET_OFFSET = 10_000
QUOTE_WEI_DECIMALS = 8
MIN_ORDER_VALUE_UNITS = 10  # $10 on perps, 10 quote tokens on spot


class ConfigError(ValueError):
    """The genesis config is malformed: raised at load time, before any block runs."""


class MarginTier(msgspec.Struct, frozen=True):
    lower_bound: int  # position notional in micro-USDC where this tier starts
    max_leverage: int


class MarginTable(msgspec.Struct, frozen=True):
    id: int
    description: str
    tiers: tuple[MarginTier, ...]


class PerpAsset(msgspec.Struct, frozen=True):
    asset: int
    name: str
    sz_decimals: int
    max_leverage: int
    margin_table_id: int
    only_isolated: bool = False


class SpotToken(msgspec.Struct, frozen=True):
    index: int
    name: str
    sz_decimals: int
    wei_decimals: int
    token_id: str
    is_canonical: bool
    full_name: str | None = None


class SpotPair(msgspec.Struct, frozen=True):
    index: int
    name: str
    base: int
    quote: int
    is_canonical: bool


class FeeSchedule(msgspec.Struct, frozen=True):
    """Rates in millionths of notional (FEE_SCALE)."""

    perp_maker: int
    perp_taker: int
    spot_maker: int
    spot_taker: int


class Market(msgspec.Struct, frozen=True):
    """What the order path needs of one tradable asset, perp or spot."""

    asset: int
    coin: str
    is_spot: bool
    sz_decimals: int
    px_decimals: int
    min_notional: int  # in notional units: micro-USDC for perps, quote wei for spot
    maker_fee: int
    taker_fee: int
    max_leverage: int  # perps; 1 for spot
    base_token: int  # spot only; -1 for perps
    quote_token: int  # spot only; -1 for perps
    base_wei_per_lot: int  # spot only: 10**(weiDecimals - szDecimals) of the base; 0 for perps


class Markets(msgspec.Struct, frozen=True):
    perps: tuple[PerpAsset, ...]
    tokens: tuple[SpotToken, ...]
    pairs: tuple[SpotPair, ...]
    margin_tables: tuple[MarginTable, ...]
    fees: FeeSchedule
    by_asset: dict[int, Market]
    by_coin: dict[str, Market]

    def market(self, asset: int) -> Market | None:
        return self.by_asset.get(asset)

    def token_by_name(self, name: str) -> SpotToken | None:
        for token in self.tokens:
            if token.name == name:
                return token
        return None

    def pair_market(self, base: int, quote: int) -> Market | None:
        """The spot market trading token `base` against token `quote`, if any."""
        for pair in self.pairs:
            if pair.base == base and pair.quote == quote:
                return self.by_coin[pair.name]
        return None

    def perp_of(self, token: SpotToken) -> Market | None:
        """The perp that prices a spot token: the one of the same name, else the one named
        without a leading "U" (UBTC -> BTC)."""
        names = (token.name, token.name[1:]) if token.name.startswith("U") else (token.name,)
        for name in names:
            market = self.by_coin.get(name)
            if market is not None and not market.is_spot:
                return market
        return None

    def margin_table(self, table_id: int) -> MarginTable:
        for table in self.margin_tables:
            if table.id == table_id:
                return table
        return MarginTable(table_id, "", (MarginTier(0, table_id),))


# Genesis as written in the TOML config. Decimal values are strings, parsed exactly.


class _TierSpec(msgspec.Struct, forbid_unknown_fields=True):
    lower_bound: str
    max_leverage: int


class _MarginTableSpec(msgspec.Struct, forbid_unknown_fields=True):
    id: int
    tiers: list[_TierSpec]
    description: str = ""


class _PerpSpec(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    sz_decimals: int
    max_leverage: int
    margin_table: int | None = None
    only_isolated: bool = False


class _TokenSpec(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    sz_decimals: int
    wei_decimals: int
    token_id: str
    full_name: str | None = None
    is_canonical: bool = True


class _PairSpec(msgspec.Struct, forbid_unknown_fields=True):
    base: str
    quote: str
    canonical: bool = False


class _FeesSpec(msgspec.Struct, forbid_unknown_fields=True):
    perp_maker: str = "0.00015"
    perp_taker: str = "0.00045"
    spot_maker: str = "0.0004"
    spot_taker: str = "0.0007"


class GenesisSpec(msgspec.Struct, forbid_unknown_fields=True):
    perps: list[_PerpSpec]
    spot_tokens: list[_TokenSpec]
    spot_pairs: list[_PairSpec]
    margin_tables: list[_MarginTableSpec] = msgspec.field(default_factory=list)
    fees: _FeesSpec = msgspec.field(default_factory=_FeesSpec)


def _fee_rate(text: str, field: str) -> int:
    rate = parse_fixed(text, 6)
    if rate is None or rate < 0 or rate >= FEE_SCALE:
        raise ConfigError(f"fees.{field}: {text!r} is not a rate in [0, 1) with <= 6 decimals")
    return rate


def _margin_table(spec: _MarginTableSpec) -> MarginTable:
    tiers: list[MarginTier] = []
    for tier in spec.tiers:
        bound = parse_fixed(tier.lower_bound, USD_DECIMALS)
        if bound is None or bound < 0 or tier.max_leverage < 1:
            raise ConfigError(f"margin table {spec.id}: bad tier {tier!r}")
        tiers.append(MarginTier(bound, tier.max_leverage))
    if not tiers or tiers[0].lower_bound != 0:
        raise ConfigError(f"margin table {spec.id}: the first tier must start at 0")
    for lower, upper in pairwise(tiers):
        if upper.lower_bound <= lower.lower_bound or upper.max_leverage > lower.max_leverage:
            raise ConfigError(f"margin table {spec.id}: tiers must rise in bound, fall in leverage")
    return MarginTable(spec.id, spec.description, tuple(tiers))


def load_markets(genesis: dict[str, Any]) -> Markets:
    """Markets from the `[genesis]` table of a config, already parsed from TOML."""
    try:
        spec = msgspec.convert(genesis, GenesisSpec)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"genesis: {exc}") from exc
    fees = FeeSchedule(
        _fee_rate(spec.fees.perp_maker, "perp_maker"),
        _fee_rate(spec.fees.perp_taker, "perp_taker"),
        _fee_rate(spec.fees.spot_maker, "spot_maker"),
        _fee_rate(spec.fees.spot_taker, "spot_taker"),
    )
    tables = tuple(_margin_table(t) for t in spec.margin_tables)
    table_ids = {t.id for t in tables}
    by_asset: dict[int, Market] = {}
    by_coin: dict[str, Market] = {}

    perps: list[PerpAsset] = []
    for asset, p in enumerate(spec.perps):
        if not 0 <= p.sz_decimals < PERP_MAX_DECIMALS or p.max_leverage < 1:
            raise ConfigError(f"perp {p.name}: bad szDecimals or maxLeverage")
        table_id = p.margin_table if p.margin_table is not None else p.max_leverage
        if table_id >= 50 and table_id not in table_ids:
            raise ConfigError(f"perp {p.name}: unknown margin table {table_id}")
        perp = PerpAsset(asset, p.name, p.sz_decimals, p.max_leverage, table_id, p.only_isolated)
        perps.append(perp)
        market = Market(
            asset=asset,
            coin=p.name,
            is_spot=False,
            sz_decimals=p.sz_decimals,
            px_decimals=PERP_MAX_DECIMALS - p.sz_decimals,
            min_notional=MIN_ORDER_VALUE_UNITS * 10**USD_DECIMALS,
            maker_fee=fees.perp_maker,
            taker_fee=fees.perp_taker,
            max_leverage=p.max_leverage,
            base_token=-1,
            quote_token=-1,
            base_wei_per_lot=0,
        )
        by_asset[asset] = market
        by_coin[p.name] = market

    tokens: list[SpotToken] = []
    for index, t in enumerate(spec.spot_tokens):
        if not 0 <= t.sz_decimals <= t.wei_decimals or t.sz_decimals > SPOT_MAX_DECIMALS:
            raise ConfigError(f"token {t.name}: need 0 <= szDecimals <= weiDecimals, <= 8")
        tokens.append(
            SpotToken(
                index,
                t.name,
                t.sz_decimals,
                t.wei_decimals,
                t.token_id,
                t.is_canonical,
                t.full_name,
            )
        )
    token_index = {t.name: t.index for t in tokens}

    pairs: list[SpotPair] = []
    for index, pair in enumerate(spec.spot_pairs):
        if pair.base not in token_index or pair.quote not in token_index:
            raise ConfigError(f"spot pair {pair.base}/{pair.quote}: unknown token")
        base = tokens[token_index[pair.base]]
        quote = tokens[token_index[pair.quote]]
        if quote.wei_decimals != QUOTE_WEI_DECIMALS:
            raise ConfigError(f"spot pair {pair.base}/{pair.quote}: quote needs weiDecimals 8")
        name = f"{base.name}/{quote.name}" if pair.canonical else f"@{index}"
        pairs.append(SpotPair(index, name, base.index, quote.index, pair.canonical))
        asset = SPOT_ASSET_OFFSET + index
        market = Market(
            asset=asset,
            coin=name,
            is_spot=True,
            sz_decimals=base.sz_decimals,
            px_decimals=SPOT_MAX_DECIMALS - base.sz_decimals,
            min_notional=MIN_ORDER_VALUE_UNITS * 10**QUOTE_WEI_DECIMALS,
            maker_fee=fees.spot_maker,
            taker_fee=fees.spot_taker,
            max_leverage=1,
            base_token=base.index,
            quote_token=quote.index,
            base_wei_per_lot=10 ** (base.wei_decimals - base.sz_decimals),
        )
        by_asset[asset] = market
        by_coin[name] = market

    return Markets(tuple(perps), tuple(tokens), tuple(pairs), tables, fees, by_asset, by_coin)
