"""Portfolio margin on the chain: auto-borrow, auto-repay, idle supply, and the liquidation of
portfolio-margin accounts. The formulas are protocol/portfolio.py's; this module applies them
to accounts, the lending reserves and the books.

Invariants:
- Only USDC is borrowed automatically (the borrowable token of the default config); collateral
  is every token whose reserve has a positive LTV, counted as spot balance plus supply, capped
  by the user's supply cap, priced at the borrow oracle price.
- Tokens move only between an account's spot balance and a reserve, by the wei the reserve
  reports, or to the PM liquidator in a takeover: nothing is created.
- An account's USDC "own funds" are its perp cash, the marked value of its cross positions, and
  its spot USDC plus USDC supply less USDC debt. At the end of each block (`settle`), a PM
  account whose own funds fall short of the initial margin of its positions and orders borrows
  the shortfall, as far as its collateral (LTV) and the caps allow: beyond that it falls back to
  standard behaviour (the excess is not borrowed). One whose own funds exceed that margin repays
  debt from free spot USDC, then supplies its free spot USDC: idle balances earn interest.
- Orders see the remaining borrow headroom as margin (`headroom`); a spot buy that needs USDC
  takes it from supply, then perp cash, then borrows it (`draw_usdc`).
- Liquidation (Hyperliquid leaves the order open; this is the devnet's): when the portfolio
  margin ratio is above 0.95, the account's orders are cancelled and its perps closed through
  the book (as a standard market liquidation), then, while it stays liquidatable, the PM
  liquidator (0xbbbb...bbbb) takes over a fifth of the collateral and of the USDC debt the
  account had at a time, at most five steps (so all of it at the end). The liquidator repays
  the debt it takes over from its own USDC, so it must be funded (genesis).
- An account is liquidatable when its ratio is above 0.95, or when, its borrowing exhausted,
  the USDC it holds (borrow included) is below its perps' maintenance margin.
"""

from __future__ import annotations

from protocol.borrow_lend import collateral_of
from protocol.clearinghouse import SPOT_USDC_PER_MICRO, Account, Clearinghouse
from protocol.exchange import Exchange, LiquidationInfo, slippage_price
from protocol.ledger import LedgerUpdate, LiquidatedPosition, Liquidation
from protocol.lending import Lending
from protocol.orders import LIQUIDATED_CANCELED
from protocol.portfolio import (
    is_liquidatable,
    max_borrow,
    portfolio_liquidation_value,
    portfolio_maintenance_requirement,
)

PM_LIQUIDATOR = "0x" + "b" * 40
TAKEOVER_PERCENT = 20
TAKEOVER_STEPS = 100 // TAKEOVER_PERCENT
PORTFOLIO_MARGIN = "portfolioMargin"


class PortfolioMargin:
    def __init__(self, exchange: Exchange, lending: Lending) -> None:
        self.exchange = exchange
        self.clearinghouse: Clearinghouse = exchange.clearinghouse
        self.lending = lending
        self.usdc = self.clearinghouse.usdc_token

    # What an account holds.

    def debt(self, account: Account) -> int:
        """USDC debt in micro-USDC, rounded up."""
        return -(-self.lending.user_borrow(account.owner, self.usdc) // SPOT_USDC_PER_MICRO)

    def borrow_cap(self) -> int | None:
        reserve = self.lending.reserves.get(self.usdc)
        cap = None if reserve is None else reserve.params.user_borrow_cap
        return None if cap is None else cap // SPOT_USDC_PER_MICRO

    def own_funds(self, account: Account) -> int:
        """Perp cash + marked cross positions + spot USDC + USDC supply - USDC debt, micro."""
        clearinghouse = self.clearinghouse
        usdc_wei = (
            account.spot_total.get(self.usdc, 0)
            + self.lending.user_supply(account.owner, self.usdc)
            - self.lending.user_borrow(account.owner, self.usdc)
        )
        value = account.usd + usdc_wei // SPOT_USDC_PER_MICRO
        for asset, position in account.positions.items():
            if position.szi and clearinghouse.leverage_of(account, asset).is_cross:
                value += position.szi * clearinghouse.mark(asset)
        return value

    def needed(self, account: Account) -> int:
        """Initial margin of cross positions and order reserves, plus USDC held by spot orders."""
        clearinghouse = self.clearinghouse
        held = -(-account.spot_hold.get(self.usdc, 0) // SPOT_USDC_PER_MICRO)
        return clearinghouse.cross_margin_used(account) + account.reserved + held

    # The hooks the margin rules call.

    def headroom(self, account: Account) -> int:
        """What the account could still borrow: min(collateral x LTV, user cap) - debt."""
        capacity = max_borrow(collateral_of(self.clearinghouse, self.lending, account))
        cap = self.borrow_cap()
        if cap is not None:
            capacity = min(capacity, cap)
        reserve = self.lending.reserves.get(self.usdc)
        liquidity = 0 if reserve is None else reserve.available() // SPOT_USDC_PER_MICRO
        return max(0, min(capacity - self.debt(account), liquidity))

    def draw_usdc(self, account: Account, needed: int) -> None:
        short = needed - account.spot_available(self.usdc)
        if short <= 0:
            return
        supplied = self.lending.user_supply(account.owner, self.usdc)
        if supplied:
            given = self.lending.withdraw_supply(account.owner, self.usdc, min(short, supplied))
            if isinstance(given, int):
                self._credit(account, given)
                short -= given
        if short > 0 and account.usd > 0:
            micro = min(-(-short // SPOT_USDC_PER_MICRO), account.usd)
            account.usd -= micro
            self._credit(account, micro * SPOT_USDC_PER_MICRO)
            short -= micro * SPOT_USDC_PER_MICRO
        if short > 0:
            given = self.lending.borrow(account.owner, self.usdc, short)
            if isinstance(given, int):
                self._credit(account, given)

    def _credit(self, account: Account, wei: int) -> None:
        account.spot_total[self.usdc] = account.spot_total.get(self.usdc, 0) + wei

    # End of block.

    def settle(self) -> None:
        """Borrow shortfalls, repay with surpluses, supply idle USDC; accounts in address
        order."""
        for user in sorted(self.clearinghouse.accounts):
            account = self.clearinghouse.accounts[user]
            if account.abstraction == PORTFOLIO_MARGIN:
                self._settle(account)

    def _settle(self, account: Account) -> None:
        """Move the debt to its target, min(capacity, max(0, margin needed - own funds)), then
        supply what is left idle. Amounts in wei, so a debt's last wei of interest is repaid
        too (a dust debt would otherwise block the idle supply)."""
        user, usdc, lending = account.owner, self.usdc, self.lending
        debt = self.debt(account)
        target = min(
            max(0, self.needed(account) - self.own_funds(account)), debt + self.headroom(account)
        )
        debt_wei = lending.user_borrow(user, usdc)
        target_wei = target * SPOT_USDC_PER_MICRO
        if target_wei > debt_wei:
            given = lending.borrow(user, usdc, target_wei - debt_wei)
            if isinstance(given, int):
                self._credit(account, given)
            return
        if target_wei < debt_wei:
            excess = debt_wei - target_wei
            short = excess - account.spot_available(usdc)
            supplied = lending.user_supply(user, usdc)
            if short > 0 and supplied:
                given = lending.withdraw_supply(user, usdc, min(short, supplied))
                if isinstance(given, int):
                    self._credit(account, given)
            amount = min(excess, account.spot_available(usdc))
            if amount > 0:
                taken = lending.repay(user, usdc, None if amount >= debt_wei else amount)
                if isinstance(taken, int):
                    account.spot_total[usdc] -= taken
        free = account.spot_available(usdc)
        if free > 0 and lending.user_borrow(user, usdc) == 0:
            taken = lending.supply(user, usdc, free)
            if isinstance(taken, int):
                account.spot_total[usdc] -= taken

    # Liquidation.

    def margin_state(self, account: Account) -> tuple[int, int]:
        """(maintenance requirement, liquidation value), micro-USDC."""
        requirement = portfolio_maintenance_requirement(
            self.clearinghouse.cross_maintenance(account), self.debt(account)
        )
        usdc_balance = self.own_funds(account) + self.debt(account)
        value = portfolio_liquidation_value(
            usdc_balance, collateral_of(self.clearinghouse, self.lending, account), None
        )
        return requirement, value

    def liquidate(self, time: int) -> list[LedgerUpdate]:
        updates: list[LedgerUpdate] = []
        for user in sorted(self.clearinghouse.accounts):
            account = self.clearinghouse.accounts[user]
            if account.abstraction != PORTFOLIO_MARGIN or user == PM_LIQUIDATOR:
                continue
            if self.liquidatable(account):
                updates.append(self._liquidate(account, self.margin_state(account)[1], time))
        return updates

    def liquidatable(self, account: Account) -> bool:
        """Ratio above 0.95, or (borrowing exhausted) the USDC held, borrow included, below the
        perps' maintenance margin: the account is back to standard rules and fails them."""
        requirement, value = self.margin_state(account)
        if requirement and is_liquidatable(requirement, value):
            return True
        gross = self.own_funds(account) + self.debt(account)
        return gross < self.clearinghouse.cross_maintenance(account)

    def _liquidate(self, account: Account, value: int, time: int) -> LedgerUpdate:
        clearinghouse = self.clearinghouse
        markets = clearinghouse.markets
        before = tuple(
            LiquidatedPosition(markets.perps[asset].name, position.szi)
            for asset, position in sorted(account.positions.items())
            if position.szi
        )
        self.exchange.cancel_all(account.owner, LIQUIDATED_CANCELED, time)
        for asset, position in sorted(account.positions.items()):
            if position.szi:
                mark = clearinghouse.mark(asset)
                px = slippage_price(mark, position.szi < 0, markets.by_asset[asset])
                info = LiquidationInfo(account.owner, mark, "market")
                self.exchange.close_at_market(
                    account.owner, asset, abs(position.szi), px, time, info
                )
        for step in range(1, TAKEOVER_STEPS + 1):
            if not self.liquidatable(account):
                break
            # Each step takes a fifth of what the account had: 1/5, 1/4, ..., 1/1 of what is left.
            self._take_over(account, 100 // (TAKEOVER_STEPS + 1 - step))
        if self.own_funds(account) < 0 and not any(p.szi for p in account.positions.values()):
            self._absorb(account)
        return LedgerUpdate(time, (account.owner,), Liquidation(value, "Cross", before))

    def _absorb(self, account: Account) -> None:
        """Nothing left to take and still short: the PM liquidator repays what is owed and
        takes the account's USDC, perp cash included, so the account ends at zero."""
        lending, usdc = self.lending, self.usdc
        liquidator = self.clearinghouse.account(PM_LIQUIDATOR)
        debt = lending.user_borrow(account.owner, usdc)
        if debt:
            taken = lending.repay(account.owner, usdc, None)
            if isinstance(taken, int):
                liquidator.spot_total[usdc] = liquidator.spot_total.get(usdc, 0) - taken
        supplied = lending.user_supply(account.owner, usdc)
        if supplied:
            given = lending.withdraw_supply(account.owner, usdc, None)
            if isinstance(given, int):
                self._credit(account, given)
        # All of it lands in the liquidator's spot USDC (perp cash converted exactly), so the
        # liquidator itself never carries perp debt.
        spot = account.spot_total.get(usdc, 0) + account.usd * SPOT_USDC_PER_MICRO
        account.usd = 0
        account.spot_total[usdc] = 0
        liquidator.spot_total[usdc] = liquidator.spot_total.get(usdc, 0) + spot

    def _take_over(self, account: Account, percent: int) -> None:
        """The PM liquidator repays `percent` of the USDC debt and takes `percent` of every
        collateral token (supply first withdrawn to spot)."""
        lending, usdc = self.lending, self.usdc
        liquidator = self.clearinghouse.account(PM_LIQUIDATOR)
        debt = lending.user_borrow(account.owner, usdc)
        if debt:
            part = -(-debt * percent // 100)  # rounded up: whole debt in five steps
            liquidator.spot_total[usdc] = liquidator.spot_total.get(usdc, 0) - part
            taken = lending.repay(account.owner, usdc, part)
            if isinstance(taken, int):
                liquidator.spot_total[usdc] += part - taken
            else:
                liquidator.spot_total[usdc] += part
        for token_index, reserve in sorted(lending.reserves.items()):
            if not reserve.params.ltv:
                continue
            supplied = reserve.supply_of(account.owner)
            if supplied:
                given = lending.withdraw_supply(account.owner, token_index, None)
                if isinstance(given, int):
                    account.spot_total[token_index] = account.spot_total.get(token_index, 0) + given
            held = account.spot_available(token_index)
            part = held * percent // 100 if percent < 100 else held
            if part > 0:
                account.spot_total[token_index] -= part
                liquidator.spot_total[token_index] = (
                    liquidator.spot_total.get(token_index, 0) + part
                )
