"""Borrow/lend reserves of portfolio margin: supply, withdraw, borrow, repay and interest.

One reserve per configured spot token. Amounts are integers in the token's wei; rates and
utilization at RATE_SCALE (0.05 = 50_000_000_000); interest indexes at WAD; LTV at LTV_SCALE.

Invariants (checked by `Lending._check`):
- A user's position is a scaled balance: the amount at index 1.0. Its current amount is
  scaled x index / WAD, rounded down for a supply and up for a borrow. The reserve's totals
  `scaled_supply` and `scaled_borrow` are the sums of its users' scaled balances, and
  `total_supplied` / `total_borrowed` are the totals converted the same way, so the sum of
  users' supplies is <= total_supplied and the sum of users' debts is >= total_borrowed.
- Both indexes start at WAD and never decrease (asserted at every accrual).
- Every conversion rounds against the user: supplying credits floor(amount x WAD / index)
  scaled units, withdrawing burns ceil(amount x WAD / index), borrowing adds ceil(amount x
  WAD / index) of scaled debt, a partial repay removes floor(amount x WAD / index).
- Interest is conserved exactly at every accrual: the growth of total_borrowed equals the
  growth of total_supplied plus the growth of the protocol's share. Suppliers get
  floor(interest x (1 - protocol share)) (exactly, whenever scaled_supply <= WAD; when it is
  larger the supply index cannot hit every integer total and they get the largest total not
  above that); the protocol keeps the rest, so its share never decreases.
- `cash` is the wei the reserve holds (Hyperliquid's reserve `balance`): what was supplied and
  repaid less what was withdrawn and borrowed. cash >= 0, and the reserve never owes more than
  it has: cash + total_borrowed >= total_supplied + protocol share. The difference is the
  rounding dust of the operations, which only ever grows it.
- total_supplied >= total_borrowed is NOT an invariant: borrowers' debt grows by the whole
  interest and suppliers' claims by 90% of it, so near full utilization the debt overtakes
  the claims (100 supplied, 100 borrowed at 100% APR: after a year 271.8 owed, 254.6
  claimed); the protocol's 10% covers the gap, which is what the solvency inequality states.
  Borrows and withdrawals keep total_borrowed <= total_supplied up to a few wei of rounding.
- An operation either succeeds (returns the wei moved, an int) or returns an error string and
  changes nothing.

Contract with the caller (the clearinghouse / portfolio-margin module):
- This module keeps only the reserves' books. The caller moves the user's token balance by the
  int an operation returns: `supply` and `repay` return the wei to take from the user,
  `withdraw_supply` and `borrow` the wei to give to the user. The caller checks beforehand that
  the user has those tokens (a repay of `None` takes the whole debt) and, for a borrow, that
  the user's collateral allows it (LTV and portfolio margin are not checked here).
- The block driver calls `accrue(block_time)` once per block before any operation of the
  block, so every operation uses the indexes of the block's time.

Choices where Hyperliquid is silent:
- Rate curve: borrow rate = base + slope1 x min(U, kink) + slope2 x max(0, U - kink) per year,
  with Hyperliquid's parameters base 0.05, slope1 0, kink 0.8, slope2 4.75 (so 0.05 flat to
  80% and 1.0 at U = 1). It is computed from the exact ratio total_borrowed / total_supplied,
  capped at 1 (interest can push the debt past the claims, see above), and rounded up
  once to RATE_SCALE; that rounded rate is what borrowers are charged. U is 0 when nothing is
  borrowed and 1 when something is borrowed but nothing is supplied. The supply rate shown is
  borrow rate x U x (1 - protocol share), rounded down; what suppliers actually earn is
  derived from the interest charged (above), not from it.
- The yearly rate is a continuously compounded rate (the docs say "APY"; here e^0.05 - 1 =
  5.127% is the effective yearly growth at the 0.05 floor). A year is 365 days.
- "Accrue continuously, compounded continuously, indexed hourly": the devnet updates the
  indexes at every `accrue` (every block), multiplying the borrow index by
  exp(borrow rate x dt / year), rounded up, with the rate of the utilization at the start of
  the interval; so utilization is sampled once per block. Below the kink the rate is constant
  and the result does not depend on the block cadence (up to 1e-18 per block). Hourly
  reporting (`userBorrowLendInterest` rows) is the API layer's business. An accrual interval
  longer than a year is split into years so the exponent stays bounded.
- The borrow index grows even when nothing is borrowed (at the base rate): it is the debt of
  one unit borrowed at genesis; no one owes anything on it. Interest charged while nothing is
  supplied (possible only after wei-level rounding) goes wholly to the protocol.
- The protocol's share stays in the reserve's cash (part of `balance`); it earns nothing and
  is neither lent nor withdrawable here. Available liquidity (for borrows and withdrawals) is
  max(0, total_supplied - total_borrowed).
- Caps compare the current amount (interest included) plus the new amount with the cap, so
  interest may carry a position past its cap but no operation can. Global caps apply to the
  reserve totals, per-user caps to the user's current amount; None means no cap.
- Check order and errors: unknown reserve, amount, borrowable, caps, balance, liquidity.
  "Exceeded cap for asset" and "Insufficient balance" are strings reported from Hyperliquid's
  node (unverified); the others are the devnet's own, in the same style (no final period).
- Amounts must be positive; `None` means everything (withdraw the whole supply, repay the whole
  debt). Withdrawing (repaying) the exact current amount clears the whole position. A repay
  larger than the debt repays the debt and returns that amount (as Aave does); a withdrawal
  larger than the supply is refused. A supply too small to credit one scaled unit and a
  partial repay too small to remove one are refused ("Amount too small").
- A user may hold a supply and a borrow of the same token; netting them is the caller's
  policy. Positions that reach zero are dropped, so a user's state lists only tokens with a
  nonzero supply or borrow.
- Config: the `[lending]` table maps token names to reserves; when it is absent the defaults
  are the pre-alpha set (USDC borrowable, per-user borrow cap 1000; HYPE LTV 0.5, per-user
  supply cap 200) plus UBTC as collateral at LTV 0.5 with a per-user supply cap of 0.1 UBTC
  (about 10k USDC at the default BTC price, near HYPE's 200 x 30 = 6k), and the latest
  documented global caps (USDC 1B supply / 500M borrow, HYPE 10M, BTC 2k supply). Default
  tokens missing from the genesis are left out. An empty `[lending]` table means no reserves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from protocol.expmath import exp_wad
from protocol.fixed import RATE_DECIMALS, RATE_SCALE, WAD, ceil_div, parse_fixed
from protocol.markets import ConfigError, Markets

LTV_DECIMALS = 6
LTV_SCALE: int = 10**LTV_DECIMALS  # 0.5 = 500_000
YEAR_MS = 365 * 24 * 3_600_000
MAX_YEARLY_RATE = 100 * RATE_SCALE  # the borrow rate at U = 1 may not exceed 10,000% a year

ERR_NO_RESERVE = "Token is not supported for borrow lend"
ERR_AMOUNT = "Invalid amount"
ERR_TOO_SMALL = "Amount too small"
ERR_NOT_BORROWABLE = "Token is not borrowable"
ERR_CAP = "Exceeded cap for asset"
ERR_BALANCE = "Insufficient balance"
ERR_LIQUIDITY = "Insufficient liquidity"
ERR_NO_DEBT = "No debt to repay"


class ReserveParams(msgspec.Struct, frozen=True):
    """One token's lending parameters. Caps in the token's wei (None = no cap), LTV at
    LTV_SCALE, rate curve and protocol share at RATE_SCALE (rates per year)."""

    token: int
    borrowable: bool = False
    ltv: int = 0
    global_supply_cap: int | None = None
    global_borrow_cap: int | None = None
    user_supply_cap: int | None = None
    user_borrow_cap: int | None = None
    base_rate: int = 5 * RATE_SCALE // 100  # 0.05
    slope1: int = 0
    kink: int = 8 * RATE_SCALE // 10  # 0.8
    slope2: int = 475 * RATE_SCALE // 100  # 4.75
    protocol_share: int = RATE_SCALE // 10  # 0.10


def params_problem(params: ReserveParams) -> str | None:
    """What is wrong with `params`, or None when they are usable."""
    if params.token < 0:
        return "token index must be >= 0"
    if not 0 <= params.ltv <= LTV_SCALE:
        return "ltv must be in [0, 1]"
    caps = (
        params.global_supply_cap,
        params.global_borrow_cap,
        params.user_supply_cap,
        params.user_borrow_cap,
    )
    if any(cap is not None and cap < 0 for cap in caps):
        return "caps must be >= 0"
    if not params.borrowable and (
        params.global_borrow_cap is not None or params.user_borrow_cap is not None
    ):
        return "borrow caps on a token that is not borrowable"
    if min(params.base_rate, params.slope1, params.slope2) < 0:
        return "base_rate, slope1 and slope2 must be >= 0"
    if not 0 <= params.kink <= RATE_SCALE:
        return "kink must be in [0, 1]"
    if not 0 <= params.protocol_share <= RATE_SCALE:
        return "protocol_share must be in [0, 1]"
    top = params.base_rate * RATE_SCALE + params.slope1 * params.kink
    top += params.slope2 * (RATE_SCALE - params.kink)
    if top > MAX_YEARLY_RATE * RATE_SCALE:
        return "the borrow rate at full utilization exceeds 10000% a year"
    return None


# Views: the shapes of borrowLendReserveState and borrowLendUserState, as integers.


class ReserveState(msgspec.Struct, frozen=True, rename="camel"):
    """`borrowLendReserveState` without `oraclePx` (the caller adds it between utilization
    and ltv): rates and utilization at RATE_SCALE, ltv at LTV_SCALE, amounts in wei."""

    borrow_yearly_rate: int
    supply_yearly_rate: int
    balance: int  # the reserve's cash: total_supplied - total_borrowed + protocol share + dust
    utilization: int
    ltv: int
    total_supplied: int
    total_borrowed: int


class Amounts(msgspec.Struct, frozen=True):
    basis: int  # the scaled balance: the amount at index 1.0, in wei
    value: int  # the current amount with interest, in wei


class TokenLendState(msgspec.Struct, frozen=True):
    borrow: Amounts
    supply: Amounts


class UserLendState(msgspec.Struct, frozen=True, rename="camel"):
    """`borrowLendUserState` without `health` / `healthFactor` (portfolio margin's)."""

    token_to_state: tuple[tuple[int, TokenLendState], ...]  # by token index


class ReserveSnapshot(msgspec.Struct, frozen=True):
    """One reserve; amounts and indexes are decimal strings (they outgrow msgpack's 64-bit
    ints), users sorted by address."""

    token: int
    last_time: int
    supply_index: str
    borrow_index: str
    scaled_supply: str
    scaled_borrow: str
    protocol: str
    cash: str
    supplies: tuple[tuple[str, str], ...]
    borrows: tuple[tuple[str, str], ...]


class LendingSnapshot(msgspec.Struct, frozen=True):
    reserves: tuple[ReserveSnapshot, ...]  # by token index


# One reserve.


class Reserve:
    """The books of one token's reserve."""

    __slots__ = (
        "borrow_index",
        "borrows",
        "cash",
        "last_time",
        "params",
        "protocol",
        "scaled_borrow",
        "scaled_supply",
        "supplies",
        "supply_index",
    )

    def __init__(self, params: ReserveParams, time: int) -> None:
        self.params = params
        self.scaled_supply = 0  # sum of supplies
        self.scaled_borrow = 0  # sum of borrows
        self.supply_index = WAD
        self.borrow_index = WAD
        self.protocol = 0  # wei of interest retained by the protocol
        self.cash = 0  # wei held by the reserve
        self.last_time = time  # ms of the last accrual
        self.supplies: dict[str, int] = {}  # user -> scaled supply, > 0
        self.borrows: dict[str, int] = {}  # user -> scaled borrow, > 0

    @property
    def total_supplied(self) -> int:
        """Suppliers' total claim in wei, rounded down."""
        return self.scaled_supply * self.supply_index // WAD

    @property
    def total_borrowed(self) -> int:
        """Borrowers' total debt in wei, rounded up."""
        return ceil_div(self.scaled_borrow * self.borrow_index, WAD)

    def available(self) -> int:
        """Wei that can be borrowed or withdrawn now: supplied less borrowed, at least 0."""
        return max(0, self.total_supplied - self.total_borrowed)

    def supply_of(self, user: str) -> int:
        """The user's supply with interest, rounded down."""
        return self.supplies.get(user, 0) * self.supply_index // WAD

    def debt_of(self, user: str) -> int:
        """The user's debt with interest, rounded up."""
        return ceil_div(self.borrows.get(user, 0) * self.borrow_index, WAD)

    def accrue(self, dt: int) -> None:
        """Charge `dt` ms of interest (0 <= dt <= YEAR_MS) at the current borrow rate."""
        assert 0 <= dt <= YEAR_MS, f"accrual interval {dt} out of range"
        self.last_time += dt
        rate = borrow_rate(self)
        if dt == 0 or rate == 0:
            return
        growth = exp_wad(rate * dt, RATE_SCALE * YEAR_MS)  # rate x dt / year <= 100
        new_borrow_index = ceil_div(self.borrow_index * growth, WAD)  # up: against borrowers
        assert new_borrow_index >= self.borrow_index, "borrow index decreased"
        borrowed_before = self.total_borrowed
        self.borrow_index = new_borrow_index
        interest = self.total_borrowed - borrowed_before
        if interest == 0:
            return
        gained = 0
        if self.scaled_supply > 0:
            share = interest * (RATE_SCALE - self.params.protocol_share) // RATE_SCALE  # down
            if share > 0:
                supplied_before = self.total_supplied
                target = supplied_before + share
                # The smallest index whose total is exactly `target`, when one exists (always
                # when scaled_supply <= WAD); else the largest index whose total is below it.
                exact = ceil_div(target * WAD, self.scaled_supply)
                below = ((target + 1) * WAD - 1) // self.scaled_supply  # floor
                new_supply_index = min(exact, below)
                assert new_supply_index >= self.supply_index, "supply index decreased"
                self.supply_index = new_supply_index
                gained = self.total_supplied - supplied_before
                assert 0 <= gained <= share, "suppliers credited more than their share"
        self.protocol += interest - gained

    def snapshot(self) -> ReserveSnapshot:
        return ReserveSnapshot(
            token=self.params.token,
            last_time=self.last_time,
            supply_index=str(self.supply_index),
            borrow_index=str(self.borrow_index),
            scaled_supply=str(self.scaled_supply),
            scaled_borrow=str(self.scaled_borrow),
            protocol=str(self.protocol),
            cash=str(self.cash),
            supplies=tuple((u, str(s)) for u, s in sorted(self.supplies.items())),
            borrows=tuple((u, str(b)) for u, b in sorted(self.borrows.items())),
        )

    def _check(self) -> None:
        token = self.params.token
        assert self.scaled_supply == sum(self.supplies.values()), f"{token}: supply total"
        assert self.scaled_borrow == sum(self.borrows.values()), f"{token}: borrow total"
        assert all(s > 0 for s in self.supplies.values()), f"{token}: an empty supply kept"
        assert all(b > 0 for b in self.borrows.values()), f"{token}: an empty borrow kept"
        supplied = sum(s * self.supply_index // WAD for s in self.supplies.values())
        assert supplied <= self.total_supplied, f"{token}: users claim more than the total"
        owing = sum(ceil_div(b * self.borrow_index, WAD) for b in self.borrows.values())
        assert owing >= self.total_borrowed, f"{token}: users owe less than the total"
        assert self.supply_index >= WAD, f"{token}: supply index below 1"
        assert self.borrow_index >= WAD, f"{token}: borrow index below 1"
        assert self.protocol >= 0, f"{token}: negative protocol share"
        assert self.cash >= 0, f"{token}: negative cash"
        owed = self.total_supplied + self.protocol
        assert self.cash + self.total_borrowed >= owed, (
            f"{token}: the reserve owes more than it has"
        )


# Rates.


def _utilization_ratio(reserve: Reserve) -> tuple[int, int]:
    """U as (numerator, denominator > 0), capped at 1."""
    supplied = reserve.total_supplied
    borrowed = reserve.total_borrowed
    if borrowed == 0:
        return 0, 1
    if supplied == 0:
        return 1, 1
    return min(borrowed, supplied), supplied


def utilization(reserve: Reserve) -> int:
    """total_borrowed / total_supplied at RATE_SCALE, capped at 1, rounded down."""
    num, den = _utilization_ratio(reserve)
    result: int = num * RATE_SCALE // den
    return result


def borrow_rate(reserve: Reserve) -> int:
    """base + slope1 x min(U, kink) + slope2 x max(0, U - kink) per year at RATE_SCALE, from
    the exact U, rounded up (against borrowers)."""
    p = reserve.params
    num, den = _utilization_ratio(reserve)
    u_scaled = num * RATE_SCALE  # U x RATE_SCALE x den
    kink_scaled = p.kink * den  # kink x RATE_SCALE x den
    numerator = p.base_rate * den * RATE_SCALE
    numerator += p.slope1 * min(u_scaled, kink_scaled)
    numerator += p.slope2 * max(0, u_scaled - kink_scaled)
    return ceil_div(numerator, den * RATE_SCALE)


def supply_rate(reserve: Reserve) -> int:
    """borrow_rate x U x (1 - protocol share) per year at RATE_SCALE, rounded down."""
    num, den = _utilization_ratio(reserve)
    kept = RATE_SCALE - reserve.params.protocol_share
    result: int = borrow_rate(reserve) * num * kept // (den * RATE_SCALE)
    return result


# All reserves.


def _over_cap(current: int, cap: int | None, amount: int) -> bool:
    """Whether adding `amount` to `current` passes `cap` (None: no cap)."""
    return cap is not None and current + amount > cap


class Lending:
    """Every token's reserve. Operations return the wei moved (int) or an error (str)."""

    __slots__ = ("reserves",)

    def __init__(self, params: Mapping[int, ReserveParams], start_time: int) -> None:
        self.reserves: dict[int, Reserve] = {}
        for token in sorted(params):
            p = params[token]
            problem = params_problem(p)
            if p.token != token:
                problem = f"filed under token {token}"
            if problem is not None:
                raise ConfigError(f"lending token {p.token}: {problem}")
            self.reserves[token] = Reserve(p, start_time)

    # Time.

    def accrue(self, time: int) -> None:
        """Charge interest in every reserve up to `time` (ms, non-decreasing), in steps of at
        most a year, each at the rate of the utilization at its start."""
        for reserve in self.reserves.values():
            if time < reserve.last_time:
                raise ValueError(f"accrual time {time} before {reserve.last_time}")
            while reserve.last_time < time:
                reserve.accrue(min(time - reserve.last_time, YEAR_MS))

    # Operations.

    def supply(self, user: str, token: int, amount: int) -> int | str:
        """Supply `amount` wei; returns the wei to take from the user's balance (= amount)."""
        reserve = self.reserves.get(token)
        if reserve is None:
            return ERR_NO_RESERVE
        if amount <= 0:
            return ERR_AMOUNT
        p = reserve.params
        if _over_cap(reserve.total_supplied, p.global_supply_cap, amount) or _over_cap(
            reserve.supply_of(user), p.user_supply_cap, amount
        ):
            return ERR_CAP
        scaled = amount * WAD // reserve.supply_index  # down: against the supplier
        if scaled == 0:
            return ERR_TOO_SMALL
        reserve.supplies[user] = reserve.supplies.get(user, 0) + scaled
        reserve.scaled_supply += scaled
        reserve.cash += amount
        return amount

    def withdraw_supply(self, user: str, token: int, amount: int | None) -> int | str:
        """Withdraw `amount` wei of the user's supply (None: all of it); returns the wei to
        give to the user's balance."""
        reserve = self.reserves.get(token)
        if reserve is None:
            return ERR_NO_RESERVE
        if amount is not None and amount <= 0:
            return ERR_AMOUNT
        held = reserve.supplies.get(user, 0)
        value = reserve.supply_of(user)
        if amount is None:
            if value == 0:
                return ERR_BALANCE
            amount = value
        if amount > value:
            return ERR_BALANCE
        if amount > reserve.available():
            return ERR_LIQUIDITY
        # Up: against the supplier. At most `held`, since amount <= held x index / WAD; and
        # exactly `held` when amount == value, since the index is >= WAD, so one scaled unit
        # is worth at least one wei and `value` determines `held`.
        scaled = ceil_div(amount * WAD, reserve.supply_index)
        if scaled == held:
            del reserve.supplies[user]
        else:
            reserve.supplies[user] = held - scaled
        reserve.scaled_supply -= scaled
        reserve.cash -= amount
        return amount

    def borrow(self, user: str, token: int, amount: int) -> int | str:
        """Borrow `amount` wei; returns the wei to give to the user's balance (= amount). The
        caller has checked the user's collateral."""
        reserve = self.reserves.get(token)
        if reserve is None:
            return ERR_NO_RESERVE
        if amount <= 0:
            return ERR_AMOUNT
        p = reserve.params
        if not p.borrowable:
            return ERR_NOT_BORROWABLE
        if _over_cap(reserve.total_borrowed, p.global_borrow_cap, amount) or _over_cap(
            reserve.debt_of(user), p.user_borrow_cap, amount
        ):
            return ERR_CAP
        if amount > reserve.available():
            return ERR_LIQUIDITY
        scaled = ceil_div(amount * WAD, reserve.borrow_index)  # up: against the borrower
        reserve.borrows[user] = reserve.borrows.get(user, 0) + scaled
        reserve.scaled_borrow += scaled
        reserve.cash -= amount
        return amount

    def repay(self, user: str, token: int, amount: int | None) -> int | str:
        """Repay `amount` wei of the user's debt (None, or more than the debt: all of it);
        returns the wei to take from the user's balance."""
        reserve = self.reserves.get(token)
        if reserve is None:
            return ERR_NO_RESERVE
        if amount is not None and amount <= 0:
            return ERR_AMOUNT
        held = reserve.borrows.get(user, 0)
        if held == 0:
            return ERR_NO_DEBT
        debt = reserve.debt_of(user)
        if amount is None or amount >= debt:
            amount = debt
            scaled = held  # debt >= held x index / WAD, so this clears it
        else:
            scaled = amount * WAD // reserve.borrow_index  # down: against the borrower
            if scaled == 0:
                return ERR_TOO_SMALL
        if scaled == held:
            del reserve.borrows[user]
        else:
            reserve.borrows[user] = held - scaled
        reserve.scaled_borrow -= scaled
        reserve.cash += amount
        return amount

    # Queries.

    def user_supply(self, user: str, token: int) -> int:
        """The user's supply of `token` with interest, in wei (rounded down); 0 without one."""
        reserve = self.reserves.get(token)
        return 0 if reserve is None else reserve.supply_of(user)

    def user_borrow(self, user: str, token: int) -> int:
        """The user's debt in `token` with interest, in wei (rounded up); 0 without one."""
        reserve = self.reserves.get(token)
        return 0 if reserve is None else reserve.debt_of(user)

    def available(self, token: int) -> int:
        """Wei of `token` that can be borrowed or withdrawn now; 0 without a reserve."""
        reserve = self.reserves.get(token)
        return 0 if reserve is None else reserve.available()

    def reserve_state(self, token: int) -> ReserveState | None:
        """The `borrowLendReserveState` numbers of `token`, or None without a reserve."""
        reserve = self.reserves.get(token)
        if reserve is None:
            return None
        return ReserveState(
            borrow_yearly_rate=borrow_rate(reserve),
            supply_yearly_rate=supply_rate(reserve),
            balance=reserve.cash,
            utilization=utilization(reserve),
            ltv=reserve.params.ltv,
            total_supplied=reserve.total_supplied,
            total_borrowed=reserve.total_borrowed,
        )

    def user_state(self, user: str) -> UserLendState:
        """The user's supply and borrow per token (basis = scaled balance, value = current
        amount), tokens with a nonzero position only, by token index."""
        entries: list[tuple[int, TokenLendState]] = []
        for token, reserve in self.reserves.items():
            supplied = reserve.supplies.get(user, 0)
            borrowed = reserve.borrows.get(user, 0)
            if supplied == 0 and borrowed == 0:
                continue
            state = TokenLendState(
                borrow=Amounts(borrowed, reserve.debt_of(user)),
                supply=Amounts(supplied, reserve.supply_of(user)),
            )
            entries.append((token, state))
        return UserLendState(tuple(entries))

    # State hash.

    def snapshot(self) -> LendingSnapshot:
        return LendingSnapshot(tuple(r.snapshot() for r in self.reserves.values()))

    @classmethod
    def restore(cls, params: Mapping[int, ReserveParams], snapshot: LendingSnapshot) -> Lending:
        """The state a snapshot was taken of, under the same params."""
        state = cls(params, 0)
        if [r.token for r in snapshot.reserves] != list(state.reserves):
            raise ValueError("lending snapshot: reserves differ from the params")
        for saved in snapshot.reserves:
            reserve = state.reserves[saved.token]
            reserve.last_time = saved.last_time
            reserve.supply_index = int(saved.supply_index)
            reserve.borrow_index = int(saved.borrow_index)
            reserve.scaled_supply = int(saved.scaled_supply)
            reserve.scaled_borrow = int(saved.scaled_borrow)
            reserve.protocol = int(saved.protocol)
            reserve.cash = int(saved.cash)
            reserve.supplies = {u: int(s) for u, s in saved.supplies}
            reserve.borrows = {u: int(b) for u, b in saved.borrows}
        state._check()
        return state

    def _check(self) -> None:
        assert list(self.reserves) == sorted(self.reserves), "reserves out of order"
        for token, reserve in self.reserves.items():
            assert reserve.params.token == token, f"reserve {token} filed under another token"
            reserve._check()


# The `[lending]` config table: one sub-table per token name, decimals as strings.


class _ReserveSpec(msgspec.Struct, forbid_unknown_fields=True):
    borrowable: bool = False
    ltv: str = "0"
    global_supply_cap: str | None = None
    global_borrow_cap: str | None = None
    user_supply_cap: str | None = None
    user_borrow_cap: str | None = None
    base_rate: str = "0.05"
    slope1: str = "0"
    kink: str = "0.8"
    slope2: str = "4.75"
    protocol_share: str = "0.1"


DEFAULT_LENDING: dict[str, dict[str, Any]] = {
    "USDC": {
        "borrowable": True,
        "global_supply_cap": "1000000000",
        "global_borrow_cap": "500000000",
        "user_borrow_cap": "1000",
    },
    "HYPE": {"ltv": "0.5", "global_supply_cap": "10000000", "user_supply_cap": "200"},
    "UBTC": {"ltv": "0.5", "global_supply_cap": "2000", "user_supply_cap": "0.1"},
}


def _parse(text: str, decimals: int, where: str) -> int:
    value = parse_fixed(text, decimals)
    if value is None or value < 0:
        raise ConfigError(f"{where}: {text!r} is not a decimal >= 0 with <= {decimals} decimals")
    return value


def _cap(text: str | None, decimals: int, where: str) -> int | None:
    return None if text is None else _parse(text, decimals, where)


def load_lending(raw: Mapping[str, Any] | None, markets: Markets) -> dict[int, ReserveParams]:
    """Reserve parameters by token index from the `[lending]` table of a config (token name ->
    table; decimals are strings in token units, parsed exactly), or the defaults when the
    table is absent (None)."""
    if raw is None:
        raw = {
            name: t
            for name, t in DEFAULT_LENDING.items()
            if markets.token_by_name(name) is not None
        }
    if not isinstance(raw, Mapping):
        raise ConfigError("lending must be a table")
    result: dict[int, ReserveParams] = {}
    for name, table in raw.items():
        where = f"lending.{name}"
        token = markets.token_by_name(name)
        if token is None:
            raise ConfigError(f"{where}: {name!r} is not a spot token")
        try:
            spec = msgspec.convert(table, _ReserveSpec)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        wei = token.wei_decimals
        params = ReserveParams(
            token=token.index,
            borrowable=spec.borrowable,
            ltv=_parse(spec.ltv, LTV_DECIMALS, f"{where}.ltv"),
            global_supply_cap=_cap(spec.global_supply_cap, wei, f"{where}.global_supply_cap"),
            global_borrow_cap=_cap(spec.global_borrow_cap, wei, f"{where}.global_borrow_cap"),
            user_supply_cap=_cap(spec.user_supply_cap, wei, f"{where}.user_supply_cap"),
            user_borrow_cap=_cap(spec.user_borrow_cap, wei, f"{where}.user_borrow_cap"),
            base_rate=_parse(spec.base_rate, RATE_DECIMALS, f"{where}.base_rate"),
            slope1=_parse(spec.slope1, RATE_DECIMALS, f"{where}.slope1"),
            kink=_parse(spec.kink, RATE_DECIMALS, f"{where}.kink"),
            slope2=_parse(spec.slope2, RATE_DECIMALS, f"{where}.slope2"),
            protocol_share=_parse(spec.protocol_share, RATE_DECIMALS, f"{where}.protocol_share"),
        )
        problem = params_problem(params)
        if problem is not None:
            raise ConfigError(f"{where}: {problem}")
        result[token.index] = params
    return dict(sorted(result.items()))
