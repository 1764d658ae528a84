"""Oracle sources, the 3 s publication schedule, the devnet price control and config parsing.

Price scales of the default perps: BTC 1 decimal (100000 -> 1_000_000), ETH 2 (3000 ->
300_000), SOL 4 (150 -> 1_500_000), DOGE 6.
"""

from __future__ import annotations

import tomllib
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.fixed import WAD
from protocol.markets import ConfigError, Markets
from protocol.oracle import (
    ConstantSource,
    ManualSource,
    OracleSnapshot,
    OracleState,
    RandomWalkSource,
    ScriptedSource,
    Source,
    load_oracle_sources,
    splitmix64,
    walk_goes_up,
    walk_step,
)
from tests.protocol.conftest import default_markets

BTC, ETH, SOL, DOGE = 0, 1, 2, 6
T0 = 1_700_000_000_000  # genesis block time, ms

DEFAULTS = {
    "BTC": "100000",
    "ETH": "3000",
    "SOL": "150",
    "HYPE": "25",
    "OP": "2",
    "ARB": "1",
    "DOGE": "0.2",
    "AVAX": "30",
}


def sources_with(markets: Markets, **overrides: Source) -> dict[int, Source]:
    """Constant 1.0-ish sources (1000 units) for every perp, with some replaced by coin name."""
    sources: dict[int, Source] = {p.asset: ConstantSource(1000) for p in markets.perps}
    for coin, source in overrides.items():
        sources[markets.by_coin[coin].asset] = source
    return sources


def oracle_with(markets: Markets, **overrides: Source) -> OracleState:
    oracle = OracleState(markets, sources_with(markets, **overrides), T0)
    oracle._check()
    return oracle


def test_constant_source_publishes_at_start_and_never_moves(markets: Markets) -> None:
    """A constant source's price is there from the start time and stays."""
    oracle = oracle_with(markets, BTC=ConstantSource(1_000_000))
    assert oracle.price(BTC) == 1_000_000
    assert oracle.last_publish == T0
    for k in range(1, 5):
        assert oracle.update(T0 + 3000 * k)
        assert oracle.price(BTC) == 1_000_000
        oracle._check()


def test_publishes_only_after_3_seconds(markets: Markets) -> None:
    """update publishes at the first block >= 3000 ms after the previous publication."""
    oracle = oracle_with(markets)
    assert not oracle.update(T0 + 2_999)
    assert oracle.last_publish == T0
    assert oracle.update(T0 + 3_500)
    assert oracle.last_publish == T0 + 3_500
    assert not oracle.update(T0 + 6_000)  # only 2500 ms after the last publication
    assert not oracle.update(T0 + 6_499)
    assert oracle.update(T0 + 6_500)
    assert not oracle.update(T0 + 6_500)  # a second block at the same time
    assert not oracle.update(T0 + 1_000)  # a time before the last publication
    assert oracle.last_publish == T0 + 6_500
    oracle._check()


def test_scripted_path_steps_at_its_times(markets: Markets) -> None:
    """SOL 150 until 60 s after start, then 155: the step shows at the first publication >= 60 s."""
    oracle = oracle_with(markets, SOL=ScriptedSource(((0, 1_500_000), (60_000, 1_550_000))))
    seen = {}
    for k in range(1, 25):
        assert oracle.update(T0 + 3_000 * k)
        seen[3_000 * k] = oracle.price(SOL)
        oracle._check()
    assert oracle.price(SOL) == 1_550_000
    assert seen[57_000] == 1_500_000
    assert seen[60_000] == 1_550_000
    assert all(px == 1_500_000 for t, px in seen.items() if t < 60_000)
    assert all(px == 1_550_000 for t, px in seen.items() if t >= 60_000)


def test_scripted_before_first_point_and_skipped_points(markets: Markets) -> None:
    """Before its first point a script shows that point; points between publications are
    never shown; after the last point it stays at the last."""
    script = ScriptedSource(((6_000, 10), (7_000, 20), (8_000, 30), (20_000, 40)))
    oracle = oracle_with(markets, SOL=script)
    assert oracle.price(SOL) == 10
    oracle.update(T0 + 3_000)
    assert oracle.price(SOL) == 10
    oracle.update(T0 + 6_999)
    assert oracle.price(SOL) == 10
    oracle.update(T0 + 10_000)  # 7000 (20) is skipped
    assert oracle.price(SOL) == 30
    oracle.update(T0 + 19_999)
    assert oracle.price(SOL) == 30
    oracle.update(T0 + 100_000)
    assert oracle.price(SOL) == 40
    oracle._check()


def test_splitmix64_reference_vectors() -> None:
    """The mix matches SplitMix64's reference outputs (seed 0; seed 1234567, five draws)."""
    gamma = 0x9E3779B97F4A7C15
    assert splitmix64(0) == 0xE220A8397B1DCDAF
    outputs = [splitmix64((1_234_567 + i * gamma) % 2**64) for i in range(5)]
    assert outputs == [
        6457827717110365317,
        3203168211198807973,
        9817491932198370423,
        4593380528125082431,
        16408922859458223821,
    ]


def test_walk_step_arithmetic() -> None:
    """A step multiplies by (1 +- bps/10000) at WAD precision, half up, floored at 1 unit."""
    assert walk_step(10 * WAD, True, 10) == 10_010 * WAD // 1000  # 10 * 1.001
    assert walk_step(10 * WAD, False, 10) == 9_990 * WAD // 1000  # 10 * 0.999
    assert walk_step(WAD + 5_000, True, 1) == WAD + 100_000_000_000_000 + 5_001  # x.5 -> up
    assert walk_step(WAD, False, 5_000) == WAD  # 0.5 is below the floor of one unit


def test_random_walk_first_steps_by_hand(markets: Markets) -> None:
    """ETH from 3000.00 with 10 bps steps: each 3 s moves by exactly 0.1%, half-up rounded."""
    walk = RandomWalkSource(300_000, 10, 7)
    oracle = oracle_with(markets, ETH=walk)
    assert oracle.price(ETH) == 300_000
    level = 300_000 * WAD
    for step in range(1, 6):
        oracle.update(T0 + 3_000 * step)
        up = walk_goes_up(7, ETH, step)
        level = level * (10_010 if up else 9_990) // 10_000  # exact for a few steps
        assert oracle.price(ETH) == (level + WAD // 2) // WAD
        oracle._check()
    # Spelled out: splitmix64 picks these directions for seed 7, asset 1, steps 1..5.
    directions = [walk_goes_up(7, ETH, s) for s in range(1, 6)]
    assert directions == [True, False, True, True, True]
    assert oracle.price(ETH) == 300_901  # 3000 * 1.001^4 * 0.999 = 3009.005994 -> 3009.01


def test_random_walk_is_reproducible_and_seeded(markets: Markets) -> None:
    """The same seed gives the same path; another seed or another asset a different one."""

    def path(seed: int, coin: str) -> list[int]:
        asset = markets.by_coin[coin].asset
        oracle = oracle_with(markets, **{coin: RandomWalkSource(300_000, 10, seed)})
        prices = []
        for k in range(1, 41):
            oracle.update(T0 + 3_000 * k)
            prices.append(oracle.price(asset))
        return prices

    assert path(7, "ETH") == path(7, "ETH")
    assert path(7, "ETH") != path(8, "ETH")
    assert path(7, "ETH") != path(7, "SOL")
    assert len(set(path(7, "ETH"))) > 5


def test_random_walk_moves_only_every_3_seconds(markets: Markets) -> None:
    """Blocks every 700 ms: the price changes only at publications, and each publication shows
    the walk at its 3 s grid step, the same path a 3 s block cadence sees."""
    walk = RandomWalkSource(300_000, 25, 11)
    fast = oracle_with(markets, ETH=walk)
    grid = oracle_with(markets, ETH=walk)
    grid_path = {0: grid.price(ETH)}
    for k in range(1, 30):
        grid.update(T0 + 3_000 * k)
        grid_path[k] = grid.price(ETH)
    previous = fast.price(ETH)
    for t in range(700, 87_000, 700):
        published = fast.update(T0 + t)
        if not published:
            assert fast.price(ETH) == previous
        else:
            assert fast.price(ETH) == grid_path[t // 3_000]
        previous = fast.price(ETH)
        fast._check()
    assert len(set(grid_path.values())) > 5


def test_random_walk_catches_up_over_a_gap(markets: Markets) -> None:
    """One publication 30 s after start shows the walk after all 10 steps."""
    walk = RandomWalkSource(300_000, 10, 3)
    stepwise = oracle_with(markets, ETH=walk)
    for k in range(1, 11):
        stepwise.update(T0 + 3_000 * k)
    jump = oracle_with(markets, ETH=walk)
    jump.update(T0 + 31_000)
    assert jump.price(ETH) == stepwise.price(ETH)
    assert jump.snapshot().walks == stepwise.snapshot().walks


@given(
    st.integers(min_value=1, max_value=100),
    st.integers(min_value=0, max_value=9_999),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=30),
)
def test_random_walk_stays_positive(start: int, step_bps: int, seed: int, gaps: list[int]) -> None:
    """Whatever the walk and the block times, prices stay >= 1 and the invariants hold."""
    markets = default_markets()
    oracle = oracle_with(markets, DOGE=RandomWalkSource(start, step_bps, seed))
    t = T0
    for gap in gaps:
        t += gap
        before = oracle.last_publish
        assert oracle.update(t) == (t - before >= 3_000)
        assert oracle.price(DOGE) >= 1
        oracle._check()


def test_set_price_takes_effect_at_once_and_sticks(markets: Markets) -> None:
    """The devnet control sets the price now, without a publication, and the source becomes
    manual: later publications keep it."""
    oracle = oracle_with(markets, ETH=RandomWalkSource(300_000, 50, 1), BTC=ConstantSource(7))
    oracle.update(T0 + 3_000)
    oracle.set_price(ETH, 250_000)
    assert oracle.price(ETH) == 250_000
    assert oracle.last_publish == T0 + 3_000
    assert oracle.sources[ETH] == ManualSource(250_000)
    oracle._check()
    for k in range(2, 10):
        oracle.update(T0 + 3_000 * k)
        assert oracle.price(ETH) == 250_000
        assert oracle.price(BTC) == 7
    oracle.set_price(BTC, 8)
    assert oracle.price(BTC) == 8
    oracle._check()


def test_set_price_refuses_bad_input(markets: Markets) -> None:
    """Only perps, only prices >= 1."""
    oracle = oracle_with(markets)
    with pytest.raises(ValueError, match="not a perp"):
        oracle.set_price(10_000, 5)
    with pytest.raises(ValueError, match="positive"):
        oracle.set_price(BTC, 0)
    assert oracle.price(BTC) == 1000


def test_snapshot_is_deterministic_and_sees_every_change(markets: Markets) -> None:
    """Equal histories give equal encoded snapshots; a set price or a publication changes it."""

    def run() -> OracleState:
        oracle = oracle_with(markets, ETH=RandomWalkSource(300_000, 10, 5))
        for k in range(1, 8):
            oracle.update(T0 + 3_000 * k)
        return oracle

    encode = msgspec.msgpack.Encoder(order="deterministic").encode
    a, b = run(), run()
    assert encode(a.snapshot()) == encode(b.snapshot())
    b.update(T0 + 30_000)
    assert encode(a.snapshot()) != encode(b.snapshot())
    a.update(T0 + 30_000)
    assert encode(a.snapshot()) == encode(b.snapshot())
    a.set_price(BTC, 1000)  # same price, but the source is now manual
    assert a.snapshot().prices == b.snapshot().prices
    assert encode(a.snapshot()) != encode(b.snapshot())


def test_snapshot_encodes_and_restores(markets: Markets) -> None:
    """A snapshot encodes in msgpack (walk levels are strings) and restores the same future."""
    walk = RandomWalkSource(200_000, 30, 2**64 - 1)
    oracle = oracle_with(markets, DOGE=walk, SOL=ScriptedSource(((0, 5), (9_000, 6))))
    oracle.update(T0 + 3_000)
    oracle.set_price(BTC, 123)
    encoder = msgspec.msgpack.Encoder(order="deterministic")
    data = encoder.encode(oracle.snapshot())
    snapshot = msgspec.msgpack.decode(data, type=OracleSnapshot)
    assert snapshot == oracle.snapshot()
    assert int(snapshot.walks[0].level) > 2**64
    restored = OracleState.restore(markets, snapshot)
    for k in range(2, 12):
        assert oracle.update(T0 + 3_000 * k) == restored.update(T0 + 3_000 * k)
        assert restored.snapshot() == oracle.snapshot()
    assert restored.price(SOL) == 6
    assert restored.price(BTC) == 123


def test_state_refuses_incomplete_or_bad_sources(markets: Markets) -> None:
    """Every perp needs a source, no other asset may have one, and sources must be sane."""
    sources = sources_with(markets)
    del sources[ETH]
    with pytest.raises(ConfigError, match=r"missing \[1\]"):
        OracleState(markets, sources, T0)
    with pytest.raises(ConfigError, match=r"extra \[10000\]"):
        OracleState(markets, {**sources_with(markets), 10_000: ConstantSource(1)}, T0)
    bad: list[Source] = [
        ConstantSource(0),
        ManualSource(-1),
        ScriptedSource(()),
        ScriptedSource(((0, 5), (0, 6))),
        ScriptedSource(((-1, 5),)),
        ScriptedSource(((0, 5), (10, 0))),
        RandomWalkSource(0, 10, 1),
        RandomWalkSource(10, 10_000, 1),
        RandomWalkSource(10, -1, 1),
        RandomWalkSource(10, 10, -1),
        RandomWalkSource(10, 10, 2**64),
    ]
    for source in bad:
        with pytest.raises(ConfigError):
            OracleState(markets, sources_with(markets, SOL=source), T0)


CONFIG = """
[oracle.BTC]
source = "constant"
px = "100000"

[oracle.ETH]
source = "random_walk"
px = "3000"
step_bps = 10
seed = 7

[oracle.SOL]
source = "scripted"
points = [[0, "150"], [60000, "155.25"]]

[oracle.DOGE]
source = "manual"
px = "0.123456"
"""


def test_load_sources_from_config(markets: Markets) -> None:
    """Each source kind parses at its perp's price scale; unnamed perps get the defaults."""
    raw = tomllib.loads(CONFIG)["oracle"]
    sources = load_oracle_sources(raw, markets, DEFAULTS)
    assert sources[BTC] == ConstantSource(1_000_000)
    assert sources[ETH] == RandomWalkSource(300_000, 10, 7)
    assert sources[SOL] == ScriptedSource(((0, 1_500_000), (60_000, 1_552_500)))
    assert sources[DOGE] == ManualSource(123_456)
    assert sources[markets.by_coin["HYPE"].asset] == ConstantSource(250_000)  # 25, 4 decimals
    assert sources[markets.by_coin["OP"].asset] == ConstantSource(200_000)  # 2, 5 decimals
    assert list(sources) == [p.asset for p in markets.perps]
    oracle = OracleState(markets, sources, T0)
    oracle._check()
    assert oracle.price(SOL) == 1_500_000


def test_load_sources_all_defaults(markets: Markets) -> None:
    """An empty table gives every perp a constant source at its default."""
    sources = load_oracle_sources({}, markets, DEFAULTS)
    assert sources[BTC] == ConstantSource(1_000_000)
    assert sources[DOGE] == ConstantSource(200_000)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"XYZ": {"source": "constant", "px": "1"}}, "oracle.XYZ: 'XYZ' is not a perp"),
        ({"PURR/USDC": {"source": "constant", "px": "1"}}, "is not a perp"),
        ({"BTC": {"source": "chainlink", "px": "1"}}, r"oracle\.BTC: Invalid value 'chainlink'"),
        ({"BTC": {"px": "1"}}, r"oracle\.BTC: .*missing required field `source`"),
        ({"BTC": {"source": "constant"}}, "missing required field `px`"),
        ({"BTC": {"source": "constant", "px": "1", "step_bps": 3}}, "unknown field `step_bps`"),
        ({"BTC": {"source": "constant", "px": 100000}}, r"Expected `str`, got `int`"),
        ({"BTC": {"source": "constant", "px": "100000.05"}}, r"oracle\.BTC\.px: '100000.05'"),
        ({"BTC": {"source": "constant", "px": "0"}}, "not a positive decimal"),
        ({"BTC": {"source": "constant", "px": "-5"}}, "not a positive decimal"),
        ({"BTC": {"source": "constant", "px": "1e5"}}, "not a positive decimal"),
        ({"BTC": {"source": "manual", "px": "abc"}}, "not a positive decimal"),
        ({"SOL": {"source": "scripted", "points": []}}, "at least one point"),
        (
            {"SOL": {"source": "scripted", "points": [[5, "1"], [5, "2"]]}},
            "strictly increasing",
        ),
        (
            {"SOL": {"source": "scripted", "points": [[0, "1"], [5, "0.00001"]]}},
            r"oracle\.SOL\.points\[1\]",
        ),
        ({"SOL": {"source": "scripted", "points": [[0, 1]]}}, "Expected `str`"),
        (
            {"ETH": {"source": "random_walk", "px": "3000", "step_bps": 10000, "seed": 1}},
            r"step_bps must be in \[0, 10000\)",
        ),
        (
            {"ETH": {"source": "random_walk", "px": "3000", "step_bps": 10}},
            "missing required field `seed`",
        ),
        (
            {"ETH": {"source": "random_walk", "px": "3000", "step_bps": 10, "seed": -3}},
            r"oracle\.ETH: seed must be in \[0, 2\*\*64\)",
        ),
    ],
)
def test_load_sources_refuses_bad_tables(
    markets: Markets, table: dict[str, Any], message: str
) -> None:
    """Each malformed entry is refused with a message naming the entry and the problem."""
    with pytest.raises(ConfigError, match=message):
        load_oracle_sources(table, markets, DEFAULTS)


def test_load_sources_needs_a_default_for_unnamed_perps(markets: Markets) -> None:
    """A perp with no entry and no default, or a bad default, is a config error."""
    partial = {k: v for k, v in DEFAULTS.items() if k != "AVAX"}
    with pytest.raises(ConfigError, match=r"oracle\.AVAX: no source configured"):
        load_oracle_sources({}, markets, partial)
    # Named in the table, the default is not needed.
    avax = {"AVAX": {"source": "constant", "px": "30"}}
    assert load_oracle_sources(avax, markets, partial)[7] == ConstantSource(300_000)
    with pytest.raises(ConfigError, match="default oracle price of BTC"):
        load_oracle_sources({}, markets, {**DEFAULTS, "BTC": "0.01"})


def test_check_catches_broken_state(markets: Markets) -> None:
    """_check refuses a price that is not its source's value, and a walk left behind."""
    oracle = oracle_with(markets, ETH=RandomWalkSource(300_000, 10, 7))
    oracle.prices[BTC] += 1
    with pytest.raises(AssertionError, match="source says"):
        oracle._check()
    oracle = oracle_with(markets, ETH=RandomWalkSource(300_000, 10, 7))
    oracle.last_publish = T0 + 3_000  # as if published without stepping the walk
    with pytest.raises(AssertionError, match="walk behind"):
        oracle._check()
