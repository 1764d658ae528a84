"""Funding: impact prices, the premium, hourly funding rates and exactly conserved payments.

Invariants:
- Integer fixed point only. Premiums and rates are at RATE_SCALE (0.0000125 = 12_500_000),
  prices at the perp's price scale, notionals and payments in micro-USDC. Every division
  names its rounding direction.
- An impact price is the exact average execution price (the last level may be taken in part,
  by notional, not in whole lots), rounded once, towards the worse execution: down on the bid
  side, up on the ask side. It is None when the levels hold less than the impact notional.
- Premium samples are taken at most once per 5 s slot of block time (slot = time // 5000), so
  an hour holds at most 720 samples; blocks every 1 s give exactly 720. The samples of an hour
  are kept as an exact integer sum and count per asset.
- An hour is settled by the first block whose time is in a later UTC hour
  (time // 3_600_000 changed); the samples of that hour are used once and then reset. A block
  that jumps over several hours settles only the hour its samples belong to.
- Every settled hourly rate is within +-4% (HOURLY_RATE_CAP).
- Funding payments conserve exactly: over all accounts of an asset they sum to zero. Payers
  round up (against the payer); receivers share the total paid pro rata, rounded down, and the
  few micro-USDC left go one each to the largest fractional remainders (ties: address
  ascending). The result does not depend on the order of the input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from protocol.fixed import RATE_SCALE, USD_SCALE, ceil_div

SAMPLE_INTERVAL_MS = 5_000
HOUR_MS = 3_600_000
SAMPLES_PER_HOUR = HOUR_MS // SAMPLE_INTERVAL_MS  # 720 (exact)

INTEREST_RATE_8H: int = RATE_SCALE // 10_000  # 0.01% per 8 h (exact)
PREMIUM_CLAMP_8H: int = 5 * RATE_SCALE // 10_000  # clamp(r - P, -0.05%, +0.05%) (exact)
HOURS_PER_FUNDING_INTERVAL = 8  # F is an 8 h rate; each hour pays F / 8
HOURLY_RATE_CAP: int = 4 * RATE_SCALE // 100  # 4% per hour, every asset (exact)

IMPACT_NOTIONAL_MAJOR: int = 20_000 * USD_SCALE
IMPACT_NOTIONAL_OTHER: int = 6_000 * USD_SCALE
MAJOR_COINS = frozenset({"BTC", "ETH"})


class FundingRate(msgspec.Struct, frozen=True):
    """One asset's settled (or pending) hour: `rate` is the hourly rate at RATE_SCALE,
    `premium` the mean of the hour's `n_samples` premium samples (0 when there are none)."""

    asset: int
    rate: int
    premium: int
    n_samples: int


class FundingSettlement(msgspec.Struct, frozen=True):
    """The rates of every perp for the UTC hour `hour` (= start time // HOUR_MS), settled by
    the block at `time`; `rates` is sorted by asset."""

    hour: int
    time: int
    rates: tuple[FundingRate, ...]


class PremiumSamples(msgspec.Struct, frozen=True):
    asset: int
    total: int
    count: int


class FundingSnapshot(msgspec.Struct, frozen=True):
    """Everything FundingState holds; `samples` is sorted by asset."""

    last_time: int | None
    last_slot: int | None
    samples: tuple[PremiumSamples, ...]


# Impact prices and the premium.


def impact_notional_for(coin: str) -> int:
    """The funding impact notional in micro-USDC: 20,000 USDC for BTC and ETH, 6,000 else."""
    return IMPACT_NOTIONAL_MAJOR if coin in MAJOR_COINS else IMPACT_NOTIONAL_OTHER


def impact_price(levels: list[tuple[int, int, int]], impact_notional: int) -> int | None:
    """Average execution price of trading `impact_notional` micro-USDC against `levels`
    ((px, total size, count) best first, as `OrderBook.depth` gives them), or None when the
    levels hold less notional than that.

    The average is exact: whole levels, then the rest of the notional at the last level's price
    (a fractional size there, not rounded to lots). It is rounded once to the price scale,
    away from the best level's price, i.e. towards the worse execution: down for bids (prices
    falling), up for asks (prices rising). When the first level covers the notional, the
    average is that level's price exactly. Rounding this way only ever shrinks the premium's
    terms max(impact_bid - oracle, 0) and max(oracle - impact_ask, 0).
    """
    if impact_notional <= 0:
        raise ValueError(f"impact notional must be positive, got {impact_notional}")
    if not levels:
        return None
    best = levels[0][0]
    remaining = impact_notional
    whole_size = 0
    descending = len(levels) > 1 and levels[1][0] < best  # bids
    previous_px: int | None = None
    for px, size, _count in levels:
        if px <= 0 or size <= 0:
            raise ValueError(f"bad level ({px}, {size})")
        if previous_px is not None and (px == previous_px or (px < previous_px) != descending):
            raise ValueError("levels must be strictly monotonic, best first")
        previous_px = px
        level_notional = px * size
        if level_notional >= remaining:
            # avg = N / (whole_size + remaining / px) = N * px / (whole_size * px + remaining)
            numerator = impact_notional * px
            denominator = whole_size * px + remaining
            if numerator < best * denominator:
                return numerator // denominator  # bid side: round down
            return ceil_div(numerator, denominator)  # ask side (or exact): round up
        whole_size += size
        remaining -= level_notional
    return None


def premium(impact_bid: int | None, impact_ask: int | None, oracle_px: int) -> int:
    """(max(impact_bid - oracle, 0) - max(oracle - impact_ask, 0)) / oracle at RATE_SCALE,
    rounded toward zero. A missing impact price (too little depth) contributes 0."""
    if oracle_px <= 0:
        raise ValueError(f"oracle price must be positive, got {oracle_px}")
    difference = 0
    if impact_bid is not None:
        difference += max(impact_bid - oracle_px, 0)
    if impact_ask is not None:
        difference -= max(oracle_px - impact_ask, 0)
    return _div_toward_zero(difference * RATE_SCALE, oracle_px)


def hourly_funding_rate(mean_premium: int) -> int:
    """The hourly funding rate for an hour's mean premium, all at RATE_SCALE:
    F = P + clamp(r - P, -0.0005, 0.0005) per 8 h with r = 0.0001, then F / 8 rounded toward
    zero, then capped to +-4%."""
    clamped = min(max(INTEREST_RATE_8H - mean_premium, -PREMIUM_CLAMP_8H), PREMIUM_CLAMP_8H)
    rate = _div_toward_zero(mean_premium + clamped, HOURS_PER_FUNDING_INTERVAL)
    return min(max(rate, -HOURLY_RATE_CAP), HOURLY_RATE_CAP)


def _div_toward_zero(numerator: int, denominator: int) -> int:
    """numerator / denominator (denominator > 0) rounded toward zero."""
    quotient = abs(numerator) // denominator
    return -quotient if numerator < 0 else quotient


# Sampling and settlement.


class FundingState:
    """Premium samples of the current UTC hour for every perp; the block driver calls
    `on_block` once per block."""

    __slots__ = ("counts", "last_slot", "last_time", "totals")

    def __init__(self, assets: Iterable[int]) -> None:
        self.totals: dict[int, int] = {}  # sum of this hour's samples, RATE_SCALE
        self.counts: dict[int, int] = {}  # number of this hour's samples
        for asset in sorted(assets):
            self.totals[asset] = 0
            self.counts[asset] = 0
        self.last_time: int | None = None  # time of the last block seen, ms
        self.last_slot: int | None = None  # 5 s slot of the last sample

    def on_block(
        self, block_time: int, premiums_by_asset: Mapping[int, int]
    ) -> FundingSettlement | None:
        """Advance to `block_time` (ms, non-decreasing). First, when the block is in a later
        UTC hour than the previous block, settle that hour and reset its samples. Then, when
        no sample has been taken in this block's 5 s slot yet, sample the premiums given
        (RATE_SCALE); an asset absent from `premiums_by_asset` (no oracle yet) gets no sample
        in this slot. The very first block settles nothing: a devnet starting mid-hour settles
        that partial hour at its end, over the samples it has."""
        for asset in premiums_by_asset:
            if asset not in self.totals:
                raise ValueError(f"premium for unknown perp asset {asset}")
        settlement: FundingSettlement | None = None
        if self.last_time is not None:
            if block_time < self.last_time:
                raise ValueError(f"block time {block_time} before {self.last_time}")
            hour = self.last_time // HOUR_MS  # floor: the hour containing the time
            if block_time // HOUR_MS > hour:
                settlement = FundingSettlement(hour, block_time, self.pending_rates())
                for asset in self.totals:
                    self.totals[asset] = 0
                    self.counts[asset] = 0
        self.last_time = block_time
        if self.wants_sample(block_time):
            self.last_slot = block_time // SAMPLE_INTERVAL_MS  # floor: the slot of the time
            for asset, value in premiums_by_asset.items():
                self.totals[asset] += value
                self.counts[asset] += 1
        return settlement

    def wants_sample(self, block_time: int) -> bool:
        """Whether `on_block` at this time takes a sample (the first block of a 5 s slot), so
        the caller reads premiums from the books only then."""
        return self.last_slot is None or block_time // SAMPLE_INTERVAL_MS > self.last_slot

    def pending_rate(self, asset: int) -> FundingRate:
        """The rate the hour so far would settle at (what `metaAndAssetCtxs` shows as
        `funding`). The mean premium is the exact sum over the count, rounded toward zero."""
        count = self.counts[asset]
        mean = _div_toward_zero(self.totals[asset], count) if count else 0
        return FundingRate(asset, hourly_funding_rate(mean), mean, count)

    def pending_rates(self) -> tuple[FundingRate, ...]:
        """`pending_rate` of every perp, by asset."""
        return tuple(self.pending_rate(asset) for asset in sorted(self.totals))

    def snapshot(self) -> FundingSnapshot:
        samples = tuple(
            PremiumSamples(asset, self.totals[asset], self.counts[asset])
            for asset in sorted(self.totals)
        )
        return FundingSnapshot(self.last_time, self.last_slot, samples)

    @classmethod
    def restore(cls, snapshot: FundingSnapshot) -> FundingState:
        """The state a snapshot was taken of."""
        state = cls(s.asset for s in snapshot.samples)
        state.last_time = snapshot.last_time
        state.last_slot = snapshot.last_slot
        for s in snapshot.samples:
            state.totals[s.asset] = s.total
            state.counts[s.asset] = s.count
        state._check()
        return state

    def _check(self) -> None:
        assert list(self.totals) == sorted(self.totals), "assets out of order"
        assert list(self.counts) == list(self.totals), "totals and counts cover other assets"
        # This hour's samples sit in distinct slots, from the hour's first slot to last_slot.
        taken = 0
        if self.last_time is None:
            assert self.last_slot is None, "a sample before any block"
        elif self.last_slot is not None:
            assert self.last_slot <= self.last_time // SAMPLE_INTERVAL_MS, "sample in the future"
            first_slot = self.last_time // HOUR_MS * SAMPLES_PER_HOUR  # floor, as in on_block
            taken = max(self.last_slot - first_slot + 1, 0)
        for asset, count in self.counts.items():
            assert 0 <= count <= taken, f"asset {asset}: {count} samples in {taken} slots"
            assert count or self.totals[asset] == 0, f"asset {asset}: a total with no samples"


# Payments.


def funding_payments(
    positions: list[tuple[str, int]], oracle_px: int, hourly_rate: int
) -> dict[str, int]:
    """One asset's funding for an hour: the change to each account's USDC (micro-USDC,
    negative for a payer), keyed by address in ascending order.

    Each position owes szi * oracle_px * hourly_rate / RATE_SCALE: with a positive rate longs
    pay shorts, with a negative rate shorts pay longs. Payers' amounts are rounded up. The
    total paid is shared among the receivers pro rata to their notional |szi| * oracle_px
    (one price, so pro rata to |szi|), each share rounded down; the micro-USDC left over
    (fewer than the number of receivers) go one each to the receivers with the largest
    fractional remainder, ties broken by address ascending. The amounts sum to exactly zero.

    `positions` are (address, szi) in any order; szi == 0 entries are left out of the
    result. The szi must sum to zero (every long has a short) and addresses be distinct.
    """
    if oracle_px <= 0:
        raise ValueError(f"oracle price must be positive, got {oracle_px}")
    held = sorted((user, szi) for user, szi in positions if szi != 0)
    if len({user for user, _ in held}) != len(held):
        raise ValueError("an address appears twice")
    if sum(szi for _, szi in held) != 0:
        raise ValueError("positions do not net to zero")
    result = {user: 0 for user, _ in held}
    if hourly_rate == 0 or not held:
        return result
    magnitude = abs(hourly_rate)
    paying_long = hourly_rate > 0
    receivers: list[tuple[str, int]] = []
    total_paid = 0
    for user, szi in held:
        if (szi > 0) == paying_long:
            owed = ceil_div(abs(szi) * oracle_px * magnitude, RATE_SCALE)  # against the payer
            result[user] = -owed
            total_paid += owed
        else:
            receivers.append((user, abs(szi)))
    receiver_size = sum(size for _, size in receivers)
    remainders: list[tuple[int, str]] = []
    shared = 0
    for user, size in receivers:
        share, remainder = divmod(total_paid * size, receiver_size)  # rounded down
        result[user] = share
        shared += share
        remainders.append((-remainder, user))
    remainders.sort()  # largest remainder first, then address ascending
    for _, user in remainders[: total_paid - shared]:
        result[user] += 1
    return result
