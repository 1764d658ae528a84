"""The WebSocket hub: every channel's messages after real blocks run by an in-memory block
producer (manual mining, autojump clock), the protocol (acks, errors, ping), the rule that a
slow client is dropped and never waited for, and the official SDK's WebSocket client against
a live node.

Units (configs/devnet.toml): BTC price 1 decimal (100000 -> 1_000_000), size 5 decimals.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Callable
from typing import Any

import msgspec
import trio
import trio.testing
from hyperliquid.exchange import Exchange
from hyperliquid.info import Info

from node.actors import BlockEvent
from node.api.history import History
from node.api.info import answer_info
from node.api.wire import event_hash
from node.api.ws import OUTBOX_MESSAGES, WsHub
from node.blocks import BlockProducer, SubmitAction
from node.config import load_config
from node.pytest_plugin import Devnet
from protocol.actions import OrderAction, UsdClassTransferAction
from protocol.chain import Action, Chain
from protocol.liquidation import LIQUIDATOR
from tests.node.api.test_history import CONFIG, NEXT_HOUR, A, B, T, hand_priced_chain
from tests.protocol.conftest import BTC, USD, limit

E = "0x" + "e5" * 20
B_MIXED = "0x" + "B2b2" * 10  # B in another letter case
Json = Any


class Client:
    """One client of the hub, over in-memory channels instead of a socket. A `stalled` client
    never takes a message off its socket."""

    def __init__(self, hub: WsHub, nursery: trio.Nursery, stalled: bool = False) -> None:
        self._sent_in, self._sent = trio.open_memory_channel[str | None](100)
        self._got_in, self._got = trio.open_memory_channel[str](100_000)
        self.stalled = stalled
        self.closed = trio.Event()
        self.left = trio.Event()

        async def serve() -> None:
            await hub.serve_connection(self._sent.receive, self._deliver, self._close)
            self.left.set()

        nursery.start_soon(serve)

    async def _deliver(self, text: str) -> None:
        if self.stalled:
            await trio.sleep_forever()
        await self._got_in.send(text)

    async def _close(self) -> None:
        self.closed.set()

    async def send(self, message: Json) -> None:
        await self._sent_in.send(json.dumps(message))

    async def subscribe(self, subscription: Json) -> None:
        await self.send({"method": "subscribe", "subscription": subscription})

    async def received(self) -> list[Json]:
        """Everything the hub sent, once every task is idle."""
        await trio.testing.wait_all_tasks_blocked()
        messages = []
        while True:
            try:
                messages.append(json.loads(self._got.receive_nowait()))
            except trio.WouldBlock:
                return messages


class Node:
    """A block producer in manual mining over `chain`, the history fed by its blocks, and the
    hub serving them."""

    def __init__(self, chain: Chain, nursery: trio.Nursery) -> None:
        self.producer = BlockProducer(chain, last_time=T, block_time_ms=1000, mining="manual")
        self.history = History(T)
        self.producer.before_commit.append(lambda block: self.history.on_block(block, chain))
        self.hub = WsHub(self.producer, self.history)
        self.nursery = nursery
        self.events: trio.MemoryReceiveChannel[BlockEvent] | None = None

    async def start(self, hub_runs: bool = True) -> None:
        """Start producing; the hub pushes each block as it comes, or, if not `hub_runs`, only
        when the test calls `push`."""
        if not hub_runs:
            self.events = self.producer.subscribe(1000)
        await self.nursery.start(self.producer.run)
        if hub_runs:
            self.nursery.start_soon(self.hub.run)

    def next_block(self) -> BlockEvent:
        assert self.events is not None
        return self.events.receive_nowait()

    async def push(self) -> None:
        """The hub pushes the next committed block."""
        await self.hub.publish(self.next_block())

    async def block(self, actions: list[tuple[str, Action]], dt_ms: int = 1000) -> None:
        for user, action in actions:
            await self.producer.inbox.send(SubmitAction(user, action))
        await self.producer.mine(1, dt_ms)

    def info(self, request: Json) -> Json:
        status, body = answer_info(request, self.producer.chain, self.history)
        assert status == 200, body
        return json.loads(msgspec.json.encode(body))

    def client(self, stalled: bool = False) -> Client:
        return Client(self.hub, self.nursery, stalled)


def sell(px: str, sz: str) -> OrderAction:
    return OrderAction((limit(BTC, False, px, sz),))


def buy(px: str, sz: str, tif: str = "Gtc") -> OrderAction:
    return OrderAction((limit(BTC, True, px, sz, tif),))


def ack(subscription: Json, method: str = "subscribe") -> Json:
    return {
        "channel": "subscriptionResponse",
        "data": {"method": method, "subscription": subscription},
    }


def of(channel: str, messages: list[Json]) -> list[Json]:
    return [m["data"] for m in messages if m["channel"] == channel]


def fill_b(hash_: str) -> Json:
    """B's fill of block 2 in `trading_node`: 0.04 BTC bought at 100000 from A's resting
    sell (oid 1) by its IOC (oid 2), trade 1, taker fee 0.045% of 4,000 USDC."""
    return {
        "coin": "BTC",
        "px": "100000.0",
        "sz": "0.04",
        "side": "B",
        "time": T + 2000,
        "startPosition": "0.0",
        "dir": "Open Long",
        "closedPnl": "0.0",
        "hash": hash_,
        "oid": 2,
        "crossed": True,
        "fee": "1.8",
        "tid": 1,
        "feeToken": "USDC",
    }


# Every channel.

CHANNELS: list[Json] = [
    {"type": "allMids"},
    {"type": "l2Book", "coin": "BTC"},
    {"type": "trades", "coin": "BTC"},
    {"type": "bbo", "coin": "BTC"},
    {"type": "candle", "coin": "BTC", "interval": "1m"},
    {"type": "userEvents", "user": B_MIXED},
    {"type": "userFills", "user": B_MIXED},
    {"type": "orderUpdates", "user": B},
    {"type": "userFundings", "user": B},
    {"type": "userNonFundingLedgerUpdates", "user": B},
    {"type": "activeAssetCtx", "coin": "BTC"},
    {"type": "activeAssetCtx", "coin": "PURR/USDC"},
    {"type": "activeAssetData", "user": B, "coin": "BTC"},
    {"type": "webData2", "user": B},
    {"type": "notification", "user": B},
]


async def trading_node(nursery: trio.Nursery) -> tuple[Node, Client]:
    """Hand-priced BTC at 100000; A and B 100,000 USDC on perps at the genesis. Block 1: A rests
    a BTC sell 0.1 @ 100000 (oid 1). Then a client subscribes to every channel for B."""
    chain = hand_priced_chain()
    chain.deposit(A, 100_000 * USD, T)
    chain.deposit(B, 100_000 * USD, T)
    node = Node(chain, nursery)
    await node.start()
    await node.block([(A, sell("100000", "0.1"))])
    client = node.client()
    for subscription in CHANNELS:
        await client.subscribe(subscription)
    return node, client


async def test_a_subscriber_gets_an_ack_then_the_snapshot_of_each_channel(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The ack echoes the subscription as sent; state channels answer at once with the state
    the block left, the history channels with a snapshot; the rest wait for a block."""
    node, client = await trading_node(nursery)
    book = [[], [{"px": "100000.0", "sz": "0.1", "n": 1}]]
    deposit = {
        "time": T,
        "hash": event_hash("ledger", 1, 1),  # the genesis deposits: A's (0), then B's
        "delta": {"type": "deposit", "usdc": "100000.0"},
    }
    perp_ctxs = node.info({"type": "metaAndAssetCtxs"})[1]
    spot_ctxs = node.info({"type": "spotMetaAndAssetCtxs"})[1]
    assert await client.received() == [
        ack(CHANNELS[0]),
        # BTC and @2 (UBTC/USDC, priced at BTC's mark until it trades): the other markets
        # have no price yet.
        {"channel": "allMids", "data": {"mids": {"BTC": "100000.0", "@2": "100000.0"}}},
        ack(CHANNELS[1]),
        {"channel": "l2Book", "data": {"coin": "BTC", "time": T + 1000, "levels": book}},
        ack(CHANNELS[2]),
        ack(CHANNELS[3]),
        {"channel": "bbo", "data": {"coin": "BTC", "time": T + 1000, "bbo": [None, book[1][0]]}},
        ack(CHANNELS[4]),
        ack(CHANNELS[5]),
        ack(CHANNELS[6]),
        {"channel": "userFills", "data": {"user": B, "isSnapshot": True, "fills": []}},
        ack(CHANNELS[7]),
        ack(CHANNELS[8]),
        {"channel": "userFundings", "data": {"user": B, "isSnapshot": True, "fundings": []}},
        ack(CHANNELS[9]),
        {
            "channel": "userNonFundingLedgerUpdates",
            "data": {"user": B, "isSnapshot": True, "nonFundingLedgerUpdates": [deposit]},
        },
        ack(CHANNELS[10]),
        {"channel": "activeAssetCtx", "data": {"coin": "BTC", "ctx": perp_ctxs[BTC]}},
        ack(CHANNELS[11]),
        {"channel": "activeSpotAssetCtx", "data": {"coin": "PURR/USDC", "ctx": spot_ctxs[0]}},
        ack(CHANNELS[12]),
        {
            "channel": "activeAssetData",
            "data": {
                "user": B,
                "coin": "BTC",
                "leverage": {"type": "cross", "value": 20},
                # 100,000 USDC free, x20 at 100000: 20 BTC either way.
                "maxTradeSzs": ["20.0", "20.0"],
                "availableToTrade": ["100000.0", "100000.0"],
                "markPx": "100000.0",
            },
        },
        ack(CHANNELS[13]),
        {"channel": "webData2", "data": web_data2(node, B)},
        ack(CHANNELS[14]),
    ]


def web_data2(node: Node, user: str) -> Json:
    meta, contexts = node.info({"type": "metaAndAssetCtxs"})
    return {
        "clearinghouseState": node.info({"type": "clearinghouseState", "user": user}),
        "leadingVaults": [],
        "totalVaultEquity": "0.0",
        "openOrders": node.info({"type": "frontendOpenOrders", "user": user}),
        "agentAddress": None,
        "agentValidUntil": None,
        "cumLedger": "0.0",
        "meta": meta,
        "assetCtxs": contexts,
        "serverTime": node.history.time,
        "isVault": False,
        "user": user,
        "twapStates": [],
        "spotState": node.info({"type": "spotClearinghouseState", "user": user}),
        "spotAssetCtxs": node.info({"type": "spotMetaAndAssetCtxs"})[1],
    }


async def test_each_channel_after_a_block_with_a_fill(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Block 2: B buys 0.04 BTC with an IOC against A's sell and moves 100 USDC to spot. Every
    channel gets its message, in subscription order; fills carry the hash and `dir` /info
    gives them."""
    node, client = await trading_node(nursery)
    await client.received()
    await node.block(
        [
            (B, buy("100000", "0.04", "Ioc")),
            (B, UsdClassTransferAction(amount="100", to_perp=False)),
        ]
    )
    messages = await client.received()
    [info_fill] = node.info({"type": "userFills", "user": B})
    fill = fill_b(event_hash("order", 2, 2))  # the crossing order's hash
    assert info_fill == fill
    book = [[], [{"px": "100000.0", "sz": "0.06", "n": 1}]]
    trade = {
        "coin": "BTC",
        "side": "B",
        "px": "100000.0",
        "sz": "0.04",
        "hash": fill["hash"],
        "time": T + 2000,
        "tid": 1,
        "users": [B, A],
    }
    candle = {
        "t": 1_699_999_980_000,  # the minute holding T + 2000
        "T": 1_700_000_039_999,
        "s": "BTC",
        "i": "1m",
        "o": "100000.0",
        "c": "100000.0",
        "h": "100000.0",
        "l": "100000.0",
        "v": "0.04",
        "n": 1,
    }
    basic_order = {
        "coin": "BTC",
        "side": "B",
        "limitPx": "100000.0",
        "sz": "0.0",
        "oid": 2,
        "timestamp": T + 2000,
        "origSz": "0.04",
    }
    transfer = {
        "time": T + 2000,
        "hash": event_hash("ledger", 2, 0),
        "delta": {"type": "accountClassTransfer", "usdc": "100.0", "toPerp": False},
    }
    perp_ctxs = node.info({"type": "metaAndAssetCtxs"})[1]
    spot_ctxs = node.info({"type": "spotMetaAndAssetCtxs"})[1]
    assert perp_ctxs[BTC]["openInterest"] == "0.04"
    assert messages == [
        {"channel": "allMids", "data": {"mids": {"BTC": "100000.0", "@2": "100000.0"}}},
        {"channel": "l2Book", "data": {"coin": "BTC", "time": T + 2000, "levels": book}},
        {"channel": "trades", "data": [trade]},
        {"channel": "bbo", "data": {"coin": "BTC", "time": T + 2000, "bbo": [None, book[1][0]]}},
        {"channel": "candle", "data": candle},
        {"channel": "user", "data": {"fills": [fill]}},
        {"channel": "userFills", "data": {"user": B, "isSnapshot": False, "fills": [fill]}},
        {
            "channel": "orderUpdates",
            "data": [{"order": basic_order, "status": "filled", "statusTimestamp": T + 2000}],
        },
        {
            "channel": "userNonFundingLedgerUpdates",
            "data": {"user": B, "isSnapshot": False, "nonFundingLedgerUpdates": [transfer]},
        },
        {"channel": "activeAssetCtx", "data": {"coin": "BTC", "ctx": perp_ctxs[BTC]}},
        {"channel": "activeSpotAssetCtx", "data": {"coin": "PURR/USDC", "ctx": spot_ctxs[0]}},
        {
            "channel": "activeAssetData",
            "data": {
                "user": B,
                "coin": "BTC",
                "leverage": {"type": "cross", "value": 20},
                # Value 100,000 - 1.8 fee - 100 moved = 99,898.2, less 200 of margin for
                # 0.04 BTC at 20x: 99,698.2 free, x20 at 100000 = 19.93964 BTC; selling can
                # also close the 0.04 held.
                "maxTradeSzs": ["19.93964", "19.97964"],
                "availableToTrade": ["99698.2", "99698.2"],
                "markPx": "100000.0",
            },
        },
        {"channel": "webData2", "data": web_data2(node, B)},
    ]
    # A block that changes nothing of the book: no bbo, trades, candle or user messages.
    await node.block([])
    assert [m["channel"] for m in await client.received()] == [
        "allMids",
        "l2Book",
        "activeAssetCtx",
        "activeSpotAssetCtx",
        "activeAssetData",
        "webData2",
    ]


async def test_a_snapshot_is_not_followed_by_the_block_it_showed(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A client subscribing after a block is committed but before the hub pushed it: the
    snapshot already has the block's fill, so the push of that block skips the new
    subscription; the next block reaches it."""
    chain = hand_priced_chain()
    chain.deposit(A, 100_000 * USD, T)
    chain.deposit(B, 100_000 * USD, T)
    node = Node(chain, nursery)
    await node.start(hub_runs=False)
    await node.block([(A, sell("100000", "0.1"))])
    await node.push()
    await node.block([(B, buy("100000", "0.04", "Ioc"))])
    client = node.client()
    subscription = {"type": "userFills", "user": B}
    await client.subscribe(subscription)
    fill = fill_b(event_hash("order", 2, 2))
    assert await client.received() == [
        ack(subscription),
        {"channel": "userFills", "data": {"user": B, "isSnapshot": True, "fills": [fill]}},
    ]
    await node.push()  # block 2
    assert await client.received() == []
    await node.block([(B, buy("100000", "0.01", "Ioc"))])
    await node.push()  # block 3
    [update] = await client.received()
    assert update["data"]["isSnapshot"] is False
    assert [(f["oid"], f["sz"], f["time"]) for f in update["data"]["fills"]] == [
        (3, "0.01", T + 3000)
    ]


async def test_a_hub_that_missed_blocks_drops_its_clients(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Their per-block feeds would have a gap: the clients are disconnected instead."""
    node = Node(hand_priced_chain(), nursery)
    await node.start(hub_runs=False)
    client = node.client()
    await client.subscribe({"type": "allMids"})
    assert [m["channel"] for m in await client.received()] == ["subscriptionResponse", "allMids"]
    await node.block([])
    await node.push()
    assert [m["channel"] for m in await client.received()] == ["allMids"]
    await node.block([])
    await node.block([])
    node.next_block()  # block 2 is lost on the way
    await node.push()
    with trio.fail_after(60):
        await client.left.wait()
    assert client.closed.is_set()
    assert node.hub.connections == []


async def test_funding_payments_reach_the_user_feeds(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The oracle drives prices (BTC constant at 100000, books empty so no premium). A sells
    0.1 BTC to B; the first block of the next hour settles the hour at 0.01% / 8: B, long,
    pays 0.125 USDC on 0.1 BTC at the oracle. userFundings and userEvents get it in that
    block; a later subscriber finds it in the snapshot."""
    config = load_config(CONFIG)
    chain = Chain(config.markets, config.oracle_sources, T, lending=config.lending)
    chain.deposit(A, 100_000 * USD, T)
    chain.deposit(B, 100_000 * USD, T)
    node = Node(chain, nursery)
    await node.start()
    await node.block([(A, sell("100000", "0.1"))])
    await node.block([(B, buy("100000", "0.1", "Ioc"))])
    client = node.client()
    await client.subscribe({"type": "userFundings", "user": B})
    await client.subscribe({"type": "userEvents", "user": B})
    await client.received()
    await node.block([], dt_ms=NEXT_HOUR + 500 - (T + 2000))
    payment = {
        "time": NEXT_HOUR + 500,
        "coin": "BTC",
        "usdc": "-0.125",
        "szi": "0.1",
        "fundingRate": "0.0000125",
        "nSamples": 1,
    }
    assert await client.received() == [
        {
            "channel": "userFundings",
            "data": {"user": B, "isSnapshot": False, "fundings": [payment]},
        },
        {"channel": "user", "data": {"funding": payment}},
    ]
    late = node.client()
    await late.subscribe({"type": "userFundings", "user": B_MIXED})
    assert (await late.received())[1] == {
        "channel": "userFundings",
        "data": {"user": B, "isSnapshot": True, "fundings": [payment]},
    }


async def test_a_liquidation_reaches_the_liquidated_users_events(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """E (600 USDC) buys 0.1 BTC at 100000 from A (oid 1) with an IOC (oid 2, fee 4.5) and
    rests a buy 0.001 @ 90000 (oid 3). At a mark of 94500 its value is 600 - 4.5 - 550 = 45.5,
    under 2/3 of its maintenance margin (9,450 / 80 = 118.125): the backstop liquidator takes
    the position at the mark (E's closing order oid 4, the liquidator's oid 5, trade 2), after
    E's resting order is cancelled. E's userEvents: its fill, the liquidation, the cancel."""
    chain = hand_priced_chain()
    chain.deposit(A, 100_000 * USD, T)
    chain.deposit(E, 600 * USD, T)
    chain.deposit(LIQUIDATOR, 1_000_000 * USD, T)
    node = Node(chain, nursery)
    await node.start()
    await node.block([(A, sell("100000", "0.1"))])
    await node.block([(E, buy("100000", "0.1", "Ioc")), (E, buy("90000", "0.001"))])
    client = node.client()
    await client.subscribe({"type": "userEvents", "user": E})
    await client.subscribe({"type": "trades", "coin": "BTC"})
    await client.received()
    async with node.producer.state_lock:
        chain.clearinghouse.set_mark(BTC, 945_000)
    await node.block([])
    hash_ = event_hash("order", 3, 4)
    fill = {
        "coin": "BTC",
        "px": "94500.0",
        "sz": "0.1",
        "side": "A",
        "time": T + 3000,
        "startPosition": "0.1",
        "dir": "Liquidated Cross Long",
        "closedPnl": "-550.0",
        "hash": hash_,
        "oid": 4,
        "crossed": True,
        "fee": "0.0",
        "tid": 2,
        "liquidation": {"liquidatedUser": E, "markPx": "94500.0", "method": "backstop"},
        "feeToken": "USDC",
    }
    liquidation = {
        "lid": int(event_hash("ledger", 3, 0), 16) >> (256 - 53),
        "liquidator": LIQUIDATOR,
        "liquidated_user": E,
        "liquidated_ntl_pos": "9450.0",
        "liquidated_account_value": "45.5",
    }
    trade = {
        "coin": "BTC",
        "side": "A",
        "px": "94500.0",
        "sz": "0.1",
        "hash": hash_,
        "time": T + 3000,
        "tid": 2,
        "users": [LIQUIDATOR, E],
    }
    assert await client.received() == [
        {"channel": "user", "data": {"fills": [fill]}},
        {"channel": "user", "data": {"liquidation": liquidation}},
        {"channel": "user", "data": {"nonUserCancel": [{"coin": "BTC", "oid": 3}]}},
        {"channel": "trades", "data": [trade]},
    ]
    assert node.info({"type": "userFills", "user": E})[0] == fill


# The protocol.


async def test_ping_acks_and_errors(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """ping gets pong; a subscription is one whatever the letter case of its user (a second
    subscribe is an error, not a second feed); unsubscribe stops the feed; what is not a valid
    subscription of a known coin, interval or address gets an error and changes nothing."""
    chain = hand_priced_chain()
    chain.deposit(B, 100_000 * USD, T)
    node = Node(chain, nursery)
    await node.start()
    client = node.client()
    await client.send({"method": "ping"})
    mixed = {"type": "userFundings", "user": B_MIXED}
    lower = {"type": "userFundings", "user": B}
    await client.subscribe(mixed)
    await client.subscribe(lower)
    bad = [
        {"type": "l2Book", "coin": "NOPE"},
        {"type": "l2Book", "coin": "BTC", "nSigFigs": 7},
        {"type": "candle", "coin": "BTC", "interval": "7m"},
        {"type": "userFills", "user": "0x1234"},
        {"type": "activeAssetData", "user": B, "coin": "PURR/USDC"},
        {"type": "allMids", "dex": "other"},
        {"type": "trades"},
        {"type": "nope"},
    ]
    for subscription in bad:
        await client.subscribe(subscription)
    await client.send({"method": "unsubscribe", "subscription": lower})
    await client.send({"method": "unsubscribe", "subscription": mixed})
    await client.send({"method": "shout"})
    await client._sent_in.send("{not json")
    # JSON the real API's parser refuses: a lone surrogate, which no reply could carry back.
    surrogate = '{"method": "subscribe", "subscription": {"type": "allMids", "x": "\\ud800"}}'
    await client._sent_in.send(surrogate)
    snapshot = {"user": B, "isSnapshot": True, "fundings": []}
    messages = await client.received()
    assert messages[:4] == [
        {"channel": "pong"},
        ack(mixed),
        {"channel": "userFundings", "data": snapshot},
        {"channel": "error", "data": "Already subscribed: " + subscribe_text(lower)},
    ]
    assert messages[4:12] == [
        {"channel": "error", "data": "Invalid subscription: " + subscribe_text(s)[:100]}
        for s in bad
    ]
    assert messages[12:] == [
        ack(lower, "unsubscribe"),
        {"channel": "error", "data": "Already unsubscribed: " + unsubscribe_text(mixed)},
        {"channel": "error", "data": 'Unknown method: {"method": "shout"}'},
        {"channel": "error", "data": "Invalid json: {not json"},
        {"channel": "error", "data": "Invalid json: " + surrogate[:100]},
    ]
    await node.block([])
    assert await client.received() == []


def subscribe_text(subscription: Json) -> str:
    return json.dumps({"method": "subscribe", "subscription": subscription})[:100]


def unsubscribe_text(subscription: Json) -> str:
    return json.dumps({"method": "unsubscribe", "subscription": subscription})[:100]


async def test_a_client_too_slow_is_disconnected_while_blocks_go_on(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A client that stops reading fills its outbox (one l2Book message per block) and is
    disconnected at the block that overflows it; the other client gets every block, before
    and after."""
    node = Node(hand_priced_chain(), nursery)
    await node.start()
    slow, fast = node.client(stalled=True), node.client()
    for client in (slow, fast):
        await client.subscribe({"type": "l2Book", "coin": "BTC"})
    assert [book["time"] for book in of("l2Book", await fast.received())] == [T]
    # The ack is stuck in the slow client's socket; the snapshot and the next blocks wait in
    # its outbox until one more does not fit.
    overflow = OUTBOX_MESSAGES
    for height in range(1, overflow + 11):
        await node.producer.mine(1)
        await trio.testing.wait_all_tasks_blocked()
        assert slow.left.is_set() == (height >= overflow), height
        assert [book["time"] for book in of("l2Book", await fast.received())] == [T + 1000 * height]
    assert slow.closed.is_set()  # the hub closed it
    [connection] = node.hub.connections
    assert connection.subscriptions


async def test_a_burst_of_blocks_shows_each_state_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Blocks mined at once leave the hub behind the chain: it does not wait for them one by
    one, and a state it can no longer show is skipped, never sent twice or out of order."""
    node = Node(hand_priced_chain(), nursery)
    await node.start()
    client = node.client()
    await client.subscribe({"type": "l2Book", "coin": "BTC"})
    await client.received()
    await node.producer.mine(20)
    times = [book["time"] for book in of("l2Book", await client.received())]
    assert times == sorted(set(times))
    assert times[-1] == T + 20_000
    assert len(times) < 20  # the producer did not wait for the hub at each block


# The official SDK's WebSocket client against a live node (instant mining, market maker on).


def wait_for(messages: queue.Queue[Json], wanted: Callable[[Json], bool]) -> Json:
    """The first message `wanted` accepts, within 10 s (earlier ones are passed over)."""
    while True:
        message = messages.get(timeout=10)
        if wanted(message):
            return message


def test_the_sdk_receives_its_fills_and_the_book(devnet: Devnet) -> None:
    """Subscribed before trading: the userFills snapshot is empty; the market order's block
    pushes its fill (dispatched by the SDK on the lower-cased user) and the book the maker
    quoted in that block."""
    user = devnet.accounts[6].address  # checksummed, mixed case
    info = Info(devnet.url, skip_ws=False)
    try:
        fills: queue.Queue[Json] = queue.Queue()
        books: queue.Queue[Json] = queue.Queue()
        info.subscribe({"type": "userFills", "user": user}, fills.put)
        info.subscribe({"type": "l2Book", "coin": "BTC"}, books.put)
        snapshot = fills.get(timeout=10)
        assert snapshot == {
            "channel": "userFills",
            "data": {"user": user.lower(), "isSnapshot": True, "fills": []},
        }
        assert books.get(timeout=10)["data"]["coin"] == "BTC"
        opened = Exchange(devnet.wallet(6), devnet.url).market_open("BTC", True, 0.01)
        filled = opened["response"]["data"]["statuses"][0]["filled"]
        update = wait_for(fills, lambda message: True)["data"]
        assert update["isSnapshot"] is False
        [fill] = update["fills"]
        assert (fill["oid"], fill["sz"], fill["side"], fill["dir"]) == (
            filled["oid"],
            "0.01",
            "B",
            "Open Long",
        )
        assert fill["px"] == filled["avgPx"]
        book = wait_for(books, lambda message: all(message["data"]["levels"]))["data"]
        bids, asks = book["levels"]
        assert float(bids[0]["px"]) < float(asks[0]["px"])
    finally:
        info.disconnect_websocket()
