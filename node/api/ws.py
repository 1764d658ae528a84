"""WebSocket subscriptions (/ws): Hyperliquid's subscribe/unsubscribe/ping protocol, with the
channels pushed once per committed block.

Invariants:
- Each connection has a bounded outbox (`OUTBOX_MESSAGES`): the hub never waits for a client.
  A client too slow to take a block's messages is disconnected, and block production never
  waits on the API (the hub reads blocks from the event bus, which drops a lagging hub too).
- A block's messages are built once per distinct subscription, under the producer's state
  lock, so every subscriber of a channel gets the same view of a whole block.
- Subscriptions are keyed by their canonical form (type, coin, user lower-cased), so the same
  subscription sent twice is one; unsubscribe removes it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import trio

from node.actors import BlockEvent
from node.api.history import History
from node.api.info import answer_info
from node.blocks import BlockProducer

OUTBOX_MESSAGES = 256
BUS_BUFFER = 64

log = structlog.get_logger(__name__)

Json = Any
Key = tuple[tuple[str, str], ...]  # a subscription's canonical form


def subscription_key(subscription: Json) -> Key | None:
    """The canonical form of a subscription object, or None when it is not one."""
    if not isinstance(subscription, dict) or not isinstance(subscription.get("type"), str):
        return None
    items = []
    for name, value in subscription.items():
        if not isinstance(value, str):
            return None
        items.append((name, value.lower() if name == "user" else value))
    return tuple(sorted(items))


class Connection:
    def __init__(self) -> None:
        self.outbox_in, self.outbox = trio.open_memory_channel[str](OUTBOX_MESSAGES)
        self.subscriptions: dict[Key, Json] = {}
        self.closed = False

    def push(self, message: Json) -> None:
        """Queue without waiting; a full outbox disconnects the client."""
        if self.closed:
            return
        try:
            self.outbox_in.send_nowait(json.dumps(message, separators=(",", ":")))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            log.warning("websocket client too slow, disconnected")
            self.close()

    def close(self) -> None:
        self.closed = True
        self.outbox_in.close()


class WsHub:
    def __init__(self, producer: BlockProducer, history: History) -> None:
        self.producer = producer
        self.history = history
        self.connections: list[Connection] = []

    async def serve_connection(
        self,
        receive_text: Callable[[], Awaitable[str | None]],
        send_text: Callable[[str], Awaitable[None]],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        connection = Connection()
        self.connections.append(connection)
        try:
            async with trio.open_nursery() as nursery:

                async def write() -> None:
                    async for text in connection.outbox:
                        await send_text(text)
                    await close()  # the outbox was closed: too slow
                    nursery.cancel_scope.cancel()

                nursery.start_soon(write)
                while (text := await receive_text()) is not None:
                    await self._on_message(connection, text)
                nursery.cancel_scope.cancel()
        finally:
            connection.close()
            self.connections.remove(connection)

    async def _on_message(self, connection: Connection, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            connection.push({"channel": "error", "data": f"Invalid json: {text[:100]}"})
            return
        method = message.get("method") if isinstance(message, dict) else None
        if method == "ping":
            connection.push({"channel": "pong"})
            return
        if method not in ("subscribe", "unsubscribe"):
            connection.push({"channel": "error", "data": f"Unknown method: {text[:100]}"})
            return
        subscription = message.get("subscription")
        key = subscription_key(subscription)
        if key is None:
            connection.push({"channel": "error", "data": f"Invalid subscription: {text[:100]}"})
            return
        if method == "subscribe":
            connection.subscriptions[key] = subscription
            ack = {"method": "subscribe", "subscription": subscription}
            connection.push({"channel": "subscriptionResponse", "data": ack})
            async with self.producer.state_lock:
                for first in self.snapshot(subscription):
                    connection.push(first)
        else:
            connection.subscriptions.pop(key, None)
            ack = {"method": "unsubscribe", "subscription": subscription}
            connection.push({"channel": "subscriptionResponse", "data": ack})

    async def run(self) -> None:
        """Push each committed block to the subscribers until cancelled."""
        events = self.producer.subscribe(BUS_BUFFER)
        async for event in events:
            if not self.connections:
                continue
            async with self.producer.state_lock:
                wanted: dict[Key, Json] = {}
                for connection in self.connections:
                    wanted.update(connection.subscriptions)
                messages = {key: self.on_block(sub, event) for key, sub in wanted.items()}
            for connection in list(self.connections):
                for key in connection.subscriptions:
                    for message in messages.get(key, []):
                        connection.push(message)

    # The channels.

    def snapshot(self, subscription: Json) -> list[Json]:
        """What a new subscriber gets at once."""
        kind = subscription["type"]
        if kind in ("allMids", "l2Book"):
            return self.on_block(subscription, None)
        return []

    def on_block(self, subscription: Json, event: BlockEvent | None) -> list[Json]:
        """The messages one subscription gets for a block (`event` None: the current state)."""
        kind = subscription["type"]
        chain, history = self.producer.chain, self.history
        if kind == "allMids":
            _, mids = answer_info({"type": "allMids"}, chain, history)
            return [{"channel": "allMids", "data": {"mids": mids}}]
        if kind == "l2Book":
            request = {"type": "l2Book", "coin": subscription.get("coin", "")}
            status, book = answer_info(request, chain, history)
            return [{"channel": "l2Book", "data": book}] if status == 200 and book else []
        return []
