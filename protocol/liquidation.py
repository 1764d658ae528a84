"""Liquidation of standard accounts: market liquidation, backstop takeover, auto-deleveraging.

Invariants:
- Only an account (or isolated position) whose value is below its maintenance margin is
  touched, and its orders are cancelled first (`liquidatedCanceled`).
- Nothing is created or destroyed: market liquidation trades through the book like any IOC,
  the backstop moves positions at the mark and then the remaining cash to the liquidator,
  auto-deleveraging closes positions at the mark and spreads the remaining loss over the
  counterparties it closed against, so the underwater account ends at exactly zero.
- The pass is deterministic: accounts in address order; within an account, isolated positions
  in asset order, then the cross account; positions in asset order.

The pass, for one account (cross) or one isolated position, with value V and maintenance MM
(Hyperliquid leaves the order between these steps open; this is the devnet's):
1. V >= MM: nothing.
2. V < 0: auto-deleveraging. Each position is closed at the mark against the users holding the
   opposite side, ranked by (mark / entry) x (notional / account value), highest first, ties by
   address; the negative cash left is charged to those users pro rata to the notional each took
   (largest remainder for the last micro-USDC units), or to the liquidator when nobody took
   anything. Fills carry method "adl". An account left with negative cash and no cross
   position (it closed its own position underwater) hands the debt to the liquidator too.
3. V < 2/3 MM: backstop. The liquidator takes every position at the mark (no fee, method
   "backstop") and then all the cash left, so the maintenance margin is not returned.
4. Otherwise market liquidation: a reduce-only IOC per position at the mark moved 10% against
   the account, for the whole position, or 20% of it when its notional is above 100k USDC and
   the account had no partial liquidation in the last 30 s; positions in asset order until
   V >= MM. If that leaves V < 2/3 MM, step 3 follows at once.
Every liquidation records one ledger update with the value and positions before it.
"""

from __future__ import annotations

from protocol.clearinghouse import (
    SPOT_USDC_PER_MICRO,
    UNIFIED_MODES,
    Account,
    Clearinghouse,
    Leverage,
    Position,
)
from protocol.exchange import Exchange, LiquidationInfo, slippage_price
from protocol.fixed import USD_SCALE
from protocol.ledger import LedgerUpdate, LiquidatedPosition, Liquidation
from protocol.orders import LIQUIDATED_CANCELED

LIQUIDATOR = "0x" + "a" * 40
PARTIAL_LIQUIDATION_NOTIONAL = 100_000 * USD_SCALE
PARTIAL_LIQUIDATION_PERCENT = 20
PARTIAL_LIQUIDATION_COOLDOWN_MS = 30_000
RANK_SCALE = 10**18


class Liquidator:
    def __init__(self, exchange: Exchange, address: str = LIQUIDATOR) -> None:
        self.exchange = exchange
        self.clearinghouse: Clearinghouse = exchange.clearinghouse
        self.address = address
        self.last_partial: dict[str, int] = {}  # user -> time of its last partial liquidation

    def run(self, time: int) -> list[LedgerUpdate]:
        """One liquidation pass over every account."""
        clearinghouse = self.clearinghouse
        updates: list[LedgerUpdate] = []
        for user in sorted(clearinghouse.accounts):
            account = clearinghouse.accounts[user]
            if user == self.address:
                continue
            for asset in sorted(account.positions):
                position = account.positions[asset]
                if position.szi and not clearinghouse.leverage_of(account, asset).is_cross:
                    value, mm = self._value_and_mm(account, asset)
                    if value < mm:
                        updates.append(self._liquidate(user, account, asset, time))
            if account.abstraction == "portfolioMargin":
                continue  # its cross account: protocol/portfolio_margin.py
            if any(
                p.szi and clearinghouse.leverage_of(account, a).is_cross
                for a, p in account.positions.items()
            ):
                value, mm = self._value_and_mm(account, None)
                if value < mm:
                    updates.append(self._liquidate(user, account, None, time))
            elif account.usd < 0 and self._cancel_and_fold(account, time) < 0:
                # Debt with no cross position left (an underwater account closed its own
                # position, or a closed isolated leg came back negative): the liquidator
                # takes it.
                updates.append(LedgerUpdate(time, (user,), Liquidation(account.usd, "Cross", ())))
                self._absorb(account.usd, {})
                account.usd = 0
        return updates

    # One account (isolated is None) or one isolated position.

    def _assets(self, account: Account, isolated: int | None) -> list[int]:
        if isolated is not None:
            return [isolated]
        clearinghouse = self.clearinghouse
        return [
            asset
            for asset in sorted(account.positions)
            if account.positions[asset].szi and clearinghouse.leverage_of(account, asset).is_cross
        ]

    def _value_and_mm(self, account: Account, isolated: int | None) -> tuple[int, int]:
        clearinghouse = self.clearinghouse
        if isolated is None:
            return clearinghouse.cross_value(account), clearinghouse.cross_maintenance(account)
        position = account.positions[isolated]
        return (
            clearinghouse.isolated_value(isolated, position),
            clearinghouse.maintenance_of(isolated, position.szi),
        )

    def _liquidate(
        self, user: str, account: Account, isolated: int | None, time: int
    ) -> LedgerUpdate:
        markets = self.clearinghouse.markets
        value, mm = self._value_and_mm(account, isolated)
        before = tuple(
            LiquidatedPosition(markets.perps[asset].name, account.positions[asset].szi)
            for asset in self._assets(account, isolated)
        )
        self.exchange.cancel_all(user, LIQUIDATED_CANCELED, time)
        # Cancelling frees what the orders held (a unified account's spot USDC): decide on the
        # value after it.
        value_now, mm = self._value_and_mm(account, isolated)
        kind = "Cross" if isolated is None else "Isolated"
        if value_now >= mm:
            # Cancelling was enough: nothing was liquidated.
            return LedgerUpdate(time, (user,), Liquidation(value, kind, ()))
        value = value_now
        if value < 0:
            self._deleverage(user, account, isolated, time)
        elif 3 * value < 2 * mm:
            self._backstop(user, account, isolated, time)
        else:
            self._market_liquidate(user, account, isolated, time)
            value_after, mm_after = self._value_and_mm_if_open(account, isolated)
            if value_after < 0:
                self._deleverage(user, account, isolated, time)
            elif 3 * value_after < 2 * mm_after:
                self._backstop(user, account, isolated, time)
        return LedgerUpdate(time, (user,), Liquidation(value, kind, before))

    def _value_and_mm_if_open(self, account: Account, isolated: int | None) -> tuple[int, int]:
        if isolated is not None and account.positions[isolated].szi == 0:
            return 0, 0
        return self._value_and_mm(account, isolated)

    def _market_liquidate(
        self, user: str, account: Account, isolated: int | None, time: int
    ) -> None:
        clearinghouse = self.clearinghouse
        for asset in self._assets(account, isolated):
            szi = account.positions[asset].szi
            if szi == 0:
                continue
            mark = clearinghouse.mark(asset)
            size = abs(szi)
            recent = time - self.last_partial.get(user, -PARTIAL_LIQUIDATION_COOLDOWN_MS)
            if size * mark > PARTIAL_LIQUIDATION_NOTIONAL and (
                recent >= PARTIAL_LIQUIDATION_COOLDOWN_MS
            ):
                # A fifth of the position, rounded up to a whole lot.
                size = -(-size * PARTIAL_LIQUIDATION_PERCENT // 100)
                self.last_partial[user] = time
            market = clearinghouse.markets.by_asset[asset]
            px = slippage_price(mark, szi < 0, market)
            info = LiquidationInfo(user, mark, "market")
            self.exchange.close_at_market(user, asset, size, px, time, info)
            value, mm = self._value_and_mm_if_open(account, isolated)
            if value >= mm:
                return

    def _trade_at_mark(
        self,
        closer: str,
        counterparty: str,
        asset: int,
        szi_closed: int,
        time: int,
        method: str,
        liquidated: str,
    ) -> None:
        """Close `szi_closed` (signed as the closer's position) of `closer`'s position against
        `counterparty` at the mark, with no fee."""
        mark = self.clearinghouse.mark(asset)
        info = LiquidationInfo(liquidated, mark, method)
        self.exchange.trade_off_book(closer, counterparty, asset, szi_closed, mark, time, info)

    def _backstop(self, user: str, account: Account, isolated: int | None, time: int) -> None:
        clearinghouse = self.clearinghouse
        liquidator = clearinghouse.account(self.address)
        for asset in self._assets(account, isolated):
            position = account.positions[asset]
            if not position.szi:
                continue
            iso_value = clearinghouse.isolated_value(asset, position) if isolated is not None else 0
            if asset not in liquidator.leverage:
                perp = clearinghouse.markets.perps[asset]
                clearinghouse.set_leverage(liquidator, asset, Leverage(True, perp.max_leverage))
            self._trade_at_mark(user, self.address, asset, position.szi, time, "backstop", user)
            if isolated is not None:
                # The isolated cash came back to cross when the position closed; it goes on.
                account.usd -= iso_value
                liquidator.usd += iso_value
        if isolated is None:
            liquidator.usd += account.usd
            account.usd = 0
            if account.abstraction in UNIFIED_MODES:
                # A unified account's cross balance includes its spot USDC.
                token = clearinghouse.usdc_token
                usdc = account.spot_total.get(token, 0)
                account.spot_total[token] = 0
                liquidator.spot_total[token] = liquidator.spot_total.get(token, 0) + usdc

    def _deleverage(self, user: str, account: Account, isolated: int | None, time: int) -> None:
        clearinghouse = self.clearinghouse
        taken: dict[str, int] = {}  # counterparty -> notional it took over
        for asset in self._assets(account, isolated):
            position = account.positions[asset]
            iso_value = clearinghouse.isolated_value(asset, position) if isolated is not None else 0
            for counterparty in self._adl_ranking(user, asset, position):
                if position.szi == 0:
                    break
                other = clearinghouse.accounts[counterparty].positions[asset].szi
                size = min(abs(position.szi), abs(other))
                closing = size if position.szi > 0 else -size
                self._trade_at_mark(user, counterparty, asset, closing, time, "adl", user)
                taken[counterparty] = taken.get(counterparty, 0) + size * clearinghouse.mark(asset)
            if isolated is not None and position.szi == 0:
                # The isolated (negative) cash went to cross when the position closed; the
                # counterparties bear it instead, and the cross account stays as it was.
                account.usd -= iso_value
                self._absorb(iso_value, taken)
                return
        if isolated is None and not any(
            account.positions[a].szi for a in self._assets(account, None)
        ):
            loss = self._fold_cash(account)
            if loss < 0:
                self._absorb(loss, taken)
                account.usd = 0

    def _adl_ranking(self, user: str, asset: int, position: Position) -> list[str]:
        """Opposite-side users, highest (mark / entry) x (notional / account value) first."""
        clearinghouse = self.clearinghouse
        mark = clearinghouse.mark(asset)
        ranked: list[tuple[int, str]] = []
        for other, account in clearinghouse.accounts.items():
            held = account.positions.get(asset)
            if (
                other == user
                or held is None
                or held.szi == 0
                or (held.szi > 0) == (position.szi > 0)
            ):
                continue
            value = clearinghouse.account_value(account)
            if value <= 0 or held.entry_ntl == 0:
                rank = 0
            else:
                notional = abs(held.szi) * mark
                # mark / entry = mark * |szi| / entry_ntl
                rank = mark * abs(held.szi) * notional * RANK_SCALE // (held.entry_ntl * value)
            ranked.append((-rank, other))
        return [other for _, other in sorted(ranked)]

    def _cancel_and_fold(self, account: Account, time: int) -> int:
        """An account in debt loses its orders first, so its spot holds come free to cover
        the debt; returns the perp cash left after folding."""
        self.exchange.cancel_all(account.owner, LIQUIDATED_CANCELED, time)
        return self._fold_cash(account)

    def _fold_cash(self, account: Account) -> int:
        """A unified account's perp cash and spot USDC are one balance: cover negative perp
        cash from spot USDC (whole micro-USDC). Returns the perp cash left."""
        if account.usd < 0 and account.abstraction in UNIFIED_MODES:
            token = self.clearinghouse.usdc_token
            spot = account.spot_available(token)
            micro = min(-account.usd, max(spot, 0) // SPOT_USDC_PER_MICRO)
            account.spot_total[token] -= micro * SPOT_USDC_PER_MICRO
            account.usd += micro
        return account.usd

    def _absorb(self, loss: int, taken: dict[str, int]) -> None:
        """A negative `loss` goes to the counterparties of the deleveraging, or to the
        liquidator when there were none (the positions were already closed)."""
        if loss >= 0:
            return
        if taken:
            self._spread_loss(loss, taken)
        else:
            self.clearinghouse.account(self.address).usd += loss

    def _spread_loss(self, loss: int, taken: dict[str, int]) -> None:
        """Charge a negative `loss` to the counterparties pro rata to the notional each took,
        rounded down, the last units one each by largest remainder then address."""
        if loss >= 0 or not taken:
            return
        total = sum(taken.values())
        owed = -loss
        shares = {u: owed * n // total for u, n in taken.items()}
        left = owed - sum(shares.values())
        order = sorted(taken, key=lambda u: (-(owed * taken[u] % total), u))
        for u in order[:left]:
            shares[u] += 1
        for u, share in shares.items():
            self.clearinghouse.accounts[u].usd -= share
