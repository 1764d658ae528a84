"""What the chain holds at height 0 beyond its markets: the genesis funding.

Invariants:
- Funding is a pure function of its description, so every node that starts, resumes or replays
  a chain from the same genesis holds the same balances at height 0.
- Perp USDC arrives as deposits (recorded in the ledger); spot tokens are credited directly,
  and what an account supplies at genesis (the market maker's USDC, so portfolio-margin
  accounts can borrow on a fresh devnet) moves from its spot balance into the reserve.
- Both liquidators are funded: the standard one with perp USDC, the portfolio-margin one with
  spot USDC (it repays, from spot, the debts it takes over).
"""

from __future__ import annotations

import msgspec

from protocol.chain import Chain
from protocol.clearinghouse import SPOT_USDC_PER_MICRO
from protocol.liquidation import LIQUIDATOR
from protocol.portfolio_margin import PM_LIQUIDATOR


class AccountFunding(msgspec.Struct, frozen=True):
    address: str  # lower case
    perp_usdc: int  # micro-USDC
    spot: tuple[tuple[int, int], ...]  # (token index, wei)
    supply: tuple[tuple[int, int], ...] = ()  # (token, wei) of `spot` supplied to lending


class GenesisFunding(msgspec.Struct, frozen=True):
    accounts: tuple[str, ...]  # lower-case addresses
    perp_usdc: int  # micro-USDC per account
    spot: tuple[tuple[int, int], ...]  # (token index, wei) per account
    liquidator_usdc: int  # micro-USDC per liquidator
    others: tuple[AccountFunding, ...] = ()  # accounts with their own amounts (market maker)


def fund_genesis(chain: Chain, funding: GenesisFunding, time: int) -> None:
    clearinghouse = chain.clearinghouse
    accounts = [AccountFunding(a, funding.perp_usdc, funding.spot) for a in funding.accounts]
    for account in (*accounts, *funding.others):
        if account.perp_usdc:
            chain.deposit(account.address, account.perp_usdc, time)
        for token, wei in account.spot:
            clearinghouse.credit_spot(account.address, token, wei)
        for token, wei in account.supply:
            taken = chain.lending.supply(account.address, token, wei)
            if not isinstance(taken, int):
                raise ValueError(f"genesis supply of token {token}: {taken}")
            clearinghouse.accounts[account.address].spot_total[token] -= taken
    if funding.liquidator_usdc:
        chain.deposit(LIQUIDATOR, funding.liquidator_usdc, time)
        if clearinghouse.usdc_token >= 0:
            clearinghouse.credit_spot(
                PM_LIQUIDATOR,
                clearinghouse.usdc_token,
                funding.liquidator_usdc * SPOT_USDC_PER_MICRO,
            )
