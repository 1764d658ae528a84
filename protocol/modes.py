"""Account abstraction modes: `userSetAbstraction` and `agentSetAbstraction`.

Invariants:
- An account is in exactly one mode: "default" (never set, behaves as standard), "disabled"
  (standard: separate spot and perp balances), "unifiedAccount" (one balance per asset, spot
  USDC backing perps too) or "portfolioMargin" (unified, with borrowing against collateral).
- The mode changes only while the account has no open perp position, no open order and no
  borrow, so no margin is ever recomputed under a live position or debt. (Hyperliquid does not
  document what happens to them on a switch; this is the devnet's written rule.) Leaving
  portfolio margin withdraws its automatic USDC supply back to spot.
- Entering a unified mode moves the perp cash into spot USDC, where the unified modes keep the
  balance; leaving one leaves it in spot (the user moves it back with `usdClassTransfer`).
- Portfolio margin needs an account value of at least 10,000 USDC (Hyperliquid's other route,
  5M USDC of volume, is not tracked by the devnet).
- An agent may set the mode only from "default", as on Hyperliquid.
- A refused change changes nothing.
"""

from __future__ import annotations

from protocol.actions import (
    ActionResponse,
    AgentSetAbstractionAction,
    DefaultResponse,
    ErrorResponse,
    UserSetAbstractionAction,
)
from protocol.clearinghouse import (
    DEFAULT_ABSTRACTION,
    SPOT_USDC_PER_MICRO,
    UNIFIED_MODES,
    Clearinghouse,
)
from protocol.exchange import Exchange
from protocol.fixed import USD_SCALE
from protocol.transfers import normalize_address

MODES = ("disabled", "unifiedAccount", "portfolioMargin")
AGENT_CODES = {"i": "disabled", "u": "unifiedAccount", "p": "portfolioMargin"}
PORTFOLIO_MARGIN_MIN_VALUE = 10_000 * USD_SCALE

ERR_MODE = "Invalid abstraction."
ERR_USER = "User is neither the signer nor one of its sub-accounts."
ERR_OPEN = "Cannot change account mode with open positions, orders or borrows."
ERR_PM_VALUE = "Portfolio margin requires account value of $10000 or total volume of $5000000."
ERR_AGENT_FROM_DEFAULT = "An agent can only set the account mode from default."


def set_abstraction(
    exchange: Exchange, signer: str, action: UserSetAbstractionAction | AgentSetAbstractionAction
) -> ActionResponse:
    clearinghouse = exchange.clearinghouse
    if isinstance(action, AgentSetAbstractionAction):
        user = signer
        mode = AGENT_CODES.get(action.abstraction)
    else:
        target = normalize_address(action.user)
        if target is None or (target != signer and clearinghouse.master_of(target) != signer):
            return ErrorResponse(ERR_USER)
        user = target
        mode = action.abstraction if action.abstraction in MODES else None
    if mode is None:
        return ErrorResponse(ERR_MODE)
    account = clearinghouse.accounts.get(user)
    current = DEFAULT_ABSTRACTION if account is None else account.abstraction
    if isinstance(action, AgentSetAbstractionAction) and current != DEFAULT_ABSTRACTION:
        return ErrorResponse(ERR_AGENT_FROM_DEFAULT)
    if mode == current:
        return DefaultResponse()
    lending = clearinghouse.lending
    if account is not None and (
        any(p.szi for p in account.positions.values())
        or exchange.user_orders.get(user)
        or (lending is not None and any(lending.user_borrow(user, t) for t in lending.reserves))
    ):
        return ErrorResponse(ERR_OPEN)
    if mode == "portfolioMargin" and (
        account is None or total_value(clearinghouse, user) < PORTFOLIO_MARGIN_MIN_VALUE
    ):
        return ErrorResponse(ERR_PM_VALUE)
    account = clearinghouse.account(user)
    if current == "portfolioMargin" and lending is not None:
        # Leaving portfolio margin ends the automatic supply: the USDC comes back to spot.
        token = clearinghouse.usdc_token
        if lending.user_supply(user, token):
            given = lending.withdraw_supply(user, token, None)
            if isinstance(given, int):
                account.spot_total[token] = account.spot_total.get(token, 0) + given
    account.abstraction = mode
    if mode in UNIFIED_MODES and account.usd > 0:
        token = clearinghouse.usdc_token
        account.spot_total[token] = (
            account.spot_total.get(token, 0) + account.usd * SPOT_USDC_PER_MICRO
        )
        account.usd = 0
    return DefaultResponse()


def total_value(clearinghouse: Clearinghouse, user: str) -> int:
    """Perp account value plus spot USDC, micro-USDC (other spot tokens are not valued)."""
    account = clearinghouse.accounts[user]
    spot_usdc = account.spot_total.get(clearinghouse.usdc_token, 0) // SPOT_USDC_PER_MICRO
    return clearinghouse.perp_value(account) + spot_usdc


def abstraction_of(clearinghouse: Clearinghouse, user: str) -> str:
    """What `userAbstraction` answers: the mode, "default" when never set."""
    account = clearinghouse.accounts.get(user)
    return DEFAULT_ABSTRACTION if account is None else account.abstraction
