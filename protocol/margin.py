"""Perp margin arithmetic: tiers, initial and maintenance margin, the transfer rule,
liquidation prices, and the clearinghouseState margin summaries.

Invariants:
- Integer fixed point only. Notionals, margins and cash are micro-USDC; a perp size (szDecimals)
  times a perp price (6 - szDecimals decimals) is already at that scale, so a margin divided by
  a size is a price at the market's price scale and no decimals need passing around.
- Every division states its rounding. Margin requirements (initial, maintenance, transfer) round
  up, against the user. A liquidation price rounds to the last price tick at which the position
  still meets maintenance: up for a long, down for a short (towards the current price whenever
  the position is healthy now), so it is never reported past the true one.
- Maintenance margin is computed exactly over one common denominator and rounded up once, so it
  is continuous in notional across tier boundaries up to that rounding, and non-decreasing.
- Pure functions of their arguments: nothing here knows accounts, books or where a mark price
  comes from. A negative notional or a leverage below 1 is a caller's bug and raises ValueError.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from math import lcm

import msgspec

from protocol.fixed import ceil_div
from protocol.markets import MarginTable, MarginTier

TRANSFER_NOTIONAL_DIVISOR = 10  # a transfer must leave at least 10% of position notional


def _tier_index(table: MarginTable, notional: int) -> int:
    if notional < 0:
        raise ValueError(f"notional must be >= 0, got {notional}")
    index = bisect_right(table.tiers, notional, key=lambda tier: tier.lower_bound)
    # Loaded tables start at 0 (markets.py refuses others), so index >= 1; a hand-built table
    # that starts higher has its first tier cover the notionals below its bound too.
    return max(index - 1, 0)


def tier_for(table: MarginTable, notional: int) -> MarginTier:
    """The tier whose lower bound is the highest one <= notional (micro-USDC)."""
    return table.tiers[_tier_index(table, notional)]


def max_leverage_at(table: MarginTable, notional: int) -> int:
    """Max leverage allowed for a position of this notional."""
    return tier_for(table, notional).max_leverage


def notional_limit(table: MarginTable, leverage: int) -> int | None:
    """The lowest notional at which `leverage` is no longer allowed (the lower bound of the
    first tier whose max leverage is below it), or None when every tier allows it. Tiers fall
    in leverage as they rise in bound, so a position is within its tier limit exactly when
    its notional is below this."""
    for tier in table.tiers:
        if tier.max_leverage < leverage:
            return tier.lower_bound
    return None


def maintenance_margin(table: MarginTable, notional: int) -> int:
    """MM = notional * mmr(t) - deduction(t) for the tier t of the notional, rounded up.

    mmr(n) = 1 / (2 * maxLeverage(n)), deduction(0) = 0 and
    deduction(n) = deduction(n-1) + lowerBound(n) * (mmr(n) - mmr(n-1)), which makes MM
    continuous in notional. Every rate is scaled by D = lcm(2 * maxLeverage(n) for n <= t), so
    D * MM is an exact integer; the single division by D rounds up.
    """
    tiers = table.tiers[: _tier_index(table, notional) + 1]
    denominator = lcm(*(2 * tier.max_leverage for tier in tiers))
    rates = [denominator // (2 * tier.max_leverage) for tier in tiers]  # mmr(n) * D, exact
    deduction = 0  # deduction(n) * D
    for n in range(1, len(tiers)):
        deduction += tiers[n].lower_bound * (rates[n] - rates[n - 1])
    return ceil_div(notional * rates[-1] - deduction, denominator)


def initial_margin(notional: int, leverage: int) -> int:
    """IM = notional / leverage, rounded up."""
    if leverage < 1:
        raise ValueError(f"leverage must be >= 1, got {leverage}")
    return ceil_div(notional, leverage)


def transfer_margin_required(initial_margin_total: int, total_position_notional: int) -> int:
    """What a withdrawal, transfer or isolated margin removal must leave:
    max(initial margin, 10% of position notional), the 10% rounded up."""
    return max(initial_margin_total, ceil_div(total_position_notional, TRANSFER_NOTIONAL_DIVISOR))


def liquidation_price(
    mark_px: int, szi: int, margin_available: int, max_leverage: int
) -> int | None:
    """The docs' `liq = price - side * margin_available / |size| / (1 - l * side)`.

    `mark_px` is the price `margin_available` was computed at (the mark), at the market's price
    scale; `szi` is the signed size; `margin_available` (micro-USDC) is account value - cross MM
    for a cross position, isolated margin (rawUsd + szi * mark) - the position's MM for an
    isolated one. l = 1 / (2 * max_leverage). The docs take max_leverage from the tier at the
    liquidation price; callers pass the tier at the current notional
    (`max_leverage_at(table, abs(szi) * mark_px)`), which is exact whenever the notional at the
    liquidation price stays in that tier (the deduction in `margin_available` belongs to it too).

    Exactly: liq = (P * |s| * (L - side) - side * M * L) / (|s| * (L - side)), L = 2 * maxLev.
    Rounded up for a long and down for a short: the last tick at which the position still
    meets maintenance. None for a flat position, or when that price is not positive (a long
    with margin to cover a fall to zero).
    """
    if max_leverage < 1:
        raise ValueError(f"max_leverage must be >= 1, got {max_leverage}")
    if szi == 0:
        return None
    side = 1 if szi > 0 else -1
    size = abs(szi)
    maintenance_leverage = 2 * max_leverage
    numerator = (
        mark_px * size * (maintenance_leverage - side)
        - side * margin_available * maintenance_leverage
    )
    denominator = size * (maintenance_leverage - side)  # > 0: L >= 2
    liq = ceil_div(numerator, denominator) if side > 0 else numerator // denominator
    return liq if liq > 0 else None


def position_value(szi: int, mark_px: int) -> int:
    """positionValue: |szi| * mark, micro-USDC."""
    return abs(szi) * mark_px


def isolated_margin_used(raw_usd: int, szi: int, mark_px: int) -> int:
    """An isolated position's marginUsed: its rawUsd (cash leg) + szi * mark."""
    return raw_usd + szi * mark_px


class CrossPosition(msgspec.Struct, frozen=True):
    szi: int  # signed, at the market's size scale
    mark_px: int  # at the market's price scale
    leverage: int  # the account's leverage setting for the asset
    table: MarginTable


class IsolatedPosition(msgspec.Struct, frozen=True):
    szi: int
    mark_px: int
    raw_usd: int  # leverage.rawUsd: isolated margin less szi * entry, micro-USDC


class MarginSummary(msgspec.Struct, frozen=True):
    """clearinghouseState `marginSummary` / `crossMarginSummary`, micro-USDC."""

    account_value: int
    total_ntl_pos: int
    total_raw_usd: int
    total_margin_used: int


class AccountMargin(msgspec.Struct, frozen=True):
    """The account-level margin fields of clearinghouseState, micro-USDC."""

    margin_summary: MarginSummary
    cross_margin_summary: MarginSummary
    cross_maintenance_margin_used: int
    withdrawable: int


def summarize_account(
    cross_raw_usd: int,
    cross: Sequence[CrossPosition],
    isolated: Sequence[IsolatedPosition],
) -> AccountMargin:
    """The margin summaries of an account from its cross cash (raw USD) and positions.

    Cross: accountValue = rawUsd + sum(szi * mark); totalMarginUsed = sum of each position's
    initial margin at its leverage (each rounded up, so the total equals the sum of the
    positions' marginUsed); crossMaintenanceMarginUsed = sum of each position's MM.
    marginSummary adds the isolated positions: their rawUsd to totalRawUsd, their notional to
    totalNtlPos, and their marginUsed (rawUsd + szi * mark) to accountValue and totalMarginUsed.
    withdrawable = cross accountValue - transfer_margin_required(cross IM, cross notional),
    floored at 0; isolated margin is not withdrawable.
    """
    cross_value = cross_raw_usd
    cross_ntl = 0
    cross_used = 0
    cross_mm = 0
    for position in cross:
        notional = position_value(position.szi, position.mark_px)
        cross_value += position.szi * position.mark_px
        cross_ntl += notional
        cross_used += initial_margin(notional, position.leverage)
        cross_mm += maintenance_margin(position.table, notional)
    isolated_raw = sum(position.raw_usd for position in isolated)
    isolated_ntl = sum(position_value(p.szi, p.mark_px) for p in isolated)
    isolated_used = sum(isolated_margin_used(p.raw_usd, p.szi, p.mark_px) for p in isolated)
    cross_summary = MarginSummary(cross_value, cross_ntl, cross_raw_usd, cross_used)
    total_summary = MarginSummary(
        cross_value + isolated_used,
        cross_ntl + isolated_ntl,
        cross_raw_usd + isolated_raw,
        cross_used + isolated_used,
    )
    withdrawable = max(cross_value - transfer_margin_required(cross_used, cross_ntl), 0)
    return AccountMargin(total_summary, cross_summary, cross_mm, withdrawable)
