"""Leverage and isolated margin: `updateLeverage` and `updateIsolatedMargin`.

Invariants:
- Leverage is an integer in [1, max leverage of the tier the position's notional is in].
- The margin mode of an asset does not change while a position in it is open.
- Lowering cross leverage never leaves the cross account short of initial margin; lowering
  isolated leverage needs the isolated margin to cover the new initial margin.
- Isolated margin moves only between the account's cross cash and the position's cash leg:
  adding draws on what the cross account could withdraw; removing must leave the isolated
  position its transfer margin, max(IM, 10% of notional).
- A refused action changes nothing.

Error strings here are this devnet's own (Hyperliquid does not document them).
"""

from __future__ import annotations

from protocol.actions import (
    ActionResponse,
    DefaultResponse,
    ErrorResponse,
    UpdateIsolatedMarginAction,
    UpdateLeverageAction,
)
from protocol.clearinghouse import Account, Clearinghouse, Leverage
from protocol.margin import initial_margin, max_leverage_at, transfer_margin_required

ERR_INVALID_LEVERAGE = "Invalid leverage value."
ERR_UNKNOWN_ASSET = "Unknown asset."
ERR_SWITCH_WITH_POSITION = "Cannot switch margin mode with an open position."
ERR_ONLY_ISOLATED = "Cross margin is not allowed for this asset."
ERR_LEVERAGE_MARGIN = "Insufficient margin to update leverage."
ERR_NO_ISOLATED_POSITION = "No isolated position to update margin for."
ERR_ISOLATED_MARGIN = "Insufficient margin to update isolated margin."
ERR_ZERO_AMOUNT = "Amount must be nonzero."


def update_leverage(
    clearinghouse: Clearinghouse, user: str, action: UpdateLeverageAction
) -> ActionResponse:
    markets = clearinghouse.markets
    if not 0 <= action.asset < len(markets.perps):
        return ErrorResponse(ERR_UNKNOWN_ASSET)
    perp = markets.perps[action.asset]
    # Refusals must not create the account: work on a scratch one until the change sticks.
    account = clearinghouse.accounts.get(user) or Account(user)
    position = account.positions.get(action.asset)
    szi = 0 if position is None else position.szi
    table = markets.margin_table(perp.margin_table_id)
    notional = abs(szi) * clearinghouse.mark(action.asset)
    if not 1 <= action.leverage <= min(perp.max_leverage, max_leverage_at(table, notional)):
        return ErrorResponse(ERR_INVALID_LEVERAGE)
    if action.is_cross and perp.only_isolated:
        return ErrorResponse(ERR_ONLY_ISOLATED)
    current = clearinghouse.leverage_of(account, action.asset)
    if szi and current.is_cross != action.is_cross:
        return ErrorResponse(ERR_SWITCH_WITH_POSITION)
    before = clearinghouse.cross_available(account)
    stored = account.leverage.get(action.asset)
    clearinghouse.set_leverage(account, action.asset, Leverage(action.is_cross, action.leverage))
    after = clearinghouse.cross_available(account)
    # Positions and resting orders are margined at the new leverage: refuse a change that
    # leaves the cross account (or the isolated position) short where it was not before.
    short_cross = after < 0 and after < before
    short_isolated = (
        position is not None
        and szi != 0
        and not action.is_cross
        and clearinghouse.isolated_value(action.asset, position)
        < initial_margin(notional, action.leverage)
        and action.leverage < current.value
    )
    if short_cross or short_isolated:
        clearinghouse.set_leverage(account, action.asset, stored)
        return ErrorResponse(ERR_LEVERAGE_MARGIN)
    clearinghouse.accounts.setdefault(user, account)
    return DefaultResponse()


def update_isolated_margin(
    clearinghouse: Clearinghouse, user: str, action: UpdateIsolatedMarginAction
) -> ActionResponse:
    markets = clearinghouse.markets
    if not 0 <= action.asset < len(markets.perps):
        return ErrorResponse(ERR_UNKNOWN_ASSET)
    account = clearinghouse.accounts.get(user)
    if account is None:
        return ErrorResponse(ERR_NO_ISOLATED_POSITION)
    position = account.positions.get(action.asset)
    leverage = clearinghouse.leverage_of(account, action.asset)
    if position is None or position.szi == 0 or leverage.is_cross:
        return ErrorResponse(ERR_NO_ISOLATED_POSITION)
    amount = action.ntli
    if amount == 0:
        return ErrorResponse(ERR_ZERO_AMOUNT)
    if amount > 0:
        if amount > clearinghouse.withdrawable(account):
            return ErrorResponse(ERR_ISOLATED_MARGIN)
    else:
        mark = clearinghouse.mark(action.asset)
        notional = abs(position.szi) * mark
        required = transfer_margin_required(initial_margin(notional, leverage.value), notional)
        if clearinghouse.isolated_value(action.asset, position) + amount < required:
            return ErrorResponse(ERR_ISOLATED_MARGIN)
    account.usd -= amount
    position.isolated_raw += amount
    return DefaultResponse()
