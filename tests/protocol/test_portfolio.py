"""Portfolio margin arithmetic: thresholds, borrow capacity, the borrow oracle price, the
pre-alpha ratio, and standard against portfolio margin for the carry trade and a HYPE hedge."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.markets import MarginTable, MarginTier, Markets
from protocol.portfolio import (
    LIQUIDATION_RATIO,
    MIN_BORROW_OFFSET,
    RATIO_SCALE,
    TOKEN_SCALE,
    Collateral,
    PerpPosition,
    Portfolio,
    PortfolioMargin,
    SpotHolding,
    StandardMargin,
    borrow_oracle_price,
    capital_freed,
    compare_margin,
    find_borrow_limit_price,
    find_liquidation_price,
    first_liquidation,
    is_liquidatable,
    liquidation_threshold,
    margin_at,
    margin_ratio,
    max_borrow,
    portfolio_liquidation_value,
    portfolio_maintenance_requirement,
    portfolio_margin_ratio,
)

USD = 10**6
HALF = 500_000  # LTV 0.5 at LTV_SCALE

# The devnet's BTC table (configs/devnet.toml, id 56), written out so the numbers below do not
# depend on the config; test_btc_table_is_the_config_one checks they agree. For a notional N of
# at least 50k USDC: MM = N / 20 - 1575 USDC, the deduction being
# 10_000 * (1/50 - 1/80) + 50_000 * (1/20 - 1/50) = 75 + 1500.
BTC_TABLE = MarginTable(
    56,
    "tiered 40x",
    (MarginTier(0, 40), MarginTier(10_000 * USD, 25), MarginTier(50_000 * USD, 10)),
)
HYPE_TABLE = MarginTable(10, "", (MarginTier(0, 10),))  # single tier 10x: MM = N / 20

BTC = TOKEN_SCALE
# The docs' carry trade: 1 BTC spot + 1 BTC short perp at 10x from 100k, with just the perp's
# initial margin (100k / 10 = 10k USDC) in cash.
CARRY = Portfolio(
    usdc=10_000 * USD,
    spot=(SpotHolding("BTC", BTC, HALF),),
    perps=(PerpPosition("BTC", -BTC, 100_000 * USD, 10, BTC_TABLE),),
)
# A hedge: 1000 HYPE spot + 1000 HYPE short perp at 10x from 30, cash = IM = 3000 USDC.
HYPE_HEDGE = Portfolio(
    usdc=3_000 * USD,
    spot=(SpotHolding("HYPE", 1000 * TOKEN_SCALE, HALF),),
    perps=(PerpPosition("HYPE", -1000 * TOKEN_SCALE, 30 * USD, 10, HYPE_TABLE),),
)


def btc(px_usd: int) -> dict[str, int]:
    return {"BTC": px_usd * USD}


def test_btc_table_is_the_config_one(markets: Markets) -> None:
    """The hand-written BTC table is table 56 of configs/devnet.toml; HYPE's is single 10x."""
    perps = {perp.name: perp for perp in markets.perps}
    assert markets.margin_table(perps["BTC"].margin_table_id).tiers == BTC_TABLE.tiers
    assert markets.margin_table(perps["HYPE"].margin_table_id).tiers == HYPE_TABLE.tiers


def test_liquidation_threshold() -> None:
    """0.5 + 0.5 LTV: HYPE/BTC 0.5 -> 0.75, 0.65 -> 0.825, bounds, odd millionths round down."""
    assert liquidation_threshold(500_000) == 750_000
    assert liquidation_threshold(650_000) == 825_000
    assert liquidation_threshold(0) == 500_000
    assert liquidation_threshold(1_000_000) == 1_000_000
    assert liquidation_threshold(1) == 500_000  # 500_000.5
    for bad in (-1, 1_000_001):
        with pytest.raises(ValueError):
            liquidation_threshold(bad)


def test_max_borrow_sums_balance_price_ltv() -> None:
    """1 BTC at 100k and 1000 HYPE at 30, both LTV 0.5: 50,000 + 15,000 = 65,000 USDC."""
    collateral = [
        Collateral(BTC, 100_000 * USD, HALF),
        Collateral(1000 * TOKEN_SCALE, 30 * USD, HALF),
    ]
    assert max_borrow(collateral) == 65_000 * USD
    assert max_borrow([]) == 0
    assert max_borrow([Collateral(BTC, 100_000 * USD, 0)]) == 0


def test_max_borrow_rounds_down_once() -> None:
    """One wei at 100 USDC and LTV 0.5 is worth 0.5 micro-USDC: alone 0, two of them 1."""
    half_micro = Collateral(1, 100 * USD, HALF)
    assert max_borrow([half_micro]) == 0
    assert max_borrow([half_micro, half_micro]) == 1
    assert max_borrow([Collateral(3, 100 * USD, HALF)]) == 1  # 1.5 -> 1


def test_max_borrow_supply_cap() -> None:
    """300 BTC with a 200 BTC supply cap back 200 * 100k * 0.5 = 10M USDC; bad input raises."""
    assert max_borrow([Collateral(300 * BTC, 100_000 * USD, HALF, 200 * BTC)]) == 10_000_000 * USD
    assert max_borrow([Collateral(100 * BTC, 100_000 * USD, HALF, 200 * BTC)]) == 5_000_000 * USD
    with pytest.raises(ValueError):
        max_borrow([Collateral(-1, 100 * USD, HALF)])
    with pytest.raises(ValueError):
        max_borrow([Collateral(1, 100 * USD, 2_000_000)])


def test_borrow_oracle_price_median() -> None:
    """Three prices: the middle one; two: their mean rounded down; one: itself; none: error."""
    assert borrow_oracle_price(30 * USD, 31 * USD, 29_500_000) == 30 * USD
    assert borrow_oracle_price(31 * USD, 29_500_000, 30 * USD) == 30 * USD
    assert borrow_oracle_price(30 * USD, None, 31_000_001) == 30_500_000  # 30.5000005
    assert borrow_oracle_price(None, 30 * USD, 30_000_002) == 30_000_001
    assert borrow_oracle_price(None, None, 29 * USD) == 29 * USD
    with pytest.raises(ValueError):
        borrow_oracle_price(None, None, None)
    with pytest.raises(ValueError):
        borrow_oracle_price(0, 30 * USD, 30 * USD)


def test_requirement_adds_the_offset_only_while_borrowing() -> None:
    """No borrow: MM alone (3425); 55k borrowed: 20 + 5925 + 55,000 = 60,945 USDC."""
    assert portfolio_maintenance_requirement(3_425 * USD, 0) == 3_425 * USD
    assert portfolio_maintenance_requirement(5_925 * USD, 55_000 * USD) == 60_945 * USD
    assert portfolio_maintenance_requirement(0, 1) == MIN_BORROW_OFFSET + 1
    with pytest.raises(ValueError):
        portfolio_maintenance_requirement(0, -1)


def test_liquidation_value() -> None:
    """15,000 USDC + 1 BTC at 150k x 0.75 = 127,500; a 100k borrow cap caps the BTC term;
    supply caps cut the balance; a balance short of the borrow goes negative."""
    one_btc = [Collateral(BTC, 150_000 * USD, HALF)]
    assert portfolio_liquidation_value(15_000 * USD, one_btc) == 127_500 * USD
    assert portfolio_liquidation_value(15_000 * USD, one_btc, 100_000 * USD) == 115_000 * USD
    capped = [Collateral(2 * BTC, 150_000 * USD, HALF, BTC)]
    assert portfolio_liquidation_value(0, capped) == 112_500 * USD
    assert portfolio_liquidation_value(-200_000 * USD, one_btc) == -87_500 * USD
    # LTV 1 millionth: 100 tokens at 1 USDC x 0.5000005 = 50.00005 USDC, exact, not 50.
    assert portfolio_liquidation_value(0, [Collateral(100 * TOKEN_SCALE, USD, 1)]) == 50_000_050


def test_margin_ratio_rounding_and_edges() -> None:
    """Rounded up: 1/3 -> 333,334; 0/0 -> 0; a requirement over a value <= 0 -> None."""
    assert margin_ratio(1, 3) == 333_334
    assert margin_ratio(2, 4) == 500_000
    assert margin_ratio(0, 5) == 0
    assert margin_ratio(0, 0) == 0
    assert margin_ratio(1, 0) is None
    assert margin_ratio(0, -1) is None


def test_is_liquidatable_at_095() -> None:
    """Exactly 0.95 is not liquidatable; one micro-USDC more requirement is."""
    assert not is_liquidatable(95 * USD, 100 * USD)
    assert is_liquidatable(95 * USD + 1, 100 * USD)
    assert margin_ratio(95 * USD, 100 * USD) == LIQUIDATION_RATIO
    assert margin_ratio(95 * USD + 1, 100 * USD) == LIQUIDATION_RATIO + 1
    assert not is_liquidatable(0, 0)
    assert is_liquidatable(1, 0)


def test_portfolio_margin_ratio_carry_at_150k() -> None:
    """(20 + 5925 + 55,000) / (15,000 + 150,000 x 0.75) = 60,945 / 127,500 = 0.478 exactly."""
    ratio = portfolio_margin_ratio(
        5_925 * USD, 55_000 * USD, 15_000 * USD, [Collateral(BTC, 150_000 * USD, HALF)]
    )
    assert ratio == 478_000


def test_empty_account_is_not_liquidatable() -> None:
    """No borrow, no position, 10 USDC: ratio 0 (the offset is not charged), not liquidatable."""
    point = margin_at(Portfolio(10 * USD), {})
    assert point.portfolio.ratio == 0
    assert point.portfolio.requirement == 0
    assert not point.portfolio.liquidatable
    assert not point.standard.liquidatable


def test_carry_trade_at_100k() -> None:
    """At entry: standard needs the 10k IM in cash and has nothing free; PM borrows nothing,
    needs no USDC (capacity 50k > IM 10k) and has 10k + 50k - 10k = 50k free."""
    point = margin_at(CARRY, btc(100_000))
    # MM = 100,000 / 20 - 1575 = 3425.
    assert point.standard == StandardMargin(
        account_value=10_000 * USD,
        required=10_000 * USD,
        maintenance=3_425 * USD,
        free=0,
        liquidatable=False,
    )
    # Ratio 3425 / (10,000 + 100,000 x 0.75) = 3425 / 85,000 = 0.0402941... -> 0.040295.
    assert point.portfolio == PortfolioMargin(
        own_funds=10_000 * USD,
        required=0,
        free=50_000 * USD,
        borrowed=0,
        capacity=50_000 * USD,
        requirement=3_425 * USD,
        liquidation_value=85_000 * USD,
        ratio=40_295,
        borrow_limited=False,
        liquidatable=False,
    )
    assert capital_freed(point) == 10_000 * USD


def test_carry_trade_at_150k() -> None:
    """BTC 150k: the short lost 50k. Standard is long gone (value -40k < MM 5925). PM borrows
    55k: the docs' "about 50k" is the loss; the model also funds the IM, which grew with the
    notional from 10k to 15k: 15,000 + 50,000 - 10,000 own cash = 55,000."""
    point = margin_at(CARRY, btc(150_000))
    assert point.standard == StandardMargin(
        account_value=-40_000 * USD,
        required=15_000 * USD,
        maintenance=5_925 * USD,
        free=-55_000 * USD,
        liquidatable=True,
    )
    assert point.portfolio == PortfolioMargin(
        own_funds=-40_000 * USD,
        required=0,
        free=20_000 * USD,  # capacity 75k left unborrowed: 75,000 - 55,000
        borrowed=55_000 * USD,
        capacity=75_000 * USD,  # 150,000 x 0.5
        requirement=60_945 * USD,  # 20 + 5925 + 55,000
        liquidation_value=127_500 * USD,  # (55,000 - 40,000) + 150,000 x 0.75
        ratio=478_000,
        borrow_limited=False,
        liquidatable=False,
    )


def test_carry_trade_standard_liquidation_price() -> None:
    """Standard: 110,000 - P < P / 20 - 1575, so P > 111,575 / 1.05 = 106,261.9047...;
    the first micro-USDC price is 106,261.904762."""
    liq = find_liquidation_price(
        CARRY, btc(100_000), "BTC", 100_000 * USD, 150_000 * USD, "standard"
    )
    assert liq == 106_261_904_762
    assert margin_at(CARRY, {"BTC": liq}).standard.liquidatable
    assert not margin_at(CARRY, {"BTC": liq - 1}).standard.liquidatable


def test_carry_trade_pm_borrow_limit_and_liquidation() -> None:
    """PM, BTC at P above 100k (USDC): own funds 110,000 - P, IM P / 10, capacity P / 2.

    Borrow limit: the IM shortfall P / 10 - (110,000 - P) exceeds P / 2 once 0.6 P > 110,000,
    P > 183,333.33: from there the trader must cut size or add USDC. In micro-USDC the IM
    rounds up, so 183,333.333333 is already short by 1 micro-USDC (18,333,333,334 +
    183,333,333,333 - 91,666,666,666 = 110,000,000,001 > 110e9).

    Liquidation: with the whole capacity borrowed the perp side holds 110,000 - P + P / 2 and
    falls below MM = P / 20 - 1575 once 0.55 P > 111,575, P > 202,863.636...; at
    202,863.636363 the MM rounds up to 8,568.181819 against 8,568.181818 held. The ratio is
    then only 110,020 / 160,716 = 0.68: for a hedged account it stays near LTV / threshold =
    0.5 / 0.75, so the borrow limit binds long before 0.95. The brief expected liquidation
    between 150k and 200k; the model puts the borrow limit there and liquidation just past
    200k, which is the docs' "at 200k the trader must cut size or face liquidation".
    """
    start = btc(100_000)
    limit = find_borrow_limit_price(CARRY, start, "BTC", 100_000 * USD, 250_000 * USD)
    assert limit == 183_333_333_333
    assert not margin_at(CARRY, {"BTC": limit - 1}).portfolio.borrow_limited
    liq = find_liquidation_price(CARRY, start, "BTC", 100_000 * USD, 250_000 * USD, "portfolio")
    assert liq == 202_863_636_363
    at_liq = margin_at(CARRY, {"BTC": liq}).portfolio
    assert at_liq.liquidatable
    assert at_liq.borrowed == at_liq.capacity == 101_431_818_181
    assert at_liq.ratio is not None and at_liq.ratio < LIQUIDATION_RATIO
    assert not margin_at(CARRY, {"BTC": liq - 1}).portfolio.liquidatable
    at_200k = margin_at(CARRY, btc(200_000)).portfolio
    assert at_200k.borrowed == 100_000 * USD  # ~100k: the whole capacity, 200,000 x 0.5
    assert at_200k.borrow_limited
    assert not at_200k.liquidatable


def test_carry_trade_path() -> None:
    """Along 100k, 110k, ..., 250k the first liquidatable point is 110k under standard and
    210k under PM; down to 50k neither regime liquidates (the short gains)."""
    up = compare_margin(CARRY, [btc(px) for px in range(100_000, 250_001, 10_000)])
    standard = first_liquidation(up, "standard")
    portfolio = first_liquidation(up, "portfolio")
    assert standard is not None and standard.prices == btc(110_000)
    assert portfolio is not None and portfolio.prices == btc(210_000)
    down = compare_margin(CARRY, [btc(px) for px in range(100_000, 49_999, -5_000)])
    assert first_liquidation(down, "standard") is None
    assert first_liquidation(down, "portfolio") is None
    assert all(point.portfolio.borrowed == 0 for point in down)


def test_hype_hedge_frees_capital() -> None:
    """1000 HYPE spot + short at 10x from 30: standard needs the 3000 USDC IM; PM needs none
    (capacity 1000 x 30 x 0.5 = 15,000 > 3000), so PM frees 3000 USDC and has 15,000 free."""
    point = margin_at(HYPE_HEDGE, {"HYPE": 30 * USD})
    assert point.standard.required == 3_000 * USD
    assert point.standard.free == 0
    assert point.portfolio.required == 0
    assert point.portfolio.required < point.standard.required
    assert point.portfolio.free == 15_000 * USD
    assert capital_freed(point) == 3_000 * USD
    # 1500 / (3000 + 30,000 x 0.75) = 1500 / 25,500 = 0.0588235... -> 0.058824
    assert point.portfolio.ratio == 58_824


def test_hype_hedge_liquidation_prices() -> None:
    """Standard: 33,000 - 1000 P < 50 P above 31.4285714 (first price 31.428572). PM: borrow
    limit at 1100 P - 33,000 > 500 P, P > 55; liquidation at 33,000 - 500 P < 50 P, P > 60,
    and exactly 60 still holds MM (3000 = 3000)."""
    start = {"HYPE": 30 * USD}
    assert find_liquidation_price(HYPE_HEDGE, start, "HYPE", 30 * USD, 60 * USD, "standard") == (
        31_428_572
    )
    assert find_borrow_limit_price(HYPE_HEDGE, start, "HYPE", 30 * USD, 100 * USD) == 55_000_001
    liq = find_liquidation_price(HYPE_HEDGE, start, "HYPE", 30 * USD, 100 * USD, "portfolio")
    assert liq == 60_000_001
    at_60 = margin_at(HYPE_HEDGE, {"HYPE": 60 * USD}).portfolio
    assert at_60.own_funds + at_60.borrowed == 3_000 * USD  # = MM of a 60,000 notional
    assert not at_60.liquidatable


def test_standard_ignores_spot() -> None:
    """Adding 10 BTC of spot leaves the standard side unchanged and adds 500k of PM capacity."""
    richer = Portfolio(CARRY.usdc, (SpotHolding("BTC", 11 * BTC, HALF),), CARRY.perps)
    base, more = margin_at(CARRY, btc(100_000)), margin_at(richer, btc(100_000))
    assert more.standard == base.standard
    assert more.portfolio.capacity - base.portfolio.capacity == 500_000 * USD


def test_borrow_cap_limits_the_borrow() -> None:
    """A 30k USDC borrow cap: at 150k the carry trade borrows 30k, not 55k, and is limited."""
    capped = Portfolio(CARRY.usdc, CARRY.spot, CARRY.perps, borrow_cap=30_000 * USD)
    point = margin_at(capped, btc(150_000)).portfolio
    assert point.borrowed == point.capacity == 30_000 * USD
    assert point.borrow_limited
    assert point.liquidatable  # -40,000 + 30,000 < MM 5925


def test_find_price_needs_a_crossing() -> None:
    """Bisection refuses a start that is already liquidatable or an end that is not."""
    with pytest.raises(ValueError):
        find_liquidation_price(CARRY, btc(100_000), "BTC", 150_000 * USD, 100_000 * USD, "standard")
    with pytest.raises(ValueError):
        find_liquidation_price(CARRY, btc(100_000), "BTC", 50_000 * USD, 100_000 * USD, "standard")


def test_perp_rounding_is_against_the_user() -> None:
    """Ten wei of a perp at 100 USDC, the price up 1 micro-USDC: the short's PnL of -1e-7
    micro-USDC rounds to -1, the long's +1e-7 to 0; the notional 10.0000001 rounds up to 11,
    so IM = ceil(11 / 10) = 2 and MM = ceil(11 / 20) = 1."""
    px = {"HYPE": 100 * USD + 1}
    short = Portfolio(0, perps=(PerpPosition("HYPE", -10, 100 * USD, 10, HYPE_TABLE),))
    long = Portfolio(0, perps=(PerpPosition("HYPE", 10, 100 * USD, 10, HYPE_TABLE),))
    assert margin_at(short, px).standard == StandardMargin(-1, 2, 1, -3, True)
    assert margin_at(long, px).standard == StandardMargin(0, 2, 1, -2, True)


def test_missing_price_is_refused() -> None:
    """A portfolio priced without one of its coins raises ValueError."""
    with pytest.raises(ValueError):
        margin_at(CARRY, {"HYPE": 30 * USD})


# Properties.

prices = st.integers(1, 200_000 * USD)
ltvs = st.integers(0, 1_000_000)


@given(
    maintenance=st.integers(0, 10**12),
    borrowed=st.integers(0, 10**12),
    usdc=st.integers(-(10**12), 10**12),
    balance=st.integers(0, 1000 * TOKEN_SCALE),
    ltv=ltvs,
    low=prices,
    high=prices,
)
def test_ratio_rises_as_collateral_falls(
    maintenance: int, borrowed: int, usdc: int, balance: int, ltv: int, low: int, high: int
) -> None:
    """With borrow, USDC and MM fixed, a lower collateral price never gives a lower ratio."""
    low, high = min(low, high), max(low, high)

    def ratio(px: int) -> Fraction:
        value = portfolio_margin_ratio(maintenance, borrowed, usdc, [Collateral(balance, px, ltv)])
        return Fraction(10**30) if value is None else Fraction(value)

    assert ratio(low) >= ratio(high)


def test_ratio_rises_as_collateral_falls_example() -> None:
    """The 150k carry state with its 55k borrow frozen: BTC back at 120k gives
    60,945 / (15,000 + 90,000) = 0.580428...-> 0.580429, up from 0.478."""
    one_btc = [Collateral(BTC, 120_000 * USD, HALF)]
    assert portfolio_margin_ratio(5_925 * USD, 55_000 * USD, 15_000 * USD, one_btc) == 580_429


@given(requirement=st.integers(0, 10**15), value=st.integers(-(10**15), 10**15))
def test_rounded_ratio_agrees_with_exact_check(requirement: int, value: int) -> None:
    """ratio > 0.95 (None counting as above) exactly when is_liquidatable says so."""
    ratio = margin_ratio(requirement, value)
    above = ratio is None or ratio > LIQUIDATION_RATIO
    assert above == is_liquidatable(requirement, value)
    if ratio is not None and value > 0:
        assert Fraction(ratio, RATIO_SCALE) >= Fraction(requirement, value)


@st.composite
def portfolios(draw: st.DrawFn) -> tuple[Portfolio, dict[str, int]]:
    """One coin held spot and/or as a perp at 1-10x, any cash, optional caps, one price."""
    table = draw(st.sampled_from([BTC_TABLE, HYPE_TABLE]))
    perps: tuple[PerpPosition, ...] = ()
    size = draw(st.integers(-1000 * TOKEN_SCALE, 1000 * TOKEN_SCALE))
    if size:
        perps = (PerpPosition("X", size, draw(prices), draw(st.integers(1, 10)), table),)
    cap = draw(st.none() | st.integers(0, 1000 * TOKEN_SCALE))
    spot = (SpotHolding("X", draw(st.integers(0, 1000 * TOKEN_SCALE)), draw(ltvs), cap),)
    borrow_cap = draw(st.none() | st.integers(0, 10**11))
    portfolio = Portfolio(draw(st.integers(0, 10**12)), spot, perps, borrow_cap)
    return portfolio, {"X": draw(prices)}


@given(case=portfolios())
def test_borrow_never_exceeds_max_borrow(case: tuple[Portfolio, dict[str, int]]) -> None:
    """0 <= borrowed <= max_borrow (and the borrow cap); the MM fallback needs a borrow limit."""
    portfolio, point_prices = case
    holding = portfolio.spot[0]
    collateral = [Collateral(holding.balance, point_prices["X"], holding.ltv, holding.supply_cap)]
    pm = margin_at(portfolio, point_prices).portfolio
    assert 0 <= pm.borrowed <= max_borrow(collateral)
    if portfolio.borrow_cap is not None:
        assert pm.borrowed <= portfolio.borrow_cap
    standard = margin_at(portfolio, point_prices).standard
    if pm.own_funds + pm.borrowed < standard.maintenance:
        assert pm.borrow_limited
    assert pm.free >= standard.free  # capacity is never negative
