"""Exact decimal <-> integer fixed point.

Invariants:
- Wire numbers are parsed digit by digit, never through float: "0.1" at 6 decimals is exactly
  100000, and a string with more precision than the target scale is refused, not rounded.
- Formatting is the inverse of parsing: parse_fixed(format_fixed(v, d), d) == v.

Scales used across the protocol:
- USD_DECIMALS: perp collateral and every perp notional, in micro-USDC (1_000_000 = 1 USDC).
  A perp price carries 6 - szDecimals decimals and a size szDecimals, so px * sz is already
  at this scale.
- SPOT_NOTIONAL_DECIMALS: spot notional, px (8 - szDecimals) times sz (szDecimals).
- FEE_SCALE: fee rates in millionths (150 = 0.015%).
- RATE_SCALE: funding rates, premiums and interest rates (0.0000125 = 12_500_000).
- WAD: high-precision fractions such as exp() results and interest indices (1.0 = 10**18).
- Oracle and mark prices of a perp use that perp's price scale, like order prices.
"""

from __future__ import annotations

USD_DECIMALS = 6
USD_SCALE: int = 10**USD_DECIMALS
PERP_MAX_DECIMALS = 6
SPOT_MAX_DECIMALS = 8
SPOT_NOTIONAL_DECIMALS = SPOT_MAX_DECIMALS
FEE_SCALE = 1_000_000
RATE_DECIMALS = 12
RATE_SCALE: int = 10**RATE_DECIMALS
WAD: int = 10**18


def parse_fixed(text: str, decimals: int) -> int | None:
    """The integer `text * 10**decimals`, or None when `text` is not a plain decimal or has
    nonzero digits beyond `decimals` places. Trailing zeros beyond the scale are accepted.
    (Order prices and sizes are cached a level up, with their checks: protocol/orders.py.)"""
    if not text or len(text) > 64:
        return None
    sign = text[0]
    body = text[1:] if sign in "+-" else text
    whole, _, frac = body.partition(".")
    # isdigit() alone would take other scripts' digits: ASCII only.
    if whole and not (whole.isascii() and whole.isdigit()):
        return None
    if frac:
        if not (frac.isascii() and frac.isdigit()):
            return None
        if len(frac) > decimals:
            if frac[decimals:].strip("0"):
                return None
            frac = frac[:decimals]
        value = (
            int(whole or "0") * _POWERS[decimals] + int(frac or "0") * _POWERS[decimals - len(frac)]
        )
    elif whole:
        value = int(whole) * _POWERS[decimals]
    else:
        return None
    return -value if sign == "-" else value


_POWERS: tuple[int, ...] = tuple(10**n for n in range(65))


def format_fixed(value: int, decimals: int) -> str:
    """Shortest decimal string for `value / 10**decimals`: no exponent, no trailing zeros."""
    sign = "-" if value < 0 else ""
    magnitude = -value if value < 0 else value
    if decimals == 0:
        return f"{sign}{magnitude}"
    whole, frac = divmod(magnitude, 10**decimals)
    if frac == 0:
        return f"{sign}{whole}"
    digits = str(frac).rjust(decimals, "0").rstrip("0")
    return f"{sign}{whole}.{digits}"


def ceil_div(numerator: int, denominator: int) -> int:
    """Division rounded up, for amounts charged to a user."""
    return -((-numerator) // denominator)
