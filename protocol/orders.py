"""Orders: the wire shape, validated requests, statuses and Hyperliquid's error strings.

Invariants:
- `validate_order` turns a wire order into an `OrderRequest` with integer price and size at the
  market's scales, or into the exact error Hyperliquid returns; it never changes state.
- Payload-level problems (empty batch, an order type that does not deserialize, a malformed
  cloid, an unknown asset, a non-reduce-only TP/SL) reject the whole batch with one error;
  everything else is answered per order.

Choices where Hyperliquid's docs are silent (also in the README):
- A price with more than 5 significant figures or more decimals than allowed is a tick error
  ("Price must be divisible by tick size."); a price that is not a positive decimal is
  "Order has invalid price.".
- A cloid already used by one of the account's live orders is refused per order with
  "Duplicate cloid.".
"""

from __future__ import annotations

import functools
from typing import Literal

import msgspec

from protocol.book import TIF_ALO, TIF_GTC, TIF_IOC
from protocol.fixed import parse_fixed
from protocol.markets import Market, Markets

# Per-order errors (for-developers/api/error-responses).
ERR_TICK = "Price must be divisible by tick size."
ERR_MIN_NOTIONAL = "Order must have minimum value of $10."
ERR_MIN_SPOT_NOTIONAL = "Order must have minimum value of 10 {quote}."
ERR_PERP_MARGIN = "Insufficient margin to place order."
ERR_REDUCE_ONLY = "Reduce only order would increase position."
ERR_BAD_ALO = "Post only order would have immediately matched, bbo was {bbo}."
ERR_IOC_CANCEL = "Order could not immediately match against any resting orders."
ERR_BAD_TRIGGER = "Invalid TP/SL price."
ERR_NO_LIQUIDITY = "No liquidity available for market order."
ERR_SPOT_BALANCE = "Order has insufficient spot balance to trade"
ERR_MISSING_ORDER = "Order was never placed, already canceled, or filled."
ERR_ZERO_SIZE = "Order has zero size."
ERR_INVALID_SIZE = "Order has invalid size."
ERR_INVALID_PRICE = "Order has invalid price."
ERR_DUPLICATE_CLOID = "Duplicate cloid."
# Payload-level errors.
ERR_EMPTY_BATCH = "Empty batch of orders."
ERR_DESERIALIZE = "Failed to deserialize the JSON body into the target type"
ERR_TPSL_NOT_REDUCE_ONLY = "TP/SL orders must be reduce-only."

# Order statuses (info-endpoint orderStatus).
OPEN = "open"
FILLED = "filled"
CANCELED = "canceled"
TRIGGERED = "triggered"
REJECTED = "rejected"
MARGIN_CANCELED = "marginCanceled"
SELF_TRADE_CANCELED = "selfTradeCanceled"
REDUCE_ONLY_CANCELED = "reduceOnlyCanceled"
SIBLING_FILLED_CANCELED = "siblingFilledCanceled"
LIQUIDATED_CANCELED = "liquidatedCanceled"
SCHEDULED_CANCEL = "scheduledCancel"
TICK_REJECTED = "tickRejected"
MIN_TRADE_NTL_REJECTED = "minTradeNtlRejected"
PERP_MARGIN_REJECTED = "perpMarginRejected"
REDUCE_ONLY_REJECTED = "reduceOnlyRejected"
BAD_ALO_PX_REJECTED = "badAloPxRejected"
IOC_CANCEL_REJECTED = "iocCancelRejected"
BAD_TRIGGER_PX_REJECTED = "badTriggerPxRejected"
MARKET_ORDER_NO_LIQUIDITY_REJECTED = "marketOrderNoLiquidityRejected"
INSUFFICIENT_SPOT_BALANCE_REJECTED = "insufficientSpotBalanceRejected"

TIF_NAMES = {"Gtc": TIF_GTC, "Ioc": TIF_IOC, "Alo": TIF_ALO}
TIF_WIRE = {TIF_GTC: "Gtc", TIF_IOC: "Ioc", TIF_ALO: "Alo"}
Grouping = Literal["na", "normalTpsl", "positionTpsl"]


# Wire shapes, exactly as the SDK sends them (`gc=False`: see protocol/actions.py `_Action`).


class LimitWire(msgspec.Struct, frozen=True, gc=False):
    tif: str


class TriggerWire(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    is_market: bool
    trigger_px: str
    tpsl: str


class OrderTypeWire(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    limit: LimitWire | None = None
    trigger: TriggerWire | None = None


class OrderWire(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    a: int
    b: bool
    p: str
    s: str
    r: bool
    t: OrderTypeWire
    c: str | None = None


# Validated requests.


class Trigger(msgspec.Struct, frozen=True, gc=False):
    is_market: bool
    trigger_px: int
    is_tp: bool


class OrderRequest(msgspec.Struct, frozen=True, gc=False):
    asset: int
    is_buy: bool
    px: int
    sz: int
    reduce_only: bool
    tif: int
    cloid: str | None = None
    trigger: Trigger | None = None


# Per-order answers.


class Resting(msgspec.Struct, frozen=True, gc=False, tag="resting"):
    oid: int
    cloid: str | None = None


class Filled(msgspec.Struct, frozen=True, gc=False, tag="filled"):
    """`total_ntl` / `total_sz` is the average price (the API formats it)."""

    oid: int
    total_sz: int
    total_ntl: int
    cloid: str | None = None


class OrderError(msgspec.Struct, frozen=True, gc=False, tag="error"):
    error: str


WAITING_FOR_FILL = "waitingForFill"
WAITING_FOR_TRIGGER = "waitingForTrigger"
OrderStatus = Resting | Filled | OrderError | str


_HEX = frozenset("0123456789abcdefABCDEF")


def is_valid_cloid(cloid: str) -> bool:
    """0x followed by exactly 32 hex digits (16 bytes)."""
    return len(cloid) == 34 and cloid[:2] == "0x" and _HEX.issuperset(cloid[2:])


def price_on_tick(px: int, px_decimals: int) -> bool:
    """An integer price is always valid; otherwise at most 5 significant figures."""
    if px % 10**px_decimals == 0:
        return True
    digits = len(str(px).rstrip("0"))
    return digits <= 5


def round_to_tick(px: int, px_decimals: int, up: bool) -> int:
    """The nearest valid price (an integer, or at most 5 significant figures) above `px` (`up`)
    or below it, at least 1."""
    digits = len(str(px))
    if digits > 5 and px % 10**px_decimals:
        unit = 10 ** (digits - 5)
        px = -(-px // unit) * unit if up else px // unit * unit
    assert price_on_tick(px, px_decimals), f"{px} rounded off the tick"
    return max(px, 1)


def parse_price(text: str, market: Market) -> int | str:
    """A positive price at the market's scale, or the per-order error."""
    return _price_at_scale(text, market.px_decimals)


def parse_size(text: str, market: Market) -> int | str:
    return _size_at_scale(text, market.sz_decimals)


# Cached, with the checks: order flow repeats the same few price and size strings, and these
# run for every order.


@functools.lru_cache(maxsize=8192)
def _price_at_scale(text: str, px_decimals: int) -> int | str:
    if not text or text[0] == "-":
        return ERR_INVALID_PRICE
    px = parse_fixed(text, px_decimals)
    if px is None:
        # Either not a decimal at all, or too many decimals for this market.
        return ERR_TICK if parse_fixed(text, 40) is not None else ERR_INVALID_PRICE
    if px <= 0:
        return ERR_INVALID_PRICE
    if not price_on_tick(px, px_decimals):
        return ERR_TICK
    return px


@functools.lru_cache(maxsize=8192)
def _size_at_scale(text: str, sz_decimals: int) -> int | str:
    if not text or text[0] == "-":
        return ERR_INVALID_SIZE
    sz = parse_fixed(text, sz_decimals)
    if sz is None:
        return ERR_INVALID_SIZE
    if sz == 0:
        return ERR_ZERO_SIZE
    return sz


def check_payload(markets: Markets, orders: tuple[OrderWire, ...]) -> str | None:
    """The one error that rejects a whole batch, or None."""
    if not orders:
        return ERR_EMPTY_BATCH
    for wire in orders:
        kind = wire.t
        if (kind.limit is None) == (kind.trigger is None):
            return ERR_DESERIALIZE
        if kind.limit is not None and kind.limit.tif not in TIF_NAMES:
            return ERR_DESERIALIZE
        if kind.trigger is not None:
            if kind.trigger.tpsl not in ("tp", "sl"):
                return ERR_DESERIALIZE
            if not wire.r:
                return ERR_TPSL_NOT_REDUCE_ONLY
        if wire.c is not None and not is_valid_cloid(wire.c):
            return ERR_DESERIALIZE
        if wire.a not in markets.by_asset:
            return f"Asset {wire.a} does not exist."
    return None


def validate_order(markets: Markets, wire: OrderWire) -> OrderRequest | str:
    """A request with integer price and size, or the per-order error. Assumes `check_payload`
    passed for the batch."""
    market = markets.by_asset[wire.a]
    px = parse_price(wire.p, market)
    if isinstance(px, str):
        return px
    sz = parse_size(wire.s, market)
    if isinstance(sz, str):
        return sz
    trigger = None
    tif = TIF_GTC
    if wire.t.trigger is not None:
        trigger_px = parse_price(wire.t.trigger.trigger_px, market)
        if isinstance(trigger_px, str):
            return ERR_BAD_TRIGGER
        trigger = Trigger(wire.t.trigger.is_market, trigger_px, wire.t.trigger.tpsl == "tp")
    elif wire.t.limit is not None:
        tif = TIF_NAMES[wire.t.limit.tif]
    if px * sz < market.min_notional:
        return min_notional_error(markets, market)
    return OrderRequest(wire.a, wire.b, px, sz, wire.r, tif, wire.c, trigger)


def min_notional_error(markets: Markets, market: Market) -> str:
    if market.is_spot:
        return ERR_MIN_SPOT_NOTIONAL.format(quote=markets.tokens[market.quote_token].name)
    return ERR_MIN_NOTIONAL


def rejection_status(error: str) -> str:
    """The order status recorded for a per-order error."""
    if error == ERR_TICK:
        return TICK_REJECTED
    if error == ERR_MIN_NOTIONAL or error.startswith("Order must have minimum value"):
        return MIN_TRADE_NTL_REJECTED
    if error == ERR_PERP_MARGIN:
        return PERP_MARGIN_REJECTED
    if error == ERR_REDUCE_ONLY:
        return REDUCE_ONLY_REJECTED
    if error.startswith("Post only order"):
        return BAD_ALO_PX_REJECTED
    if error == ERR_IOC_CANCEL:
        return IOC_CANCEL_REJECTED
    if error == ERR_BAD_TRIGGER:
        return BAD_TRIGGER_PX_REJECTED
    if error == ERR_NO_LIQUIDITY:
        return MARKET_ORDER_NO_LIQUIDITY_REJECTED
    if error == ERR_SPOT_BALANCE:
        return INSUFFICIENT_SPOT_BALANCE_REJECTED
    return REJECTED
