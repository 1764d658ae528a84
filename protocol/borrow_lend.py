"""The `borrowLend` action: supply to and withdraw from a reserve, borrow and repay.

Invariants:
- Tokens move between the account's spot balance and the reserve by exactly the wei the
  reserve reports; nothing is created.
- Only portfolio-margin accounts borrow, and only up to the value of their collateral times its
  LTV: sum over collateral tokens of (spot balance + supplied) x price x LTV, rounded down,
  against the USDC value of all their debts, rounded up.
- Supplying and repaying spend only the free part of a spot balance; borrowed funds count for
  trading but cannot be transferred out (`Clearinghouse.transferable_spot`).
- Only borrowable tokens are supplied and withdrawn (Earn); collateral counts from the spot
  balance where it is.
- A refused operation changes nothing.

Choices (Hyperliquid leaves them open): collateral is priced at the borrow oracle price, the
median of its USDC spot pair's last trade, the mark and the oracle price of the perp of the same
name or of the name without a leading "U" (UBTC -> BTC), taking the USDT/USDC rate as 1; a token
with none of these has no collateral value. Error strings not from Hyperliquid are the devnet's
own.
"""

from __future__ import annotations

from protocol.actions import ActionResponse, BorrowLendAction, DefaultResponse, ErrorResponse
from protocol.clearinghouse import Account, Clearinghouse
from protocol.fixed import USD_SCALE, parse_fixed
from protocol.ledger import BorrowLend, LedgerUpdate
from protocol.lending import (
    ERR_BALANCE,
    ERR_NO_RESERVE,
    ERR_NOT_BORROWABLE,
    Lending,
)
from protocol.markets import SpotToken
from protocol.portfolio import TOKEN_SCALE, Collateral, borrow_oracle_price, max_borrow

OPERATIONS = ("supply", "withdraw", "borrow", "repay")
ERR_OPERATION = "Invalid borrow lend operation"
ERR_NOT_PM = "Borrowing requires portfolio margin"
ERR_COLLATERAL = "Insufficient collateral for operation"
ERR_AMOUNT = "Invalid amount"

Result = tuple[ActionResponse, tuple[LedgerUpdate, ...]]


def token_price(clearinghouse: Clearinghouse, token: SpotToken) -> int:
    """Micro-USDC per whole token: 1 for USDC; otherwise the borrow oracle price, the median of
    what exists of the token's USDC spot pair (last trade), the matching perp's mark and its
    oracle price (the perp of the same name, or without a leading "U": UBTC -> BTC); 0 when
    none exists. Each is converted from its market's price scale, rounded down."""
    if token.index == clearinghouse.usdc_token:
        return USD_SCALE
    markets = clearinghouse.markets
    spot_px: int | None = None
    mark_px: int | None = None
    oracle_px: int | None = None
    spot = markets.pair_market(token.index, clearinghouse.usdc_token)
    if spot is not None:
        traded = clearinghouse.last_trade.get(spot.asset)
        if traded:
            spot_px = _micro(traded, spot.px_decimals)
    perp = markets.perp_of(token)
    if perp is not None:
        mark = clearinghouse.mark(perp.asset)
        mark_px = _micro(mark, perp.px_decimals) if mark else None
        oracle = clearinghouse.oracle_px.get(perp.asset)
        oracle_px = _micro(oracle, perp.px_decimals) if oracle else None
    if spot_px is None and mark_px is None and oracle_px is None:
        return 0
    return borrow_oracle_price(spot_px, mark_px, oracle_px)


def _micro(px: int, px_decimals: int) -> int:
    scale: int = 10**px_decimals
    return px * USD_SCALE // scale


def value_of(clearinghouse: Clearinghouse, token: SpotToken, wei: int, up: bool) -> int:
    """Micro-USDC value of `wei` of `token`, rounded up (debts) or down (collateral)."""
    numerator = wei * token_price(clearinghouse, token)
    denominator: int = 10**token.wei_decimals
    return -(-numerator // denominator) if up else numerator // denominator


def collateral_of(
    clearinghouse: Clearinghouse, lending: Lending, account: Account
) -> list[Collateral]:
    """The account's collateral for borrowing: every token whose reserve has a positive LTV,
    spot balance plus supply, at TOKEN_SCALE, capped by the user's supply cap, at the borrow
    oracle price."""
    result: list[Collateral] = []
    markets = clearinghouse.markets
    for token_index, reserve in sorted(lending.reserves.items()):
        ltv = reserve.params.ltv
        if not ltv:
            continue
        token = markets.tokens[token_index]
        wei = account.spot_total.get(token_index, 0) + reserve.supply_of(account.owner)
        scale: int = 10**token.wei_decimals
        cap = reserve.params.user_supply_cap
        result.append(
            Collateral(
                max(wei, 0) * TOKEN_SCALE // scale,
                token_price(clearinghouse, token),
                ltv,
                None if cap is None else cap * TOKEN_SCALE // scale,
            )
        )
    return result


def borrow_capacity(clearinghouse: Clearinghouse, lending: Lending, user: str) -> int:
    """Collateral x price x LTV (`portfolio.max_borrow`), less the value of the account's
    debts, micro-USDC."""
    account = clearinghouse.accounts.get(user)
    capacity = 0 if account is None else max_borrow(collateral_of(clearinghouse, lending, account))
    for token_index in lending.reserves:
        debt = lending.user_borrow(user, token_index)
        if debt:
            token = clearinghouse.markets.tokens[token_index]
            capacity -= value_of(clearinghouse, token, debt, up=True)
    return capacity


def borrow_lend(
    clearinghouse: Clearinghouse, lending: Lending, user: str, action: BorrowLendAction, time: int
) -> Result:
    if action.operation not in OPERATIONS:
        return ErrorResponse(ERR_OPERATION), ()
    if action.token not in lending.reserves:
        return ErrorResponse(ERR_NO_RESERVE), ()
    token = clearinghouse.markets.tokens[action.token]
    amount: int | None = None
    if action.amount is not None:
        amount = parse_fixed(action.amount, token.wei_decimals)
        if amount is None or amount <= 0:
            return ErrorResponse(ERR_AMOUNT), ()
    account = clearinghouse.accounts.get(user) or Account(user)
    moved = _operate(clearinghouse, lending, account, token, action.operation, amount)
    if isinstance(moved, str):
        return ErrorResponse(moved), ()
    clearinghouse.accounts.setdefault(user, account)
    delta = BorrowLend(token.name, action.operation, moved, 0)
    return DefaultResponse(), (LedgerUpdate(time, (user,), delta),)


def _operate(
    clearinghouse: Clearinghouse,
    lending: Lending,
    account: Account,
    token: SpotToken,
    operation: str,
    amount: int | None,
) -> int | str:
    """Run one operation and move the spot balance by what the reserve reports."""
    user, index = account.owner, token.index
    totals = account.spot_total
    if operation in ("supply", "borrow") and amount is None:
        return ERR_AMOUNT
    if operation in ("supply", "withdraw") and not lending.reserves[index].params.borrowable:
        # Earn is for borrowable tokens; collateral counts from the spot balance as it is.
        return ERR_NOT_BORROWABLE
    if operation == "supply":
        assert amount is not None
        if amount > clearinghouse.transferable_spot(account, index):
            return ERR_BALANCE
        taken = lending.supply(user, index, amount)
        if isinstance(taken, int):
            totals[index] -= taken
        return taken
    if operation == "withdraw":
        given = lending.withdraw_supply(user, index, amount)
        if isinstance(given, int):
            totals[index] = totals.get(index, 0) + given
        return given
    if operation == "borrow":
        assert amount is not None
        if account.abstraction != "portfolioMargin":
            return ERR_NOT_PM
        cost = value_of(clearinghouse, token, amount, up=True)
        if cost > borrow_capacity(clearinghouse, lending, user):
            return ERR_COLLATERAL
        given = lending.borrow(user, index, amount)
        if isinstance(given, int):
            totals[index] = totals.get(index, 0) + given
        return given
    debt = lending.user_borrow(user, index)
    wanted = debt if amount is None else min(amount, debt)
    if wanted > account.spot_available(index):
        return ERR_BALANCE
    taken = lending.repay(user, index, amount)
    if isinstance(taken, int):
        totals[index] -= taken
    return taken
