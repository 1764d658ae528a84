"""The mark price of one perp (spec 2.6), for a devnet without CEX perp feeds.

Hyperliquid's mark is the median of (1) oracle + EMA_150s(mid - oracle), (2) median(best bid,
best ask, last trade) on the book, (3) a weighted median of CEX perp mids, and when exactly two
of the three exist, EMA_30s of (2) is added. The devnet has no (3), so the mark is

    median(a, b, c), a = oracle + EMA150(mid - oracle), b = median(bb, ba, last), c = EMA30(b)

Input (2) exists when at least one of best bid, best ask, last trade does; then (1) and (2)
exist, exactly two, and c is always added. The caller updates the mark at each oracle
publication (spec: about every 3 s), with dt_ms the block time since its previous update.

Each EMA is a numerator/denominator pair; over elapsed time t (ms) with time constant tau:
num <- num * e^(-t/tau) + sample * t, den <- den * e^(-t/tau) + t, ema = num / den. The decay
factor is `exp_wad(-t, tau)`. tau is 150 s for the EMA150 and 30 s for the EMA30.

Invariants (checked by `MarkState._check`):
- Integers only. Samples are taken at WAD times the price scale (so the half-unit mid of a
  one-tick spread and the mean of two prices are exact); a denominator is kept in ms * WAD and
  a numerator in sample units * ms * WAD, so num / den is the EMA at WAD times the price scale.
- An EMA is either empty (num = den = 0) or has a weight of at least 1 ms (den >= WAD).
- The EMA30 averages prices >= 1, so a non-empty EMA30 has num > 0.
- The mark, once computed, is an integer at the perp's price scale and >= 1.

Choices where the spec is silent:
- Mid: (best bid + best ask) / 2, only when both sides have orders.
- Median of two values (b when only two of bid, ask, last exist): their exact mean. Median of
  one value: that value.
- Rounding: the three candidates are computed at WAD times the price scale (each EMA read
  rounded to nearest, half up, at that precision), and the mark is their median rounded once
  to the price scale, to nearest, half up (toward +infinity on an exact half). Decays round
  each product to nearest, half up. The mark is floored at 1.
- No mid: the EMA150 gets no sample, only the decay. Numerator and denominator decay by the
  same factor, so its value is kept while its weight shrinks, and the next sample counts for
  more. No b: likewise for the EMA30.
- An EMA whose weight decays below 1 ms (den < WAD: from a steady weight of about tau, after
  about 12 tau without a sample, 30 min for the EMA150, 6 min for the EMA30) is forgotten,
  num = den = 0, rather than read from a pair that rounding has made too coarse.
- Reading an empty EMA: the EMA150 reads 0 (so a = the oracle) when there is no mid, and the
  current sample when there is one (possible only on an update with t = 0); the EMA30 reads
  the current b.
- No b at all (empty book and no last trade given): the mark is a. If the EMA150 never had a sample,
  that is the oracle.
- The samples of an update are the values at its end (the current oracle and book), weighted
  by the whole elapsed time t.
"""

from __future__ import annotations

import msgspec

from protocol.expmath import exp_wad, wad_mul
from protocol.fixed import WAD

TAU_150_MS = 150_000
TAU_30_MS = 30_000


class Ema(msgspec.Struct, frozen=True):
    num: int  # sum of sample * t * WAD * decays, the sample at WAD times the price scale
    den: int  # sum of t * WAD * decays: the weight in ms, times WAD


class MarkSnapshot(msgspec.Struct, frozen=True):
    """The EMA pairs as decimal strings (they outgrow the 64-bit ints msgpack encodes)."""

    ema150_num: str  # of (mid - oracle)
    ema150_den: str
    ema30_num: str  # of median(bb, ba, last)
    ema30_den: str
    mark: int | None


_EMPTY = Ema(0, 0)


def _advance(ema: Ema, sample: int | None, dt_ms: int, tau_ms: int) -> Ema:
    """Decay `ema` over dt_ms and add `sample` (at WAD times the price scale) weighted dt_ms."""
    if dt_ms > 0:
        decay = exp_wad(-dt_ms, tau_ms)
        num = wad_mul(ema.num, decay)
        den = wad_mul(ema.den, decay)
        if den < WAD:
            num = den = 0
    else:
        num, den = ema.num, ema.den
    if sample is not None:
        num += sample * dt_ms * WAD
        den += dt_ms * WAD
    return Ema(num, den)


def _read(ema: Ema) -> int | None:
    """num / den at WAD times the price scale, nearest, half up; None when empty."""
    if ema.den == 0:
        return None
    return (2 * ema.num + ema.den) // (2 * ema.den)


def _median(values: list[int]) -> int:
    """Middle value; the exact mean of two (values are at WAD scale, WAD is even)."""
    ordered = sorted(values)
    n = len(ordered)
    if n % 2 == 1:
        return ordered[n // 2]
    return (ordered[n // 2 - 1] + ordered[n // 2]) // 2  # exact: both are multiples of WAD


class MarkState:
    """One perp's mark: the two EMAs and the last mark, advanced on each oracle publication."""

    __slots__ = ("ema30", "ema150", "mark")

    def __init__(self) -> None:
        self.ema150 = _EMPTY
        self.ema30 = _EMPTY
        self.mark: int | None = None

    def update(
        self,
        oracle_px: int,
        best_bid: int | None,
        best_ask: int | None,
        last_trade_px: int | None,
        dt_ms: int,
    ) -> int:
        """Advance both EMAs by dt_ms (the time since the previous update) and return the mark.

        Prices are integers at the perp's price scale; None when that side or trade is missing."""
        if oracle_px < 1:
            raise ValueError(f"mark: oracle price must be positive, got {oracle_px}")
        if dt_ms < 0:
            raise ValueError(f"mark: elapsed time must be >= 0, got {dt_ms}")
        book = [px for px in (best_bid, best_ask, last_trade_px) if px is not None]
        if any(px < 1 for px in book):
            raise ValueError(f"mark: book prices must be positive, got {book}")
        oracle = oracle_px * WAD
        premium: int | None = None
        if best_bid is not None and best_ask is not None:
            premium = (best_bid + best_ask) * WAD // 2 - oracle  # exact: WAD is even
        b = _median([px * WAD for px in book]) if book else None

        self.ema150 = _advance(self.ema150, premium, dt_ms, TAU_150_MS)
        self.ema30 = _advance(self.ema30, b, dt_ms, TAU_30_MS)

        ema150 = _read(self.ema150)
        if ema150 is None:
            ema150 = 0 if premium is None else premium
        a = oracle + ema150
        if b is None:
            fine = a
        else:
            ema30 = _read(self.ema30)
            c = b if ema30 is None else ema30
            fine = _median([a, b, c])
        mark = max(1, (fine + WAD // 2) // WAD)  # to the price scale: nearest, half up
        self.mark = mark
        return mark

    def snapshot(self) -> MarkSnapshot:
        return MarkSnapshot(
            str(self.ema150.num),
            str(self.ema150.den),
            str(self.ema30.num),
            str(self.ema30.den),
            self.mark,
        )

    @classmethod
    def restore(cls, snapshot: MarkSnapshot) -> MarkState:
        """The state a snapshot was taken of."""
        state = cls()
        state.ema150 = Ema(int(snapshot.ema150_num), int(snapshot.ema150_den))
        state.ema30 = Ema(int(snapshot.ema30_num), int(snapshot.ema30_den))
        state.mark = snapshot.mark
        state._check()
        return state

    def _check(self) -> None:
        for name, ema in (("ema150", self.ema150), ("ema30", self.ema30)):
            assert ema.den >= 0, f"{name}: negative weight {ema.den}"
            assert ema.den == 0 or ema.den >= WAD, f"{name}: weight below 1 ms kept"
            assert ema.den != 0 or ema.num == 0, f"{name}: empty but num = {ema.num}"
        assert self.ema30.den == 0 or self.ema30.num > 0, "ema30 of positive prices is not positive"
        assert self.mark is None or self.mark >= 1, f"mark {self.mark} < 1"
