"""Portfolio margin (PM) arithmetic: liquidation thresholds, borrow capacity, the borrow oracle
price, the pre-alpha portfolio margin ratio, and standard margin against portfolio margin for
one portfolio along a price path.

Units. Everything is a plain integer; nothing here knows accounts, books or configs.
- USDC amounts (cash, borrows, margins, values, requirements) are micro-USDC (USD_SCALE).
- Token balances and perp sizes are whole-token fixed point at TOKEN_SCALE = 10**8 (1 BTC is
  10**8, one wei of a token with weiDecimals 8). Perp sizes are signed (short < 0).
- Prices are micro-USDC per whole token, so balance * price / TOKEN_SCALE is micro-USDC.
  A perp order price (6 - szDecimals decimals) times 10**szDecimals is such a price, and a perp
  size (szDecimals) times 10**(8 - szDecimals) such a size.
- LTVs and liquidation thresholds are at LTV_SCALE (0.5 = 500_000), the portfolio margin ratio
  at RATIO_SCALE (0.95 = 950_000).

Invariants:
- Integer fixed point only; every division rounds against the user. Requirements round up (a
  perp notional used for margin, initial and maintenance margin, the ratio); values round down
  (unrealized PnL, collateral value, borrow capacity, liquidation value). Sums of products are
  divided once, at the end, so a sum is never rounded twice.
- The amount borrowed never exceeds the borrow capacity, min(max_borrow, borrow cap).
- is_liquidatable(requirement, value) is the exact `requirement / value > 0.95`; the ratio
  rounded up says the same (ceil(x) > k exactly when x > k, for k an integer), and a ratio of
  None (no positive liquidation value behind a requirement) is always liquidatable.
- With the borrow, USDC balance and maintenance fixed, the ratio never falls when a collateral
  price falls.

Choices where Hyperliquid is silent or loose (hyperliquid-core.md 4.3 and 4.5):
- The pre-alpha formula: one ratio, the liquidation value summing over collateral tokens; the
  only borrowable token is USDC, valued at 1 (its borrow oracle price is USDC in USDC).
  borrowed_size_for_maintenance, undefined in the docs, is the amount borrowed.
- portfolio_balance(USDC) in the liquidation value is the USDC the account holds, gross of its
  borrow: its own funds (cash plus the perps' unrealized PnL, since PM keeps one balance) plus
  what it borrowed. The borrow is a liability counted once, in the requirement. Netting it out
  of the balance as well (a negative balance and the borrowed term) would count the debt twice.
- min_borrow_offset (20 USDC) is added only while something is borrowed. It is a charge on
  borrowing; adding it always would make an account with no borrow and no position
  liquidatable (ratio 20 / value > 0.95) whenever it holds less than about 21 USDC.
- Auto-borrow: PM funds the perps' margin used (initial margin at the mark) and their losses
  from the one USDC balance. Whatever the account's own funds lack is borrowed, up to the
  capacity (the docs: "any shortfall is borrowed automatically"; past the caps "additional
  margin used must be supplied by the user using the settlement asset").
- Past the capacity the account falls back to standard behaviour: besides ratio > 0.95 it is
  liquidatable when its own funds plus the borrow are below the perps' maintenance margin, as
  a standard cross account is. While capacity remains this cannot happen, since the borrow
  tops the balance up to the initial margin, which is at least the maintenance margin.
- Collateral above its supply cap is not supplied, so it counts neither towards the capacity
  nor in the liquidation value. No cap (None) means uncapped.
- borrow_oracle_price is the median of the prices given; with two, their mean rounded down;
  with one, that one; with none, ValueError. The USDT/USDC factor on perp prices is 1: the
  devnet's perps settle in USDC.
- liquidation_threshold rounds down when LTV is an odd number of millionths; the liquidation
  value uses the exact 0.5 + 0.5 LTV and rounds the whole sum down once.
- The comparison prices each coin once per point: spot price, perp mark and perp oracle are
  equal, so the borrow oracle price is that price. Under standard margin all the portfolio's
  USDC sits on the perp side (the best case for standard); spot backs nothing there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import msgspec

from protocol.fixed import USD_SCALE, ceil_div
from protocol.margin import initial_margin, maintenance_margin
from protocol.markets import MarginTable

TOKEN_DECIMALS = 8
TOKEN_SCALE: int = 10**TOKEN_DECIMALS
LTV_SCALE = 10**6
RATIO_SCALE = 10**6
MIN_BORROW_OFFSET: int = 20 * USD_SCALE
LIQUIDATION_RATIO = 950_000  # liquidatable when the ratio is above 0.95

Regime = Literal["standard", "portfolio"]


class Collateral(msgspec.Struct, frozen=True):
    """One collateral token: balance at TOKEN_SCALE, borrow oracle price in micro-USDC per
    token, LTV at LTV_SCALE, and the user's supply cap at TOKEN_SCALE (None: uncapped)."""

    balance: int
    price: int
    ltv: int
    supply_cap: int | None = None


def _check_ltv(ltv: int) -> None:
    if not 0 <= ltv <= LTV_SCALE:
        raise ValueError(f"ltv must be in [0, {LTV_SCALE}], got {ltv}")


def _supplied(collateral: Collateral) -> int:
    """The balance that counts: min(balance, supply cap)."""
    if collateral.balance < 0 or collateral.price < 0:
        raise ValueError(f"collateral balance and price must be >= 0, got {collateral!r}")
    _check_ltv(collateral.ltv)
    if collateral.supply_cap is None:
        return collateral.balance
    return min(collateral.balance, collateral.supply_cap)


def liquidation_threshold(ltv: int) -> int:
    """0.5 + 0.5 * LTV, both at LTV_SCALE, rounded down (it scales a collateral value)."""
    _check_ltv(ltv)
    return (LTV_SCALE + ltv) // 2


def max_borrow(collateral: Sequence[Collateral]) -> int:
    """Borrow capacity in micro-USDC: sum of min(balance, supply cap) * price * LTV, the exact
    sum rounded down once."""
    total = sum(_supplied(c) * c.price * c.ltv for c in collateral)
    return total // (TOKEN_SCALE * LTV_SCALE)


def borrow_oracle_price(spot_px: int | None, perp_mark: int | None, perp_oracle: int | None) -> int:
    """The median of the prices given (micro-USDC per token): with three, the middle one; with
    two, their mean rounded down; with one, that one. None given, or one <= 0: ValueError."""
    available = sorted(px for px in (spot_px, perp_mark, perp_oracle) if px is not None)
    if not available or available[0] <= 0:
        raise ValueError(f"need at least one positive price, got {available}")
    if len(available) == 2:
        return (available[0] + available[1]) // 2
    return available[len(available) // 2]


def portfolio_maintenance_requirement(cross_maintenance: int, borrowed: int) -> int:
    """min_borrow_offset (only while borrowed > 0) + cross maintenance margin + the USDC
    borrowed, micro-USDC."""
    if cross_maintenance < 0 or borrowed < 0:
        raise ValueError(f"need maintenance, borrowed >= 0, got {cross_maintenance}, {borrowed}")
    offset = MIN_BORROW_OFFSET if borrowed > 0 else 0
    return offset + cross_maintenance + borrowed


def portfolio_liquidation_value(
    usdc_balance: int, collateral: Sequence[Collateral], borrow_cap: int | None = None
) -> int:
    """The USDC held (gross of the borrow; negative only when even the whole borrow does not
    cover the perps' losses) + min(borrow cap, sum of min(balance, supply cap) * price *
    (0.5 + 0.5 LTV)), the collateral sum rounded down once."""
    weighted = sum(_supplied(c) * c.price * (LTV_SCALE + c.ltv) for c in collateral)
    collateral_value = weighted // (TOKEN_SCALE * 2 * LTV_SCALE)
    if borrow_cap is not None:
        collateral_value = min(collateral_value, borrow_cap)
    return usdc_balance + collateral_value


def margin_ratio(requirement: int, liquidation_value: int) -> int | None:
    """requirement / liquidation value at RATIO_SCALE, rounded up. 0 when both are 0; None
    (unbounded, liquidatable) when the liquidation value is not positive otherwise."""
    if liquidation_value <= 0:
        return 0 if requirement == 0 and liquidation_value == 0 else None
    return ceil_div(requirement * RATIO_SCALE, liquidation_value)


def is_liquidatable(requirement: int, liquidation_value: int) -> bool:
    """requirement / liquidation value > 0.95, exactly (no division)."""
    return requirement * RATIO_SCALE > LIQUIDATION_RATIO * liquidation_value


def portfolio_margin_ratio(
    cross_maintenance: int,
    borrowed: int,
    usdc_balance: int,
    collateral: Sequence[Collateral],
    borrow_cap: int | None = None,
) -> int | None:
    """The pre-alpha portfolio margin ratio at RATIO_SCALE, rounded up: maintenance
    requirement / liquidation value (see margin_ratio for 0 and None)."""
    return margin_ratio(
        portfolio_maintenance_requirement(cross_maintenance, borrowed),
        portfolio_liquidation_value(usdc_balance, collateral, borrow_cap),
    )


# A portfolio under both regimes.


class SpotHolding(msgspec.Struct, frozen=True):
    coin: str  # the key of its price in a price point
    balance: int  # TOKEN_SCALE
    ltv: int  # LTV_SCALE; 0 for a token that is not PM collateral
    supply_cap: int | None = None  # TOKEN_SCALE


class PerpPosition(msgspec.Struct, frozen=True):
    coin: str
    size: int  # signed, TOKEN_SCALE
    entry_px: int  # micro-USDC per token
    leverage: int
    table: MarginTable


class Portfolio(msgspec.Struct, frozen=True):
    usdc: int  # USDC cash, micro-USDC
    spot: tuple[SpotHolding, ...] = ()
    perps: tuple[PerpPosition, ...] = ()
    borrow_cap: int | None = None  # the user's USDC borrow cap, micro-USDC


class StandardMargin(msgspec.Struct, frozen=True):
    """The perp side on its own, micro-USDC. required = initial margin at the mark; free =
    account value - required (negative when short); liquidatable: value < maintenance."""

    account_value: int
    required: int
    maintenance: int
    free: int
    liquidatable: bool


class PortfolioMargin(msgspec.Struct, frozen=True):
    """The whole account under PM, micro-USDC. required = the own USDC the perps' initial
    margin still needs once the borrow capacity is used, max(0, IM - capacity); free = own
    funds + capacity - IM; borrowed = min(capacity, max(0, IM - own funds)); borrow_limited:
    the account would need more than its capacity."""

    own_funds: int
    required: int
    free: int
    borrowed: int
    capacity: int
    requirement: int
    liquidation_value: int
    ratio: int | None
    borrow_limited: bool
    liquidatable: bool


class MarginPoint(msgspec.Struct, frozen=True):
    prices: dict[str, int]
    standard: StandardMargin
    portfolio: PortfolioMargin


def _price(prices: Mapping[str, int], coin: str) -> int:
    price = prices.get(coin)
    if price is None or price <= 0:
        raise ValueError(f"need a positive price for {coin}, got {price}")
    return price


def margin_at(portfolio: Portfolio, prices: Mapping[str, int]) -> MarginPoint:
    """Standard and portfolio margin of `portfolio` at one price per coin."""
    pnl = 0
    im = 0
    mm = 0
    for perp in portfolio.perps:
        price = _price(prices, perp.coin)
        pnl += (perp.size * (price - perp.entry_px)) // TOKEN_SCALE
        notional = ceil_div(abs(perp.size) * price, TOKEN_SCALE)
        im += initial_margin(notional, perp.leverage)
        mm += maintenance_margin(perp.table, notional)
    own = portfolio.usdc + pnl
    standard = StandardMargin(own, im, mm, own - im, own < mm)

    collateral = [
        Collateral(h.balance, _price(prices, h.coin), h.ltv, h.supply_cap) for h in portfolio.spot
    ]
    capacity = max_borrow(collateral)
    if portfolio.borrow_cap is not None:
        capacity = min(capacity, portfolio.borrow_cap)
    need = max(im - own, 0)
    borrowed = min(need, capacity)
    requirement = portfolio_maintenance_requirement(mm, borrowed)
    value = portfolio_liquidation_value(own + borrowed, collateral, portfolio.borrow_cap)
    pm = PortfolioMargin(
        own_funds=own,
        required=max(im - capacity, 0),
        free=own + capacity - im,
        borrowed=borrowed,
        capacity=capacity,
        requirement=requirement,
        liquidation_value=value,
        ratio=margin_ratio(requirement, value),
        borrow_limited=need > capacity,
        liquidatable=is_liquidatable(requirement, value) or own + borrowed < mm,
    )
    return MarginPoint(dict(prices), standard, pm)


def compare_margin(portfolio: Portfolio, prices: Sequence[Mapping[str, int]]) -> list[MarginPoint]:
    """Standard against portfolio margin at each point of a price path."""
    return [margin_at(portfolio, point) for point in prices]


def capital_freed(point: MarginPoint) -> int:
    """The USDC that standard margin requires and PM does not, micro-USDC."""
    return point.standard.required - point.portfolio.required


def liquidatable(point: MarginPoint, regime: Regime) -> bool:
    return point.standard.liquidatable if regime == "standard" else point.portfolio.liquidatable


def first_liquidation(points: Sequence[MarginPoint], regime: Regime) -> MarginPoint | None:
    """The first point of a path at which the account is liquidatable, or None."""
    return next((p for p in points if liquidatable(p, regime)), None)


def _first_price(
    portfolio: Portfolio,
    prices: Mapping[str, int],
    coin: str,
    start_px: int,
    end_px: int,
    condition: Callable[[MarginPoint], bool],
) -> int:
    """Moving `coin` from start_px (condition false) towards end_px (condition true), other
    prices fixed: the first price, to the micro-USDC, at which the condition holds. Bisection:
    exact when the condition changes once between the two."""

    def holds(px: int) -> bool:
        return condition(margin_at(portfolio, {**prices, coin: px}))

    if holds(start_px) or not holds(end_px):
        raise ValueError(f"need the condition false at {start_px} and true at {end_px}")
    off, on = start_px, end_px
    while abs(on - off) > 1:
        mid = (off + on) // 2
        if holds(mid):
            on = mid
        else:
            off = mid
    return on


def find_liquidation_price(
    portfolio: Portfolio,
    prices: Mapping[str, int],
    coin: str,
    healthy_px: int,
    liquidated_px: int,
    regime: Regime,
) -> int:
    """The first price of `coin`, from healthy_px towards liquidated_px, at which the account is
    liquidatable under `regime` (micro-USDC per token)."""
    return _first_price(
        portfolio, prices, coin, healthy_px, liquidated_px, lambda p: liquidatable(p, regime)
    )


def find_borrow_limit_price(
    portfolio: Portfolio, prices: Mapping[str, int], coin: str, start_px: int, end_px: int
) -> int:
    """The first price of `coin`, from start_px towards end_px, at which PM can no longer
    borrow all the initial margin it needs."""
    return _first_price(
        portfolio, prices, coin, start_px, end_px, lambda p: p.portfolio.borrow_limited
    )
