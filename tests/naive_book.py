"""A deliberately naive reference limit order book: the oracle of the order book tests and the
baseline of scripts/bench_matching.py.

It knows prices, sizes, users and arrival order, nothing about accounts, margin or fees.

Shape (kept as plain as possible, so it is obviously correct rather than fast):
- `bids` and `asks`: SortedDict of price -> list of [oid, user, size] in arrival order.
- `where`: oid -> (is_buy, price) for every resting order.

Rules:
- Price-time priority; a trade is always at the resting order's price, never beyond the taker's
  limit.
- Self-trade prevention "expire maker": a taker meeting a resting order of its own user cancels
  that resting order with no fill and keeps matching behind it.
- ALO: rejected if it would cross (whoever owns the best opposite order); otherwise it rests.
- IOC: rejected if it does not cross; the remainder after matching is cancelled, and an IOC that
  filled nothing (everything it met was its own) is rejected too.
- GTC: matches what crosses, the remainder rests.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sortedcontainers import SortedDict

from protocol.book import TIF_ALO, TIF_GTC, TIF_IOC

# Outcomes of `place`.
RESTING = "resting"  # (the remainder of) the order rests, possibly after some trades
FILLED = "filled"  # filled in full
IOC_CANCELED = "iocCanceled"  # an IOC filled in part, its remainder cancelled
REJECTED_ALO = "rejectedAlo"  # an ALO that would have crossed; nothing happened
REJECTED_IOC = "rejectedIoc"  # an IOC that filled nothing (self-trade expiries may happen)


class Trade(NamedTuple):
    maker_oid: int
    taker_oid: int
    px: int
    sz: int


class Placed(NamedTuple):
    outcome: str
    trades: list[Trade]
    self_trade_canceled: list[int]  # resting oids expired by self-trade prevention, in order
    filled_sz: int
    rested_sz: int


class Rest(NamedTuple):
    oid: int
    user: str
    is_buy: bool
    px: int
    sz: int


class NaiveBook:
    def __init__(self) -> None:
        # px -> [[oid, user, size], ...], oldest first.
        self.bids: Any = SortedDict()
        self.asks: Any = SortedDict()
        self.where: dict[int, tuple[bool, int]] = {}

    def __len__(self) -> int:
        return len(self.where)

    def best_bid(self) -> int | None:
        return int(self.bids.peekitem(-1)[0]) if self.bids else None

    def best_ask(self) -> int | None:
        return int(self.asks.peekitem(0)[0]) if self.asks else None

    def place(self, oid: int, user: str, is_buy: bool, px: int, sz: int, tif: int) -> Placed:
        assert oid not in self.where, f"oid {oid} already rests"
        assert px > 0 and sz > 0 and tif in (TIF_GTC, TIF_IOC, TIF_ALO)
        opposite = self.asks if is_buy else self.bids
        best = self.best_ask() if is_buy else self.best_bid()
        crosses = best is not None and (best <= px if is_buy else best >= px)
        if tif == TIF_ALO and crosses:
            return Placed(REJECTED_ALO, [], [], 0, 0)
        if tif == TIF_IOC and not crosses:
            return Placed(REJECTED_IOC, [], [], 0, 0)

        trades: list[Trade] = []
        expired: list[int] = []
        remaining = sz
        while remaining > 0 and opposite:
            level_px, level = opposite.peekitem(0 if is_buy else -1)
            if (level_px > px) if is_buy else (level_px < px):
                break
            maker_oid, maker_user, maker_sz = level[0]
            if maker_user == user:
                expired.append(maker_oid)
                self._drop_head(opposite, level_px, level)
                continue
            size = min(remaining, maker_sz)
            trades.append(Trade(maker_oid, oid, level_px, size))
            remaining -= size
            if size == maker_sz:
                self._drop_head(opposite, level_px, level)
            else:
                level[0][2] = maker_sz - size

        filled = sz - remaining
        if remaining == 0:
            return Placed(FILLED, trades, expired, filled, 0)
        if tif == TIF_IOC:
            outcome = IOC_CANCELED if filled else REJECTED_IOC
            return Placed(outcome, trades, expired, filled, 0)
        side = self.bids if is_buy else self.asks
        if px not in side:
            side[px] = []
        side[px].append([oid, user, remaining])
        self.where[oid] = (is_buy, px)
        return Placed(RESTING, trades, expired, filled, remaining)

    def cancel(self, oid: int) -> bool:
        """Take `oid` off the book; False if it is not resting."""
        if oid not in self.where:
            return False
        is_buy, px = self.where.pop(oid)
        side = self.bids if is_buy else self.asks
        level = side[px]
        for i, entry in enumerate(level):
            if entry[0] == oid:
                del level[i]
                break
        else:
            raise AssertionError(f"oid {oid} indexed but not in its level")
        if not level:
            del side[px]
        return True

    def owner(self, oid: int) -> str | None:
        """The user of a resting order, None if `oid` is not resting."""
        if oid not in self.where:
            return None
        is_buy, px = self.where[oid]
        for entry_oid, user, _ in (self.bids if is_buy else self.asks)[px]:
            if entry_oid == oid:
                return str(user)
        raise AssertionError(f"oid {oid} indexed but not in its level")

    def resting(self) -> list[Rest]:
        """Every resting order: bids best first, then asks best first, time order in a level."""
        result: list[Rest] = []
        for px in reversed(self.bids):
            result.extend(Rest(oid, user, True, px, sz) for oid, user, sz in self.bids[px])
        for px in self.asks:
            result.extend(Rest(oid, user, False, px, sz) for oid, user, sz in self.asks[px])
        return result

    def depth(self, is_bid: bool) -> list[tuple[int, int, int]]:
        """(px, total size, order count) per level, best first."""
        side = self.bids if is_bid else self.asks
        prices = reversed(side) if is_bid else iter(side)
        return [(px, sum(e[2] for e in side[px]), len(side[px])) for px in prices]

    def _drop_head(self, side: Any, px: int, level: list[list[Any]]) -> None:
        oid = level.pop(0)[0]
        del self.where[oid]
        if not level:
            del side[px]
