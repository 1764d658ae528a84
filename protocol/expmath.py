"""The exponential at WAD scale (1.0 = 10**18), in integer arithmetic only.

Invariants:
- `exp_wad(n, d)` is e^(n/d) * WAD rounded to the nearest integer, half up. The only rounding
  that shows is that last one: the value before it is computed at 10**80 internal precision
  and is within 1e-15 of a unit of the exact e^(n/d) * WAD for every n/d <= EXP_MAX_ARG. So the
  result is the correctly rounded value unless the exact value lies within 1e-15 of a half,
  and is always within one unit of it.
- e^0 = WAD exactly; the result is never negative; for n/d < -43 it is 0 (e^-43 * WAD < 0.21,
  which rounds to 0), so any decay over a long enough time is exactly 0, never an error.
- Non-decreasing in n/d: two arguments whose true results differ by more than 2e-15 units keep
  their order, and rationals with denominators below 10**30 are never closer than that.
- No floats anywhere: the argument is the exact rational n/d.

How: x = k ln2 + r with k = round(x / ln2) and |r| <= ln2 / 2, then e^r by its Taylor series
at 10**80 precision (about 45 terms), then e^x = e^r * 2^k with one final rounded division.
"""

from __future__ import annotations

from protocol.fixed import WAD

EXP_MAX_ARG = 100  # e^100 * WAD ~ 2.7e61; larger arguments are refused
EXP_ZERO_BELOW = -43  # e^-43 * WAD ~ 0.21 rounds to 0

_PREC = 10**80
# ln 2 * 10**80, rounded to nearest (checked against decimal's ln in the tests).
_LN2 = 69314718055994530941723212145817656807550013436025525412068000949339362196969472


def exp_wad(x_num: int, x_den: int) -> int:
    """e^(x_num / x_den) * WAD, rounded to the nearest integer (half up).

    Raises ValueError when x_den <= 0 or x_num / x_den > EXP_MAX_ARG."""
    if x_den <= 0:
        raise ValueError(f"exp_wad: denominator must be positive, got {x_den}")
    if x_num > EXP_MAX_ARG * x_den:
        raise ValueError(f"exp_wad: argument {x_num}/{x_den} exceeds {EXP_MAX_ARG}")
    if x_num < EXP_ZERO_BELOW * x_den:
        return 0
    if x_num == 0:
        return WAD
    # x at internal precision, rounded to nearest (half up): error <= 0.5e-80.
    x = (2 * x_num * _PREC + x_den) // (2 * x_den)
    # k = round(x / ln2), half up; |r| <= ln2 / 2 up to the rounding of x.
    k = (2 * x + _LN2) // (2 * _LN2)
    r = x - k * _LN2
    # e^r = sum r^i / i!; each term is floored (error < 1e-80 each, < 50 terms), and the terms
    # shrink by at least a factor 0.35 / i, so the sum stops once a term floors to 0 or -1.
    total = _PREC
    term = _PREC
    i = 1
    while True:
        term = term * r // (i * _PREC)
        if term in (0, -1):
            break
        total += term
        i += 1
    # e^x * WAD = total * 2^k * WAD / _PREC, one division rounded to nearest, half up.
    if k >= 0:
        num = total * WAD << k
        den = _PREC
    else:
        num = total * WAD
        den = _PREC << -k
    return (2 * num + den) // (2 * den)


def wad_mul(a: int, b: int) -> int:
    """a * b / WAD rounded to the nearest integer, halves toward +infinity (for either sign)."""
    return (2 * a * b + WAD) // (2 * WAD)
