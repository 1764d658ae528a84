"""WebSocket subscriptions (/ws): Hyperliquid's subscribe/unsubscribe/ping protocol and its
channels, pushed once per committed block.

Invariants:
- The hub never waits for a client. Each connection has a bounded outbox (`OUTBOX_MESSAGES`);
  a client too slow to take a block's messages is disconnected. Block production waits on the
  API only for the state lock while the hub builds a block's messages; the hub reads blocks
  from the event bus, which drops a reader that lags instead of waiting for it.
- A block's messages are built once per distinct subscription, under the producer's state
  lock, and encoded once: every subscriber of a subscription gets the same text, built from the
  block's events (`BlockEvent.output`) and the chain and history as the lock shows them.
- A client sees every block after its subscription once, and none twice: the subscribe answer
  (ack, then snapshot) reflects the latest indexed block, and the blocks up to that one are not
  pushed to that subscription again. If the hub itself misses blocks (the bus dropped it),
  every client is disconnected rather than shown a gap.
- Subscriptions are decoded into a canonical form (known fields only, `user` lower-cased), so
  the same subscription sent twice is one: the second gets an "Already subscribed" error. The
  ack echoes the subscription as it was sent.
- Presentation only: the data are /info's answers (`answer_info`) and the `shapes` objects of
  the history's records, so a fill, order or ledger entry reads the same on both APIs (same
  hash, same `dir`); a trade carries the hash of its fills.

Channels (the `channel` of the messages; the subscription's `type` when not named):
- allMids, l2Book, activeAssetCtx (activeSpotAssetCtx for a spot coin), activeAssetData,
  webData2: the state after each block, and at once on subscribe. When the hub is behind the
  chain, the blocks whose state is already gone are skipped: a state is never sent twice.
- bbo: at once on subscribe, then after each block that changed the best bid or ask.
- trades, candle: after each block with trades of the coin (the candle holding the block).
- userFills, userFundings, userNonFundingLedgerUpdates: a snapshot first (`isSnapshot` true),
  then each block's new entries (`isSnapshot` false).
- user (subscription userEvents): each block's fills, one message per funding payment and per
  liquidation of the user, and the user's orders the chain cancelled (`nonUserCancel`).
- orderUpdates: each block's status changes of the user's orders.
- notification: acknowledged but never pushed: the devnet has no notifications to send.

Presentation choices where Hyperliquid's behaviour depends on what the devnet does not have:
- l2Book is pushed every block (Hyperliquid: at most every 0.5 s), since devnet blocks can be
  rarer (instant and manual mining) and a client must not miss the book a block left.
- nonUserCancel lists the statuses of cancels the user did not send: marginCanceled,
  reduceOnlyCanceled, siblingFilledCanceled, liquidatedCanceled, selfTradeCanceled.
- A liquidation event's `lid` is its ledger entry's hash read as a 53-bit integer (exact in
  JavaScript); `liquidator` is the chain's backstop liquidator; `liquidated_ntl_pos` the
  liquidated positions' notional at the mark.
- activeAssetData: `availableToTrade` is the free cross margin on both sides; `maxTradeSzs`
  is `Clearinghouse.max_trade_sizes` (that margin times the asset's leverage at the mark, plus
  the position's size on the side that reduces it).
- webData2 has no vaults, TWAPs, agent expiry or ledger total: `leadingVaults` and
  `twapStates` are empty, `totalVaultEquity` and `cumLedger` "0.0", `agentValidUntil` null;
  `agentAddress` is the user's unnamed API wallet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cached_property
from typing import Any, TypeVar

import msgspec
import structlog
import trio

from node.actors import BlockEvent
from node.api.exchange import decode_body
from node.api.history import INTERVALS, FillRecord, FundingRecord, History, LedgerRecord
from node.api.info import TIME_RANGE_LIMIT, answer_info
from node.api.shapes import (
    candle_json,
    fills_json,
    funding_json,
    ledger_json,
    leverage_json,
    open_order_json,
    price,
    side,
    size,
)
from node.api.wire import fill_hash, usd
from node.blocks import BlockProducer
from protocol.chain import BlockOutput, Chain
from protocol.clearinghouse import Account
from protocol.exchange import Fill, OrderUpdate
from protocol.ledger import Liquidation
from protocol.orders import (
    FILLED,
    LIQUIDATED_CANCELED,
    MARGIN_CANCELED,
    REDUCE_ONLY_CANCELED,
    SELF_TRADE_CANCELED,
    SIBLING_FILLED_CANCELED,
)
from protocol.transfers import normalize_address

OUTBOX_MESSAGES = 256
BUS_BUFFER = 64
MAX_SUBSCRIPTIONS = 1000  # per connection (Hyperliquid allows 1000 per IP address)
SNAPSHOT_ENTRIES = TIME_RANGE_LIMIT  # funding and ledger snapshots: as many as /info pages
CLOSE_SECONDS = 1.0  # a dropped client that does not take the close frame is not waited for
LID_BITS = 53  # integers above 2**53 lose digits in JavaScript clients
NON_USER_CANCELS = frozenset(
    {
        MARGIN_CANCELED,
        REDUCE_ONLY_CANCELED,
        SIBLING_FILLED_CANCELED,
        LIQUIDATED_CANCELED,
        SELF_TRADE_CANCELED,
    }
)

log = structlog.get_logger(__name__)

Json = Any
Record = TypeVar("Record", FillRecord, FundingRecord, LedgerRecord)


# Subscriptions as clients send them. Unknown keys are ignored; frozen, so they are the keys
# of the hub's subscription tables.


class _Subscription(msgspec.Struct, frozen=True, tag_field="type", rename="camel"):
    pass


class AllMids(_Subscription, frozen=True, tag="allMids"):
    dex: str = ""


class L2Book(_Subscription, frozen=True, tag="l2Book"):
    coin: str
    n_sig_figs: int | None = None
    mantissa: int | None = None


class Trades(_Subscription, frozen=True, tag="trades"):
    coin: str


class Bbo(_Subscription, frozen=True, tag="bbo"):
    coin: str


class Candle(_Subscription, frozen=True, tag="candle"):
    coin: str
    interval: str


class ActiveAssetCtx(_Subscription, frozen=True, tag="activeAssetCtx"):
    coin: str


class ActiveAssetData(_Subscription, frozen=True, tag="activeAssetData"):
    user: str
    coin: str


class UserEvents(_Subscription, frozen=True, tag="userEvents"):
    user: str


class UserFills(_Subscription, frozen=True, tag="userFills"):
    user: str
    aggregate_by_time: bool = False


class OrderUpdates(_Subscription, frozen=True, tag="orderUpdates"):
    user: str


class UserFundings(_Subscription, frozen=True, tag="userFundings"):
    user: str


class UserNonFundingLedgerUpdates(_Subscription, frozen=True, tag="userNonFundingLedgerUpdates"):
    user: str


class WebData2(_Subscription, frozen=True, tag="webData2"):
    user: str


class Notification(_Subscription, frozen=True, tag="notification"):
    user: str


Subscription = (
    AllMids
    | L2Book
    | Trades
    | Bbo
    | Candle
    | ActiveAssetCtx
    | ActiveAssetData
    | UserEvents
    | UserFills
    | OrderUpdates
    | UserFundings
    | UserNonFundingLedgerUpdates
    | WebData2
    | Notification
)

# The channels that show the chain's state rather than a block's events.
STATE_CHANNELS = (AllMids, L2Book, Bbo, ActiveAssetCtx, ActiveAssetData, WebData2)


def decode_subscription(value: object) -> Subscription | None:
    """The canonical form of a subscription object (its `user` lower-cased), or None when it
    is not one. Whether its coin and interval exist is for `_valid`, which needs the chain."""
    try:
        subscription: Subscription = msgspec.convert(value, Subscription)
    except msgspec.ValidationError:
        return None
    user = getattr(subscription, "user", None)
    if user is None:
        return subscription
    address = normalize_address(user)
    if address is None:
        return None
    normalized: Subscription = msgspec.structs.replace(subscription, user=address)
    return normalized


class Connection:
    """One client: its outbox, drained by its own writer task, and its subscriptions."""

    def __init__(self) -> None:
        self.outbox_in, self.outbox = trio.open_memory_channel[str](OUTBOX_MESSAGES)
        # Each subscription with the height of the last block its snapshot showed.
        self.subscriptions: dict[Subscription, int] = {}
        self.cancel_scope = trio.CancelScope()
        self.dropped = False

    def push(self, text: str) -> None:
        """Queue without waiting; a full outbox disconnects the client."""
        try:
            self.outbox_in.send_nowait(text)
        except trio.WouldBlock:
            log.warning("websocket client too slow, disconnected")
            self.drop()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the connection is ending

    def drop(self) -> None:
        """End the connection from the hub's side."""
        self.dropped = True
        self.outbox_in.close()
        self.cancel_scope.cancel()


class WsHub:
    def __init__(self, producer: BlockProducer, history: History) -> None:
        self.producer = producer
        self.history = history
        self.connections: list[Connection] = []
        # The best bid and ask each subscribed coin had when last looked at: bbo is pushed
        # only when a block changes them.
        self._bbos: dict[str, Json] = {}
        self._height: int | None = None  # the last block pushed

    async def serve_connection(
        self,
        receive_text: Callable[[], Awaitable[str | None]],
        send_text: Callable[[str], Awaitable[None]],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        """Serve one client until it leaves (`receive_text` gives None) or is dropped."""
        connection = Connection()
        self.connections.append(connection)
        try:
            with connection.cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_write, connection, send_text)
                    while (text := await receive_text()) is not None:
                        await self._on_message(connection, text)
                    nursery.cancel_scope.cancel()
        finally:
            connection.outbox_in.close()
            self.connections.remove(connection)
        if connection.dropped:
            with trio.move_on_after(CLOSE_SECONDS):
                try:
                    await close()
                except Exception:  # whatever the transport raises, the client is gone
                    log.debug("websocket close failed, connection ended")

    async def _on_message(self, connection: Connection, text: str) -> None:
        try:
            message = decode_body(text.encode())
        except ValueError:
            connection.push(_encode(_error(f"Invalid json: {text[:100]}")))
            return
        method = message.get("method") if isinstance(message, dict) else None
        if method == "ping":
            connection.push(_encode({"channel": "pong"}))
            return
        if method not in ("subscribe", "unsubscribe"):
            connection.push(_encode(_error(f"Unknown method: {text[:100]}")))
            return
        sent = message.get("subscription")
        replies: list[Json]
        async with self.producer.state_lock:
            view = _View(self.producer.chain, self.history, None)
            subscription = decode_subscription(sent)
            if subscription is None or not _valid(subscription, view):
                replies = [_error(f"Invalid subscription: {text[:100]}")]
            elif method == "unsubscribe":
                if connection.subscriptions.pop(subscription, None) is None:
                    replies = [_error(f"Already unsubscribed: {text[:100]}")]
                else:
                    replies = [_ack(method, sent)]
            elif subscription in connection.subscriptions:
                replies = [_error(f"Already subscribed: {text[:100]}")]
            elif len(connection.subscriptions) >= MAX_SUBSCRIPTIONS:
                replies = [_error(f"Too many subscriptions: {text[:100]}")]
            else:
                connection.subscriptions[subscription] = self.history.height
                replies = [_ack(method, sent), *self._messages(subscription, view)]
        for reply in replies:
            connection.push(_encode(reply))

    async def run(self) -> None:
        """Push each committed block to the subscribers until cancelled."""
        while True:
            with self.producer.subscribe(BUS_BUFFER) as events:
                async for event in events:
                    await self.publish(event)
            # The bus dropped the hub (it fell behind) or the node is stopping: subscribe
            # again; `publish` catches the gap at the next block.

    async def publish(self, event: BlockEvent) -> None:
        """Push one committed block (blocks come in height order)."""
        height = event.output.height
        if self._height is not None and height != self._height + 1:
            log.warning("websocket feed missed blocks", after=self._height, at=height)
            for connection in list(self.connections):
                connection.drop()
        self._height = height
        if not self.connections:
            self._bbos.clear()
            return
        async with self.producer.state_lock:
            subscribed = {sub for c in self.connections for sub in c.subscriptions}
            wanted = {
                sub
                for c in self.connections
                for sub, seen in c.subscriptions.items()
                if seen < height
            }
            view = _View(self.producer.chain, self.history, event.output)
            built = {sub: self._messages(sub, view) for sub in wanted}
            self._bbos = {coin: bbo for coin, bbo in self._bbos.items() if Bbo(coin) in subscribed}
        texts = {sub: [_encode(m) for m in messages] for sub, messages in built.items() if messages}
        for connection in list(self.connections):
            for subscription, seen in connection.subscriptions.items():
                if seen < height:
                    for text in texts.get(subscription, ()):
                        connection.push(text)

    def _messages(self, subscription: Subscription, view: _View) -> list[Json]:
        """The messages of one subscription for the view's block, or its snapshot when the
        view has no block (a new subscriber)."""
        if view.stale and isinstance(subscription, STATE_CHANNELS):
            return []
        match subscription:
            case AllMids():
                mids = view.info({"type": "allMids", "dex": subscription.dex})
                return [_message("allMids", {"mids": mids})]
            case L2Book():
                return [_message("l2Book", view.info(_book_request(subscription)))]
            case Bbo():
                return self._bbo(subscription, view)
            case Trades():
                return _trades(subscription, view)
            case Candle():
                return _candle(subscription, view)
            case ActiveAssetCtx():
                return [_active_asset_ctx(subscription, view)]
            case ActiveAssetData():
                return [_message("activeAssetData", _active_asset_data(subscription, view))]
            case WebData2():
                return [_message("webData2", _web_data2(subscription, view))]
            case UserEvents():
                return _user_events(subscription, view)
            case UserFills():
                return _user_fills(subscription, view)
            case OrderUpdates():
                return _order_updates(subscription, view)
            case UserFundings():
                return _user_fundings(subscription, view)
            case UserNonFundingLedgerUpdates():
                return _user_ledger(subscription, view)
            case Notification():
                return []

    def _bbo(self, subscription: Bbo, view: _View) -> list[Json]:
        levels = view.info({"type": "l2Book", "coin": subscription.coin})["levels"]
        bbo = [half[0] if half else None for half in levels]  # best bid, best ask
        if view.output is None:
            # A new subscriber: what the others were last sent stays the reference.
            self._bbos.setdefault(subscription.coin, bbo)
        elif self._bbos.get(subscription.coin) == bbo:
            return []
        else:
            self._bbos[subscription.coin] = bbo
        data = {"coin": subscription.coin, "time": view.history.time, "bbo": bbo}
        return [_message("bbo", data)]


async def _write(connection: Connection, send_text: Callable[[str], Awaitable[None]]) -> None:
    async for text in connection.outbox:
        try:
            await send_text(text)
        except Exception:  # whatever the transport raises, the client is gone
            log.debug("websocket send failed, connection ended")
            connection.cancel_scope.cancel()
            return


class _View:
    """What one build reads: the chain and the history (under the state lock) and the block
    (None: the state now, for a new subscriber's snapshot). /info answers are memoized, so the
    subscriptions of a block that share a request (every webData2 reads every asset context)
    compute it once."""

    def __init__(self, chain: Chain, history: History, output: BlockOutput | None) -> None:
        self.chain = chain
        self.history = history
        self.output = output
        # The chain is past the block (the hub is behind): the state that block left is gone,
        # and the next block's push shows the newer one.
        self.stale = output is not None and history.height > output.height
        self._answers: dict[tuple[tuple[str, Json], ...], Json] = {}
        self._fills: dict[str, list[FillRecord]] = {}
        self._ledger: dict[str, list[LedgerRecord]] = {}
        self._funding: dict[str, list[FundingRecord]] = {}

    def info(self, request: dict[str, Json]) -> Json:
        """The /info answer to `request` (None when /info would refuse it)."""
        key = tuple(sorted(request.items()))
        if key not in self._answers:
            status, body = answer_info(request, self.chain, self.history)
            self._answers[key] = body if status == 200 else None
        return self._answers[key]

    @cached_property
    def _fill_users(self) -> set[str]:
        return set() if self.output is None else {fill.user for fill in self.output.fills}

    @cached_property
    def _ledger_users(self) -> set[str]:
        output = self.output
        return set() if output is None else {u for update in output.ledger for u in update.users}

    @cached_property
    def _funding_users(self) -> set[str]:
        return set() if self.output is None else {update.user for update in self.output.funding}

    @cached_property
    def fills_by_coin(self) -> dict[str, list[Fill]]:
        result: dict[str, list[Fill]] = {}
        for fill in () if self.output is None else self.output.fills:
            result.setdefault(fill.coin, []).append(fill)
        return result

    @cached_property
    def _order_updates(self) -> dict[str, list[OrderUpdate]]:
        result: dict[str, list[OrderUpdate]] = {}
        for update in () if self.output is None else self.output.order_updates:
            result.setdefault(update.order.user, []).append(update)
        return result

    def fills_of(self, user: str) -> list[FillRecord]:
        """The user's fills in the block, as the history recorded them."""
        return self._records_of(user, self._fill_users, self._fills, self.history.fills, _fill_time)

    def ledger_of(self, user: str) -> list[LedgerRecord]:
        return self._records_of(
            user, self._ledger_users, self._ledger, self.history.ledger, _update_time
        )

    def funding_of(self, user: str) -> list[FundingRecord]:
        return self._records_of(
            user, self._funding_users, self._funding, self.history.funding, _update_time
        )

    def order_updates_of(self, user: str) -> list[OrderUpdate]:
        return self._order_updates.get(user, [])

    def _records_of(
        self,
        user: str,
        users: set[str],
        cache: dict[str, list[Record]],
        read: Callable[[str], list[Record]],
        time_of: Callable[[Record], int],
    ) -> list[Record]:
        """The user's records in the block, looked up once per build: several channels of
        one user (user, userFills, userFundings, ...) read the same ones."""
        if user not in users:
            return []
        if user not in cache:
            cache[user] = self._in_block(read(user), time_of)
        return cache[user]

    def _in_block(self, records: list[Record], time_of: Callable[[Record], int]) -> list[Record]:
        """The records stamped with the block's time, oldest first. Block times strictly
        increase, so they are the block's own; newer blocks' records (the history may be
        ahead of the block being pushed) are passed over."""
        assert self.output is not None
        time = self.output.time
        picked: list[Record] = []
        for record in reversed(records):
            stamp = time_of(record)
            if stamp < time:
                break
            if stamp == time:
                picked.append(record)
        picked.reverse()
        return picked


def _fill_time(record: FillRecord) -> int:
    return record.fill.time


def _update_time(record: FundingRecord | LedgerRecord) -> int:
    return record.update.time


def _valid(subscription: Subscription, view: _View) -> bool:
    """Whether the chain has what the subscription names: the coin (a perp for
    activeAssetData), the candle interval, the book aggregation, the default perp dex."""
    markets = view.chain.markets
    match subscription:
        case AllMids():
            return subscription.dex == ""
        case L2Book():
            return view.info(_book_request(subscription)) is not None
        case Candle():
            return subscription.coin in markets.by_coin and subscription.interval in INTERVALS
        case ActiveAssetData():
            market = markets.by_coin.get(subscription.coin)
            return market is not None and not market.is_spot
        case Trades() | Bbo() | ActiveAssetCtx():
            return subscription.coin in markets.by_coin
    return True


def _book_request(subscription: L2Book) -> dict[str, Json]:
    request: dict[str, Json] = {"type": "l2Book", "coin": subscription.coin}
    if subscription.n_sig_figs is not None:
        request["nSigFigs"] = subscription.n_sig_figs
    if subscription.mantissa is not None:
        request["mantissa"] = subscription.mantissa
    return request


# Market channels.


def _trades(subscription: Trades, view: _View) -> list[Json]:
    output = view.output
    fills = view.fills_by_coin.get(subscription.coin)
    if output is None or not fills:
        return []
    market = view.chain.markets.by_coin[subscription.coin]
    sides: dict[int, list[Fill]] = {}  # both fills of each trade, by trade id
    for fill in fills:
        sides.setdefault(fill.tid, []).append(fill)
    trades: list[Json] = []
    for tid, pair in sides.items():
        taker = next(fill for fill in pair if fill.crossed)
        maker = next(fill for fill in pair if not fill.crossed)
        buyer, seller = (taker, maker) if taker.is_buy else (maker, taker)
        trades.append(
            {
                "coin": subscription.coin,
                "side": side(taker.is_buy),
                "px": price(taker.px, market),
                "sz": size(taker.sz, market),
                "hash": fill_hash(output.height, taker.oid),  # as the fills
                "time": taker.time,
                "tid": tid,
                "users": [buyer.user, seller.user],
            }
        )
    return [_message("trades", trades)]


def _candle(subscription: Candle, view: _View) -> list[Json]:
    output = view.output
    if output is None or subscription.coin not in view.fills_by_coin:
        return []
    coin, interval = subscription.coin, subscription.interval
    candles = view.history.candles(coin, interval, output.time, output.time)
    if not candles:  # the history no longer keeps that far back (the hub is far behind)
        return []
    market = view.chain.markets.by_coin[coin]
    return [_message("candle", candle_json(candles[-1], market))]


def _active_asset_ctx(subscription: ActiveAssetCtx, view: _View) -> Json:
    market = view.chain.markets.by_coin[subscription.coin]
    if market.is_spot:
        _, contexts = view.info({"type": "spotMetaAndAssetCtxs"})
        [ctx] = [ctx for ctx in contexts if ctx["coin"] == subscription.coin]
        return _message("activeSpotAssetCtx", {"coin": subscription.coin, "ctx": ctx})
    _, contexts = view.info({"type": "metaAndAssetCtxs"})
    return _message("activeAssetCtx", {"coin": subscription.coin, "ctx": contexts[market.asset]})


# User channels.


def _active_asset_data(subscription: ActiveAssetData, view: _View) -> Json:
    clearinghouse = view.chain.clearinghouse
    market = view.chain.markets.by_coin[subscription.coin]
    account = clearinghouse.accounts.get(subscription.user) or Account(subscription.user)
    leverage = clearinghouse.leverage_of(account, market.asset)
    position = account.positions.get(market.asset)
    isolated_raw = 0 if position is None else position.isolated_raw
    free = max(0, clearinghouse.cross_available(account))
    mark = clearinghouse.mark(market.asset)
    buy, sell = clearinghouse.max_trade_sizes(account, market.asset)
    return {
        "user": subscription.user,
        "coin": subscription.coin,
        "leverage": leverage_json(leverage, isolated_raw),
        "maxTradeSzs": [size(buy, market), size(sell, market)],
        "availableToTrade": [usd(free), usd(free)],
        "markPx": price(mark, market),
    }


def _web_data2(subscription: WebData2, view: _View) -> Json:
    user = subscription.user
    meta, contexts = view.info({"type": "metaAndAssetCtxs"})
    _, spot_contexts = view.info({"type": "spotMetaAndAssetCtxs"})
    agents = view.info({"type": "extraAgents", "user": user})
    return {
        "clearinghouseState": view.info({"type": "clearinghouseState", "user": user}),
        "leadingVaults": [],
        "totalVaultEquity": "0.0",
        "openOrders": view.info({"type": "frontendOpenOrders", "user": user}),
        "agentAddress": next((a["address"] for a in agents if a["name"] == ""), None),
        "agentValidUntil": None,
        "cumLedger": "0.0",
        "meta": meta,
        "assetCtxs": contexts,
        "serverTime": view.history.time,
        "isVault": False,
        "user": user,
        "twapStates": [],
        "spotState": view.info({"type": "spotClearinghouseState", "user": user}),
        "spotAssetCtxs": spot_contexts,
    }


def _user_events(subscription: UserEvents, view: _View) -> list[Json]:
    user, chain = subscription.user, view.chain
    markets = chain.markets
    messages: list[Json] = []
    fills = view.fills_of(user)
    if fills:
        messages.append(_message("user", {"fills": fills_json(fills, markets, False)}))
    for funding in view.funding_of(user):
        messages.append(_message("user", {"funding": _funding_entry(funding, view)}))
    for record in view.ledger_of(user):
        delta = record.update.delta
        if isinstance(delta, Liquidation):  # only the liquidated user's ledger has it
            liquidation = {
                "lid": int(record.hash, 16) >> (256 - LID_BITS),
                "liquidator": chain.liquidator.address,
                "liquidated_user": user,
                "liquidated_ntl_pos": usd(record.usdc_value),
                "liquidated_account_value": usd(delta.account_value),
            }
            messages.append(_message("user", {"liquidation": liquidation}))
    cancels: list[Json] = [
        {"coin": markets.by_asset[update.order.asset].coin, "oid": update.order.oid}
        for update in view.order_updates_of(user)
        if update.status in NON_USER_CANCELS
    ]
    if cancels:
        messages.append(_message("user", {"nonUserCancel": cancels}))
    return messages


def _user_fills(subscription: UserFills, view: _View) -> list[Json]:
    user, aggregate = subscription.user, subscription.aggregate_by_time
    if view.output is None:
        request = {"type": "userFills", "user": user, "aggregateByTime": aggregate}
        data = {"user": user, "isSnapshot": True, "fills": view.info(request)}
        return [_message("userFills", data)]
    records = view.fills_of(user)
    if not records:
        return []
    fills = fills_json(records, view.chain.markets, aggregate)
    return [_message("userFills", {"user": user, "isSnapshot": False, "fills": fills})]


def _order_updates(subscription: OrderUpdates, view: _View) -> list[Json]:
    markets = view.chain.markets
    entries: list[Json] = []
    for update in view.order_updates_of(subscription.user):
        order = open_order_json(update.order, markets)
        if update.status == FILLED:  # nothing is left of it
            order["sz"] = size(0, markets.by_asset[update.order.asset])
        entries.append({"order": order, "status": update.status, "statusTimestamp": update.time})
    return [_message("orderUpdates", entries)] if entries else []


def _user_fundings(subscription: UserFundings, view: _View) -> list[Json]:
    user = subscription.user
    snapshot = view.output is None
    if snapshot:
        records = view.history.funding(user)[-SNAPSHOT_ENTRIES:]
    else:
        records = view.funding_of(user)
        if not records:
            return []
    fundings = [_funding_entry(record, view) for record in records]
    data = {"user": user, "isSnapshot": snapshot, "fundings": fundings}
    return [_message("userFundings", data)]


def _user_ledger(subscription: UserNonFundingLedgerUpdates, view: _View) -> list[Json]:
    user = subscription.user
    snapshot = view.output is None
    if snapshot:
        records = view.history.ledger(user)[-SNAPSHOT_ENTRIES:]
    else:
        records = view.ledger_of(user)
        if not records:
            return []
    updates = [ledger_json(record, view.chain.markets) for record in records]
    data = {"user": user, "isSnapshot": snapshot, "nonFundingLedgerUpdates": updates}
    return [_message("userNonFundingLedgerUpdates", data)]


def _funding_entry(record: FundingRecord, view: _View) -> Json:
    """A funding payment as the WebSocket sends it: userFunding's delta, flat, with its time."""
    entry: Json = funding_json(record, view.chain.markets)
    delta = {name: value for name, value in entry["delta"].items() if name != "type"}
    return {"time": entry["time"], **delta}


def _message(channel: str, data: Json) -> Json:
    return {"channel": channel, "data": data}


def _error(text: str) -> Json:
    return {"channel": "error", "data": text}


def _ack(method: str, subscription: Json) -> Json:
    return _message("subscriptionResponse", {"method": method, "subscription": subscription})


def _encode(message: Json) -> str:
    return msgspec.json.encode(message).decode()
