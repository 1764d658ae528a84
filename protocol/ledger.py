"""Non-funding ledger updates: the record of money entering, leaving and moving between
accounts, in the shapes `userNonFundingLedgerUpdates` serves.

Invariants:
- Every balance change that is not a trade or funding produces exactly one update, naming every
  account it touched in `users`.
- `usdc` fields are micro-USDC (perp precision); token `amount` fields are in the token's wei
  (for USDC, spot wei: 8 decimals), whichever side of the account they moved on.
"""

from __future__ import annotations

import msgspec


class _Delta(msgspec.Struct, frozen=True, tag_field="type"):
    pass


class Deposit(_Delta, frozen=True, tag="deposit"):
    usdc: int


class Withdraw(_Delta, frozen=True, tag="withdraw"):
    usdc: int
    nonce: int
    fee: int


class AccountClassTransfer(_Delta, frozen=True, tag="accountClassTransfer"):
    usdc: int
    to_perp: bool


class InternalTransfer(_Delta, frozen=True, tag="internalTransfer"):
    usdc: int
    user: str
    destination: str
    fee: int


class SpotTransfer(_Delta, frozen=True, tag="spotTransfer"):
    token: str
    amount: int
    user: str
    destination: str
    fee: int


class SubAccountTransfer(_Delta, frozen=True, tag="subAccountTransfer"):
    usdc: int
    user: str
    destination: str


class Send(_Delta, frozen=True, tag="send"):
    user: str
    destination: str
    source_dex: str
    destination_dex: str
    token: str
    amount: int
    fee: int


class LiquidatedPosition(msgspec.Struct, frozen=True):
    coin: str
    szi: int


class Liquidation(_Delta, frozen=True, tag="liquidation"):
    account_value: int
    leverage_type: str  # "Cross" | "Isolated"
    liquidated_positions: tuple[LiquidatedPosition, ...]


class BorrowLend(_Delta, frozen=True, tag="borrowLend"):
    token: str
    operation: str
    amount: int  # the token's wei
    interest_amount: int


LedgerDelta = (
    Deposit
    | Withdraw
    | AccountClassTransfer
    | InternalTransfer
    | SpotTransfer
    | SubAccountTransfer
    | Send
    | Liquidation
    | BorrowLend
)


class LedgerUpdate(msgspec.Struct, frozen=True):
    time: int
    users: tuple[str, ...]
    delta: LedgerDelta


class FundingUpdate(msgspec.Struct, frozen=True):
    """One account's funding for one hour on one perp (`userFunding`): `usdc` is the change
    to its cash (negative when it paid), `funding_rate` the hourly rate at RATE_SCALE."""

    time: int
    user: str
    coin: str
    usdc: int
    szi: int
    funding_rate: int
    n_samples: int
