"""The integer exponential at WAD scale, against math.exp and against 120-digit decimal."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import expmath
from protocol.expmath import exp_wad, wad_mul
from protocol.fixed import WAD


def exact_exp_wad(x_num: int, x_den: int) -> int:
    """e^(x_num/x_den) * WAD rounded half up, with 120 significant digits of decimal."""
    with localcontext() as ctx:
        ctx.prec = 120
        value = (Decimal(x_num) / Decimal(x_den)).exp() * Decimal(WAD)
        return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def test_exp_of_zero_is_exactly_wad() -> None:
    """e^0 = 1.0 exactly, whatever the denominator."""
    assert exp_wad(0, 1) == WAD
    assert exp_wad(0, 150_000) == WAD


def test_known_values() -> None:
    """e, 1/e and sqrt(e) to 18 decimals, rounded to nearest."""
    assert exp_wad(1, 1) == 2_718281828459045235  # e = 2.718281828459045235360...
    assert exp_wad(-1, 1) == 367879441171442322  # 1/e = 0.367879441171442321595...
    assert exp_wad(1, 2) == 1_648721270700128147  # sqrt(e) = 1.648721270700128146848...
    assert exp_wad(-3_000, 150_000) == 980198673306755302  # e^-0.02 = 0.98019867330675527...


def test_ln2_constant_matches_decimal() -> None:
    """The built-in ln 2 is ln 2 * 10**80 rounded to nearest."""
    with localcontext() as ctx:
        ctx.prec = 120
        ln2 = (Decimal(2).ln() * Decimal(10) ** 80).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    assert int(ln2) == expmath._LN2


def test_range_ends() -> None:
    """Below -43 the result is 0; e^-42 * WAD = 0.575 rounds to 1; above 100 is refused."""
    assert exp_wad(-43, 1) == 0
    assert exp_wad(-(10**9), 1) == 0
    assert exp_wad(-42, 1) == 1
    assert exp_wad(100, 1) == exact_exp_wad(100, 1)
    with pytest.raises(ValueError, match="exceeds"):
        exp_wad(101, 1)
    with pytest.raises(ValueError, match="denominator"):
        exp_wad(1, 0)
    with pytest.raises(ValueError, match="denominator"):
        exp_wad(1, -2)


def test_large_arguments_are_exact_to_the_unit() -> None:
    """e^50 and e^-40 keep every digit: 46 and 1 significant digits at WAD scale."""
    assert exp_wad(50, 1) == exact_exp_wad(50, 1)
    assert exp_wad(-50, 1) == 0
    assert exp_wad(-40, 1) == 4  # e^-40 * WAD = 4.248...


@given(st.integers(min_value=-50 * 2**20, max_value=50 * 2**20))
def test_matches_math_exp(x_num: int) -> None:
    """Relative error <= 1e-15 against math.exp for x in [-50, 50] (dyadic, so float-exact)."""
    x = x_num / 2**20
    reference = math.exp(x) * WAD
    result = exp_wad(x_num, 2**20)
    assert abs(result - reference) <= max(1.0, 1e-15 * reference)


def test_matches_math_exp_on_a_grid() -> None:
    """The same bound on a fixed grid of 1601 points across [-50, 50], step 1/16."""
    for i in range(-800, 801):
        reference = math.exp(i / 16) * WAD
        assert abs(exp_wad(i, 16) - reference) <= max(1.0, 1e-15 * reference), i


def arguments(max_den: int) -> st.SearchStrategy[tuple[int, int]]:
    """Rationals (num, den) in [-44, 100] with 1 <= den <= max_den."""
    return st.integers(min_value=1, max_value=max_den).flatmap(
        lambda den: st.tuples(st.integers(min_value=-44 * den, max_value=100 * den), st.just(den))
    )


@given(arguments(10**15))
def test_correctly_rounded(x: tuple[int, int]) -> None:
    """Every result equals the 120-digit decimal value rounded half up."""
    assert exp_wad(*x) == exact_exp_wad(*x)


@given(arguments(10**9), arguments(10**9))
def test_monotonic(x: tuple[int, int], y: tuple[int, int]) -> None:
    """x <= y implies exp_wad(x) <= exp_wad(y), across different denominators."""
    (n1, d1), (n2, d2) = x, y
    if n1 * d2 > n2 * d1:
        n1, d1, n2, d2 = n2, d2, n1, d1
    assert exp_wad(n1, d1) <= exp_wad(n2, d2)


@given(
    st.integers(min_value=-20_000, max_value=20_000),
    st.integers(min_value=-20_000, max_value=20_000),
)
def test_product_of_exponentials(a: int, b: int) -> None:
    """e^a * e^b = e^(a+b) up to the rounding of each factor (a, b in [-20, 20])."""
    ea, eb = exp_wad(a, 1000), exp_wad(b, 1000)
    tolerance = 2 + (ea + eb) // WAD  # each factor is off by <= 0.5, scaled by the other
    assert abs(wad_mul(ea, eb) - exp_wad(a + b, 1000)) <= tolerance


def test_wad_mul_rounds_half_up() -> None:
    """Products round to nearest; exact halves go toward +infinity for either sign."""
    assert wad_mul(3, WAD // 2) == 2  # 1.5
    assert wad_mul(-3, WAD // 2) == -1  # -1.5
    assert wad_mul(1, WAD // 2 - 1) == 0  # 0.4999...
    assert wad_mul(2 * WAD, 3 * WAD) == 6 * WAD


@given(arguments(10**15))
def test_monotonic_between_neighbours(x: tuple[int, int]) -> None:
    """Arguments one 1/den apart, the closest the same denominator allows, keep their order."""
    num, den = x
    if num < 100 * den:
        assert exp_wad(num, den) <= exp_wad(num + 1, den)
