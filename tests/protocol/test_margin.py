"""Margin arithmetic: tiers, maintenance and initial margin, transfers, liquidation prices and
the clearinghouseState summaries."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.fixed import parse_fixed
from protocol.margin import (
    AccountMargin,
    CrossPosition,
    IsolatedPosition,
    MarginSummary,
    initial_margin,
    liquidation_price,
    maintenance_margin,
    max_leverage_at,
    summarize_account,
    tier_for,
    transfer_margin_required,
)
from protocol.markets import MarginTable, MarginTier, Markets

USD = 10**6
FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

# The devnet's BTC table (id 56), written out so hand-computed numbers do not depend on config.
BTC_TABLE = MarginTable(
    56,
    "tiered 40x",
    (MarginTier(0, 40), MarginTier(10_000 * USD, 25), MarginTier(50_000 * USD, 10)),
)
# Three tiers with leverages whose rates share no small denominator (lcm(100, 66, 14) = 23100).
ODD_TABLE = MarginTable(
    60, "odd 3-tier", (MarginTier(0, 50), MarginTier(2_000 * USD, 33), MarginTier(30_000 * USD, 7))
)
SINGLE_50X = MarginTable(50, "", (MarginTier(0, 50),))


def dec(text: str, decimals: int) -> int:
    value = parse_fixed(text, decimals)
    assert value is not None
    return value


def reference_mm(table: MarginTable, notional: int) -> Fraction:
    """The docs' recursive formula, in exact fractions."""
    rates = [Fraction(1, 2 * tier.max_leverage) for tier in table.tiers]
    deductions = [Fraction(0)]
    for n in range(1, len(table.tiers)):
        deductions.append(deductions[-1] + table.tiers[n].lower_bound * (rates[n] - rates[n - 1]))
    t = max(n for n, tier in enumerate(table.tiers) if tier.lower_bound <= notional)
    return notional * rates[t] - deductions[t]


def boundaries(table: MarginTable) -> list[tuple[int, int, Fraction, Fraction]]:
    """(lower bound b, reach, rate below b, rate above b) for every tier boundary, where reach
    is how far one can go either side of b and stay in the two tiers that meet there."""
    edges = []
    bounds = [tier.lower_bound for tier in table.tiers]
    for n in range(1, len(table.tiers)):
        reach = bounds[n] - bounds[n - 1]
        if n + 1 < len(bounds):
            reach = min(reach, bounds[n + 1] - bounds[n])
        below, above = table.tiers[n - 1].max_leverage, table.tiers[n].max_leverage
        edges.append((bounds[n], reach, Fraction(1, 2 * below), Fraction(1, 2 * above)))
    return edges


@st.composite
def margin_tables(draw: st.DrawFn) -> MarginTable:
    """Tables of 1 to 3 tiers, bounds rising from 0, leverages non-increasing."""
    count = draw(st.integers(1, 3))
    bounds = sorted(draw(st.sets(st.integers(1, 10**12), min_size=count - 1, max_size=count - 1)))
    leverages = sorted(draw(st.lists(st.integers(1, 100), min_size=count, max_size=count)))
    tiers = tuple(
        MarginTier(bound, leverage)
        for bound, leverage in zip([0, *bounds], reversed(leverages), strict=True)
    )
    return MarginTable(99, "generated", tiers)


# Tiers and maintenance margin.


def test_tier_for_takes_highest_bound_at_or_below() -> None:
    """A notional falls in the tier with the highest lower bound <= it; bounds are inclusive."""
    assert tier_for(BTC_TABLE, 0) == MarginTier(0, 40)
    assert tier_for(BTC_TABLE, 10_000 * USD - 1).max_leverage == 40
    assert tier_for(BTC_TABLE, 10_000 * USD) == MarginTier(10_000 * USD, 25)
    assert max_leverage_at(BTC_TABLE, 50_000 * USD - 1) == 25
    assert max_leverage_at(BTC_TABLE, 50_000 * USD) == 10
    assert max_leverage_at(BTC_TABLE, 10**15) == 10


def test_negative_notional_and_bad_leverage_raise() -> None:
    """A negative notional or a leverage below 1 is a caller bug, not a value."""
    with pytest.raises(ValueError):
        tier_for(BTC_TABLE, -1)
    with pytest.raises(ValueError):
        maintenance_margin(BTC_TABLE, -1)
    with pytest.raises(ValueError):
        initial_margin(100, 0)
    with pytest.raises(ValueError):
        liquidation_price(100, 1, 0, 0)


def test_maintenance_rate_is_half_the_initial_rate(markets: Markets) -> None:
    """mmr = 1/(2 maxLev): 1.25% at 40x, 2.5% at 20x, 1/6 at 3x (tables below 50 are one tier)."""
    assert maintenance_margin(markets.margin_table(40), 100 * USD) == 1_250_000
    assert maintenance_margin(markets.margin_table(20), 100 * USD) == 2_500_000
    assert maintenance_margin(markets.margin_table(3), 300 * USD) == 50 * USD
    assert maintenance_margin(markets.margin_table(56), 100 * USD) == 1_250_000


def test_tiered_maintenance_hand_computed() -> None:
    """BTC table: deductions 75 and 1575 USDC; MM(30k) = 600 - 75, MM(100k) = 5000 - 1575."""
    assert maintenance_margin(BTC_TABLE, 0) == 0
    assert maintenance_margin(BTC_TABLE, 5_000 * USD) == 62_500_000
    assert maintenance_margin(BTC_TABLE, 10_000 * USD) == 125 * USD
    assert maintenance_margin(BTC_TABLE, 30_000 * USD) == 525 * USD
    assert maintenance_margin(BTC_TABLE, 50_000 * USD) == 925 * USD
    assert maintenance_margin(BTC_TABLE, 100_000 * USD) == 3_425 * USD


def test_maintenance_rounds_up_once() -> None:
    """MM is exact over a common denominator and rounded up once at the end."""
    assert maintenance_margin(BTC_TABLE, 1) == 1  # 0.0125 micro
    assert maintenance_margin(BTC_TABLE, 80) == 1
    assert maintenance_margin(BTC_TABLE, 81) == 2
    # 20 + 28000/66 = 444.2424... USDC at the 7x boundary.
    assert maintenance_margin(ODD_TABLE, 30_000 * USD) == 444_242_425
    # 20 + 28000/66 + 10000/14 = 267620/231 = 1158.528138528... USDC; rounding each term up
    # separately would give ...140.
    assert maintenance_margin(ODD_TABLE, 40_000 * USD) == 1_158_528_139


def test_devnet_tables_continuous_at_every_boundary(markets: Markets) -> None:
    """At each tier boundary of the devnet's tables, MM moves by at most one micro from b-1 to
    b, and the lower tier's formula gives the same value at b as the upper tier's."""
    checked = 0
    for table in (*markets.margin_tables, ODD_TABLE):
        for bound, _, rate_below, _ in boundaries(table):
            below = table.tiers[: table.tiers.index(tier_for(table, bound - 1)) + 1]
            lower_formula = math.ceil(reference_mm(MarginTable(0, "", below), bound))
            assert maintenance_margin(table, bound) == lower_formula
            step = maintenance_margin(table, bound) - maintenance_margin(table, bound - 1)
            assert 0 <= step <= math.ceil(rate_below)
            checked += 1
    assert checked == 2 + 1 + 2  # tables 56 and 55, then ODD_TABLE


@FIXTURE_OK
@given(st.data())
def test_devnet_mm_continuous_across_boundaries(markets: Markets, data: st.DataObject) -> None:
    """Around a boundary b, MM(b+d) - MM(b-d) is d x (rate below + rate above), within the one
    rounding: no jump at b."""
    table = data.draw(st.sampled_from([*markets.margin_tables, ODD_TABLE]))
    bound, reach, rate_below, rate_above = data.draw(st.sampled_from(boundaries(table)))
    d = data.draw(st.integers(0, reach))
    diff = maintenance_margin(table, bound + d) - maintenance_margin(table, bound - d)
    assert abs(diff - d * (rate_below + rate_above)) < 1


@given(margin_tables(), st.data())
def test_generated_mm_continuous_across_boundaries(table: MarginTable, data: st.DataObject) -> None:
    """On any table of up to 3 tiers, MM has no jump at a boundary beyond the one rounding."""
    edges = boundaries(table)
    if not edges:
        return
    bound, reach, rate_below, rate_above = data.draw(st.sampled_from(edges))
    d = data.draw(st.integers(0, reach))
    diff = maintenance_margin(table, bound + d) - maintenance_margin(table, bound - d)
    assert abs(diff - d * (rate_below + rate_above)) < 1
    step = maintenance_margin(table, bound) - maintenance_margin(table, bound - 1)
    assert 0 <= step <= math.ceil(rate_below)


@given(margin_tables(), st.integers(0, 3 * 10**12), st.integers(0, 3 * 10**12))
def test_generated_mm_exact_and_non_decreasing(table: MarginTable, x: int, y: int) -> None:
    """MM is the docs' formula rounded up once, and never falls as notional grows."""
    assert maintenance_margin(table, x) == math.ceil(reference_mm(table, x))
    low, high = sorted((x, y))
    assert maintenance_margin(table, low) <= maintenance_margin(table, high)


@FIXTURE_OK
@given(st.data(), st.integers(0, 10**12), st.integers(0, 10**12))
def test_devnet_mm_non_decreasing(markets: Markets, data: st.DataObject, x: int, y: int) -> None:
    """On every perp's table in the devnet config, MM never falls as notional grows."""
    perp = data.draw(st.sampled_from(markets.perps))
    table = markets.margin_table(perp.margin_table_id)
    low, high = sorted((x, y))
    assert maintenance_margin(table, low) <= maintenance_margin(table, high)


# Initial margin and the transfer rule.


def test_initial_margin_rounds_up() -> None:
    """IM = notional / leverage, any remainder charged as one more micro."""
    assert initial_margin(100 * USD, 4) == 25 * USD
    assert initial_margin(100 * USD + 1, 10) == 10 * USD + 1
    assert initial_margin(100, 3) == 34
    assert initial_margin(0, 20) == 0


@given(st.integers(0, 10**15), st.integers(1, 100))
def test_initial_margin_is_the_smallest_covering_amount(notional: int, leverage: int) -> None:
    """IM x leverage covers the notional, and one micro less would not."""
    im = initial_margin(notional, leverage)
    assert im * leverage >= notional > (im - 1) * leverage


def test_transfer_requirement_is_max_of_im_and_a_tenth() -> None:
    """A transfer must leave max(IM, 10% of notional), the 10% rounded up."""
    assert transfer_margin_required(750 * USD, 12_500 * USD) == 1_250 * USD
    assert transfer_margin_required(2_000 * USD, 12_500 * USD) == 2_000 * USD
    assert transfer_margin_required(0, 1_000_001) == 100_001
    assert transfer_margin_required(0, 0) == 0


# Liquidation price.


def test_liquidation_price_docs_example() -> None:
    """Isolated ETH long 0.0335 at mark 2985.9, margin 4.967826, MM 1.000277 at 50x: 2866.27."""
    mark, szi = dec("2985.9", 2), dec("0.0335", 4)
    assert mark * szi == dec("100.02765", 6)
    mm = maintenance_margin(SINGLE_50X, mark * szi)
    assert mm == dec("1.000277", 6)  # the docs' 1.0003, rounded up to the micro
    available = dec("4.967826", 6) - mm
    # Exactly 2985.9 - 3.967549 / 0.0335 / 0.99 = 2866.2693954..., rounded up for a long.
    assert liquidation_price(mark, szi, available, 50) == dec("2866.27", 2)


def test_liquidation_price_docs_rounded_inputs() -> None:
    """With the docs' 4-decimal inputs (4.9678 - 1.0003) the exact price is 2866.27087...; the
    docs round to nearest, this rounds up (the long's safe side) to 2866.28."""
    available = dec("4.9678", 6) - dec("1.0003", 6)
    assert liquidation_price(dec("2985.9", 2), dec("0.0335", 4), available, 50) == dec("2866.28", 2)


def test_liquidation_price_short_rounds_down() -> None:
    """Short 1 ETH at 2000 with 100 available at 25x: 2000 + 100 / (1 + 1/50) = 2098.039..."""
    assert liquidation_price(dec("2000", 2), -dec("1", 4), 100 * USD, 25) == dec("2098.03", 2)


def test_liquidation_price_in_a_tier() -> None:
    """Isolated BTC long 0.5 at 60000 (30k notional, 25x tier, MM 525), margin 3000:
    60000 - 2475 / 0.5 / 0.98 = 54948.979..., and 0.5 x 54949 stays in the 25x tier."""
    mark, szi = dec("60000", 1), dec("0.5", 5)
    mm = maintenance_margin(BTC_TABLE, mark * szi)
    assert mm == 525 * USD
    leverage = max_leverage_at(BTC_TABLE, mark * szi)
    assert leverage == 25
    liq = liquidation_price(mark, szi, 3_000 * USD - mm, leverage)
    assert liq == dec("54949", 1)
    assert max_leverage_at(BTC_TABLE, liq * szi) == 25


def test_liquidation_price_absent() -> None:
    """A flat position has none; a long whose margin covers a fall to zero has none."""
    assert liquidation_price(dec("2000", 2), 0, 100 * USD, 25) is None
    # 1 ETH long at 2000 with 3000 available: 2000 - 3000 / 0.98 < 0.
    assert liquidation_price(dec("2000", 2), dec("1", 4), 3_000 * USD, 25) is None
    # A short is liquidated on a rise, so it keeps one: 2000 + 3000 / 1.02 = 4941.176...
    assert liquidation_price(dec("2000", 2), -dec("1", 4), 3_000 * USD, 25) == dec("4941.17", 2)


@given(
    st.integers(1, 10**7),
    st.integers(-(10**7), 10**7).filter(bool),
    st.integers(-(10**9), 10**10),
    st.integers(1, 50),
)
def test_liquidation_price_is_the_last_safe_tick(
    mark: int, szi: int, available: int, max_leverage: int
) -> None:
    """Moving from the mark at the tier's rate, margin available is >= 0 at the returned price
    and < 0 one tick further against the position."""
    side = 1 if szi > 0 else -1
    rate = Fraction(1, 2 * max_leverage)

    def available_at(px: int) -> Fraction:
        return available + (px - mark) * abs(szi) * (side - rate)

    liq = liquidation_price(mark, szi, available, max_leverage)
    if liq is None:
        # Never liquidated at a positive price (long), or already at every one (short).
        assert (available_at(1) >= 0) if side > 0 else (available_at(1) < 0)
        return
    assert liq > 0
    assert available_at(liq) >= 0
    assert available_at(liq - side) < 0


# Account summaries.


def test_summary_docs_example() -> None:
    """The docs' clearinghouseState: one isolated ETH long 0.0335 at 2985.9, rawUsd -95.059824,
    cross cash 13104.514502, no cross positions."""
    isolated = IsolatedPosition(dec("0.0335", 4), dec("2985.9", 2), dec("-95.059824", 6))
    summary = summarize_account(dec("13104.514502", 6), [], [isolated])
    assert summary == AccountMargin(
        margin_summary=MarginSummary(
            account_value=dec("13109.482328", 6),  # 13009.454678 + 100.02765
            total_ntl_pos=dec("100.02765", 6),
            total_raw_usd=dec("13009.454678", 6),
            total_margin_used=dec("4.967826", 6),  # -95.059824 + 100.02765
        ),
        cross_margin_summary=MarginSummary(
            account_value=dec("13104.514502", 6),
            total_ntl_pos=0,
            total_raw_usd=dec("13104.514502", 6),
            total_margin_used=0,
        ),
        cross_maintenance_margin_used=0,
        withdrawable=dec("13104.514502", 6),
    )


def test_summary_cross_and_isolated_hand_computed(markets: Markets) -> None:
    """Cross BTC long 0.2 (bought at 45000, mark 50000, 20x) and ETH short 1 (sold at 2600,
    mark 2500, 10x) on 2000 deposited, plus an isolated SOL long 10 at 150 with 100 margin."""
    btc = CrossPosition(dec("0.2", 5), dec("50000", 1), 20, markets.margin_table(56))
    eth = CrossPosition(-dec("1", 4), dec("2500", 2), 10, markets.margin_table(55))
    sol = IsolatedPosition(dec("10", 2), dec("150", 4), -1_400 * USD)
    cross_raw = (2_000 - 9_000 + 2_600) * USD
    summary = summarize_account(cross_raw, [btc, eth], [sol])
    # Cross value -4400 + 10000 - 2500; IM 500 + 250; MM 125 (10k sits on the 25x bound) + 50.
    assert summary.cross_margin_summary == MarginSummary(
        3_100 * USD, 12_500 * USD, -4_400 * USD, 750 * USD
    )
    assert summary.cross_maintenance_margin_used == 175 * USD
    # Transfer requirement max(750, 1250) = 1250.
    assert summary.withdrawable == 1_850 * USD
    assert summary.margin_summary == MarginSummary(
        3_200 * USD, 14_000 * USD, -5_800 * USD, 850 * USD
    )


def test_withdrawable_floors_at_zero() -> None:
    """An account below its transfer requirement can withdraw nothing, not a negative amount."""
    # 1 ETH long bought at 2000 with 150 deposited, mark 2000 at 10x: value 150 < 200 required.
    eth = CrossPosition(dec("1", 4), dec("2000", 2), 10, MarginTable(25, "", (MarginTier(0, 25),)))
    summary = summarize_account(150 * USD - 2_000 * USD, [eth], [])
    assert summary.cross_margin_summary.account_value == 150 * USD
    assert summary.withdrawable == 0


positions = st.tuples(st.integers(-(10**7), 10**7), st.integers(1, 10**8))


@given(
    st.integers(-(10**13), 10**13),
    st.lists(st.tuples(positions, st.integers(1, 50), margin_tables()), max_size=4),
    st.lists(st.tuples(positions, st.integers(-(10**13), 10**13)), max_size=4),
)
def test_summary_account_value_is_raw_usd_plus_marked_sizes(
    cross_raw: int,
    cross_specs: list[tuple[tuple[int, int], int, MarginTable]],
    isolated_specs: list[tuple[tuple[int, int], int]],
) -> None:
    """accountValue = totalRawUsd + sum(szi x mark) in both summaries, and withdrawable is
    never negative nor more than the cross account value."""
    cross = [CrossPosition(szi, px, lev, table) for (szi, px), lev, table in cross_specs]
    isolated = [IsolatedPosition(szi, px, raw) for (szi, px), raw in isolated_specs]
    summary = summarize_account(cross_raw, cross, isolated)
    cross_marked = sum(p.szi * p.mark_px for p in cross)
    all_marked = cross_marked + sum(p.szi * p.mark_px for p in isolated)
    total, cross_only = summary.margin_summary, summary.cross_margin_summary
    assert cross_only.account_value == cross_only.total_raw_usd + cross_marked
    assert total.account_value == total.total_raw_usd + all_marked
    assert 0 <= summary.withdrawable <= max(cross_only.account_value, 0)
