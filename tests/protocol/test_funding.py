"""Funding: impact prices, premium, hourly rates, 5 s sampling, hourly settlement, payments."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.book import TIF_GTC, OrderBook, RestingOrder
from protocol.fixed import RATE_SCALE
from protocol.funding import (
    HOUR_MS,
    HOURLY_RATE_CAP,
    FundingRate,
    FundingState,
    funding_payments,
    hourly_funding_rate,
    impact_notional_for,
    impact_price,
    premium,
)

USD = 10**6
# A SOL-like perp: szDecimals 2, so prices carry 4 decimals: 100.0000 = 1_000_000.
PX_100 = 1_000_000
BASE_HOURLY = 12_500_000  # 0.0000125 = 0.01% per 8 h / 8
SECOND = 1_000


# Impact notional and impact prices.


def test_impact_notional_by_coin() -> None:
    """20,000 USDC for BTC and ETH, 6,000 USDC for every other perp."""
    assert impact_notional_for("BTC") == 20_000 * USD
    assert impact_notional_for("ETH") == 20_000 * USD
    assert impact_notional_for("SOL") == 6_000 * USD
    assert impact_notional_for("HYPE") == 6_000 * USD
    assert impact_notional_for("DOGE") == 6_000 * USD


def test_impact_ask_on_hand_made_book() -> None:
    """Asks 100 x 50 and 101 x 100, 6000 USDC: 5000 at 100, 1000 at 101, avg 100.16528.. up."""
    asks = [(1_000_000, 5_000, 1), (1_010_000, 10_000, 2)]
    # 6000 / (50 + 1000/101) = 606000 / 6050 = 100.165289..., rounded up at 4 decimals.
    assert impact_price(asks, 6_000 * USD) == 1_001_653


def test_impact_bid_on_hand_made_book() -> None:
    """Bids 100 x 50 and 99 x 100, 6000 USDC: 5000 at 100, 1000 at 99, avg 99.83193.. down."""
    bids = [(1_000_000, 5_000, 1), (990_000, 10_000, 1)]
    # 6000 / (50 + 1000/99) = 594000 / 5950 = 99.831932..., rounded down at 4 decimals.
    assert impact_price(bids, 6_000 * USD) == 998_319


def test_impact_price_within_one_level_is_that_price() -> None:
    """When the best level covers the notional the average is its price, unrounded."""
    assert impact_price([(1_000_000, 10_000, 1), (990_000, 10_000, 1)], 6_000 * USD) == PX_100
    assert impact_price([(1_000_000, 10_000, 1), (1_010_000, 1, 1)], 6_000 * USD) == PX_100


def test_impact_price_from_order_book_depth() -> None:
    """Two orders at 100 make one 50-lot level in `depth`; the walk uses the level total."""
    book = OrderBook(asset=2)
    for oid, (px, sz) in enumerate([(1_000_000, 2_000), (1_000_000, 3_000), (1_010_000, 10_000)]):
        book.rest(RestingOrder(oid, "a", 2, False, px, sz, sz, 0, TIF_GTC, False, None))
    assert book.depth(is_bid=False) == [(1_000_000, 5_000, 2), (1_010_000, 10_000, 1)]
    assert impact_price(book.depth(is_bid=False), 6_000 * USD) == 1_001_653
    assert impact_price(book.depth(is_bid=True), 6_000 * USD) is None


def test_impact_price_insufficient_depth_is_none() -> None:
    """Less notional than the impact notional gives None; exactly enough gives a price."""
    asks = [(1_000_000, 5_000, 1), (1_010_000, 10_000, 2)]  # 5000 + 10100 USDC
    assert impact_price(asks, 15_100 * USD + 1) is None
    assert impact_price(asks, 15_100 * USD) == 1_006_667  # 15100 / 150 = 100.6666.., up
    assert impact_price([], 6_000 * USD) is None


def test_impact_price_refuses_bad_input() -> None:
    """A non-positive notional, an empty or misordered level is a caller bug."""
    with pytest.raises(ValueError, match="positive"):
        impact_price([(1_000_000, 5_000, 1)], 0)
    with pytest.raises(ValueError, match="bad level"):
        impact_price([(1_000_000, 0, 1)], USD)
    with pytest.raises(ValueError, match="monotonic"):
        impact_price([(1_000_000, 1, 1), (990_000, 1, 1), (995_000, 10**9, 1)], 10 * USD)
    with pytest.raises(ValueError, match="monotonic"):
        impact_price([(1_000_000, 1, 1), (1_000_000, 10**9, 1)], 10 * USD)


@st.composite
def book_sides(draw: st.DrawFn) -> tuple[bool, list[tuple[int, int, int]]]:
    """(is_bid, levels best first) with distinct prices."""
    is_bid = draw(st.booleans())
    prices = draw(st.lists(st.integers(1, 10**7), min_size=1, max_size=8, unique=True))
    prices.sort(reverse=is_bid)
    return is_bid, [(px, draw(st.integers(1, 10**6)), 1) for px in prices]


def _reference_impact(levels: list[tuple[int, int, int]], notional: int) -> Fraction | None:
    """Exact average price by walking the levels with fractional sizes."""
    remaining = Fraction(notional)
    size = Fraction(0)
    for px, sz, _ in levels:
        take = min(Fraction(sz), remaining / px)
        size += take
        remaining -= take * px
        if remaining == 0:
            return notional / size
    return None


@given(book_sides(), st.integers(1, 10**13))
def test_impact_price_is_the_exact_average_rounded_to_worse(
    side: tuple[bool, list[tuple[int, int, int]]], notional: int
) -> None:
    """The exact average rounded down for bids and up for asks, None beyond the depth."""
    is_bid, levels = side
    exact = _reference_impact(levels, notional)
    got = impact_price(levels, notional)
    if exact is None:
        assert got is None
        return
    assert got == (math.floor(exact) if is_bid else math.ceil(exact))


@given(book_sides(), st.integers(1, 10**12), st.integers(1, 10**12))
def test_more_notional_never_improves_the_impact_price(
    side: tuple[bool, list[tuple[int, int, int]]], small: int, extra: int
) -> None:
    """Walking deeper can only lower the bid impact price and raise the ask impact price."""
    is_bid, levels = side
    shallow = impact_price(levels, small)
    deep = impact_price(levels, small + extra)
    if deep is None:
        return
    assert shallow is not None
    assert (deep <= shallow) if is_bid else (deep >= shallow)
    assert (deep >= levels[-1][0]) if is_bid else (deep <= levels[-1][0])


# Premium.


def test_premium_by_hand() -> None:
    """Impact bid above the oracle is positive, impact ask below it negative, inside is 0."""
    assert premium(1_001_000, 1_002_000, PX_100) == 1_000_000_000  # +0.1%
    assert premium(998_000, 999_000, PX_100) == -1_000_000_000  # -0.1%
    assert premium(999_000, 1_001_000, PX_100) == 0


def test_premium_missing_impact_price_contributes_zero() -> None:
    """No depth on one side: only the other side counts; none at all is 0."""
    assert premium(None, 999_000, PX_100) == -1_000_000_000
    assert premium(1_001_000, None, PX_100) == 1_000_000_000
    assert premium(None, None, PX_100) == 0


def test_premium_rounds_toward_zero() -> None:
    """1/3 and -1/3 both truncate toward zero at RATE_SCALE."""
    assert premium(4, None, 3) == 333_333_333_333
    assert premium(None, 2, 3) == -333_333_333_333
    with pytest.raises(ValueError, match="positive"):
        premium(1, 1, 0)


@given(
    st.one_of(st.none(), st.integers(1, 10**9)),
    st.one_of(st.none(), st.integers(1, 10**9)),
    st.integers(1, 10**9),
)
def test_premium_matches_float_reference(bid: int | None, ask: int | None, oracle: int) -> None:
    """The integer premium agrees with the float formula to within one unit of rounding."""
    diff = max((bid or oracle) - oracle, 0) - max(oracle - (ask or oracle), 0)
    reference = diff / oracle * RATE_SCALE
    got = premium(bid, ask, oracle)
    assert abs(got - reference) <= 1 + abs(reference) * 1e-12
    assert abs(got) <= abs(reference) + abs(reference) * 1e-12  # toward zero


# Hourly rate.


def test_zero_premium_pays_the_interest_rate() -> None:
    """P = 0: F = r = 0.0001 per 8 h, hourly 0.0000125 exactly."""
    assert hourly_funding_rate(0) == BASE_HOURLY


def test_premium_inside_the_clamp_band_gives_the_interest_rate() -> None:
    """|r - P| <= 0.0005: the clamp returns r - P whole, so F = P + (r - P) = r."""
    assert hourly_funding_rate(300_000_000) == BASE_HOURLY  # P = 0.0003, r - P = -0.0002
    assert hourly_funding_rate(-400_000_000) == BASE_HOURLY  # r - P = +0.0005, on the edge
    assert hourly_funding_rate(600_000_000) == BASE_HOURLY  # r - P = -0.0005, on the edge


def test_premium_outside_the_clamp_band() -> None:
    """P = +-0.001: F = P -+ 0.0005 = +-0.0005 per 8 h, hourly +-0.0000625."""
    assert hourly_funding_rate(1_000_000_000) == 62_500_000
    assert hourly_funding_rate(-1_000_000_000) == -62_500_000


def test_hourly_rate_rounds_toward_zero() -> None:
    """F = +-500_000_001: F / 8 = +-62_500_000.125 truncates to +-62_500_000."""
    assert hourly_funding_rate(1_000_000_001) == 62_500_000
    assert hourly_funding_rate(-1_000_000_001) == -62_500_000


def test_large_premium_hits_the_four_percent_cap() -> None:
    """P = +-0.5: F / 8 = +-0.0624375 per hour, capped to +-0.04."""
    assert hourly_funding_rate(500_000_000_000) == 40_000_000_000
    assert hourly_funding_rate(-500_000_000_000) == -40_000_000_000
    assert hourly_funding_rate(320_000_000_000 + 500_000_000) == 40_000_000_000  # F/8 = 0.04
    assert hourly_funding_rate(320_000_000_000 + 500_000_000 - 8) == 40_000_000_000 - 1


@given(st.integers(-(10**13), 10**13), st.integers(-(10**13), 10**13))
def test_hourly_rate_matches_float_reference_and_is_monotonic(p: int, q: int) -> None:
    """Within the cap, within one unit of the float formula; never decreasing in P."""
    r, band = 0.0001, 0.0005
    pf = p / RATE_SCALE
    f = pf + min(max(r - pf, -band), band)
    reference = max(min(f / 8, 0.04), -0.04) * RATE_SCALE
    got = hourly_funding_rate(p)
    assert abs(got) <= HOURLY_RATE_CAP
    assert abs(got - reference) <= 1.001
    low, high = sorted((p, q))
    assert hourly_funding_rate(low) <= hourly_funding_rate(high)


# Sampling and settlement.


def test_one_second_blocks_give_720_samples_and_settle_at_the_hour() -> None:
    """Blocks every 1 s: 720 samples per hour; the block at exactly 1:00:00 settles hour 0."""
    state = FundingState([0, 1])
    for t in range(0, HOUR_MS, SECOND):
        assert state.on_block(t, {0: 0, 1: 0}) is None
    assert state.counts == {0: 720, 1: 720}
    state._check()
    settled = state.on_block(HOUR_MS, {0: 0, 1: 0})
    assert settled is not None
    assert settled.hour == 0
    assert settled.time == HOUR_MS
    assert settled.rates == (
        FundingRate(0, BASE_HOURLY, 0, 720),
        FundingRate(1, BASE_HOURLY, 0, 720),
    )
    assert state.counts == {0: 1, 1: 1}  # the settling block samples the new hour


def test_only_the_first_block_of_each_5s_slot_is_sampled() -> None:
    """Premiums between the 5 s marks are ignored: the mean is that of the marks only."""
    state = FundingState([0])
    for t in range(0, HOUR_MS, SECOND):
        value = 1_000_000_000 if t % 5_000 == 0 else 10**11  # 0.001 on the marks, 0.1 off
        state.on_block(t, {0: value})
    settled = state.on_block(HOUR_MS, {0: 0})
    assert settled is not None
    # P = 0.001, F = 0.0005, hourly 0.0000625.
    assert settled.rates == (FundingRate(0, 62_500_000, 1_000_000_000, 720),)


def test_slots_are_on_the_5s_grid() -> None:
    """4.999 s and 5.000 s are two slots; 5.000 s and 9.999 s are one."""
    state = FundingState([0])
    state.on_block(4_999, {0: 10})
    state.on_block(5_000, {0: 20})
    state.on_block(9_999, {0: 40})
    assert state.counts[0] == 2
    assert state.totals[0] == 30
    state._check()


def test_mean_premium_rounds_toward_zero() -> None:
    """Samples 1 and 2 average to 1; samples -1 and -2 to -1, not -2."""
    for samples, mean in (((1, 2), 1), ((-1, -2), -1)):
        state = FundingState([0])
        state.on_block(0, {0: samples[0]})
        state.on_block(5_000, {0: samples[1]})
        settled = state.on_block(HOUR_MS, {})
        assert settled is not None
        assert settled.rates[0].premium == mean
        assert settled.rates[0].n_samples == 2


def test_asset_without_samples_pays_interest_only() -> None:
    """An asset never given a premium settles with P = 0 and 0 samples."""
    state = FundingState([0, 1])
    state.on_block(0, {0: 2_000_000_000})
    state.on_block(5_000, {0: 2_000_000_000})
    settled = state.on_block(HOUR_MS, {})
    assert settled is not None
    # Asset 0: P = 0.002, F = 0.0015, hourly 0.0001875.
    assert settled.rates == (
        FundingRate(0, 187_500_000, 2_000_000_000, 2),
        FundingRate(1, BASE_HOURLY, 0, 0),
    )


def test_each_hour_settles_only_its_own_samples() -> None:
    """Hour 0 samples 0.002, hour 1 samples 0: the second settlement sees only the zeros."""
    state = FundingState([0])
    settlements = []
    for t in range(0, 2 * HOUR_MS + 1, 5 * SECOND):
        settled = state.on_block(t, {0: 2_000_000_000 if t < HOUR_MS else 0})
        if settled is not None:
            settlements.append((settled.hour, settled.rates))
    assert settlements == [
        (0, (FundingRate(0, 187_500_000, 2_000_000_000, 720),)),  # F = 0.0015, hourly 0.0001875
        (1, (FundingRate(0, BASE_HOURLY, 0, 720),)),
    ]


def test_first_block_mid_hour_settles_a_partial_hour() -> None:
    """Starting at 0:30:00 with 1 s blocks, the 1:00:00 settlement has 360 samples."""
    state = FundingState([0])
    assert state.on_block(HOUR_MS // 2, {0: 0}) is None
    for t in range(HOUR_MS // 2 + SECOND, HOUR_MS, SECOND):
        assert state.on_block(t, {0: 0}) is None
    settled = state.on_block(HOUR_MS, {0: 0})
    assert settled is not None
    assert settled.rates[0].n_samples == 360


def test_a_jump_over_hours_settles_once() -> None:
    """A block three hours later settles the hour its samples belong to, once."""
    state = FundingState([0])
    state.on_block(HOUR_MS - 1, {0: 5})
    settled = state.on_block(4 * HOUR_MS + 10, {0: 7})
    assert settled is not None
    assert settled.hour == 0
    assert settled.rates[0].n_samples == 1
    assert state.on_block(4 * HOUR_MS + 20_000, {0: 7}) is None
    assert state.counts[0] == 2
    state._check()


def test_on_block_refuses_time_going_back_and_unknown_assets() -> None:
    """Block times never decrease; a premium for an asset that is not a perp is a bug."""
    state = FundingState([0])
    state.on_block(5_003, {0: 1})
    with pytest.raises(ValueError, match="before"):
        state.on_block(5_001, {0: 1})
    with pytest.raises(ValueError, match="unknown"):
        state.on_block(6_000, {9: 1})
    assert state.counts[0] == 1


def test_snapshot_restores_the_same_state() -> None:
    """restore(snapshot) continues exactly like the original."""
    state = FundingState([0, 1])
    for t in range(0, 60_000, SECOND):
        state.on_block(t, {0: t, 1: -t})
    copy = FundingState.restore(state.snapshot())
    assert copy.snapshot() == state.snapshot()
    assert copy.on_block(HOUR_MS, {}) == state.on_block(HOUR_MS, {})


@given(
    st.integers(0, 3 * HOUR_MS),
    st.lists(
        st.tuples(st.integers(0, 30_000), st.integers(-(10**10), 10**10)),
        min_size=1,
        max_size=200,
    ),
)
def test_settlements_match_a_slot_reference(start: int, steps: list[tuple[int, int]]) -> None:
    """Each settlement holds, per hour, the first premium of every 5 s slot that had a block."""
    state = FundingState([0])
    t = start
    blocks: list[tuple[int, int]] = []
    for gap, value in steps:
        t += gap
        blocks.append((t, value))
    blocks.append((t + HOUR_MS, 0))  # make sure the last hour settles
    firsts: dict[int, dict[int, int]] = {}  # hour -> slot -> first premium
    for time, value in blocks[:-1]:
        firsts.setdefault(time // HOUR_MS, {}).setdefault(time // 5_000, value)
    settled: dict[int, FundingRate] = {}
    for time, value in blocks:
        result = state.on_block(time, {0: value})
        state._check()
        if result is not None:
            assert result.hour not in settled
            settled[result.hour] = result.rates[0]
    assert set(settled) == set(firsts)
    for hour, slots in firsts.items():
        mean = int(Fraction(sum(slots.values()), len(slots)))  # int() truncates toward zero
        assert settled[hour] == FundingRate(0, hourly_funding_rate(mean), mean, len(slots))


# Payments.


def test_longs_pay_shorts_when_the_rate_is_positive() -> None:
    """Long 3.00 at 100.0000 and 0.0000125: pays 3750 micro-USDC, shorts get 1250 and 2500."""
    got = funding_payments([("b", -100), ("a", 300), ("c", -200)], PX_100, BASE_HOURLY)
    assert got == {"a": -3_750, "b": 1_250, "c": 2_500}
    assert list(got) == ["a", "b", "c"]


def test_shorts_pay_longs_when_the_rate_is_negative() -> None:
    """Negative rate: the short pays, the long receives."""
    got = funding_payments([("a", 100), ("b", -100)], PX_100, -BASE_HOURLY)
    assert got == {"a": 1_250, "b": -1_250}


def test_payer_rounds_up_and_the_leftover_goes_to_the_largest_remainder() -> None:
    """At 100.0001 the long owes 3750.00375 -> 3751; shares 1250.33 and 2500.67 -> +1 to c."""
    got = funding_payments([("a", 300), ("b", -100), ("c", -200)], PX_100 + 1, BASE_HOURLY)
    assert got == {"a": -3_751, "b": 1_250, "c": 2_501}


def test_leftover_ties_go_to_the_lowest_address() -> None:
    """Equal remainders: the micro-USDC goes to 0xaa before 0xbb, whatever the input order."""
    got = funding_payments([("0xbb", -1), ("0xcc", 2), ("0xaa", -1)], PX_100, 1)
    assert got == {"0xaa": 1, "0xbb": 0, "0xcc": -1}


def test_flat_positions_are_absent_and_zero_rate_pays_nothing() -> None:
    """szi == 0 is left out; a zero rate gives every open position 0."""
    got = funding_payments([("a", 5), ("z", 0), ("b", -5)], PX_100, 0)
    assert got == {"a": 0, "b": 0}
    assert funding_payments([("z", 0)], PX_100, BASE_HOURLY) == {}


def test_funding_payments_refuse_inconsistent_positions() -> None:
    """Positions that do not net to zero, a repeated address or a bad price are bugs."""
    with pytest.raises(ValueError, match="net to zero"):
        funding_payments([("a", 5), ("b", -4)], PX_100, BASE_HOURLY)
    with pytest.raises(ValueError, match="twice"):
        funding_payments([("a", 5), ("a", -5)], PX_100, BASE_HOURLY)
    with pytest.raises(ValueError, match="positive"):
        funding_payments([("a", 5), ("b", -5)], 0, BASE_HOURLY)


@given(
    st.lists(st.integers(-(10**9), 10**9), min_size=1, max_size=12),
    st.integers(1, 10**8),
    st.integers(-HOURLY_RATE_CAP, HOURLY_RATE_CAP),
    st.data(),
)
def test_funding_payments_conserve_and_are_order_independent(
    sizes: list[int], oracle_px: int, rate: int, data: st.DataObject
) -> None:
    """Sum exactly zero; payers pay their exact amount rounded up; receivers get their pro-rata
    share of the total paid rounded down, or one more; the input order changes nothing."""
    sizes = [*sizes, -sum(sizes)]  # every long has a short
    positions = [(f"0x{i:02x}", szi) for i, szi in enumerate(sizes)]
    got = funding_payments(positions, oracle_px, rate)
    assert sum(got.values()) == 0
    assert set(got) == {user for user, szi in positions if szi != 0}
    shuffled = data.draw(st.permutations(positions))
    again = funding_payments(shuffled, oracle_px, rate)
    assert again == got
    assert list(again) == list(got)

    owed = {user: Fraction(szi * oracle_px * rate, RATE_SCALE) for user, szi in positions}
    payers = {user for user, amount in owed.items() if amount > 0}
    total_paid = sum(math.ceil(owed[user]) for user in payers)
    receiver_size = sum(abs(szi) for user, szi in positions if szi != 0 and user not in payers)
    for user, szi in positions:
        if szi == 0:
            continue
        assert got[user] * szi * rate <= 0  # rate > 0: longs pay, shorts receive; < 0: reverse
        if user in payers:
            assert got[user] == -math.ceil(owed[user])
            continue
        share = Fraction(total_paid * abs(szi), receiver_size)
        assert math.floor(share) <= got[user] <= math.floor(share) + 1
        assert got[user] >= math.floor(-owed[user])  # never less than the exact amount, floored
