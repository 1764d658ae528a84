"""The node's actors and the messages they take, one tagged union per channel.

A block is a fixed sequence of phases driven by the block producer (node/blocks.py), the same
phases as `Chain.apply_block`, which replay runs:

    oracle      PublishPrices     the oracle publishes (every 3 s of block time)
    lending     AccrueInterest    every reserve accrues to the block time
    maker       Quote             the market maker's actions for the block (node/market_maker.py)
    matching    ExecuteActions    marks follow a publication, then the actions in class order
    matching    RunTimedPasses    TP/SL triggers, scheduled cancels, funding
    lending     SettlePortfolio   portfolio-margin debts to target, idle USDC supplied
    margin      Liquidate         standard accounts, then portfolio-margin accounts
    matching    CollectEvents     the block's fills, order updates, ledger and funding
    (indexes)                     the API's history takes the block's output
    store       Commit            state hash, block durable in the log (fsync), snapshots
    bus         BlockEvent        the committed block, to subscribers (the API)

Invariants:
- The producer sends one message per actor per phase and waits for the reply before the next
  phase, so exactly one actor runs at a time and the result never depends on trio's task
  order: the order comes from the sequence above alone. An actor calls only its own phase's
  rule on its slice of the chain (oracle: prices; lending: reserves; matching: books,
  clearinghouse and marks; margin: liquidation); the slices share one `Chain` object because
  the rules reach across them (a fill moves margin, a liquidation trades on the books), and the
  phase order is what keeps them from running at once.
- An actor handles a message to completion with its cancel scope shielded, and stops only when
  its inbox is closed: a block in progress is never cut in half by a cancellation.
- `checkpoint`, when given, runs before every message (tests pass random sleeps and
  checkpoints): it can change when an actor runs, never what it computes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import msgspec
import structlog
import trio

from node.chainstore import ChainStore
from node.market_maker import MARKET_MAKER, MarketMaker
from protocol.chain import Action, BlockOutput, Chain, ExecutedAction
from protocol.ledger import FundingUpdate

log = structlog.get_logger(__name__)

Checkpoint = Callable[[], Awaitable[None]]

# Oracle channel.


class PublishPrices(msgspec.Struct, frozen=True, tag=True):
    time: int


class PricesPublished(msgspec.Struct, frozen=True, tag=True):
    published: bool
    prices: tuple[tuple[int, int], ...]  # (perp asset, oracle price), every perp


# Lending channel.


class AccrueInterest(msgspec.Struct, frozen=True, tag=True):
    time: int


class SettlePortfolio(msgspec.Struct, frozen=True, tag=True):
    pass


LendingRequest = AccrueInterest | SettlePortfolio


class Done(msgspec.Struct, frozen=True, tag=True):
    pass


# Market maker channel.


class Quote(msgspec.Struct, frozen=True, tag=True):
    prices: tuple[tuple[int, int], ...]
    traded: frozenset[int]  # assets the maker traded on in the previous block


class Quoted(msgspec.Struct, frozen=True, tag=True):
    actions: tuple[tuple[str, Action], ...]


# Matching channel.


class ExecuteActions(msgspec.Struct, frozen=True, tag=True):
    time: int
    published: bool
    actions: tuple[tuple[str, Action], ...]


class RunTimedPasses(msgspec.Struct, frozen=True, tag=True):
    time: int


class CollectEvents(msgspec.Struct, frozen=True, tag=True):
    height: int
    time: int
    executed: tuple[ExecutedAction, ...]
    funding: tuple[FundingUpdate, ...]


MatchingRequest = ExecuteActions | RunTimedPasses | CollectEvents


class ActionsExecuted(msgspec.Struct, frozen=True, tag=True):
    executed: tuple[ExecutedAction, ...]


class TimedPassesRun(msgspec.Struct, frozen=True, tag=True):
    funding: tuple[FundingUpdate, ...]


class EventsCollected(msgspec.Struct, frozen=True, tag=True):
    output: BlockOutput


MatchingReply = ActionsExecuted | TimedPassesRun | EventsCollected

# Margin channel.


class Liquidate(msgspec.Struct, frozen=True, tag=True):
    time: int


# Store channel.


class Commit(msgspec.Struct, frozen=True, tag=True):
    height: int
    time: int
    proposed: tuple[tuple[str, Action], ...]


class Committed(msgspec.Struct, frozen=True, tag=True):
    state_hash: bytes  # empty when the node runs without a log


# Event bus.


class BlockEvent(msgspec.Struct, frozen=True, tag=True):
    """A committed block, for the API and subscriptions."""

    output: BlockOutput
    state_hash: bytes
    took_ms: float  # time taken to produce it, on the node's clock


RequestT = TypeVar("RequestT")
ReplyT = TypeVar("ReplyT")


class Actor(Generic[RequestT, ReplyT]):
    """A trio task answering one request at a time, in order."""

    def __init__(
        self, name: str, handle: Callable[[RequestT], ReplyT], checkpoint: Checkpoint | None
    ) -> None:
        self.name = name
        self._handle = handle
        self._checkpoint = checkpoint
        self._requests_in, self._requests = trio.open_memory_channel[RequestT](1)
        self._replies_in, self._replies = trio.open_memory_channel[ReplyT](1)

    async def run(self) -> None:
        with trio.CancelScope(shield=True):
            async with self._requests, self._replies_in:
                async for request in self._requests:
                    if self._checkpoint is not None:
                        await self._checkpoint()
                    await self._replies_in.send(self._handle(request))

    async def call(self, request: RequestT) -> ReplyT:
        await self._requests_in.send(request)
        return await self._replies.receive()

    def close(self) -> None:
        self._requests_in.close()


class EventBus:
    """Fans each committed block out to subscribers without ever waiting for one: a subscriber
    whose buffer is full is disconnected (its channel closed), not waited for."""

    def __init__(self, checkpoint: Checkpoint | None = None, buffer: int = 64) -> None:
        self._subscribers: list[trio.MemorySendChannel[BlockEvent]] = []
        self._checkpoint = checkpoint
        self._events_in, self._events = trio.open_memory_channel[BlockEvent](buffer)

    def subscribe(self, buffer: int = 16) -> trio.MemoryReceiveChannel[BlockEvent]:
        send, receive = trio.open_memory_channel[BlockEvent](buffer)
        self._subscribers.append(send)
        return receive

    async def publish(self, event: BlockEvent) -> None:
        await self._events_in.send(event)

    async def run(self) -> None:
        with trio.CancelScope(shield=True):
            async with self._events:
                async for event in self._events:
                    if self._checkpoint is not None:
                        await self._checkpoint()
                    self._fan_out(event)
            for subscriber in self._subscribers:
                subscriber.close()

    def _fan_out(self, event: BlockEvent) -> None:
        kept: list[trio.MemorySendChannel[BlockEvent]] = []
        for subscriber in self._subscribers:
            try:
                subscriber.send_nowait(event)
            except trio.WouldBlock:
                log.warning("subscriber too slow, disconnected", height=event.output.height)
                subscriber.close()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                subscriber.close()  # it left
            else:
                kept.append(subscriber)
        self._subscribers = kept

    def close(self) -> None:
        self._events_in.close()


class Actors:
    """The actors of one node around one chain."""

    def __init__(
        self,
        chain: Chain,
        store: ChainStore | None,
        maker: MarketMaker | None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        def publish(request: PublishPrices) -> PricesPublished:
            published = chain.publish_oracle(request.time)
            return PricesPublished(published, tuple(sorted(chain.oracle.prices.items())))

        def lend(request: LendingRequest) -> Done:
            if isinstance(request, AccrueInterest):
                chain.accrue_interest(request.time)
            else:
                chain.settle_portfolio()
            return Done()

        def match(request: MatchingRequest) -> MatchingReply:
            if isinstance(request, ExecuteActions):
                chain.update_marks(request.time, request.published)
                return ActionsExecuted(tuple(chain.execute_actions(request.time, request.actions)))
            if isinstance(request, RunTimedPasses):
                return TimedPassesRun(tuple(chain.run_timed_passes(request.time)))
            return EventsCollected(
                chain.end_block(request.height, request.time, request.executed, request.funding)
            )

        def liquidate(request: Liquidate) -> Done:
            chain.liquidate(request.time)
            return Done()

        def quote(request: Quote) -> Quoted:
            if maker is None:
                return Quoted(())
            actions = maker.quote(dict(request.prices), request.traded)
            return Quoted(tuple((MARKET_MAKER, action) for action in actions))

        def commit(request: Commit) -> Committed:
            if store is None:
                return Committed(b"")
            return Committed(store.commit(chain, request.height, request.time, request.proposed))

        self.oracle = Actor[PublishPrices, PricesPublished]("oracle", publish, checkpoint)
        self.lending = Actor[LendingRequest, Done]("lending", lend, checkpoint)
        self.maker = Actor[Quote, Quoted]("maker", quote, checkpoint)
        self.matching = Actor[MatchingRequest, MatchingReply]("matching", match, checkpoint)
        self.margin = Actor[Liquidate, Done]("margin", liquidate, checkpoint)
        self.store = Actor[Commit, Committed]("store", commit, checkpoint)
        self.bus = EventBus(checkpoint)
        self._all: tuple[Actor[Any, Any], ...] = (
            self.oracle,
            self.lending,
            self.maker,
            self.matching,
            self.margin,
            self.store,
        )

    def start(self, nursery: trio.Nursery) -> None:
        for actor in self._all:
            nursery.start_soon(actor.run, name=f"actor {actor.name}")
        nursery.start_soon(self.bus.run, name="event bus")

    def close(self) -> None:
        """Close every inbox: each actor finishes the message it holds, then stops."""
        for actor in self._all:
            actor.close()
        self.bus.close()

    async def run_block(
        self,
        height: int,
        time: int,
        proposed: list[tuple[str, Action]],
        traded: frozenset[int],
        before_commit: Sequence[Callable[[BlockOutput], None]] = (),
    ) -> tuple[tuple[tuple[str, Action], ...], BlockOutput, bytes]:
        """One block through every phase. The maker's actions go first in the proposals, so
        users trade against quotes at the block's prices; `before_commit` gets the block's
        output before the store commits it (and snapshots what they keep). Returns the
        proposals as executed and logged, the block's output, and its state hash."""
        prices = await self.oracle.call(PublishPrices(time))
        await self.lending.call(AccrueInterest(time))
        quotes = await self.maker.call(Quote(prices.prices, traded))
        in_block = (*quotes.actions, *proposed)
        executed = await self.matching.call(ExecuteActions(time, prices.published, in_block))
        assert isinstance(executed, ActionsExecuted)
        timed = await self.matching.call(RunTimedPasses(time))
        assert isinstance(timed, TimedPassesRun)
        await self.lending.call(SettlePortfolio())
        await self.margin.call(Liquidate(time))
        events = await self.matching.call(
            CollectEvents(height, time, executed.executed, timed.funding)
        )
        assert isinstance(events, EventsCollected)
        for index in before_commit:
            index(events.output)
        committed = await self.store.call(Commit(height, time, in_block))
        return in_block, events.output, committed.state_hash
