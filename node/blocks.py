"""The block producer: the mempool, the block clock and block assembly; it drives every block
through the actors' phases (node/actors.py).

Invariants:
- Everything reaches the chain through the producer's inbox, one message at a time in arrival
  order: actions (`SubmitAction`, or `submit`) and the controls (`Mine`, `AdvanceTime`,
  `SetMining`). Only the producer starts a block.
- Block heights count from 1, and block times (ms) strictly increase: each is recorded in the
  block, and protocol/ only ever sees these times, never a clock.
- A block is produced under a shielded cancel scope: a stop lands between blocks, never in the
  middle of one. With a store, each block and its state hash are in the durable log before any
  of its replies are sent and before the event bus sees it.
- A submitted action is executed in exactly one block and its reply channel gets that block's
  `ActionResult`; if the producer stops first, the reply channel is closed instead (`submit`
  raises `ProducerStoppedError`). Replies never block the producer: one that does not fit is
  dropped with a warning.

Mining modes (as Anvil's):
- interval: a block every block time (the default), with the actions that arrived since the
  last one. If a block takes longer than the block time, the next one starts as soon as it is
  done (with everything that arrived meanwhile); missed slots are not made up with empty blocks.
- instant: a block as soon as an action arrives, one block per action; no empty blocks.
- mixed: both: a block per action as it arrives, and an empty block when a block time passes
  without one.
- manual: blocks only when asked (`Mine`: n blocks spaced dt apart, at once, without sleeping).
In every mode, an action submitted `alone` (the devnet's controls: setOraclePrice, fund,
snapshot, revert) gets a block of its own at once; the actions pending stay for the next.

Block time (`BlockClock`): the chain clock is the node's wall clock plus an offset that
`AdvanceTime` raises. An automatic block (interval, instant, mixed) is stamped
max(last + 1 ms, chain clock); a mined block last + dt (plus any advance since the last block),
after which the offset is raised, if needed, so the chain clock is not behind that block.
So time never runs backwards when modes change.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import msgspec
import structlog
import trio

from node.actors import Actors, BlockEvent, Checkpoint
from node.chainstore import ChainStore
from node.config import MINING_MODES
from node.market_maker import MarketMaker
from protocol.actions import ActionResponse, ErrorResponse
from protocol.chain import Action, BlockOutput, Chain
from protocol.ledger import Liquidation

DEFAULT_MAX_PENDING = 10_000

ResultT = TypeVar("ResultT")

log = structlog.get_logger(__name__)


class ActionResult(msgspec.Struct, frozen=True, gc=False):
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
    alone: bool = False  # a devnet control: a block of its own at once, in every mining mode


class Mine(msgspec.Struct, frozen=True):
    """Produce `blocks` blocks now, `dt_ms` apart (the block time when None)."""

    blocks: int
    dt_ms: int | None
    reply: trio.MemorySendChannel[ControlResult]


class AdvanceTime(msgspec.Struct, frozen=True):
    ms: int
    reply: trio.MemorySendChannel[ControlResult]


class SetMining(msgspec.Struct, frozen=True):
    mode: str
    block_time_ms: int | None
    reply: trio.MemorySendChannel[ControlResult]


class ControlResult(msgspec.Struct, frozen=True):
    """Where the chain stands after a control."""

    height: int
    time: int  # the last block's time
    chain_time: int  # the chain clock now: the earliest time the next automatic block can get
    mode: str
    block_time_ms: int


Message = SubmitAction | Mine | AdvanceTime | SetMining


class ProducerStoppedError(Exception):
    """The block producer stopped before the action was executed."""


def follow_trio_clock(anchor_ms: int) -> Callable[[], int]:
    """A clock in ms that reads `anchor_ms` now and then follows trio's monotonic clock (so it
    never steps back when the system clock is adjusted, and jumps with a test's clock)."""
    anchor = trio.current_time()
    return lambda: anchor_ms + round((trio.current_time() - anchor) * 1000)


class BlockClock:
    """Block times from a wall clock (ms), an offset and the last block's time."""

    def __init__(self, wall_ms: Callable[[], int], last_time: int) -> None:
        self.wall_ms = wall_ms
        self.last_time = last_time
        self.offset_ms = 0
        self.jump_ms = 0  # advanced since the last block: moves a mined block too

    def now(self) -> int:
        return self.wall_ms() + self.offset_ms

    def automatic(self) -> int:
        return max(self.last_time + 1, self.now())

    def mined(self, dt_ms: int) -> int:
        return self.last_time + dt_ms + self.jump_ms

    def advance(self, ms: int) -> None:
        self.offset_ms += ms
        self.jump_ms += ms

    def stamped(self, time: int) -> None:
        self.last_time = time
        self.jump_ms = 0
        self.offset_ms = max(self.offset_ms, time - self.wall_ms())


class BlockProducer:
    def __init__(
        self,
        chain: Chain,
        *,
        last_time: int,
        block_time_ms: int,
        height: int = 0,
        mining: str = "interval",
        store: ChainStore | None = None,
        maker: MarketMaker | None = None,
        wall_ms: Callable[[], int] | None = None,
        checkpoint: Checkpoint | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        """`last_time` is the time of block `height` (the genesis time at height 0). `wall_ms`
        is the node's wall clock in ms; by default a virtual one that starts at `last_time`
        when `run` starts and follows the trio clock. `max_pending` bounds the inbox (senders
        wait when it is full). `checkpoint` is passed to every actor (tests)."""
        if block_time_ms < 1:
            raise ValueError(f"block_time_ms must be positive, got {block_time_ms}")
        if mining not in MINING_MODES:
            raise ValueError(f"mining mode {mining!r} is not one of {MINING_MODES}")
        self.chain = chain
        self.block_time_ms = block_time_ms
        self.mining = mining
        self.height = height  # the latest block (resuming: the last one in the log)
        self.store = store
        self.maker = maker
        self._wall_ms = wall_ms
        self.clock = BlockClock(lambda: last_time, last_time)
        self.actors = Actors(chain, store, maker, checkpoint)
        self._inbox, self._receive = trio.open_memory_channel[Message](max_pending)
        self._pending: list[SubmitAction] = []
        self._traded: frozenset[int] = frozenset()  # assets the maker traded in the last block
        self._blocks_left: int | None = None
        self._next_due = math.inf
        self._started = False
        # Held while a block runs: readers of the chain (the API) take it to see whole blocks.
        self.state_lock = trio.Lock()
        # Called with each block's output, under the state lock, once its phases ran and before
        # it is committed: for indexes that must see the state the block left (the API's
        # history), and that the block store saves with its snapshots. Keep them quick.
        self.before_commit: list[Callable[[BlockOutput], None]] = []

    @property
    def time(self) -> int:
        """The time of block `height` (the genesis time at height 0)."""
        return self.clock.last_time

    @property
    def last_hash(self) -> bytes:
        """The state hash of block `height`; empty without a store (nothing is hashed)."""
        return b"" if self.store is None else self.store.last_hash

    @property
    def inbox(self) -> trio.MemorySendChannel[Message]:
        """Where actions and controls are sent. Clone it for a sender that closes its end."""
        return self._inbox

    def subscribe(self, buffer: int = 16) -> trio.MemoryReceiveChannel[BlockEvent]:
        """Every committed block from now on; a subscriber that falls `buffer` blocks behind is
        disconnected (its channel ends)."""
        return self.actors.bus.subscribe(buffer)

    async def submit(self, user: str, action: Action, *, alone: bool = False) -> ActionResult:
        """Send one action and wait for the block that executes it (with `alone`, a block made
        at once for it alone)."""
        reply, answer = trio.open_memory_channel[ActionResult](1)
        with answer:
            try:
                message = SubmitAction(user, action, reply, alone)
                try:
                    # No checkpoint when the inbox has room: the caller parks on its answer
                    # right after, so a yield here would only cost a pass of the scheduler.
                    self._inbox.send_nowait(message)
                except trio.WouldBlock:
                    await self._inbox.send(message)
                return await answer.receive()
            except (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
                raise ProducerStoppedError("the block producer stopped") from None

    async def mine(self, blocks: int, dt_ms: int | None = None) -> ControlResult:
        return await self._control(lambda reply: Mine(blocks, dt_ms, reply))

    async def advance_time(self, ms: int) -> ControlResult:
        return await self._control(lambda reply: AdvanceTime(ms, reply))

    async def set_mining(self, mode: str, block_time_ms: int | None = None) -> ControlResult:
        return await self._control(lambda reply: SetMining(mode, block_time_ms, reply))

    async def _control(
        self, make: Callable[[trio.MemorySendChannel[ControlResult]], Message]
    ) -> ControlResult:
        reply, answer = trio.open_memory_channel[ControlResult](1)
        with answer:
            try:
                await self._inbox.send(make(reply))
                return await answer.receive()
            except (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
                raise ProducerStoppedError("the block producer stopped") from None

    async def run(
        self,
        max_blocks: int | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Produce blocks by the mining mode until cancelled or until `max_blocks` blocks.
        Reports started (for `nursery.start`) once the actors run. Runs once: when it returns,
        the inbox is closed and waiting submitters are released."""
        if self._started:
            raise RuntimeError("a block producer runs only once")
        self._started = True
        self._blocks_left = max_blocks
        self.clock.wall_ms = self._wall_ms or follow_trio_clock(self.clock.last_time)
        async with trio.open_nursery() as actors:
            self.actors.start(actors)
            try:
                task_status.started()
                self._schedule()
                await self._loop()
            finally:
                self._close()
                self.actors.close()

    def _schedule(self) -> None:
        timed = self.mining in ("interval", "mixed")
        self._next_due = trio.current_time() + self.block_time_ms / 1000 if timed else math.inf

    def _done(self) -> bool:
        return self._blocks_left is not None and self._blocks_left <= 0

    async def _loop(self) -> None:
        while not self._done():
            with trio.move_on_at(self._next_due):
                await self._handle(await self._receive.receive())
                await self._handle_waiting()
                continue
            # The block time passed: take what is waiting (the inbox may have filled while the
            # last block ran) and produce. A node behind its schedule makes the next block as
            # soon as this one is done, never a burst of empty blocks to catch up.
            await self._handle_waiting()
            if not self._done():
                await self._produce(self.clock.automatic())
            self._next_due = max(self._next_due + self.block_time_ms / 1000, trio.current_time())

    async def _handle_waiting(self) -> None:
        """Everything already in the inbox, without a checkpoint per message."""
        while not self._done():
            try:
                message = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            await self._handle(message)

    async def _handle(self, message: Message) -> None:
        if isinstance(message, SubmitAction) and message.alone:
            waiting, self._pending = self._pending, [message]
            await self._produce(self.clock.automatic())
            self._pending = waiting
            return
        if isinstance(message, SubmitAction):
            self._pending.append(message)
            if self.mining in ("instant", "mixed"):
                await self._produce(self.clock.automatic())
                if self.mining == "mixed":
                    self._schedule()  # the block time counts from the last block
            return
        if isinstance(message, Mine):
            dt_ms = self.block_time_ms if message.dt_ms is None else message.dt_ms
            for _ in range(message.blocks):
                if self._done():
                    break
                await self._produce(self.clock.mined(dt_ms))
        elif isinstance(message, AdvanceTime):
            self.clock.advance(message.ms)
        else:
            self.mining = message.mode
            if message.block_time_ms is not None:
                self.block_time_ms = message.block_time_ms
            self._schedule()
        _answer(
            message.reply,
            ControlResult(
                self.height, self.time, self.clock.now(), self.mining, self.block_time_ms
            ),
        )

    async def _produce(self, time: int) -> None:
        """The pending actions as the next block at `time`."""
        with trio.CancelScope(shield=True):
            async with self.state_lock:
                block, digest, took_ms = await self._run_block(time)
            await self.actors.bus.publish(BlockEvent(block, digest, took_ms))

    async def _run_block(self, time: int) -> tuple[BlockOutput, bytes, float]:
        """One block through the actors; its replies sent, its line logged."""
        started = trio.current_time()
        height = self.height + 1
        pending, self._pending = self._pending, []
        in_block, block, digest = await self.actors.run_block(
            height, time, [(p.user, p.action) for p in pending], self._traded, self.before_commit
        )
        self.height = height
        self.clock.stamped(time)
        if self._blocks_left is not None:
            self._blocks_left -= 1
        if self.maker is not None:
            self._traded = self.maker.observe(block)
        offset = len(in_block) - len(pending)  # the maker's actions come first
        for executed in block.actions:
            if executed.index < offset:
                continue
            reply = pending[executed.index - offset].reply
            if reply is not None:
                _answer(reply, ActionResult(height, time, executed.response))
        took_ms = (trio.current_time() - started) * 1000
        _log_block(block, digest, took_ms, offset)
        return block, digest, took_ms

    def _close(self) -> None:
        """Stop taking messages; everyone still waiting gets their reply channel closed."""
        while True:
            try:
                message = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if isinstance(message, SubmitAction):
                self._pending.append(message)
            else:
                message.reply.close()
        self._receive.close()  # later senders get BrokenResourceError
        for entry in self._pending:
            if entry.reply is not None:
                entry.reply.close()
        self._pending = []


def _log_block(block: BlockOutput, digest: bytes, took_ms: float, maker_actions: int) -> None:
    """One line per block, and one per action a user sent that was refused (the maker's own
    refusals, such as cancels of quotes already filled, are expected and not logged)."""
    for executed in block.actions:
        if executed.index < maker_actions:
            continue
        if isinstance(executed.response, ErrorResponse):
            log.info(
                "action refused",
                height=block.height,
                user=executed.user,
                action=type(executed.action).__name__,
                error=executed.response.error,
            )
    log.info(
        "block",
        height=block.height,
        time=block.time,
        actions=len(block.actions),
        fills=len(block.fills),
        liquidations=sum(isinstance(u.delta, Liquidation) for u in block.ledger),
        hash=digest.hex()[:16],
        took_ms=round(took_ms, 3),
    )


def _answer(reply: trio.MemorySendChannel[ResultT], result: ResultT) -> None:
    """Deliver without blocking: a sender that left or gave no buffer misses its answer; the
    block goes on."""
    try:
        reply.send_nowait(result)
    except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
        log.warning("reply dropped", answer=type(result).__name__)
