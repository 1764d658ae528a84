"""Accounts: perp cash and positions (cross and isolated), leverage, margin, spot balances.

Invariants:
- Perp cash is kept as Hyperliquid's raw USD: a buy of size s at price p debits p * s, a sell
  credits it. Cross positions use the account's cross cash (`usd`); an isolated position has
  its own cash leg (`isolated_raw`), funded from cross cash when it opens or grows and returned
  to it when it closes. Account value = cash + sum of szi x mark.
- Every trade moves cash between two accounts with nothing created: fees go to `perp_fees`
  and `spot_fees`. The sum of szi over all accounts is zero for every perp asset.
- Spot: 0 <= hold <= total for every balance; a resting buy holds px * sz of the quote, a
  resting sell holds its size of the base.
- Resting perp orders reserve margin: per asset, the larger of the buy and sell notional
  resting, divided by the asset's leverage (rounded up). Netting the two sides lets a market
  maker quote both sides for the price of one.
- Entry notional and closed pnl are display bookkeeping; no balance depends on them.
- Margin requirements round up (against the account); mark prices come from outside
  (`set_mark`), falling back to the last trade price of the asset.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from protocol.fixed import FEE_SCALE, ceil_div
from protocol.lending import Lending
from protocol.margin import (
    initial_margin,
    maintenance_margin,
    notional_limit,
    transfer_margin_required,
)
from protocol.markets import Market, Markets
from protocol.orders import ERR_PERP_MARGIN

DEFAULT_LEVERAGE = 20
ERR_PERP_MAX_POSITION = "Order would cause position to exceed margin tier limit at current leverage"


class Position:
    __slots__ = (
        "entry_ntl",
        "funding_all_time",
        "funding_since_change",
        "funding_since_open",
        "isolated_raw",
        "szi",
    )

    def __init__(self) -> None:
        self.szi = 0  # signed lots
        self.entry_ntl = 0  # |szi| x entry price, micro-USDC
        self.isolated_raw = 0  # cash leg of an isolated position, micro-USDC
        # Funding paid (+) or received (-), micro-USDC.
        self.funding_all_time = 0
        self.funding_since_open = 0
        self.funding_since_change = 0


class Leverage:
    __slots__ = ("is_cross", "value")

    def __init__(self, is_cross: bool, value: int) -> None:
        self.is_cross = is_cross
        self.value = value


DEFAULT_ABSTRACTION = "default"  # never set; behaves as "disabled"
UNIFIED_MODES = frozenset({"unifiedAccount", "portfolioMargin"})
SPOT_USDC_PER_MICRO = 100  # spot USDC wei (8 decimals) per perp micro-USDC (6 decimals)


class Account:
    __slots__ = (
        "abstraction",
        "leverage",
        "order_ntl",
        "owner",
        "positions",
        "reserved",
        "spot_hold",
        "spot_total",
        "usd",
    )

    def __init__(self, owner: str) -> None:
        self.owner = owner  # the address, so rules reading other books can find the account
        self.abstraction = DEFAULT_ABSTRACTION
        self.usd = 0  # cross raw USD, micro-USDC
        self.positions: dict[int, Position] = {}
        self.leverage: dict[int, Leverage] = {}
        self.order_ntl: dict[int, list[int]] = {}  # asset -> [buy, sell] resting notional
        # `Clearinghouse.orders_reserved` of this account, kept as orders rest and leave and as
        # leverage changes: every order's margin check reads it.
        self.reserved = 0
        self.spot_total: dict[int, int] = {}
        self.spot_hold: dict[int, int] = {}

    def spot_available(self, token: int) -> int:
        return self.spot_total.get(token, 0) - self.spot_hold.get(token, 0)

    def szi(self, asset: int) -> int:
        position = self.positions.get(asset)
        return 0 if position is None else position.szi


class PortfolioHooks(Protocol):
    """What the margin rules ask of portfolio margin (protocol/portfolio_margin.py)."""

    def headroom(self, account: Account) -> int:
        """Micro-USDC the account could still borrow against its collateral."""
        ...

    def debt(self, account: Account) -> int:
        """The account's USDC debt in micro-USDC, rounded up (against the account)."""
        ...

    def draw_usdc(self, account: Account, needed: int) -> None:
        """Make `needed` wei of spot USDC spendable: from supply, perp cash, then a borrow."""
        ...


class SubAccount(msgspec.Struct, frozen=True):
    address: str
    master: str
    name: str


class Clearinghouse:
    __slots__ = (
        "accounts",
        "default_leverage",
        "last_trade",
        "lending",
        "markets",
        "marks",
        "notional_limits",
        "oracle_px",
        "perp_fees",
        "portfolio",
        "spot_fees",
        "sub_accounts",
        "tables",
        "usdc_token",
        "withdraw_fees",
        "withdrawn",
    )

    def __init__(self, markets: Markets) -> None:
        self.markets = markets
        self.accounts: dict[str, Account] = {}
        self.perp_fees = 0
        self.spot_fees: dict[int, int] = {}
        self.marks: dict[int, int] = {}
        self.oracle_px: dict[int, int] = {}  # perp oracle prices, as the block driver sets them
        self.last_trade: dict[int, int] = {}  # perp and spot assets
        self.sub_accounts: dict[str, SubAccount] = {}  # by sub-account address
        self.lending: Lending | None = None  # the reserves, when the chain has them
        self.portfolio: PortfolioHooks | None = None  # portfolio margin, when the chain has it
        self.withdrawn = 0  # micro-USDC that left the chain
        self.withdraw_fees = 0
        usdc = markets.token_by_name("USDC")
        self.usdc_token = -1 if usdc is None else usdc.index
        self.tables = {p.asset: markets.margin_table(p.margin_table_id) for p in markets.perps}
        # (asset, leverage) -> notional_limit(table, leverage): a cache of a pure function.
        self.notional_limits: dict[tuple[int, int], int | None] = {}
        self.default_leverage = {
            p.asset: Leverage(not p.only_isolated, min(DEFAULT_LEVERAGE, p.max_leverage))
            for p in markets.perps
        }

    def master_of(self, address: str) -> str | None:
        sub = self.sub_accounts.get(address)
        return None if sub is None else sub.master

    def sub_accounts_of(self, master: str) -> list[SubAccount]:
        """The master's sub-accounts in creation order."""
        return [s for s in self.sub_accounts.values() if s.master == master]

    def account(self, user: str) -> Account:
        account = self.accounts.get(user)
        if account is None:
            account = self.accounts[user] = Account(user)
        return account

    # Prices.

    def set_mark(self, asset: int, px: int) -> None:
        self.marks[asset] = px

    def mark(self, asset: int) -> int:
        px = self.marks.get(asset)
        return px if px is not None else self.last_trade.get(asset, 0)

    # Margin state of an account.

    def leverage_of(self, account: Account, asset: int) -> Leverage:
        """The account's setting, or the default. Reading never stores the default, so
        queries cannot change the state."""
        setting = account.leverage.get(asset)
        return self.default_leverage[asset] if setting is None else setting

    def unified_usdc(self, account: Account) -> int:
        """In the unified modes, spot USDC backs perps too: its free part (total less holds) in
        micro-USDC, rounded down. Zero for standard accounts."""
        if account.abstraction not in UNIFIED_MODES:
            return 0
        token = self.usdc_token
        free = account.spot_total.get(token, 0) - account.spot_hold.get(token, 0)
        if self.lending is not None and account.abstraction == "portfolioMargin":
            # Supplied USDC still backs the portfolio. Borrowed USDC counts as held: the debt
            # is netted in the borrow headroom (capacity - debt), so a borrow moves margin from
            # headroom to cash without changing the total.
            free += self.lending.user_supply(account.owner, token)
        return free // SPOT_USDC_PER_MICRO

    def cross_value(self, account: Account) -> int:
        """Cross account value: cross cash (with free spot USDC in the unified modes) plus the
        marked value of cross positions."""
        value = account.usd + self.unified_usdc(account)
        for asset, position in account.positions.items():
            if position.szi and self.leverage_of(account, asset).is_cross:
                value += position.szi * self.mark(asset)
        return value

    def isolated_value(self, asset: int, position: Position) -> int:
        return position.isolated_raw + position.szi * self.mark(asset)

    def account_value(self, account: Account) -> int:
        value = self.cross_value(account)
        for asset, position in account.positions.items():
            if position.szi and not self.leverage_of(account, asset).is_cross:
                value += self.isolated_value(asset, position)
        return value

    def perp_value(self, account: Account) -> int:
        """The perp side of an account, micro-USDC: cash, marked positions and isolated margin.
        In the unified modes `account_value` counts free spot USDC as cross cash; this leaves it
        out, so callers that add the spot balances do not count it twice."""
        return self.account_value(account) - self.unified_usdc(account)

    def position_margin(self, account: Account, asset: int, szi: int) -> int:
        """Initial margin of a position of size szi at the mark and the account's leverage."""
        return initial_margin(abs(szi) * self.mark(asset), self.leverage_of(account, asset).value)

    def cross_margin_used(self, account: Account) -> int:
        used = 0
        for asset, position in account.positions.items():
            if position.szi and self.leverage_of(account, asset).is_cross:
                used += self.position_margin(account, asset, position.szi)
        return used

    def order_reserve(self, account: Account, asset: int, buy_ntl: int, sell_ntl: int) -> int:
        return ceil_div(max(buy_ntl, sell_ntl), self.leverage_of(account, asset).value)

    def set_leverage(self, account: Account, asset: int, leverage: Leverage | None) -> None:
        """Set the account's leverage on `asset` (None: back to the default); the resting
        orders' reserve follows it."""
        if leverage is None:
            account.leverage.pop(asset, None)
        else:
            account.leverage[asset] = leverage
        account.reserved = self.orders_reserved(account)

    def orders_reserved(self, account: Account) -> int:
        return sum(
            self.order_reserve(account, asset, buy, sell)
            for asset, (buy, sell) in account.order_ntl.items()
        )

    def cross_available(self, account: Account, headroom: int | None = None) -> int:
        """What new margin can draw on: cross value less cross margin and order reserves
        (`account.reserved`). One pass with local lookups: the order path calls this for
        every order. `headroom`: the portfolio-margin borrow headroom, when the caller has
        it already."""
        value = account.usd
        if account.abstraction in UNIFIED_MODES:
            value += self.unified_usdc(account)
            if account.abstraction == "portfolioMargin" and self.portfolio is not None:
                # A shortfall is borrowed automatically against collateral.
                value += self.portfolio.headroom(account) if headroom is None else headroom
        used = 0
        settings = account.leverage
        defaults = self.default_leverage
        marks = self.marks
        for asset, position in account.positions.items():
            szi = position.szi
            if szi:
                setting = settings.get(asset) or defaults[asset]
                if setting.is_cross:
                    mark = marks.get(asset)
                    if mark is None:
                        mark = self.last_trade.get(asset, 0)
                    value += szi * mark
                    # Margins round up, against the account.
                    used += -(-(szi if szi > 0 else -szi) * mark // setting.value)
        return value - used - account.reserved

    def max_trade_sizes(self, account: Account, asset: int) -> tuple[int, int]:
        """(buy, sell) sizes the account could trade on perp `asset` now, as the API's
        `maxTradeSzs` shows them: the free cross margin times the asset's leverage at the mark,
        rounded down, plus the position on the side that reduces it. Margin tiers are not
        applied."""
        mark = self.mark(asset)
        if not mark:
            return 0, 0
        leverage = self.leverage_of(account, asset).value
        opening = max(0, self.cross_available(account)) * leverage // mark
        szi = account.szi(asset)
        return opening + max(-szi, 0), opening + max(szi, 0)

    def withdrawable(self, account: Account) -> int:
        """What may leave the cross account: its value less the transfer margin,
        max(IM of cross positions and order reserves, 10% of cross notional)."""
        notional = 0
        for asset, position in account.positions.items():
            if position.szi and self.leverage_of(account, asset).is_cross:
                notional += abs(position.szi) * self.mark(asset)
        required = transfer_margin_required(
            self.cross_margin_used(account) + account.reserved, notional
        )
        value = self.cross_value(account)
        if account.abstraction == "portfolioMargin" and self.portfolio is not None:
            # Borrowed USDC counts as held for trading, but may not leave.
            value -= self.portfolio.debt(account)
        return max(0, value - required)

    def cross_maintenance(self, account: Account) -> int:
        mm = 0
        for asset, position in account.positions.items():
            if position.szi and self.leverage_of(account, asset).is_cross:
                mm += self.maintenance_of(asset, position.szi)
        return mm

    def maintenance_of(self, asset: int, szi: int) -> int:
        return maintenance_margin(self.tables[asset], abs(szi) * self.mark(asset))

    # The collateral seam used by the exchange.

    def within_tier(self, asset: int, leverage: int, notional: int) -> bool:
        """Whether a position of this notional may be held at this leverage."""
        limit = self.notional_limits.get((asset, leverage), -1)
        if limit == -1:
            limit = self.notional_limits[(asset, leverage)] = notional_limit(
                self.tables[asset], leverage
            )
        return limit is None or notional < limit

    def order_margin_error(
        self, account: Account, market: Market, is_buy: bool, px: int, sz: int
    ) -> str | None:
        """A new perp order: refused when its extra reserve exceeds the free cross margin, or
        when the position it could build exceeds the tier allowed at the current leverage.
        An order that can only reduce the position is always allowed."""
        asset = market.asset
        position = account.positions.get(asset)
        szi = 0 if position is None else position.szi
        if (szi < 0 and is_buy and sz <= -szi) or (szi > 0 and not is_buy and sz <= szi):
            return None
        leverage = (account.leverage.get(asset) or self.default_leverage[asset]).value
        grown = szi + sz if is_buy else szi - sz
        if not self.within_tier(asset, leverage, abs(grown) * px):
            return ERR_PERP_MAX_POSITION
        sides = account.order_ntl.get(asset)
        buy, sell = (0, 0) if sides is None else sides
        # Reserves round up: ceil(max(buy, sell) / leverage) before and after the order.
        before = -(-max(buy, sell) // leverage)
        after = -(-(max(buy + px * sz, sell) if is_buy else max(buy, sell + px * sz)) // leverage)
        if after - before > self.cross_available(account):
            return ERR_PERP_MARGIN
        return None

    def resting_fill_allowed(
        self, account: Account, market: Market, is_buy: bool, px: int, sz: int
    ) -> bool:
        """The resting side's re-check at a fill that grows its position: the margin of the
        grown position must fit in the free cross margin plus the reserve the fill releases."""
        asset = market.asset
        leverage = (account.leverage.get(asset) or self.default_leverage[asset]).value
        szi = account.szi(asset)
        if not self.within_tier(asset, leverage, abs(szi + sz if is_buy else szi - sz) * px):
            return False  # leverage was raised while the order rested
        buy, sell = account.order_ntl.get(asset, (0, 0))
        before = -(-max(buy, sell) // leverage)
        left = max(buy - px * sz, sell) if is_buy else max(buy, sell - px * sz)
        released = before - -(-left // leverage)
        needed = -(-sz * self.mark(asset) // leverage)
        return needed - released <= self.cross_available(account)

    def spot_available(self, account: Account, token: int) -> int:
        """What a spot order may spend of `token`. In the unified modes USDC is one balance
        for spot and perps: besides free spot USDC, the order may draw on positive perp cash,
        and in portfolio margin on the USDC supply and the borrow headroom; all of it within
        the free cross margin, since what the order spends no longer backs the perps."""
        free = account.spot_available(token)
        if token != self.usdc_token or account.abstraction not in UNIFIED_MODES:
            return free
        sources = free + max(account.usd, 0) * SPOT_USDC_PER_MICRO
        headroom = None
        if account.abstraction == "portfolioMargin":
            if self.lending is not None:
                sources += self.lending.user_supply(account.owner, token)
            if self.portfolio is not None:
                headroom = self.portfolio.headroom(account)
                sources += headroom * SPOT_USDC_PER_MICRO
        margin = self.cross_available(account, headroom) * SPOT_USDC_PER_MICRO
        return max(0, min(sources, margin))

    def transferable_spot(self, account: Account, token: int) -> int:
        """What may leave the account's spot balance of `token` by a transfer: the free part
        less what it has borrowed of that token (borrowed funds stay in the portfolio)."""
        free = account.spot_available(token)
        if self.lending is not None:
            free -= self.lending.user_borrow(account.owner, token)
        if token == self.usdc_token and account.abstraction in UNIFIED_MODES:
            # The same USDC backs the perps: what leaves must leave their margin intact.
            free = min(free, self.withdrawable(account) * SPOT_USDC_PER_MICRO)
        return max(free, 0)

    def draw_spot_usdc(self, account: Account, needed: int) -> None:
        """Before a unified account spends `needed` wei of spot USDC, move any shortfall from
        its perp cash (rounded up to whole micro-USDC); `spot_available` said it fits."""
        if account.abstraction == "portfolioMargin" and self.portfolio is not None:
            self.portfolio.draw_usdc(account, needed)
            return
        short = needed - account.spot_available(self.usdc_token)
        if short > 0 and account.abstraction in UNIFIED_MODES:
            micro = -(-short // SPOT_USDC_PER_MICRO)
            account.usd -= micro
            token = self.usdc_token
            account.spot_total[token] = (
                account.spot_total.get(token, 0) + micro * SPOT_USDC_PER_MICRO
            )

    def reserve_order(
        self, account: Account, market: Market, is_buy: bool, px: int, sz: int
    ) -> None:
        """An order starts resting: hold its spot payment, or reserve perp margin."""
        if market.is_spot:
            token = market.quote_token if is_buy else market.base_token
            amount = px * sz if is_buy else sz * market.base_wei_per_lot
            account.spot_hold[token] = account.spot_hold.get(token, 0) + amount
            return
        self._add_order_notional(account, market.asset, is_buy, px * sz)

    def release_order(
        self, account: Account, market: Market, is_buy: bool, px: int, sz: int
    ) -> None:
        """`sz` of a resting order stops resting (cancelled, or filled as maker)."""
        if market.is_spot:
            token = market.quote_token if is_buy else market.base_token
            account.spot_hold[token] -= px * sz if is_buy else sz * market.base_wei_per_lot
            return
        self._add_order_notional(account, market.asset, is_buy, -px * sz)

    def _add_order_notional(self, account: Account, asset: int, is_buy: bool, ntl: int) -> None:
        """Move a side's resting notional on `asset`, and `account.reserved` with it; a side
        pair back at zero is dropped."""
        sides = account.order_ntl.get(asset)
        if sides is None:
            sides = account.order_ntl[asset] = [0, 0]
        leverage = (account.leverage.get(asset) or self.default_leverage[asset]).value
        before = -(-max(sides) // leverage)  # reserves round up, against the account
        sides[0 if is_buy else 1] += ntl
        account.reserved += -(-max(sides) // leverage) - before
        if sides[0] == 0 and sides[1] == 0:
            del account.order_ntl[asset]

    # Funding from outside (genesis, devnet control).

    def credit_usd(self, user: str, amount: int) -> None:
        self.account(user).usd += amount

    def credit_spot(self, user: str, token: int, amount: int) -> None:
        account = self.account(user)
        account.spot_total[token] = account.spot_total.get(token, 0) + amount

    # Trades.

    def apply_perp_fill(
        self, account: Account, asset: int, is_buy: bool, px: int, sz: int, fee_rate: int
    ) -> tuple[int, str, int, int]:
        """Move cash and position for one side of a perp trade. Returns the fill record's
        (start position, direction, closed pnl, fee)."""
        self.last_trade[asset] = px
        position = account.positions.get(asset)
        if position is None:
            position = account.positions[asset] = Position()
        leverage = account.leverage.get(asset) or self.default_leverage[asset]
        notional = px * sz
        fee = -(-notional * fee_rate // FEE_SCALE)  # rounded up: the payer's debit
        self.perp_fees += fee
        cash = -notional - fee if is_buy else notional - fee
        start = position.szi
        end = start + sz if is_buy else start - sz
        closed_pnl = 0
        if start == 0 or (start > 0) == is_buy:
            position.entry_ntl += notional
            direction = "Open Long" if is_buy else "Open Short"
            opened = sz
        else:
            held = abs(start)
            closed = min(sz, held)
            # Entry cost of the closed part, rounded down; the remainder stays on the rest.
            closed_cost = position.entry_ntl * closed // held
            closed_pnl = px * closed - closed_cost if start > 0 else closed_cost - px * closed
            position.entry_ntl -= closed_cost
            opened = sz - closed
            if opened:
                position.entry_ntl = px * opened
                direction = "Short > Long" if is_buy else "Long > Short"
            else:
                direction = "Close Short" if is_buy else "Close Long"
        if start == 0 or (opened and (start > 0) != is_buy):
            position.funding_since_open = 0  # a new position (or the new side of a flip)
        if leverage.is_cross:
            account.usd += cash
        else:
            flipped = start != 0 and end != 0 and (end > 0) != (start > 0)
            # The cash of the new side of a flip belongs to the new position's leg.
            open_cash = (-px * opened if is_buy else px * opened) if flipped else 0
            position.isolated_raw += cash - open_cash
            if end == 0 or flipped:
                # The old position closed: its isolated cash returns to cross.
                account.usd += position.isolated_raw
                position.isolated_raw = open_cash
            if opened:
                margin = initial_margin(px * opened, leverage.value)
                account.usd -= margin
                position.isolated_raw += margin
        position.szi = end
        if end == 0:
            position.funding_since_open = 0
        return start, direction, closed_pnl, fee

    def apply_spot_fill(
        self,
        account: Account,
        market: Market,
        is_buy: bool,
        px: int,
        sz: int,
        fee_rate: int,
        held: bool,
    ) -> tuple[int, int]:
        """Move base and quote for one side of a spot trade; `held` when the amount paid was on
        hold (a resting order). Returns (start base balance, fee)."""
        self.last_trade[market.asset] = px
        base, quote = market.base_token, market.quote_token
        base_wei = sz * market.base_wei_per_lot
        quote_wei = px * sz
        totals = account.spot_total
        start = totals.get(base, 0)
        if is_buy:
            fee = ceil_div(base_wei * fee_rate, FEE_SCALE)
            totals[quote] -= quote_wei
            if held:
                account.spot_hold[quote] -= quote_wei
            totals[base] = start + base_wei - fee
            self.spot_fees[base] = self.spot_fees.get(base, 0) + fee
        else:
            fee = ceil_div(quote_wei * fee_rate, FEE_SCALE)
            totals[base] = start - base_wei
            if held:
                account.spot_hold[base] -= base_wei
            totals[quote] = totals.get(quote, 0) + quote_wei - fee
            self.spot_fees[quote] = self.spot_fees.get(quote, 0) + fee
        return start, fee

    def _check(self) -> None:
        net: dict[int, int] = {}
        for user, account in self.accounts.items():
            for asset, position in account.positions.items():
                net[asset] = net.get(asset, 0) + position.szi
                assert position.entry_ntl >= 0, f"{user}: negative entry notional on {asset}"
                assert position.szi != 0 or position.entry_ntl == 0, f"{user}: flat with entry"
                assert position.szi != 0 or position.isolated_raw == 0, f"{user}: flat, iso cash"
            for token, hold in account.spot_hold.items():
                total = account.spot_total.get(token, 0)
                assert 0 <= hold <= total, f"{user}: hold {hold} outside [0, {total}] of {token}"
            for asset, (buy, sell) in account.order_ntl.items():
                assert buy >= 0 and sell >= 0 and (buy or sell), f"{user}: reserve on {asset}"
            reserved = self.orders_reserved(account)
            assert account.reserved == reserved, f"{user}: reserve {account.reserved} != {reserved}"
        assert all(v == 0 for v in net.values()), f"positions do not net to zero: {net}"
