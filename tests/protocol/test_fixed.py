"""Exact decimal parsing and formatting."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocol.fixed import ceil_div, format_fixed, parse_fixed


def test_parse_exact_values() -> None:
    """Wire decimals become exact integers at the requested scale."""
    assert parse_fixed("0.1", 6) == 100_000
    assert parse_fixed("1891.4", 1) == 18_914
    assert parse_fixed("100", 2) == 10_000
    assert parse_fixed("1.50", 1) == 15
    assert parse_fixed("-2.5", 1) == -25
    assert parse_fixed(".5", 1) == 5
    assert parse_fixed("5.", 1) == 50
    assert parse_fixed("5.000", 0) == 5  # zeros past the scale, down to none at all
    assert parse_fixed("+3", 1) == 30


def test_parse_refuses_excess_precision_and_junk() -> None:
    """More digits than the scale, exponents and non-numbers are refused, never rounded."""
    assert parse_fixed("0.12", 1) is None
    assert parse_fixed("1e3", 2) is None
    assert parse_fixed("", 2) is None
    assert parse_fixed(".", 2) is None
    assert parse_fixed("1.2.3", 2) is None
    assert parse_fixed("nan", 2) is None
    assert parse_fixed(" 1", 2) is None
    assert parse_fixed("-", 2) is None
    assert parse_fixed("\u0661", 0) is None  # an Arabic-Indic one: isdigit() alone takes it
    assert parse_fixed("1_000", 0) is None  # int() alone takes it


def test_format_strips_trailing_zeros() -> None:
    """Formatting gives the shortest decimal with no exponent."""
    assert format_fixed(18_914, 1) == "1891.4"
    assert format_fixed(10_000, 2) == "100"
    assert format_fixed(1, 8) == "0.00000001"
    assert format_fixed(-25, 1) == "-2.5"
    assert format_fixed(7, 0) == "7"


@given(st.integers(min_value=-(10**30), max_value=10**30), st.integers(min_value=0, max_value=12))
def test_format_then_parse_round_trips(value: int, decimals: int) -> None:
    """parse_fixed inverts format_fixed at every scale."""
    assert parse_fixed(format_fixed(value, decimals), decimals) == value


def test_ceil_div_rounds_up() -> None:
    """Charges round against the user."""
    assert ceil_div(10, 3) == 4
    assert ceil_div(9, 3) == 3
    assert ceil_div(0, 3) == 0
