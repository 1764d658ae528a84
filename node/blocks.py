"""The block producer: the one actor that owns the `Chain` and turns submitted actions into
blocks.

Invariants:
- Only the producer touches the chain; everything else talks to it through `SubmitAction`
  messages on its inbox channel (or `submit`, which wraps one).
- Block heights count from 1; block h has the virtual time genesis_time_ms + h * block_time_ms
  (ms). protocol/ only ever sees these block times, never a clock.
- With a `ChainStore`, each block and its state hash are in the durable log before any of its
  replies are sent.
- A block takes the actions that arrived since the previous block, in arrival order, and hands
  them to `Chain.apply_block`, which owns the order of execution and the block's phases.
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

from node.chainstore import ChainStore
from protocol.actions import ActionResponse
from protocol.chain import Action, BlockOutput, Chain

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
    action: Action
    reply: trio.MemorySendChannel[ActionResult] | None = None


class ProducerStoppedError(Exception):
    """The block producer stopped before the action was executed."""


class BlockProducer:
    def __init__(
        self,
        chain: Chain,
        *,
        genesis_time_ms: int,
        block_time_ms: int,
        max_pending: int = DEFAULT_MAX_PENDING,
        on_block: Callable[[BlockOutput], None] | None = None,
        store: ChainStore | None = None,
        height: int = 0,
    ) -> None:
        """`max_pending` bounds the inbox (senders wait when it is full); `on_block` is called
        synchronously with every block once it is produced."""
        if block_time_ms < 1:
            raise ValueError(f"block_time_ms must be positive, got {block_time_ms}")
        self.chain = chain
        self.genesis_time_ms = genesis_time_ms
        self.block_time_ms = block_time_ms
        self.on_block = on_block
        self.store = store  # the durable log; None runs in memory only
        self.height = height  # the latest block (resuming: the last one in the log)
        self.time = genesis_time_ms + height * block_time_ms  # genesis time before the first
        self._inbox, self._receive = trio.open_memory_channel[SubmitAction](max_pending)
        self._pending: list[SubmitAction] = []
        self._started = False

    @property
    def inbox(self) -> trio.MemorySendChannel[SubmitAction]:
        """Where actions are sent. Clone it for a sender that wants to close its own end."""
        return self._inbox

    async def submit(self, user: str, action: Action) -> ActionResult:
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

    def produce_block(self) -> BlockOutput:
        """Execute the pending actions as the next block. No checkpoint, so it is atomic with
        respect to trio cancellation."""
        height = self.height + 1
        time = self.genesis_time_ms + height * self.block_time_ms
        pending, self._pending = self._pending, []
        proposed = [(p.user, p.action) for p in pending]
        block = self.chain.apply_block(height, time, proposed)
        digest = b""
        if self.store is not None:
            # Durable before any result is reported.
            digest = self.store.commit(self.chain, height, time, proposed)
        for executed in block.actions:
            reply = pending[executed.index].reply
            if reply is not None:
                _answer(reply, ActionResult(height, time, executed.response))
        self.height = height
        self.time = time
        log.info(
            "block",
            height=height,
            time=time,
            actions=len(block.actions),
            fills=len(block.fills),
            hash=digest.hex()[:16],
        )
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
