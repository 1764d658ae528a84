"""The exchange: order placement and matching, cancels, modifies, triggers, dead man's switch.

Invariants:
- Price-time priority: a taker fills against the best price first, oldest order first, always at
  the resting order's price, and never beyond its own limit.
- No book is crossed at rest: whatever of a GTC order can trade does so before it rests, and an
  ALO order that would trade is refused.
- An order refused by validation (`validate_order`, duplicate cloid) changes nothing. An order
  refused by the book or the collateral seam consumes an oid and records its rejection status,
  and nothing else, except that self-trade prevention may already have cancelled the account's
  own resting orders in its way (as the IOC would have done had it traded).
- Self-trade prevention "expire maker": a taker meeting its own resting order cancels that order
  (selfTradeCanceled, no fill, no fee) and keeps matching behind it.
- The resting side is re-checked at every fill: a reduce-only order that no longer reduces is
  cancelled (reduceOnlyCanceled), an order the collateral seam refuses is cancelled
  (marginCanceled).
- `user_orders` and `cloids` index exactly the live orders (resting, parked trigger, and TP/SL
  children waiting for their parent); every order leaves them when it stops being live.
  `children` lists exactly the parked orders still waiting for each parent, in oid order (the
  order they were parked in). All three are functions of the books and `triggers` (which the
  state hash relies on to leave them out).
- `trigger_digest` plus the changes in `trigger_changes` is the order-set digest of `triggers`
  (no arrival keys: triggers fire in oid order), kept like a book's (protocol/book.py): every
  change to `triggers` is noted, and `settle_triggers` applies the notes.
- Order ids and trade ids come from counters in this state, so the same actions in the same
  order give the same ids.

Events (fills and order status updates) accumulate in `fills` and `order_updates` until the
caller takes them with `take_events`.
"""

from __future__ import annotations

import msgspec

from protocol.actions import (
    ActionResponse,
    BatchModifyAction,
    CancelAction,
    CancelByCloidAction,
    CancelResponse,
    DefaultResponse,
    ErrorResponse,
    ExchangeAction,
    NoopAction,
    OrderAction,
    OrderResponse,
    ScheduleCancelAction,
)
from protocol.book import (
    TIF_ALO,
    TIF_GTC,
    TIF_IOC,
    BookSide,
    OrderBook,
    RestingOrder,
    note_change,
    note_removal,
    set_digest,
    updated_digest,
)
from protocol.clearinghouse import Account, Clearinghouse
from protocol.fixed import format_fixed
from protocol.markets import Market, Markets
from protocol.orders import (
    CANCELED,
    ERR_BAD_ALO,
    ERR_DUPLICATE_CLOID,
    ERR_IOC_CANCEL,
    ERR_MISSING_ORDER,
    ERR_REDUCE_ONLY,
    ERR_SPOT_BALANCE,
    FILLED,
    MARGIN_CANCELED,
    OPEN,
    REDUCE_ONLY_CANCELED,
    SCHEDULED_CANCEL,
    SELF_TRADE_CANCELED,
    SIBLING_FILLED_CANCELED,
    TRIGGERED,
    WAITING_FOR_FILL,
    WAITING_FOR_TRIGGER,
    Filled,
    OrderError,
    OrderRequest,
    OrderStatus,
    OrderWire,
    Resting,
    Trigger,
    check_payload,
    rejection_status,
    round_to_tick,
    validate_order,
)

SCHEDULE_CANCEL_MIN_DELAY_MS = 5_000
SCHEDULE_CANCEL_MAX_TRIGGERS_PER_DAY = 10
DAY_MS = 86_400_000
TRIGGER_MARKET_SLIPPAGE_PERCENT = 10
ERR_SCHEDULE_TOO_EARLY = "Scheduled cancel time must be at least 5 seconds in the future."
ERR_SCHEDULE_TOO_MANY = "Too many scheduled cancel triggers today."
ERR_MODIFY_GROUPING = "Cannot modify an order into a TP/SL child."
ERR_PARENT_CANCELED = "Parent order was canceled before it filled."


class TriggerOrder(msgspec.Struct, frozen=True, gc=False):
    """A TP/SL order parked off the book. `parent` is the oid of the normalTpsl parent it still
    waits for (0 when armed); `group` links OCO siblings (0 when alone)."""

    oid: int
    user: str
    asset: int
    is_buy: bool
    px: int
    sz: int
    timestamp: int
    reduce_only: bool
    cloid: str | None
    trigger: Trigger
    group: int
    parent: int
    is_position_tpsl: bool


class LiquidationInfo(msgspec.Struct, frozen=True):
    """Carried by the fills of a liquidation: whose account, the mark, market or backstop."""

    liquidated_user: str
    mark_px: int
    method: str


class Fill(msgspec.Struct, frozen=True, gc=False):
    user: str
    asset: int
    coin: str
    px: int
    sz: int
    is_buy: bool
    time: int
    start_position: int
    direction: str
    closed_pnl: int
    oid: int
    tid: int
    crossed: bool
    fee: int
    fee_token: str
    cloid: str | None
    liquidation: LiquidationInfo | None = None


class OrderUpdate(msgspec.Struct, frozen=True, gc=False):
    """A status change of one order. `order.sz` is the size still open when the status was
    set, except for `filled`, where it is not meaningful (the order has nothing left)."""

    order: RestingOrder | TriggerOrder
    status: str
    time: int


LiveOrder = RestingOrder | TriggerOrder


def trigger_fires(order: TriggerOrder, mark_px: int) -> bool:
    """Take profit sells above / buys below its trigger; stop loss sells below / buys above."""
    above = order.trigger.is_tp != order.is_buy
    trigger_px = order.trigger.trigger_px
    return mark_px >= trigger_px if above else mark_px <= trigger_px


def slippage_price(mark_px: int, is_buy: bool, market: Market) -> int:
    """Mark moved 10% against the taker, rounded to a valid price in the taker's favour of
    execution (up for buys, down for sells), for market TP/SL orders."""
    raw = (
        mark_px * (100 + TRIGGER_MARKET_SLIPPAGE_PERCENT)
        if is_buy
        else mark_px * (100 - TRIGGER_MARKET_SLIPPAGE_PERCENT)
    )
    px = -((-raw) // 100) if is_buy else raw // 100
    return round_to_tick(px, market.px_decimals, up=is_buy)


class Exchange:
    def __init__(self, markets: Markets, clearinghouse: Clearinghouse | None = None) -> None:
        self.markets = markets
        self.clearinghouse = clearinghouse if clearinghouse is not None else Clearinghouse(markets)
        self.books: dict[int, OrderBook] = {a: OrderBook(a) for a in markets.by_asset}
        self.next_oid = 1
        self.next_tid = 1
        self.user_orders: dict[str, dict[int, int]] = {}  # user -> oid -> asset, live orders
        self.cloids: dict[tuple[str, str], int] = {}  # (user, cloid) -> oid, live orders
        self.triggers: dict[int, TriggerOrder] = {}  # parked TP/SL, armed or waiting
        self.trigger_changes: dict[int, TriggerOrder | None] = {}  # oid -> as digested
        self.trigger_digest = 0  # order-set digest of `triggers` as of `settle_triggers`
        self.children: dict[int, list[int]] = {}  # normalTpsl parent oid -> waiting children
        self.scheduled_cancels: dict[str, int] = {}  # user -> time the cancel-all fires
        self.scheduled_cancel_days: dict[str, tuple[int, int]] = {}  # user -> (day, triggers)
        self.fills: list[Fill] = []
        self.order_updates: list[OrderUpdate] = []

    def take_events(self) -> tuple[list[Fill], list[OrderUpdate]]:
        fills, updates = self.fills, self.order_updates
        self.fills, self.order_updates = [], []
        return fills, updates

    # Actions.

    def execute(self, user: str, action: ExchangeAction, time: int) -> ActionResponse:
        match action:
            case OrderAction():
                return self.place_orders(user, action.orders, action.grouping, time)
            case CancelAction():
                return CancelResponse(
                    tuple(self.cancel(user, c.a, c.o, time) for c in action.cancels)
                )
            case CancelByCloidAction():
                return CancelResponse(
                    tuple(
                        self.cancel_by_cloid(user, c.asset, c.cloid, time) for c in action.cancels
                    )
                )
            case BatchModifyAction():
                error = check_payload(self.markets, tuple(m.order for m in action.modifies))
                if error is not None:
                    return ErrorResponse(error)
                return OrderResponse(
                    tuple(self.modify(user, m.oid, m.order, time) for m in action.modifies)
                )
            case ScheduleCancelAction():
                return self.schedule_cancel(user, action.time, time)
            case NoopAction():
                return DefaultResponse()

    def place_orders(
        self, user: str, orders: tuple[OrderWire, ...], grouping: str, time: int
    ) -> ActionResponse:
        """An `order` action: one status per order, or one error for the whole batch."""
        error = check_payload(self.markets, orders)
        if error is not None:
            return ErrorResponse(error)
        if grouping == "normalTpsl":
            return self._place_normal_tpsl(user, orders, time)
        if grouping not in ("na", "positionTpsl"):
            return ErrorResponse(f"Unknown grouping {grouping}.")
        statuses: list[OrderStatus] = []
        group = self.next_oid if grouping == "positionTpsl" else 0
        for wire in orders:
            request = validate_order(self.markets, wire)
            if isinstance(request, str):
                statuses.append(OrderError(request))
            elif request.trigger is not None:
                status = self.park_trigger(user, request, time, group, 0, group != 0)
                if group and isinstance(status, Resting):
                    status = WAITING_FOR_TRIGGER
                statuses.append(status)
            else:
                statuses.append(self.place_order(user, request, time))
        return OrderResponse(tuple(statuses))

    def _place_normal_tpsl(
        self, user: str, orders: tuple[OrderWire, ...], time: int
    ) -> ActionResponse:
        """The first order is the parent; the TP/SL orders after it wait for it to fill fully,
        and are cancelled with it if it is cancelled first."""
        if orders[0].t.trigger is not None or any(o.t.trigger is None for o in orders[1:]):
            return ErrorResponse("normalTpsl needs a limit parent followed by TP/SL orders.")
        requests = [validate_order(self.markets, wire) for wire in orders]
        parent = requests[0]
        if isinstance(parent, str):
            return OrderResponse(tuple(OrderError(parent) for _ in requests))
        parent_status = self.place_order(user, parent, time)
        statuses: list[OrderStatus] = [parent_status]
        if isinstance(parent_status, OrderError):
            statuses.extend(OrderError(parent_status.error) for _ in requests[1:])
            return OrderResponse(tuple(statuses))
        assert isinstance(parent_status, Resting | Filled)
        parent_oid = parent_status.oid
        armed = isinstance(parent_status, Filled)
        if isinstance(parent_status, Filled) and parent_status.total_sz < parent.sz:
            # The rest of the parent was cancelled (an IOC), and children die with it.
            statuses.extend(OrderError(ERR_PARENT_CANCELED) for _ in requests[1:])
            return OrderResponse(tuple(statuses))
        for child in requests[1:]:
            if isinstance(child, str):
                statuses.append(OrderError(child))
                continue
            status = self.park_trigger(user, child, time, parent_oid, 0 if armed else parent_oid)
            if isinstance(status, Resting):
                status = WAITING_FOR_TRIGGER if armed else WAITING_FOR_FILL
            statuses.append(status)
        return OrderResponse(tuple(statuses))

    def place_order(self, user: str, request: OrderRequest, time: int) -> OrderStatus:
        """Place one validated limit order: match what crosses, rest or cancel the rest."""
        market = self.markets.by_asset[request.asset]
        if request.cloid is not None and (user, request.cloid) in self.cloids:
            return OrderError(ERR_DUPLICATE_CLOID)
        oid = self.next_oid
        self.next_oid = oid + 1
        order = RestingOrder(
            oid,
            user,
            request.asset,
            request.is_buy,
            request.px,
            request.sz,
            request.sz,
            time,
            request.tif,
            request.reduce_only,
            request.cloid,
        )
        return self._execute(order, market)

    def _reject(self, order: RestingOrder, error: str) -> OrderError:
        self.order_updates.append(OrderUpdate(order, rejection_status(error), order.timestamp))
        self._cancel_children(order.oid, order.timestamp)
        return OrderError(error)

    def _end(self, order: RestingOrder, remaining: int, status: str) -> None:
        """Record the end of an order that never rested (or no longer does)."""
        if remaining != order.sz:
            order = msgspec.structs.replace(order, sz=remaining)
        self.order_updates.append(OrderUpdate(order, status, order.timestamp))

    def _execute(self, order: RestingOrder, market: Market) -> OrderStatus:
        """Run a new order (or a fired trigger) through the book: `order` is the order as
        placed, with `sz` its full size and `timestamp` the block time."""
        user, oid, is_buy, px, tif = order.user, order.oid, order.is_buy, order.px, order.tif
        asset = market.asset
        book = self.books[asset]
        clearinghouse = self.clearinghouse
        # A refused order must not create an account: a new one is kept only once it trades
        # or rests.
        known = clearinghouse.accounts.get(user)
        account = known if known is not None else Account(user)
        is_spot = market.is_spot
        time = order.timestamp

        if order.reduce_only:
            szi = 0 if is_spot else account.szi(asset)
            if szi == 0 or (szi > 0) == is_buy:
                return self._reject(order, ERR_REDUCE_ONLY)
            if order.sz > abs(szi):
                order = msgspec.structs.replace(order, sz=abs(szi), orig_sz=abs(szi))
        sz = order.sz
        opposite = book.asks if is_buy else book.bids
        best = opposite.best_level()
        crosses = best is not None and (best.px <= px if is_buy else best.px >= px)
        if tif == TIF_ALO and crosses:
            bbo = f"{_px(book.best_bid(), market)}@{_px(book.best_ask(), market)}"
            return self._reject(order, ERR_BAD_ALO.format(bbo=bbo))
        if tif == TIF_IOC and not crosses:
            return self._reject(order, ERR_IOC_CANCEL)
        if is_spot:
            token = market.quote_token if is_buy else market.base_token
            cost = px * sz if is_buy else sz * market.base_wei_per_lot
            if clearinghouse.spot_available(account, token) < cost:
                return self._reject(order, ERR_SPOT_BALANCE)
            if token == clearinghouse.usdc_token:
                clearinghouse.draw_spot_usdc(account, cost)
        elif not order.reduce_only:
            # A sell can fill above its limit, up to the best bid: check at the worst price.
            check_px = best.px if crosses and best is not None and best.px > px else px
            error = clearinghouse.order_margin_error(account, market, is_buy, check_px, sz)
            if error is not None:
                return self._reject(order, error)

        if known is None:
            clearinghouse.accounts[user] = account
        filled_sz = 0
        filled_ntl = 0
        if crosses:
            filled_sz, filled_ntl = self._match(order, market, book, opposite)
        remaining = sz - filled_sz
        if remaining == 0:
            self._end(order, 0, FILLED)
            return Filled(oid, filled_sz, filled_ntl, order.cloid)
        if order.reduce_only and account.szi(asset) == 0:
            # Nothing left to reduce: the rest of a reduce-only order never rests.
            if not filled_sz:
                self._end(order, remaining, REDUCE_ONLY_CANCELED)
                self._cancel_children(oid, time)
                return OrderError(ERR_REDUCE_ONLY)
            self._end(order, remaining, FILLED)
            self._arm_children(oid, time)
            return Filled(oid, filled_sz, filled_ntl, order.cloid)
        if tif == TIF_IOC:
            self._cancel_children(oid, time)
            if filled_sz == 0:
                self._end(order, remaining, rejection_status(ERR_IOC_CANCEL))
                return OrderError(ERR_IOC_CANCEL)
            self._end(order, remaining, CANCELED)
            return Filled(oid, filled_sz, filled_ntl, order.cloid)
        if remaining != sz:
            order = msgspec.structs.replace(order, sz=remaining)
        if is_spot or not order.reduce_only:
            clearinghouse.reserve_order(account, market, is_buy, px, remaining)
        book.rest(order)
        mine = self.user_orders.get(user)
        if mine is None:
            mine = self.user_orders[user] = {}
        mine[oid] = asset
        if order.cloid is not None:
            self.cloids[(user, order.cloid)] = oid
        self.order_updates.append(OrderUpdate(order, OPEN, time))
        return Resting(oid, order.cloid)

    def _match(
        self, order: RestingOrder, market: Market, book: OrderBook, side: BookSide
    ) -> tuple[int, int]:
        """Trade `order` against `side` up to its limit price; returns (filled size, filled
        notional)."""
        user, oid, is_buy, px, cloid = order.user, order.oid, order.is_buy, order.px, order.cloid
        reduce_only, time = order.reduce_only, order.timestamp
        clearinghouse = self.clearinghouse
        accounts = clearinghouse.accounts
        asset = market.asset
        coin = market.coin
        is_spot = market.is_spot
        maker_fee_rate = market.maker_fee
        taker_fee_rate = market.taker_fee
        fills = self.fills
        updates = self.order_updates
        user_orders = self.user_orders
        children = self.children
        filled_sz = 0
        filled_ntl = 0
        remaining = order.sz
        taker = accounts[user]
        if is_spot:
            tokens = self.markets.tokens
            base_name = tokens[market.base_token].name
            quote_name = tokens[market.quote_token].name
        while remaining:
            level = side.best_level()
            if level is None or (level.px > px if is_buy else level.px < px):
                break
            maker = book.head(level)
            maker_user = maker.user
            if maker_user == user:
                self._remove_resting(book, maker, SELF_TRADE_CANCELED, time)
                continue
            size = remaining if remaining < maker.sz else maker.sz
            trade_px = level.px
            maker_account = accounts[maker_user]
            if not is_spot:
                if reduce_only:
                    position = taker.positions.get(asset)
                    held = 0 if position is None else abs(position.szi)
                    if held == 0:
                        break
                    size = min(size, held)
                maker_position = maker_account.positions.get(asset)
                maker_szi = 0 if maker_position is None else maker_position.szi
                reduces = maker_szi > 0 if not maker.is_buy else maker_szi < 0
                if maker.reduce_only:
                    if not reduces:
                        self._remove_resting(book, maker, REDUCE_ONLY_CANCELED, time)
                        continue
                    size = min(size, abs(maker_szi))
                elif (not reduces or size > abs(maker_szi)) and not (
                    clearinghouse.resting_fill_allowed(
                        maker_account, market, maker.is_buy, trade_px, size
                    )
                ):
                    if maker.sz < maker.orig_sz:
                        self._arm_children(maker.oid, time)
                    self._remove_resting(book, maker, MARGIN_CANCELED, time)
                    continue
            tid = self.next_tid
            self.next_tid = tid + 1
            book.fill_head(side, level, maker, size)
            if is_spot:
                taker_start, taker_fee = clearinghouse.apply_spot_fill(
                    taker, market, is_buy, trade_px, size, taker_fee_rate, False
                )
                maker_start, maker_fee = clearinghouse.apply_spot_fill(
                    maker_account, market, maker.is_buy, trade_px, size, maker_fee_rate, True
                )
                fills.append(
                    Fill(
                        maker_user,
                        asset,
                        coin,
                        trade_px,
                        size,
                        maker.is_buy,
                        time,
                        maker_start,
                        "Buy" if maker.is_buy else "Sell",
                        0,
                        maker.oid,
                        tid,
                        False,
                        maker_fee,
                        base_name if maker.is_buy else quote_name,
                        maker.cloid,
                    )
                )
                fills.append(
                    Fill(
                        user,
                        asset,
                        coin,
                        trade_px,
                        size,
                        is_buy,
                        time,
                        taker_start,
                        "Buy" if is_buy else "Sell",
                        0,
                        oid,
                        tid,
                        True,
                        taker_fee,
                        base_name if is_buy else quote_name,
                        cloid,
                    )
                )
            else:
                if not maker.reduce_only:
                    clearinghouse.release_order(maker_account, market, maker.is_buy, trade_px, size)
                start, direction, closed_pnl, fee = clearinghouse.apply_perp_fill(
                    maker_account, asset, maker.is_buy, trade_px, size, maker_fee_rate
                )
                fills.append(
                    Fill(
                        maker_user,
                        asset,
                        coin,
                        trade_px,
                        size,
                        maker.is_buy,
                        time,
                        start,
                        direction,
                        closed_pnl,
                        maker.oid,
                        tid,
                        False,
                        fee,
                        "USDC",
                        maker.cloid,
                    )
                )
                start, direction, closed_pnl, fee = clearinghouse.apply_perp_fill(
                    taker, asset, is_buy, trade_px, size, taker_fee_rate
                )
                fills.append(
                    Fill(
                        user,
                        asset,
                        coin,
                        trade_px,
                        size,
                        is_buy,
                        time,
                        start,
                        direction,
                        closed_pnl,
                        oid,
                        tid,
                        True,
                        fee,
                        "USDC",
                        cloid,
                    )
                )
            filled_sz += size
            filled_ntl += trade_px * size
            remaining -= size
            if size == maker.sz:
                mine = user_orders[maker_user]
                del mine[maker.oid]
                if not mine:
                    del user_orders[maker_user]
                if maker.cloid is not None:
                    del self.cloids[(maker_user, maker.cloid)]
                # The update shows the order as it rested before its last fill.
                updates.append(OrderUpdate(maker, FILLED, time))
                if maker.oid in children:
                    self._arm_children(maker.oid, time)
            elif maker.reduce_only and maker_account.szi(asset) == 0:
                self._remove_resting(book, book.orders[maker.oid], REDUCE_ONLY_CANCELED, time)
        return filled_sz, filled_ntl

    # Removing live orders.

    def _forget(self, user: str, oid: int, cloid: str | None) -> None:
        mine = self.user_orders[user]
        del mine[oid]
        if not mine:
            del self.user_orders[user]
        if cloid is not None:
            del self.cloids[(user, cloid)]

    def _remove_resting(self, book: OrderBook, order: RestingOrder, status: str, time: int) -> None:
        book.remove(order.oid)
        market = self.markets.by_asset[order.asset]
        if market.is_spot or not order.reduce_only:
            account = self.clearinghouse.accounts[order.user]
            self.clearinghouse.release_order(account, market, order.is_buy, order.px, order.sz)
        self._forget(order.user, order.oid, order.cloid)
        self.order_updates.append(OrderUpdate(order, status, time))
        self._cancel_children(order.oid, time)

    def _remove_trigger(self, order: TriggerOrder, status: str, time: int) -> None:
        del self.triggers[order.oid]
        note_removal(self.trigger_changes, order.oid, order)
        if order.parent:
            waiting = self.children.get(order.parent)
            if waiting is not None:
                waiting.remove(order.oid)
                if not waiting:
                    del self.children[order.parent]
        self._forget(order.user, order.oid, order.cloid)
        self.order_updates.append(OrderUpdate(order, status, time))

    def _cancel_children(self, parent_oid: int, time: int) -> None:
        waiting = self.children.pop(parent_oid, None)
        if waiting is None:
            return
        for child_oid in waiting:
            child = self.triggers.pop(child_oid)
            note_removal(self.trigger_changes, child_oid, child)
            self._forget(child.user, child.oid, child.cloid)
            self.order_updates.append(OrderUpdate(child, CANCELED, time))

    def _arm_children(self, parent_oid: int, time: int) -> None:
        waiting = self.children.pop(parent_oid, None)
        if waiting is None:
            return
        for child_oid in waiting:
            child = self.triggers[child_oid]
            note_change(self.trigger_changes, child_oid, child)
            self.triggers[child_oid] = msgspec.structs.replace(child, parent=0)

    def remove_live_order(self, user: str, oid: int, status: str, time: int) -> bool:
        """Take one of `user`'s live orders off the exchange with `status`; False if none."""
        asset = self.user_orders.get(user, {}).get(oid)
        if asset is None:
            return False
        resting = self.books[asset].orders.get(oid)
        if resting is not None:
            self._remove_resting(self.books[asset], resting, status, time)
        else:
            self._remove_trigger(self.triggers[oid], status, time)
        return True

    def cancel_all(self, user: str, status: str, time: int) -> None:
        """Take every live order of `user` off the exchange with `status`, in oid order."""
        for oid in sorted(self.user_orders.get(user, {})):
            self.remove_live_order(user, oid, status, time)

    def close_at_market(
        self, user: str, asset: int, sz: int, px: int, time: int, liquidation: LiquidationInfo
    ) -> int:
        """A reduce-only IOC for `user` at limit `px`, its fills tagged as a liquidation's.
        Returns the size filled."""
        oid = self.next_oid
        self.next_oid = oid + 1
        is_buy = self.clearinghouse.account(user).szi(asset) < 0
        order = RestingOrder(oid, user, asset, is_buy, px, sz, sz, time, TIF_IOC, True, None)
        first = len(self.fills)
        status = self._execute(order, self.markets.by_asset[asset])
        fills = self.fills
        for i in range(first, len(fills)):
            fills[i] = msgspec.structs.replace(fills[i], liquidation=liquidation)
        return status.total_sz if isinstance(status, Filled) else 0

    def trade_off_book(
        self,
        closer: str,
        counterparty: str,
        asset: int,
        szi_closed: int,
        px: int,
        time: int,
        liquidation: LiquidationInfo,
    ) -> None:
        """A trade outside the book (backstop takeover, deleveraging): `closer` closes
        `szi_closed` (signed as its position) against `counterparty` at `px`, with no fee.
        Each side gets an oid and a fill record; the closer's is the crossing one."""
        clearinghouse = self.clearinghouse
        coin = self.markets.by_asset[asset].coin
        size = abs(szi_closed)
        closer_buys = szi_closed < 0
        tid = self.next_tid
        self.next_tid = tid + 1
        for user, is_buy, crossed in (
            (closer, closer_buys, True),
            (counterparty, not closer_buys, False),
        ):
            start, direction, closed_pnl, fee = clearinghouse.apply_perp_fill(
                clearinghouse.account(user), asset, is_buy, px, size, 0
            )
            oid = self.next_oid
            self.next_oid = oid + 1
            self.fills.append(
                Fill(
                    user,
                    asset,
                    coin,
                    px,
                    size,
                    is_buy,
                    time,
                    start,
                    direction,
                    closed_pnl,
                    oid,
                    tid,
                    crossed,
                    fee,
                    "USDC",
                    None,
                    liquidation,
                )
            )

    # Cancels and modifies.

    def cancel(self, user: str, asset: int, oid: int, time: int) -> str | OrderError:
        mine = self.user_orders.get(user)
        if mine is None or mine.get(oid) != asset:
            return OrderError(f"{ERR_MISSING_ORDER} asset={asset}")
        book = self.books[asset]
        resting = book.orders.get(oid)
        if resting is not None:
            self._remove_resting(book, resting, CANCELED, time)
        else:
            self._remove_trigger(self.triggers[oid], CANCELED, time)
        return "success"

    def cancel_by_cloid(self, user: str, asset: int, cloid: str, time: int) -> str | OrderError:
        oid = self.cloids.get((user, cloid))
        if oid is None:
            return OrderError(f"{ERR_MISSING_ORDER} asset={asset}")
        return self.cancel(user, asset, oid, time)

    def modify(self, user: str, target: int | str, wire: OrderWire, time: int) -> OrderStatus:
        """Replace a live order: the new order takes a new oid and keeps the old cloid unless
        it names its own."""
        oid = self.cloids.get((user, target)) if isinstance(target, str) else target
        old = None if oid is None else self.live_order(user, oid)
        if oid is None or old is None:
            return OrderError(ERR_MISSING_ORDER)
        request = validate_order(self.markets, wire)
        if isinstance(request, str):
            return OrderError(request)
        if isinstance(old, TriggerOrder) and old.parent:
            return OrderError(ERR_MODIFY_GROUPING)
        self.remove_live_order(user, oid, CANCELED, time)
        if request.cloid is None and old.cloid is not None:
            request = msgspec.structs.replace(request, cloid=old.cloid)
        if request.trigger is not None:
            return self.park_trigger(user, request, time, 0, 0)
        return self.place_order(user, request, time)

    # Trigger orders.

    def park_trigger(
        self,
        user: str,
        request: OrderRequest,
        time: int,
        group: int,
        parent: int,
        is_position_tpsl: bool = False,
    ) -> OrderStatus:
        """Park a TP/SL order off the book until the mark price reaches its trigger."""
        assert request.trigger is not None
        market = self.markets.by_asset[request.asset]
        if market.is_spot:
            return OrderError(ERR_REDUCE_ONLY)
        if request.cloid is not None and (user, request.cloid) in self.cloids:
            return OrderError(ERR_DUPLICATE_CLOID)
        oid = self.next_oid
        self.next_oid = oid + 1
        order = TriggerOrder(
            oid,
            user,
            request.asset,
            request.is_buy,
            request.px,
            request.sz,
            time,
            request.reduce_only,
            request.cloid,
            request.trigger,
            group,
            parent,
            is_position_tpsl,
        )
        note_change(self.trigger_changes, oid, None)
        self.triggers[oid] = order
        if parent:
            self.children.setdefault(parent, []).append(oid)
        self.user_orders.setdefault(user, {})[oid] = request.asset
        if request.cloid is not None:
            self.cloids[(user, request.cloid)] = oid
        self.order_updates.append(OrderUpdate(order, OPEN, time))
        return Resting(oid, request.cloid)

    def on_mark(self, asset: int, mark_px: int, time: int) -> None:
        """Fire the armed TP/SL orders of `asset` that `mark_px` reaches, oldest first. A fired
        order cancels its OCO siblings (siblingFilledCanceled) and trades under its own oid."""
        market = self.markets.by_asset[asset]
        due = sorted(
            oid
            for oid, order in self.triggers.items()
            if order.asset == asset and not order.parent and trigger_fires(order, mark_px)
        )
        for oid in due:
            order = self.triggers.get(oid)
            if order is None:
                continue  # a sibling fired first
            self._remove_trigger(order, TRIGGERED, time)
            if order.group:
                for sibling in sorted(
                    o for o, t in self.triggers.items() if t.group == order.group and not t.parent
                ):
                    self._remove_trigger(self.triggers[sibling], SIBLING_FILLED_CANCELED, time)
            if order.trigger.is_market:
                px, tif = slippage_price(mark_px, order.is_buy, market), TIF_IOC
            else:
                px, tif = order.px, TIF_GTC
            placed = RestingOrder(
                oid,
                order.user,
                asset,
                order.is_buy,
                px,
                order.sz,
                order.sz,
                time,
                tif,
                order.reduce_only,
                order.cloid,
            )
            self._execute(placed, market)

    # Dead man's switch.

    def schedule_cancel(self, user: str, at: int | None, time: int) -> ActionResponse:
        if at is None:
            self.scheduled_cancels.pop(user, None)
            return DefaultResponse()
        if at < time + SCHEDULE_CANCEL_MIN_DELAY_MS:
            return ErrorResponse(ERR_SCHEDULE_TOO_EARLY)
        day, count = self.scheduled_cancel_days.get(user, (time // DAY_MS, 0))
        if day == time // DAY_MS and count >= SCHEDULE_CANCEL_MAX_TRIGGERS_PER_DAY:
            return ErrorResponse(ERR_SCHEDULE_TOO_MANY)
        self.scheduled_cancels[user] = at
        return DefaultResponse()

    def on_block_time(self, time: int) -> None:
        """Fire every scheduled cancel-all that is due, in account order."""
        due = sorted(u for u, at in self.scheduled_cancels.items() if at <= time)
        for user in due:
            del self.scheduled_cancels[user]
            day, count = self.scheduled_cancel_days.get(user, (time // DAY_MS, 0))
            if day != time // DAY_MS:
                day, count = time // DAY_MS, 0
            self.scheduled_cancel_days[user] = (day, count + 1)
            for oid in sorted(self.user_orders.get(user, {})):
                self.remove_live_order(user, oid, SCHEDULED_CANCEL, time)

    def settle_triggers(self) -> int:
        """The order-set digest of `triggers`, brought up to date with the changes noted since
        the last call."""
        if self.trigger_changes:
            self.trigger_digest = updated_digest(
                self.trigger_digest, self.trigger_changes, self.triggers, {}
            )
            self.trigger_changes = {}
        return self.trigger_digest

    # Queries.

    def live_order(self, user: str, oid: int) -> LiveOrder | None:
        """`user`'s live order `oid`, resting or parked; None if it has none by that id."""
        asset = self.user_orders.get(user, {}).get(oid)
        if asset is None:
            return None
        return self.books[asset].orders.get(oid) or self.triggers[oid]

    def open_orders(self, user: str) -> list[LiveOrder]:
        """The account's live orders in placement (oid) order."""
        result: list[LiveOrder] = []
        for oid, asset in sorted(self.user_orders.get(user, {}).items()):
            resting = self.books[asset].orders.get(oid)
            result.append(resting if resting is not None else self.triggers[oid])
        return result

    def _check(self) -> None:
        live: dict[int, tuple[str, int]] = {}
        for asset, book in self.books.items():
            book._check()
            for oid, order in book.orders.items():
                assert order.asset == asset
                live[oid] = (order.user, asset)
        for oid, trigger in self.triggers.items():
            assert oid not in live, f"order {oid} both resting and parked"
            live[oid] = (trigger.user, trigger.asset)
        indexed = {
            oid: (user, asset)
            for user, mine in self.user_orders.items()
            for oid, asset in mine.items()
        }
        assert indexed == live, "user_orders does not match the live orders"
        live_orders: list[LiveOrder] = [o for b in self.books.values() for o in b.orders.values()]
        live_orders.extend(self.triggers.values())
        cloids = {(o.user, o.cloid): o.oid for o in live_orders if o.cloid is not None}
        assert self.cloids == cloids, "cloids does not match the live orders"
        waiting: dict[int, list[int]] = {}
        for oid in sorted(self.triggers):
            if self.triggers[oid].parent:
                waiting.setdefault(self.triggers[oid].parent, []).append(oid)
        assert self.children == waiting, "children does not match the waiting orders"
        pending = updated_digest(self.trigger_digest, self.trigger_changes, self.triggers, {})
        assert pending == set_digest(self.triggers, {}), "trigger digest drifted"
        self.clearinghouse._check()


def _px(px: int | None, market: Market) -> str:
    return "None" if px is None else format_fixed(px, market.px_decimals)
