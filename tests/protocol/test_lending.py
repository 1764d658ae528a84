"""Borrow/lend reserves: rates, accrual against the closed form, caps, liquidity, user state,
config, snapshots, and interest conservation over random operation sequences.

USDC has 8 wei decimals (1 USDC = 10**8 wei), HYPE 8, UBTC 10. Rates are at RATE_SCALE
(10**12): 0.05 = 50_000_000_000.
"""

from __future__ import annotations

import math
import tomllib
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.expmath import exp_wad
from protocol.fixed import RATE_SCALE, WAD
from protocol.lending import (
    ERR_AMOUNT,
    ERR_BALANCE,
    ERR_CAP,
    ERR_LIQUIDITY,
    ERR_NO_DEBT,
    ERR_NO_RESERVE,
    ERR_NOT_BORROWABLE,
    ERR_TOO_SMALL,
    LTV_SCALE,
    YEAR_MS,
    Amounts,
    Lending,
    LendingSnapshot,
    ReserveParams,
    TokenLendState,
    borrow_rate,
    load_lending,
    supply_rate,
    utilization,
)
from protocol.markets import ConfigError, Markets

USDC, PURR, HYPE, UBTC = 0, 1, 2, 3
COIN = 10**8  # one USDC or HYPE in wei
HOUR_MS = 3_600_000
T0 = 1_700_000_000_000


def usdc_only(**overrides: Any) -> Lending:
    """A lending state with one borrowable USDC reserve on Hyperliquid's curve, no caps."""
    return Lending({USDC: ReserveParams(USDC, borrowable=True, **overrides)}, T0)


def at_utilization(supplied: int, borrowed: int, **overrides: Any) -> Lending:
    """`a` supplies and `b` borrows the given whole USDC amounts at T0."""
    lending = usdc_only(**overrides)
    assert lending.supply("a", USDC, supplied * COIN) == supplied * COIN
    if borrowed:
        assert lending.borrow("b", USDC, borrowed * COIN) == borrowed * COIN
    lending._check()
    return lending


def rate(text: str) -> int:
    """A decimal rate at RATE_SCALE, exactly."""
    return int(Decimal(text) * RATE_SCALE)


# Rates.


@pytest.mark.parametrize(
    ("borrowed", "u", "borrow", "supply"),
    [
        (500, "0.5", "0.05", "0.0225"),
        (800, "0.8", "0.05", "0.036"),
        (900, "0.9", "0.525", "0.42525"),
        (1000, "1", "1", "0.9"),
    ],
)
def test_rates_on_hyperliquid_curve(borrowed: int, u: str, borrow: str, supply: str) -> None:
    """Borrow 0.05 + 4.75 max(0, U - 0.8); supply = borrow x U x 0.9, at U 0.5 to 1."""
    reserve = at_utilization(1000, borrowed).reserves[USDC]
    assert utilization(reserve) == rate(u)
    assert borrow_rate(reserve) == rate(borrow)
    assert supply_rate(reserve) == rate(supply)


def test_rates_of_empty_reserve() -> None:
    """Nothing supplied or borrowed: U 0, borrow rate the 0.05 base, supply rate 0."""
    reserve = usdc_only().reserves[USDC]
    assert (utilization(reserve), borrow_rate(reserve), supply_rate(reserve)) == (
        0,
        rate("0.05"),
        0,
    )


def test_rates_with_slope1() -> None:
    """The generic curve: base 0.02, slope1 0.1 to kink 0.5, slope2 2 beyond."""
    curve = {
        "base_rate": rate("0.02"),
        "slope1": rate("0.1"),
        "kink": rate("0.5"),
        "slope2": 2 * RATE_SCALE,
    }
    low = at_utilization(1000, 250, **curve).reserves[USDC]
    assert borrow_rate(low) == rate("0.045")  # 0.02 + 0.1 x 0.25
    high = at_utilization(1000, 750, **curve).reserves[USDC]
    assert borrow_rate(high) == rate("0.57")  # 0.02 + 0.1 x 0.5 + 2 x 0.25
    assert supply_rate(high) == rate("0.38475")  # 0.57 x 0.75 x 0.9


def test_rates_round_against_borrowers_and_suppliers() -> None:
    """U = 1/3 with slope1 0.1: borrow 0.0833.. rounds up, supply and U round down."""
    reserve = at_utilization(3, 1, slope1=rate("0.1"), base_rate=rate("0.05")).reserves[USDC]
    assert utilization(reserve) == 333_333_333_333
    assert borrow_rate(reserve) == 83_333_333_334  # 0.05 + 0.1 / 3 = 0.08333.., up
    # the charged rate x U x 0.9 = 83_333_333_334 x 0.3 = 25_000_000_000.2, down
    assert supply_rate(reserve) == 25_000_000_000


@given(st.integers(1, 10**15), st.data())
def test_rates_match_float_reference(supplied: int, data: st.DataObject) -> None:
    """For any U in [0, 1] the integer rates agree with the float formulas to 1e-11."""
    borrowed = data.draw(st.integers(0, supplied))
    lending = usdc_only()
    assert lending.supply("a", USDC, supplied) == supplied
    if borrowed:
        assert lending.borrow("b", USDC, borrowed) == borrowed
    reserve = lending.reserves[USDC]
    u = reserve.total_borrowed / reserve.total_supplied
    expected_borrow = 0.05 + 4.75 * max(0.0, u - 0.8)
    assert abs(borrow_rate(reserve) / RATE_SCALE - expected_borrow) < 1e-11
    assert abs(supply_rate(reserve) / RATE_SCALE - expected_borrow * u * 0.9) < 1e-11
    assert borrow_rate(reserve) >= rate("0.05")
    assert supply_rate(reserve) <= borrow_rate(reserve) * 9 // 10


# Accrual.


def test_one_year_hand_computed() -> None:
    """1000 supplied, 500 borrowed, one accrual over a year at 5%: exact wei everywhere."""
    lending = at_utilization(1000, 500)
    lending.accrue(T0 + YEAR_MS)
    reserve = lending.reserves[USDC]
    # e^0.05 = 1.051271096376024039697.. -> 1_051271096376024040 (exp_wad rounds to nearest;
    # WAD x growth / WAD is exact, so the round-up leaves it).
    assert reserve.borrow_index == 1_051271096376024040
    # 500e8 x 1.051271096376024040 = 52_563_554_818.80.. -> 52_563_554_819 (up)
    assert lending.user_borrow("b", USDC) == 52_563_554_819
    # interest 2_563_554_819; suppliers get floor(0.9 x it) = 2_307_199_337, protocol the rest
    assert lending.user_supply("a", USDC) == 102_307_199_337
    assert reserve.supply_index == 1_023071993370000000  # 102_307_199_337 / 1000e8 exactly
    assert reserve.protocol == 256_355_482
    assert reserve.cash == 500 * COIN  # interest moves no tokens


def test_year_of_hourly_blocks_matches_closed_form() -> None:
    """U 0.5 stays under the kink, so the rate is 5% all year: index = e^0.05 to 1e-9."""
    lending = at_utilization(1_000_000, 500_000)
    reserve = lending.reserves[USDC]
    for hour in range(1, 8761):
        lending.accrue(T0 + hour * HOUR_MS)
        assert utilization(reserve) < rate("0.8")
    lending._check()
    assert reserve.last_time == T0 + YEAR_MS
    growth = math.exp(0.05)
    assert abs(reserve.borrow_index / WAD / growth - 1) < 1e-9
    assert abs(reserve.total_borrowed / (500_000 * COIN * growth) - 1) < 1e-9
    interest = reserve.total_borrowed - 500_000 * COIN
    assert interest == reserve.total_supplied - 1_000_000 * COIN + reserve.protocol
    expected_supplied = 1_000_000 * COIN + 0.9 * 500_000 * COIN * (growth - 1)
    assert abs(reserve.total_supplied / expected_supplied - 1) < 1e-9
    # Suppliers get floor(0.9 x each hour's interest): the protocol gains < 1 wei an hour
    # over its 10%, so 0 <= 10 x protocol - interest < 10 x 8760.
    assert 0 <= 10 * reserve.protocol - interest < 87_600
    # One accrual over the same year gives the same index up to one unit per block.
    single = at_utilization(1_000_000, 500_000)
    single.accrue(T0 + YEAR_MS)
    assert 0 <= reserve.borrow_index - single.reserves[USDC].borrow_index <= 8760


def test_hour_of_one_second_blocks_matches_one_accrual() -> None:
    """3600 blocks of 1 s compound to exp(0.05 / 8760) like one 1 h accrual, to the unit."""
    per_second = at_utilization(1000, 500)
    for second in range(1, 3601):
        per_second.accrue(T0 + second * 1000)
    hourly = at_utilization(1000, 500)
    hourly.accrue(T0 + HOUR_MS)
    index = per_second.reserves[USDC].borrow_index
    assert index == pytest.approx(hourly.reserves[USDC].borrow_index, abs=3600)
    assert index == pytest.approx(exp_wad(5 * HOUR_MS, 100 * YEAR_MS), abs=3600)


def test_year_above_kink_matches_float_reference() -> None:
    """From U 0.9, hourly blocks follow the same scheme run in floats to 1e-9 (U passes 1)."""
    lending = at_utilization(1_000_000, 900_000)
    reserve = lending.reserves[USDC]
    supplied, borrowed = 1_000_000.0 * COIN, 900_000.0 * COIN
    for hour in range(1, 8761):
        u = min(borrowed / supplied, 1.0)
        yearly = 0.05 + 4.75 * max(0.0, u - 0.8)
        interest = borrowed * math.expm1(yearly * HOUR_MS / YEAR_MS)
        borrowed += interest
        supplied += 0.9 * interest
        lending.accrue(T0 + hour * HOUR_MS)
    lending._check()
    assert borrowed > supplied  # debt overtook the claims; the protocol share covers it
    assert utilization(reserve) == RATE_SCALE
    assert abs(reserve.total_borrowed / borrowed - 1) < 1e-9
    assert abs(reserve.total_supplied / supplied - 1) < 1e-9
    added_debt = reserve.total_borrowed - 900_000 * COIN
    assert added_debt == reserve.total_supplied - 1_000_000 * COIN + reserve.protocol
    assert lending.available(USDC) == 0


def test_idle_reserve_index_grows_at_base_rate() -> None:
    """Nothing borrowed: the borrow index still grows at 5% (no one owes it), suppliers and
    the protocol earn nothing."""
    lending = at_utilization(1000, 0)
    lending.accrue(T0 + YEAR_MS)
    reserve = lending.reserves[USDC]
    assert reserve.borrow_index == 1_051271096376024040  # e^0.05
    assert (reserve.supply_index, reserve.protocol) == (WAD, 0)
    assert lending.user_supply("a", USDC) == 1000 * COIN


def test_long_gap_splits_into_years() -> None:
    """A 2.5-year gap at a constant 5% gives e^0.125 and leaves the last time at the end."""
    lending = at_utilization(1000, 100)
    lending.accrue(T0 + 5 * YEAR_MS // 2)
    reserve = lending.reserves[USDC]
    assert reserve.last_time == T0 + 5 * YEAR_MS // 2
    assert reserve.borrow_index == pytest.approx(exp_wad(125, 1000), abs=3)


def test_accrue_same_time_is_noop_and_past_is_refused() -> None:
    """Accruing to the last time changes nothing; to an earlier time raises."""
    lending = at_utilization(1000, 500)
    before = lending.snapshot()
    lending.accrue(T0)
    assert lending.snapshot() == before
    with pytest.raises(ValueError, match="before"):
        lending.accrue(T0 - 1)


# Operations: caps, liquidity, balances.


def test_user_caps_refuse_and_change_nothing(markets: Markets) -> None:
    """Defaults: 200 HYPE supplied per user and 1000 USDC borrowed per user, no more."""
    lending = Lending(load_lending(None, markets), T0)
    assert lending.supply("a", HYPE, 150 * COIN) == 150 * COIN
    before = lending.snapshot()
    assert lending.supply("a", HYPE, 50 * COIN + 1) == ERR_CAP
    assert lending.snapshot() == before
    assert lending.supply("a", HYPE, 50 * COIN) == 50 * COIN  # exactly at the cap
    assert lending.supply("b", HYPE, 200 * COIN) == 200 * COIN  # per user
    assert lending.supply("c", USDC, 5000 * COIN) == 5000 * COIN
    assert lending.borrow("b", USDC, 1000 * COIN) == 1000 * COIN
    before = lending.snapshot()
    assert lending.borrow("b", USDC, 1) == ERR_CAP
    assert lending.snapshot() == before
    assert lending.borrow("a", USDC, 1000 * COIN) == 1000 * COIN
    lending._check()


def test_interest_may_carry_past_a_cap() -> None:
    """Interest grows a debt past the user cap; further borrows are refused, repays work."""
    lending = at_utilization(5000, 0, user_borrow_cap=1000 * COIN)
    assert lending.borrow("b", USDC, 1000 * COIN) == 1000 * COIN
    lending.accrue(T0 + HOUR_MS)
    assert lending.user_borrow("b", USDC) > 1000 * COIN
    assert lending.borrow("b", USDC, 1) == ERR_CAP
    assert lending.repay("b", USDC, 10 * COIN) == 10 * COIN
    assert lending.borrow("b", USDC, 1) == 1


def test_global_caps_refuse_and_change_nothing() -> None:
    """Global supply cap 1000 and borrow cap 600 count every user's amounts."""
    lending = usdc_only(global_supply_cap=1000 * COIN, global_borrow_cap=600 * COIN)
    assert lending.supply("a", USDC, 700 * COIN) == 700 * COIN
    before = lending.snapshot()
    assert lending.supply("b", USDC, 300 * COIN + 1) == ERR_CAP
    assert lending.snapshot() == before
    assert lending.supply("b", USDC, 300 * COIN) == 300 * COIN
    assert lending.borrow("c", USDC, 400 * COIN) == 400 * COIN
    before = lending.snapshot()
    assert lending.borrow("d", USDC, 200 * COIN + 1) == ERR_CAP
    assert lending.snapshot() == before
    assert lending.borrow("d", USDC, 200 * COIN) == 200 * COIN


def test_withdraw_beyond_liquidity_is_refused() -> None:
    """100 supplied, 60 borrowed: 40 can leave; more (or all) waits for the repay."""
    lending = at_utilization(100, 60)
    assert lending.available(USDC) == 40 * COIN
    before = lending.snapshot()
    assert lending.withdraw_supply("a", USDC, 40 * COIN + 1) == ERR_LIQUIDITY
    assert lending.withdraw_supply("a", USDC, None) == ERR_LIQUIDITY
    assert lending.borrow("c", USDC, 40 * COIN + 1) == ERR_LIQUIDITY
    assert lending.snapshot() == before
    assert lending.withdraw_supply("a", USDC, 40 * COIN) == 40 * COIN
    assert lending.borrow("c", USDC, 1) == ERR_LIQUIDITY
    assert lending.repay("b", USDC, None) == 60 * COIN
    assert lending.withdraw_supply("a", USDC, None) == 60 * COIN
    reserve = lending.reserves[USDC]
    assert (reserve.cash, reserve.scaled_supply, reserve.scaled_borrow) == (0, 0, 0)
    assert lending.user_state("a").token_to_state == ()
    lending._check()


def test_balance_errors() -> None:
    """Withdrawing more than supplied, or from nothing, and repaying no debt are refused."""
    lending = at_utilization(100, 0)
    before = lending.snapshot()
    assert lending.withdraw_supply("a", USDC, 100 * COIN + 1) == ERR_BALANCE
    assert lending.withdraw_supply("b", USDC, None) == ERR_BALANCE
    assert lending.withdraw_supply("b", USDC, 1) == ERR_BALANCE
    assert lending.repay("a", USDC, None) == ERR_NO_DEBT
    assert lending.repay("a", USDC, 5) == ERR_NO_DEBT
    assert lending.snapshot() == before


def test_token_and_amount_errors(markets: Markets) -> None:
    """No reserve for PURR, HYPE is not borrowable, amounts must be positive."""
    lending = Lending(load_lending(None, markets), T0)
    before = lending.snapshot()
    assert lending.supply("a", PURR, COIN) == ERR_NO_RESERVE
    assert lending.withdraw_supply("a", PURR, None) == ERR_NO_RESERVE
    assert lending.borrow("a", PURR, COIN) == ERR_NO_RESERVE
    assert lending.repay("a", PURR, None) == ERR_NO_RESERVE
    assert lending.borrow("a", HYPE, COIN) == ERR_NOT_BORROWABLE
    assert lending.supply("a", USDC, 0) == ERR_AMOUNT
    assert lending.supply("a", USDC, -1) == ERR_AMOUNT
    assert lending.withdraw_supply("a", USDC, 0) == ERR_AMOUNT
    assert lending.borrow("a", USDC, 0) == ERR_AMOUNT
    assert lending.repay("a", USDC, -5) == ERR_AMOUNT
    assert lending.snapshot() == before
    assert lending.reserve_state(PURR) is None
    assert lending.user_supply("a", PURR) == lending.user_borrow("a", PURR) == 0


def test_repay_is_capped_at_the_debt_and_dust_is_refused() -> None:
    """After interest: a repay above the debt takes the debt; 1 wei credits no scaled unit."""
    lending = at_utilization(1000, 500)
    lending.accrue(T0 + YEAR_MS)
    assert lending.repay("b", USDC, 1) == ERR_TOO_SMALL  # 1e18 / 1.05e18 floors to 0
    assert lending.supply("c", USDC, 1) == ERR_TOO_SMALL  # 1e18 / 1.023e18 floors to 0
    assert lending.repay("b", USDC, 2) == 2  # removes one scaled unit
    debt = lending.user_borrow("b", USDC)
    assert lending.repay("b", USDC, 10**30) == debt
    assert lending.user_borrow("b", USDC) == 0
    lending._check()


def test_supply_and_borrow_of_one_token_coexist() -> None:
    """A user may supply and borrow the same token; the two positions are kept apart."""
    lending = at_utilization(1000, 0)
    assert lending.borrow("a", USDC, 300 * COIN) == 300 * COIN
    assert lending.user_state("a").token_to_state == (
        (USDC, TokenLendState(Amounts(300 * COIN, 300 * COIN), Amounts(1000 * COIN, 1000 * COIN))),
    )
    assert lending.withdraw_supply("a", USDC, None) == ERR_LIQUIDITY  # 700 available
    lending._check()


def test_round_trip_never_pays_out_more() -> None:
    """Supplying x at an index above 1 and withdrawing all at once returns x or x - 1 wei."""
    lending = at_utilization(1000, 500)
    lending.accrue(T0 + YEAR_MS)
    assert lending.supply("c", USDC, 100 * COIN) == 100 * COIN
    assert lending.withdraw_supply("c", USDC, None) == 100 * COIN - 1
    assert lending.borrow("d", USDC, 7 * COIN) == 7 * COIN
    assert lending.user_borrow("d", USDC) == 7 * COIN + 1  # 1 wei more, never less


# Views.


def test_user_state_basis_and_value() -> None:
    """Basis is the scaled balance (principal at index 1), value the amount with interest."""
    lending = at_utilization(1000, 500)
    lending.accrue(T0 + YEAR_MS)
    zero = Amounts(0, 0)
    state_a = lending.user_state("a").token_to_state
    assert state_a == ((USDC, TokenLendState(zero, Amounts(1000 * COIN, 102_307_199_337))),)
    state_b = lending.user_state("b").token_to_state
    assert state_b == ((USDC, TokenLendState(Amounts(500 * COIN, 52_563_554_819), zero)),)
    # c supplies 100 USDC at index 1.02307199337: basis floor(1e10 / 1.02307199337)
    assert lending.supply("c", USDC, 100 * COIN) == 100 * COIN
    state_c = lending.user_state("c").token_to_state
    assert state_c == ((USDC, TokenLendState(zero, Amounts(9_774_483_188, 9_999_999_999))),)
    assert lending.user_state("nobody").token_to_state == ()
    encoded = msgspec.json.encode(lending.user_state("c"))
    assert encoded == (
        b'{"tokenToState":[[0,{"borrow":{"basis":0,"value":0},'
        b'"supply":{"basis":9774483188,"value":9999999999}}]]}'
    )


def test_reserve_state_fields() -> None:
    """borrowLendReserveState numbers: balance is the cash, keys camelCase in wire order."""
    lending = at_utilization(1000, 500)
    lending.accrue(T0 + YEAR_MS)
    state = lending.reserve_state(USDC)
    assert state is not None
    assert state.balance == 500 * COIN
    assert state.total_supplied == 102_307_199_337
    assert state.total_borrowed == 52_563_554_819
    # balance = supplied - borrowed + protocol share (+ rounding dust, here none)
    assert state.balance == state.total_supplied - state.total_borrowed + 256_355_482
    assert state.utilization == 52_563_554_819 * RATE_SCALE // 102_307_199_337
    assert state.borrow_yearly_rate == rate("0.05")
    assert state.ltv == 0
    keys = list(msgspec.json.decode(msgspec.json.encode(state)))
    assert keys == [
        "borrowYearlyRate",
        "supplyYearlyRate",
        "balance",
        "utilization",
        "ltv",
        "totalSupplied",
        "totalBorrowed",
    ]


@given(
    st.integers(10**18, 10**27),
    st.integers(1, 1000),
    st.integers(1, YEAR_MS),
    st.integers(0, RATE_SCALE),
)
def test_split_with_scaled_supply_above_wad(
    supplied: int, per_mille: int, dt: int, protocol_share: int
) -> None:
    """With more than WAD scaled units the supply index cannot hit every total: suppliers
    get at most their share and at least it less supplied / WAD; the protocol the rest."""
    lending = usdc_only(protocol_share=protocol_share)
    assert lending.supply("a", USDC, supplied) == supplied
    borrowed = supplied * per_mille // 1000
    assert lending.borrow("b", USDC, borrowed) == borrowed
    reserve = lending.reserves[USDC]
    s0, b0 = reserve.total_supplied, reserve.total_borrowed
    lending.accrue(T0 + dt)
    lending._check()
    interest = reserve.total_borrowed - b0
    gained = reserve.total_supplied - s0
    share = interest * (RATE_SCALE - protocol_share) // RATE_SCALE
    assert interest == gained + reserve.protocol
    assert share - reserve.scaled_supply // WAD - 1 <= gained <= share


# Snapshots.


def test_snapshot_round_trip_with_large_numbers() -> None:
    """At U = 1 (100% a year) for 4 years the index passes 2**64; msgpack still encodes it."""
    lending = at_utilization(100, 100)
    lending.accrue(T0 + 4 * YEAR_MS)
    assert lending.reserves[USDC].borrow_index > 2**64
    snapshot = lending.snapshot()
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(snapshot), type=LendingSnapshot)
    params = {USDC: lending.reserves[USDC].params}
    restored = Lending.restore(params, decoded)
    assert restored.snapshot() == snapshot
    assert restored.user_borrow("b", USDC) == lending.user_borrow("b", USDC)
    with pytest.raises(ValueError, match="reserves differ"):
        Lending.restore({HYPE: ReserveParams(HYPE)}, decoded)


# Config.


def test_default_reserves(markets: Markets) -> None:
    """Without a [lending] table: USDC borrowable (1000 per user), HYPE and UBTC collateral."""
    params = load_lending(None, markets)
    assert list(params) == [USDC, HYPE, UBTC]
    usdc, hype, ubtc = params[USDC], params[HYPE], params[UBTC]
    assert (usdc.borrowable, usdc.ltv, usdc.user_borrow_cap) == (True, 0, 1000 * COIN)
    assert (usdc.global_supply_cap, usdc.global_borrow_cap) == (10**9 * COIN, 5 * 10**8 * COIN)
    assert (hype.borrowable, hype.ltv, hype.user_supply_cap) == (False, LTV_SCALE // 2, 200 * COIN)
    assert (ubtc.ltv, ubtc.user_supply_cap, ubtc.global_supply_cap) == (
        LTV_SCALE // 2,
        10**9,  # 0.1 UBTC at 10 wei decimals
        2000 * 10**10,
    )
    assert (usdc.base_rate, usdc.slope1, usdc.kink, usdc.slope2, usdc.protocol_share) == (
        50_000_000_000,
        0,
        800_000_000_000,
        4_750_000_000_000,
        100_000_000_000,
    )


def test_lending_table_parsed_exactly(markets: Markets) -> None:
    """A [lending] table replaces the defaults; decimals parse at each token's wei scale."""
    raw = tomllib.loads(
        """
        [lending.USDC]
        borrowable = true
        ltv = "0"
        global_supply_cap = "1000000000"
        user_borrow_cap = "0.00000001"
        slope2 = "1.234567890123"

        [lending.HYPE]
        ltv = "0.65"
        user_supply_cap = "200"
        """
    )["lending"]
    params = load_lending(raw, markets)
    assert list(params) == [USDC, HYPE]
    assert params[USDC].global_supply_cap == 10**9 * COIN
    assert params[USDC].user_borrow_cap == 1
    assert params[USDC].global_borrow_cap is None
    assert params[USDC].slope2 == 1_234_567_890_123
    assert params[HYPE].ltv == 650_000
    assert load_lending({}, markets) == {}


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"PURRR": {}}, "not a spot token"),
        ({"HYPE": {"ltv": "1.5"}}, "ltv must be in"),
        ({"HYPE": {"ltv": "0.1234567"}}, "ltv"),
        ({"HYPE": {"ltv": 0.5}}, "Expected `str`"),
        ({"USDC": {"user_supply_cap": "0.000000001"}}, "user_supply_cap"),
        ({"USDC": {"user_supply_cap": "-1"}}, "user_supply_cap"),
        ({"USDC": {"supply_cap": "1"}}, "unknown field"),
        ({"HYPE": {"user_borrow_cap": "1"}}, "not borrowable"),
        ({"USDC": {"kink": "1.1"}}, "kink"),
        ({"USDC": {"protocol_share": "2"}}, "protocol_share"),
        ({"USDC": {"slope2": "1000"}}, "10000%"),
        ({"USDC": "yes"}, "lending.USDC"),
    ],
)
def test_bad_lending_tables(markets: Markets, table: dict[str, Any], match: str) -> None:
    """Malformed [lending] entries raise ConfigError naming the problem."""
    with pytest.raises(ConfigError, match=match):
        load_lending(table, markets)


def test_lending_rejects_bad_params() -> None:
    """The constructor refuses params filed under another token or out of range."""
    with pytest.raises(ConfigError, match="filed under"):
        Lending({USDC: ReserveParams(HYPE)}, T0)
    with pytest.raises(ConfigError, match="ltv"):
        Lending({USDC: ReserveParams(USDC, ltv=LTV_SCALE + 1)}, T0)


# Interest conservation over random operation sequences.

USERS = ("a", "b", "c")
PROPERTY_PARAMS = {
    USDC: ReserveParams(
        USDC,
        borrowable=True,
        global_supply_cap=8 * 10**12,
        global_borrow_cap=5 * 10**12,
        user_supply_cap=4 * 10**12,
        user_borrow_cap=2 * 10**12,
    ),
    # A steep curve and an odd protocol share, so indexes move fast and splits round.
    HYPE: ReserveParams(
        HYPE,
        borrowable=True,
        base_rate=rate("0.3"),
        slope1=rate("0.7"),
        kink=rate("0.5"),
        slope2=rate("40"),
        protocol_share=RATE_SCALE // 3,
    ),
}

# An amount is absolute wei, a share in per mille of what the operation can take (the
# user's supply or debt, the available liquidity, or 4e12 wei for a supply; usually
# succeeds), None (everything), or invalid (0 or -1).
amount_specs = st.one_of(
    st.tuples(st.just("part"), st.integers(1, 1000)),
    st.tuples(st.just("part"), st.integers(1, 1000)),
    st.tuples(st.just("part"), st.integers(1, 1000)),
    st.tuples(st.just("wei"), st.integers(1, 5 * 10**12)),
    st.tuples(st.just("wei"), st.integers(1, 1000)),
    st.tuples(st.just("wei"), st.integers(-1, 0)),
    st.none(),
)
operations = st.lists(
    st.tuples(
        st.sampled_from(["supply", "withdraw", "borrow", "borrow", "repay", "repay", "accrue"]),
        st.sampled_from(USERS),
        st.sampled_from([USDC, HYPE]),
        amount_specs,
        st.integers(0, YEAR_MS),
    ),
    min_size=5,
    max_size=40,
)
# Every user starts with a supply in both reserves, so borrows find liquidity.
opening_supplies = st.lists(st.integers(10**6, 2 * 10**12), min_size=6, max_size=6)


def _amount(
    lending: Lending, kind: str, user: str, token: int, spec: tuple[str, int] | None
) -> int | None:
    """The amount an operation's spec stands for in the current state."""
    if spec is None:
        return None if kind in ("withdraw", "repay") else 10**12
    how, n = spec
    if how == "wei":
        return n
    reserve = lending.reserves[token]
    whole = {
        "supply": 4 * 10**12,
        "withdraw": reserve.supply_of(user),
        "borrow": reserve.available(),
        "repay": reserve.debt_of(user),
    }[kind]
    return max(1, whole * n // 1000)


def _books(lending: Lending) -> dict[int, tuple[int, int, int, int, int, int]]:
    """(total supplied, total borrowed, protocol, cash, supply index, borrow index) by token."""
    return {
        token: (
            r.total_supplied,
            r.total_borrowed,
            r.protocol,
            r.cash,
            r.supply_index,
            r.borrow_index,
        )
        for token, r in lending.reserves.items()
    }


@settings(max_examples=300, deadline=None)
@given(opening_supplies, operations)
def test_interest_is_conserved_and_books_hold(
    opening: list[int], ops: list[tuple[str, str, int, tuple[str, int] | None, int]]
) -> None:
    """Random operations: added debt = added claims + protocol share, failures change nothing,
    cash moves by what is returned, and once all debt is repaid every supplier gets out."""
    lending = Lending(PROPERTY_PARAMS, T0)
    for i, opening_amount in enumerate(opening):
        supplier, token = USERS[i % 3], (USDC, HYPE)[i // 3]
        assert lending.supply(supplier, token, opening_amount) == opening_amount
    now = T0
    for kind, user, token, spec, dt in ops:
        before = _books(lending)
        snapshot = lending.snapshot()
        if kind == "accrue":
            now += dt
            lending.accrue(now)
            lending._check()
            for reserve_token, (s0, b0, p0, c0, si0, bi0) in before.items():
                s1, b1, p1, c1, si1, bi1 = _books(lending)[reserve_token]
                assert b1 - b0 == (s1 - s0) + (p1 - p0)  # exactly
                assert p1 >= p0 and c1 == c0 and si1 >= si0 and bi1 >= bi0
                kept = RATE_SCALE - PROPERTY_PARAMS[reserve_token].protocol_share
                if lending.reserves[reserve_token].scaled_supply > 0:  # always <= WAD here
                    assert s1 - s0 == (b1 - b0) * kept // RATE_SCALE
            continue
        borrowers = sorted(lending.reserves[token].borrows)
        if kind == "repay" and borrowers and user not in borrowers:
            user = borrowers[0]  # repay someone's debt  # noqa: PLW2901
        amount = _amount(lending, kind, user, token, spec)
        reserve = lending.reserves[token]
        supply0, debt0 = reserve.supply_of(user), reserve.debt_of(user)
        if kind == "withdraw":
            result = lending.withdraw_supply(user, token, amount)
        elif kind in ("supply", "borrow"):
            assert amount is not None
            grow = lending.supply if kind == "supply" else lending.borrow
            result = grow(user, token, amount)
        else:
            result = lending.repay(user, token, amount)
        lending._check()
        if isinstance(result, str):
            assert lending.snapshot() == snapshot
            continue
        assert result > 0
        if amount is not None and kind in ("supply", "withdraw", "borrow"):
            assert result == amount
        supply1, debt1 = reserve.supply_of(user), reserve.debt_of(user)
        cash_change = reserve.cash - before[token][3]
        if kind == "supply":
            assert cash_change == result
            assert result - reserve.supply_index // WAD - 1 <= supply1 - supply0 <= result
        elif kind == "withdraw":
            assert cash_change == -result
            assert supply0 - supply1 >= result
            assert (user in reserve.supplies) == (result < supply0)  # all of it clears it
        elif kind == "borrow":
            assert cash_change == -result
            assert debt1 - debt0 >= result
        else:
            assert cash_change == result
            assert debt0 - debt1 <= result
            assert (user in reserve.borrows) == (result < debt0)  # all of it clears it
    # Settle: every borrower repays, then every supplier withdraws everything.
    for token, reserve in lending.reserves.items():
        for user in sorted(reserve.borrows):
            assert isinstance(lending.repay(user, token, None), int)
        for user in sorted(reserve.supplies):
            value = reserve.supply_of(user)
            assert lending.withdraw_supply(user, token, None) == value
        lending._check()
        assert reserve.scaled_supply == reserve.scaled_borrow == 0
        assert reserve.cash >= reserve.protocol  # the protocol's share is still there
