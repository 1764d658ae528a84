"""Oracle prices of the perps: one configured source per perp, published every 3 s of block time.

On Hyperliquid the validators publish a spot oracle price for every perp every 3 seconds
(spec 2.5). The devnet has no exchanges to read, so each perp's price comes from a source that
is a pure function of the block time, the asset and a seed, or from the devnet control.

Invariants (checked by `OracleState._check`):
- Every perp has exactly one source and one published price; no other asset has either.
- Every published price is an integer at the perp's price scale (Market.px_decimals decimals,
  so px * sz is micro-USDC) and is >= 1.
- Prices change only at a publication (`update`, when at least PUBLISH_INTERVAL_MS of block
  time passed since the previous one) or through `set_price`; `price` never computes anything.
- At each publication every perp gets its source's value at that block time, so the published
  price of a perp is its source's value at `last_publish` (a manual source's value is its px).
- The prices depend only on the sources, the start time and the block times of the
  publications: no clock, no `random`, no floats.

Choices where the spec is silent:
- Publication times: the first publication is at `start_time`, when the state is built; then
  at the first block whose time is >= the previous publication + 3000 ms, at that block's
  time (not on a fixed 3 s grid). A block time earlier than the last publication publishes
  nothing.
- Scripted points are in ms since `start_time`, strictly increasing. The price at elapsed time
  t is that of the last point at or before t; before the first point, the first point's.
- Random walk: its steps are on a fixed grid, step n at start_time + 3000 n, so its path is a
  function of time alone and does not depend on the block cadence. A publication shows the
  walk after every step due by its block time (several steps if blocks were far apart). Step n
  multiplies the level by (10000 + step_bps) / 10000 if the top bit of
  splitmix64(splitmix64(splitmix64(seed) ^ asset) ^ n) is set, else by
  (10000 - step_bps) / 10000; the seed is in [0, 2**64), so it fits the snapshot's 64-bit
  ints. The level is kept at WAD times the price scale, each step rounded to nearest (half
  up) at that precision, and never below one price unit; the published price is the level
  rounded to nearest, half up. Keeping the level finer than the price scale lets a walk on a
  coarse price move at all. Catching up costs one step per 3 s of block time skipped.
- `set_price` (the devnet control) takes effect for that asset at once, without counting as a
  publication of the others, and the asset's source becomes `ManualSource(px)` for good.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from protocol.fixed import WAD, parse_fixed
from protocol.markets import ConfigError, Markets

PUBLISH_INTERVAL_MS = 3_000
WALK_STEP_MS = 3_000
BPS = 10_000

_MASK64 = (1 << 64) - 1


class ConstantSource(msgspec.Struct, frozen=True, tag="constant"):
    px: int


class ScriptedSource(msgspec.Struct, frozen=True, tag="scripted"):
    points: tuple[tuple[int, int], ...]  # (ms since start_time, px), strictly increasing times


class RandomWalkSource(msgspec.Struct, frozen=True, tag="random_walk"):
    start_px: int
    step_bps: int  # 0 <= step_bps < 10000
    seed: int  # 0 <= seed < 2**64


class ManualSource(msgspec.Struct, frozen=True, tag="manual"):
    px: int


Source = ConstantSource | ScriptedSource | RandomWalkSource | ManualSource


class WalkState(msgspec.Struct, frozen=True):
    asset: int
    step: int  # steps taken: the level is the walk after step `step`
    level: int  # px * WAD, >= WAD


class WalkSnapshot(msgspec.Struct, frozen=True):
    asset: int
    step: int
    level: str  # decimal digits: px * WAD outgrows the 64-bit ints msgpack encodes


class OracleSnapshot(msgspec.Struct, frozen=True):
    """Everything the oracle's future depends on, ordered by asset, for the state hash. Every
    int in it fits in 64 bits (msgpack's limit); the walk levels are decimal strings."""

    start_time: int
    last_publish: int
    prices: tuple[tuple[int, int], ...]
    sources: tuple[tuple[int, Source], ...]
    walks: tuple[WalkSnapshot, ...]


def splitmix64(x: int) -> int:
    """The output of SplitMix64 whose state was `x` (Steele, Lea, Flood 2014): a 64-bit mix."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def walk_goes_up(seed: int, asset: int, step: int) -> bool:
    """The direction of step `step` of the walk of `asset` under `seed` (all three in
    [0, 2**64)): up iff the top bit of the mix of the three is set."""
    h = splitmix64(splitmix64(splitmix64(seed) ^ asset) ^ step)
    return h >> 63 == 1


def walk_step(level: int, up: bool, step_bps: int) -> int:
    """One walk step on a WAD-scaled level: rounded to nearest (half up), floored at WAD."""
    factor = BPS + step_bps if up else BPS - step_bps
    return max(WAD, (2 * level * factor + BPS) // (2 * BPS))


def scripted_price(points: tuple[tuple[int, int], ...], elapsed: int) -> int:
    """The px of the last point at or before `elapsed`; the first point's before it."""
    px = points[0][1]
    for at, point_px in points:
        if at > elapsed:
            break
        px = point_px
    return px


def _round_level(level: int) -> int:
    """A WAD-scaled level to the price scale, nearest, half up."""
    return (level + WAD // 2) // WAD


def validate_source(source: Source, where: str) -> None:
    """Raise ConfigError unless `source` describes prices >= 1 (and sane scripts and steps)."""
    if isinstance(source, ConstantSource | ManualSource):
        if source.px < 1:
            raise ConfigError(f"{where}: price must be positive, got {source.px}")
    elif isinstance(source, ScriptedSource):
        if not source.points:
            raise ConfigError(f"{where}: a scripted source needs at least one point")
        previous = -1
        for at, px in source.points:
            if at <= previous:
                raise ConfigError(f"{where}: point times must be >= 0 and strictly increasing")
            if px < 1:
                raise ConfigError(f"{where}: price must be positive, got {px}")
            previous = at
    else:
        if source.start_px < 1:
            raise ConfigError(f"{where}: price must be positive, got {source.start_px}")
        if not 0 <= source.step_bps < BPS:
            raise ConfigError(f"{where}: step_bps must be in [0, 10000), got {source.step_bps}")
        if not 0 <= source.seed <= _MASK64:
            raise ConfigError(f"{where}: seed must be in [0, 2**64), got {source.seed}")


class OracleState:
    """The published oracle price of every perp and the sources that produce them."""

    __slots__ = ("last_publish", "markets", "prices", "sources", "start_time", "walks")

    def __init__(self, markets: Markets, sources: dict[int, Source], start_time: int) -> None:
        perps = {p.asset for p in markets.perps}
        if set(sources) != perps:
            missing = sorted(perps - set(sources))
            extra = sorted(set(sources) - perps)
            raise ConfigError(
                f"oracle: sources must cover the perps: missing {missing}, extra {extra}"
            )
        for asset, source in sources.items():
            validate_source(source, f"oracle source of asset {asset}")
        self.markets = markets
        self.start_time = start_time
        self.last_publish = start_time
        self.sources: dict[int, Source] = dict(sorted(sources.items()))
        self.walks: dict[int, WalkState] = {}
        self.prices: dict[int, int] = {}
        for asset, source in self.sources.items():
            if isinstance(source, RandomWalkSource):
                self.walks[asset] = WalkState(asset, 0, source.start_px * WAD)
        self._publish(start_time)

    def update(self, block_time: int) -> bool:
        """Publish every perp's price if >= 3000 ms passed since the last publication."""
        if block_time - self.last_publish < PUBLISH_INTERVAL_MS:
            return False
        self._publish(block_time)
        return True

    def price(self, asset: int) -> int:
        """The last published price of perp `asset` (KeyError for any other asset)."""
        return self.prices[asset]

    def set_price(self, asset: int, px: int) -> None:
        """Devnet control: `px` is the asset's price from now on, until set again."""
        if asset not in self.prices:
            raise ValueError(f"oracle: asset {asset} is not a perp")
        if px < 1:
            raise ValueError(f"oracle: price must be positive, got {px}")
        self.sources[asset] = ManualSource(px)
        self.walks.pop(asset, None)
        self.prices[asset] = px

    def snapshot(self) -> OracleSnapshot:
        return OracleSnapshot(
            self.start_time,
            self.last_publish,
            tuple(sorted(self.prices.items())),
            tuple(sorted(self.sources.items(), key=lambda item: item[0])),
            tuple(
                WalkSnapshot(w.asset, w.step, str(w.level))
                for w in (self.walks[a] for a in sorted(self.walks))
            ),
        )

    @classmethod
    def restore(cls, markets: Markets, snapshot: OracleSnapshot) -> OracleState:
        """The state a snapshot was taken of."""
        state = cls(markets, dict(snapshot.sources), snapshot.start_time)
        state.last_publish = snapshot.last_publish
        state.prices = dict(snapshot.prices)
        state.walks = {w.asset: WalkState(w.asset, w.step, int(w.level)) for w in snapshot.walks}
        state._check()
        return state

    def _publish(self, block_time: int) -> None:
        elapsed = block_time - self.start_time
        for asset, source in self.sources.items():
            self.prices[asset] = self._source_price(asset, source, elapsed)
        self.last_publish = block_time

    def _source_price(self, asset: int, source: Source, elapsed: int) -> int:
        if isinstance(source, ConstantSource | ManualSource):
            return source.px
        if isinstance(source, ScriptedSource):
            return scripted_price(source.points, elapsed)
        walk = self.walks[asset]
        target = max(0, elapsed // WALK_STEP_MS)
        level = walk.level
        for step in range(walk.step + 1, target + 1):
            level = walk_step(level, walk_goes_up(source.seed, asset, step), source.step_bps)
        if target > walk.step:
            self.walks[asset] = WalkState(asset, target, level)
        return max(1, _round_level(level))

    def _check(self) -> None:
        perps = {p.asset for p in self.markets.perps}
        assert set(self.sources) == perps, "sources do not cover exactly the perps"
        assert set(self.prices) == perps, "prices do not cover exactly the perps"
        assert self.last_publish >= self.start_time, "published before the start"
        elapsed = self.last_publish - self.start_time
        for asset, source in self.sources.items():
            px = self.prices[asset]
            assert px >= 1, f"asset {asset}: price {px} < 1"
            if isinstance(source, ConstantSource | ManualSource):
                expected = source.px
            elif isinstance(source, ScriptedSource):
                expected = scripted_price(source.points, elapsed)
            else:
                walk = self.walks[asset]
                assert walk.asset == asset, f"asset {asset}: walk state filed under another"
                assert walk.level >= WAD, f"asset {asset}: walk level below one price unit"
                assert walk.step == max(0, elapsed // WALK_STEP_MS), f"asset {asset}: walk behind"
                expected = max(1, _round_level(walk.level))
            assert px == expected, f"asset {asset}: published {px}, source says {expected}"
        walking = {a for a, s in self.sources.items() if isinstance(s, RandomWalkSource)}
        assert set(self.walks) == walking, "walk states and random-walk sources disagree"


# The `[oracle]` config table: one sub-table per perp coin, decimals as strings.


class _ConstantSpec(msgspec.Struct, forbid_unknown_fields=True, tag_field="source", tag="constant"):
    px: str


class _ManualSpec(msgspec.Struct, forbid_unknown_fields=True, tag_field="source", tag="manual"):
    px: str


class _ScriptedSpec(msgspec.Struct, forbid_unknown_fields=True, tag_field="source", tag="scripted"):
    points: list[tuple[int, str]]


class _RandomWalkSpec(
    msgspec.Struct, forbid_unknown_fields=True, tag_field="source", tag="random_walk"
):
    px: str
    step_bps: int
    seed: int


_SourceSpec = _ConstantSpec | _ManualSpec | _ScriptedSpec | _RandomWalkSpec


def _parse_px(text: str, decimals: int, where: str) -> int:
    px = parse_fixed(text, decimals)
    if px is None or px < 1:
        raise ConfigError(
            f"{where}: {text!r} is not a positive decimal with at most {decimals} decimals"
        )
    return px


def load_oracle_sources(
    raw: dict[str, Any], markets: Markets, default_px: Mapping[str, str]
) -> dict[int, Source]:
    """Sources from the `[oracle]` table of a config, keyed by perp asset id.

    `raw` maps a perp's coin name to its table (`source = "constant" | "random_walk" |
    "scripted" | "manual"` and that source's fields). A perp the table does not name gets a
    constant source at `default_px[coin]`; decimals are strings at the perp's price scale."""
    perps = {p.name: p.asset for p in markets.perps}
    sources: dict[int, Source] = {}
    for coin, table in raw.items():
        where = f"oracle.{coin}"
        if coin not in perps:
            raise ConfigError(f"{where}: {coin!r} is not a perp")
        decimals = markets.by_asset[perps[coin]].px_decimals
        try:
            spec = msgspec.convert(table, _SourceSpec)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        source: Source
        if isinstance(spec, _ConstantSpec):
            source = ConstantSource(_parse_px(spec.px, decimals, f"{where}.px"))
        elif isinstance(spec, _ManualSpec):
            source = ManualSource(_parse_px(spec.px, decimals, f"{where}.px"))
        elif isinstance(spec, _ScriptedSpec):
            points = tuple(
                (at, _parse_px(px, decimals, f"{where}.points[{i}]"))
                for i, (at, px) in enumerate(spec.points)
            )
            source = ScriptedSource(points)
        else:
            px = _parse_px(spec.px, decimals, f"{where}.px")
            source = RandomWalkSource(px, spec.step_bps, spec.seed)
        validate_source(source, where)
        sources[perps[coin]] = source
    for coin, asset in perps.items():
        if asset in sources:
            continue
        if coin not in default_px:
            raise ConfigError(f"oracle.{coin}: no source configured and no default price")
        decimals = markets.by_asset[asset].px_decimals
        px = _parse_px(default_px[coin], decimals, f"default oracle price of {coin}")
        sources[asset] = ConstantSource(px)
    return dict(sorted(sources.items()))
