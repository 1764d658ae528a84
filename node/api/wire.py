"""Numbers and identifiers as Hyperliquid's API prints them.

Invariants:
- Every decimal is built from integers by `protocol.fixed.format_fixed`, never through float,
  and parses back to the same value.
- A decimal always carries a fractional part: Hyperliquid prints whole values as "0.0",
  "26951.0", "1417.0", and drops every other trailing zero ("0.05", "1.3189").
- A quotient (an average price, a ratio) is rounded once, half away from zero, to a stated
  number of places; everything else is exact.
- Hashes are deterministic functions of what they name, so a replay prints the same ones.
"""

from __future__ import annotations

import hashlib

from protocol.fixed import USD_DECIMALS, format_fixed
from protocol.markets import Market

AVERAGE_DECIMALS = 8  # places of an average price or a ratio (Hyperliquid's float precision)


def decimal(value: int, decimals: int) -> str:
    """`value / 10**decimals` as Hyperliquid prints it: "1.0", "0.5", "-12.3"."""
    text = format_fixed(value, decimals)
    return text if "." in text else text + ".0"


def usd(micro: int) -> str:
    """A micro-USDC amount (perp cash, notionals, margins, perp fees)."""
    return decimal(micro, USD_DECIMALS)


def quotient(numerator: int, denominator: int, places: int = AVERAGE_DECIMALS) -> str:
    """numerator / denominator (denominator > 0) rounded half away from zero to `places`."""
    scale: int = 10**places
    magnitude = (2 * abs(numerator) * scale + denominator) // (2 * denominator)
    return decimal(-magnitude if numerator < 0 else magnitude, places)


def average_price(notional: int, size: int, market: Market) -> str:
    """The average price of fills of `size` (at the market's size scale) and `notional` (at
    its price and size scales together), rounded to `AVERAGE_DECIMALS` places."""
    return quotient(notional, size * 10**market.px_decimals)


def fill_hash(height: int, taker_oid: int) -> str:
    """The hash of a fill: its block and its taker order's, shared by the fills it made."""
    return event_hash("order", height, taker_oid)


def event_hash(kind: str, height: int, index: int) -> str:
    """A 32-byte hex id for an event of a block (the devnet has no transaction hashes): the
    same kind, height and index always give the same id, different ones different ids."""
    digest = hashlib.sha256(f"{kind}:{height}:{index}".encode()).hexdigest()
    return "0x" + digest
