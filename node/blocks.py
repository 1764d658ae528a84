"""The block producer: the one actor that owns the `Exchange` and turns submitted actions into
blocks.

Invariants:
- Only the producer touches the exchange; everything else talks to it through `SubmitAction`
  messages on its inbox channel (or `submit`, which wraps one).
- Block heights count from 1; block h has the virtual time genesis_time_ms + h * block_time_ms
  (ms). protocol/ only ever sees these block times, never a clock.
- A block takes the actions that arrived since the previous block, in arrival order, orders them
  with `protocol.block.order_block_actions` (three classes, stable), executes them, then runs
  `on_block_time` with the block's time.
- Producing a block is synchronous (no checkpoint): cancellation lands between blocks, never in
  the middle of one.
- A submitted action is executed in exactly one block, and its reply channel gets that block's
  `ActionResult`; if the producer stops first, the reply channel is closed instead (`submit`
  raises `ProducerStoppedError`). Replies never block the producer: one that does not fit is
  dropped with a warning.

Scheduling: block h is due at start + h * block_time on the trio clock. If a block takes longer
than block_time, the following ones are produced back to back until the schedule is met again;
their virtual times stay evenly spaced.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import structlog
import trio

from protocol.actions import ActionResponse, TradingAction
from protocol.block import order_block_actions
from protocol.exchange import Exchange, Fill, OrderUpdate

DEFAULT_MAX_PENDING = 10_000

log = structlog.get_logger(__name__)


class ActionResult(msgspec.Struct, frozen=True):
    """The answer to one submitted action, with the block that executed it."""

    height: int
    time: int
    response: ActionResponse


class SubmitAction(msgspec.Struct, frozen=True):
    """A signed-off action for the next block. `reply` receives its `ActionResult` (sent without
    blocking: give it a buffer of at least 1), or is closed unanswered if the producer stops."""

    user: str
    action: TradingAction
    reply: trio.MemorySendChannel[ActionResult] | None = None


class ExecutedAction(msgspec.Struct, frozen=True):
    user: str
    action: TradingAction
    response: ActionResponse


class Block(msgspec.Struct, frozen=True):
    """What one block did: its actions in execution order with their answers, and its events."""

    height: int
    time: int
    actions: tuple[ExecutedAction, ...]
    fills: tuple[Fill, ...]
    order_updates: tuple[OrderUpdate, ...]


class ProducerStoppedError(Exception):
    """The block producer stopped before the action was executed."""


class BlockProducer:
    def __init__(
        self,
        exchange: Exchange,
        *,
        genesis_time_ms: int,
        block_time_ms: int,
        max_pending: int = DEFAULT_MAX_PENDING,
        on_block: Callable[[Block], None] | None = None,
    ) -> None:
        """`max_pending` bounds the inbox (senders wait when it is full); `on_block` is called
        synchronously with every block once it is produced."""
        if block_time_ms < 1:
            raise ValueError(f"block_time_ms must be positive, got {block_time_ms}")
        self.exchange = exchange
        self.genesis_time_ms = genesis_time_ms
        self.block_time_ms = block_time_ms
        self.on_block = on_block
        self.height = 0
        self.time = genesis_time_ms  # time of the latest block; genesis time before the first
        self._inbox, self._receive = trio.open_memory_channel[SubmitAction](max_pending)
        self._pending: list[SubmitAction] = []
        self._started = False

    @property
    def inbox(self) -> trio.MemorySendChannel[SubmitAction]:
        """Where actions are sent. Clone it for a sender that wants to close its own end."""
        return self._inbox

    async def submit(self, user: str, action: TradingAction) -> ActionResult:
        """Send one action and wait for the block that executes it."""
        reply, answer = trio.open_memory_channel[ActionResult](1)
        with answer:
            try:
                await self._inbox.send(SubmitAction(user, action, reply))
                return await answer.receive()
            except (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
                raise ProducerStoppedError("the block producer stopped") from None

    async def run(
        self,
        max_blocks: int | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Produce a block every block_time until cancelled or until `max_blocks` blocks. Reports
        started (for `nursery.start`) once the schedule has begun. Runs once: when it returns,
        the inbox is closed and waiting submitters are released."""
        if self._started:
            raise RuntimeError("a block producer runs only once")
        self._started = True
        start = trio.current_time()
        first_height = self.height
        task_status.started()
        try:
            while max_blocks is None or self.height - first_height < max_blocks:
                due = start + (self.height - first_height + 1) * self.block_time_ms / 1000
                with trio.move_on_at(due):
                    async for message in self._receive:
                        self._pending.append(message)
                    await trio.sleep_until(due)  # only reached if the inbox was closed
                self.produce_block()
        finally:
            self._close()

    def produce_block(self) -> Block:
        """Execute the pending actions as the next block. No checkpoint, so it is atomic with
        respect to trio cancellation."""
        height = self.height + 1
        time = self.genesis_time_ms + height * self.block_time_ms
        entries = order_block_actions(self._pending, lambda entry: entry.action)
        self._pending = []
        exchange = self.exchange
        executed: list[ExecutedAction] = []
        for entry in entries:
            response = exchange.execute(entry.user, entry.action, time)
            executed.append(ExecutedAction(entry.user, entry.action, response))
            if entry.reply is not None:
                _answer(entry.reply, ActionResult(height, time, response))
        exchange.on_block_time(time)
        fills, updates = exchange.take_events()
        self.height = height
        self.time = time
        block = Block(height, time, tuple(executed), tuple(fills), tuple(updates))
        log.info("block", height=height, time=time, actions=len(executed), fills=len(fills))
        if self.on_block is not None:
            self.on_block(block)
        return block

    def _close(self) -> None:
        """Stop taking actions; everyone still waiting gets their reply channel closed."""
        while True:
            try:
                self._pending.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        self._receive.close()  # later senders get BrokenResourceError
        for entry in self._pending:
            if entry.reply is not None:
                entry.reply.close()
        self._pending = []


def _answer(reply: trio.MemorySendChannel[ActionResult], result: ActionResult) -> None:
    """Deliver without blocking: a submitter that left or gave no buffer misses its answer; the
    block goes on."""
    try:
        reply.send_nowait(result)
    except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
        log.warning("reply dropped", height=result.height)
