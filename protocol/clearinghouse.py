"""Accounts: perp cash and positions, spot balances and holds, and the collateral seam.

Invariants:
- Perp cash is kept as Hyperliquid's raw USD: a buy of size s at price p debits p * s, a sell
  credits it, so the account value is raw USD + sum of szi * price, and every trade moves cash
  between two accounts with nothing created (fees go to `perp_fees`).
- The sum of szi over all accounts is zero for every perp asset.
- Spot: 0 <= hold <= total for every balance; a resting buy holds px * sz of the quote, a
  resting sell holds its size of the base. Every trade moves tokens between two accounts, and
  the fee (quote for the seller, base for the buyer) goes to `spot_fees`.
- Entry notional is display bookkeeping (entryPx, closedPnl); no balance depends on it.

The collateral rule here is a placeholder the clearinghouse issue replaces. Two calls form the
seam: `order_margin_error` when an order is placed, `resting_fill_allowed` for the resting
side at each fill. Placeholder rule: an order that increases a position needs
equity >= margin of all positions plus the order, margin = notional / max leverage, with
positions valued at entry (there is no mark price yet).
"""

from __future__ import annotations

from protocol.fixed import FEE_SCALE, ceil_div
from protocol.markets import Market, Markets
from protocol.orders import ERR_PERP_MARGIN


class Position:
    __slots__ = ("entry_ntl", "szi")

    def __init__(self) -> None:
        self.szi = 0  # signed lots
        self.entry_ntl = 0  # |szi| x entry price, micro-USDC


class Account:
    __slots__ = ("positions", "spot_hold", "spot_total", "usd")

    def __init__(self) -> None:
        self.usd = 0
        self.positions: dict[int, Position] = {}
        self.spot_total: dict[int, int] = {}
        self.spot_hold: dict[int, int] = {}

    def spot_available(self, token: int) -> int:
        return self.spot_total.get(token, 0) - self.spot_hold.get(token, 0)

    def szi(self, asset: int) -> int:
        position = self.positions.get(asset)
        return 0 if position is None else position.szi


class Clearinghouse:
    __slots__ = ("accounts", "markets", "perp_fees", "spot_fees")

    def __init__(self, markets: Markets) -> None:
        self.markets = markets
        self.accounts: dict[str, Account] = {}
        self.perp_fees = 0
        self.spot_fees: dict[int, int] = {}

    def account(self, user: str) -> Account:
        account = self.accounts.get(user)
        if account is None:
            account = self.accounts[user] = Account()
        return account

    # Funding from outside (genesis, devnet control); transfers are the clearinghouse issue's.

    def credit_usd(self, user: str, amount: int) -> None:
        self.account(user).usd += amount

    def credit_spot(self, user: str, token: int, amount: int) -> None:
        account = self.account(user)
        account.spot_total[token] = account.spot_total.get(token, 0) + amount

    # The collateral seam.

    def order_margin_error(
        self, account: Account, market: Market, is_buy: bool, px: int, sz: int
    ) -> str | None:
        """Placeholder rule (module doc) for a new perp order; None when it may be placed."""
        position = account.positions.get(market.asset)
        szi = 0 if position is None else position.szi
        if (szi < 0 and is_buy and sz <= -szi) or (szi > 0 and not is_buy and sz <= szi):
            return None  # only reduces
        equity = account.usd
        # Margins round up, against the account.
        used = -(-px * sz // market.max_leverage)
        by_asset = self.markets.by_asset
        for asset, held in account.positions.items():
            if held.szi:
                equity += held.entry_ntl if held.szi > 0 else -held.entry_ntl
                used += -(-held.entry_ntl // by_asset[asset].max_leverage)
        return None if used <= equity else ERR_PERP_MARGIN

    def resting_fill_allowed(
        self, account: Account, market: Market, is_buy: bool, px: int, sz: int
    ) -> bool:
        """The resting side's re-check at a fill (marginCanceled when False)."""
        return self.order_margin_error(account, market, is_buy, px, sz) is None

    # Trades.

    def apply_perp_fill(
        self, account: Account, asset: int, is_buy: bool, px: int, sz: int, fee_rate: int
    ) -> tuple[int, str, int, int]:
        """Move cash and position for one side of a perp trade. Returns the fill record's
        (start position, direction, closed pnl, fee)."""
        position = account.positions.get(asset)
        if position is None:
            position = account.positions[asset] = Position()
        notional = px * sz
        fee = -(-notional * fee_rate // FEE_SCALE)  # rounded up: the payer's debit
        start = position.szi
        account.usd += -notional - fee if is_buy else notional - fee
        self.perp_fees += fee
        closed_pnl = 0
        if start == 0 or (start > 0) == is_buy:
            position.entry_ntl += notional
            position.szi = start + sz if is_buy else start - sz
            direction = "Open Long" if is_buy else "Open Short"
        else:
            held = start if start > 0 else -start
            closed = sz if sz < held else held
            # Entry cost of the closed part, rounded down; the remainder stays on the rest.
            closed_cost = position.entry_ntl * closed // held
            closed_pnl = px * closed - closed_cost if start > 0 else closed_cost - px * closed
            position.entry_ntl -= closed_cost
            position.szi = start + sz if is_buy else start - sz
            if sz > held:
                position.entry_ntl = px * (sz - held)
                direction = "Short > Long" if is_buy else "Long > Short"
            else:
                direction = "Close Short" if is_buy else "Close Long"
        return start, direction, closed_pnl, fee

    def hold_spot(self, user: str, token: int, amount: int) -> None:
        account = self.account(user)
        account.spot_hold[token] = account.spot_hold.get(token, 0) + amount

    def release_spot(self, user: str, token: int, amount: int) -> None:
        account = self.account(user)
        account.spot_hold[token] -= amount

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
            for token, hold in account.spot_hold.items():
                total = account.spot_total.get(token, 0)
                assert 0 <= hold <= total, f"{user}: hold {hold} outside [0, {total}] of {token}"
        assert all(v == 0 for v in net.values()), f"positions do not net to zero: {net}"
