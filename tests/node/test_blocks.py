"""The block producer: virtual block time, one block per block_time, the three-class order."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
import trio
import trio.testing

from node.actors import BlockEvent
from node.blocks import ActionResult, BlockProducer, ProducerStoppedError, SubmitAction
from protocol.actions import (
    CancelAction,
    CancelResponse,
    CancelWire,
    DefaultResponse,
    NoopAction,
    OrderAction,
    OrderResponse,
)
from protocol.chain import Action, BlockOutput, Chain
from protocol.fixed import USD_SCALE
from protocol.markets import load_markets
from protocol.orders import Filled, LimitWire, OrderTypeWire, OrderWire, Resting

GENESIS_MS = 1_700_000_000_000
BLOCK_MS = 1000
BTC = 0
ALICE = "0x" + "a" * 40
BOB = "0x" + "b" * 40
CAROL = "0x" + "c" * 40
GENESIS: dict[str, Any] = {
    "perps": [{"name": "BTC", "sz_decimals": 5, "max_leverage": 40}],
    "spot_tokens": [],
    "spot_pairs": [],
}


def make_producer(**options: Any) -> BlockProducer:
    chain = Chain(load_markets(GENESIS))
    for user in (ALICE, BOB, CAROL):
        chain.clearinghouse.credit_usd(user, 100_000 * USD_SCALE)
    return BlockProducer(chain, last_time=GENESIS_MS, block_time_ms=BLOCK_MS, **options)


def drain(subscription: trio.MemoryReceiveChannel[BlockEvent]) -> list[BlockOutput]:
    """The blocks a subscription got, once the producer has stopped."""
    blocks = []
    while True:
        try:
            blocks.append(subscription.receive_nowait().output)
        except (trio.WouldBlock, trio.EndOfChannel):
            return blocks


def limit(tif: str, is_buy: bool, px: str = "50000", sz: str = "0.01") -> OrderAction:
    wire = OrderWire(a=BTC, b=is_buy, p=px, s=sz, r=False, t=OrderTypeWire(limit=LimitWire(tif)))
    return OrderAction(orders=(wire,))


async def send(
    producer: BlockProducer, user: str, action: Action
) -> trio.MemoryReceiveChannel[ActionResult]:
    """Queue one action now (so the test controls arrival order); its answer comes later."""
    reply, answer = trio.open_memory_channel[ActionResult](1)
    await producer.inbox.send(SubmitAction(user, action, reply))
    return answer


async def test_blocks_tick_every_block_time(autojump_clock: trio.testing.MockClock) -> None:
    blocks: list[BlockOutput] = []
    ticks: list[float] = []
    producer = make_producer()
    subscription = producer.subscribe()

    async def watch() -> None:
        async for event in subscription:
            blocks.append(event.output)
            ticks.append(trio.current_time())

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        await nursery.start(producer.run, 3)
        await trio.sleep(0.5)
        assert (producer.height, producer.time) == (0, GENESIS_MS)
        await trio.sleep(1.0)
        assert (producer.height, producer.time) == (1, GENESIS_MS + BLOCK_MS)
    assert [t - start for t in ticks] == pytest.approx([1.0, 2.0, 3.0])
    assert [(b.height, b.time) for b in blocks] == [
        (1, GENESIS_MS + 1000),
        (2, GENESIS_MS + 2000),
        (3, GENESIS_MS + 3000),
    ]
    assert producer.height == 3


async def test_action_runs_in_the_next_block(autojump_clock: trio.testing.MockClock) -> None:
    producer = make_producer()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run, 3)
        await trio.sleep(0.5)
        first = await producer.submit(ALICE, NoopAction())
        assert trio.current_time() - start == pytest.approx(1.0)
        await trio.sleep(0.2)
        second = await producer.submit(ALICE, limit("Gtc", True))
        assert trio.current_time() - start == pytest.approx(2.0)
    assert first == ActionResult(1, GENESIS_MS + 1000, DefaultResponse())
    assert (second.height, second.time) == (2, GENESIS_MS + 2000)
    assert second.response == OrderResponse((Resting(oid=1),))


async def test_alo_submitted_after_gtc_executes_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    producer = make_producer()
    subscription = producer.subscribe()
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run, 1)
        gtc = await send(producer, ALICE, limit("Gtc", True))
        alo = await send(producer, BOB, limit("Alo", False))
    # In arrival order the GTC buy would rest and the ALO sell be refused for crossing it;
    # in block order the ALO sell rests first (oid 1) and the GTC buy (oid 2) takes it.
    assert alo.receive_nowait() == ActionResult(1, GENESIS_MS + 1000, OrderResponse((Resting(1),)))
    gtc_result = gtc.receive_nowait()
    assert gtc_result.response == OrderResponse(
        (Filled(oid=2, total_sz=1000, total_ntl=500 * USD_SCALE),)
    )
    [block] = drain(subscription)
    assert [a.user for a in block.actions] == [BOB, ALICE]
    assert [(f.user, f.oid, f.crossed) for f in block.fills] == [(BOB, 1, False), (ALICE, 2, True)]


async def test_three_classes_no_gtc_ioc_then_cancels_then_gtc_ioc(
    autojump_clock: trio.testing.MockClock,
) -> None:
    producer = make_producer()
    subscription = producer.subscribe()
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run, 2)
        resting = await producer.submit(BOB, limit("Alo", False))  # block 1: oid 1 rests
        assert resting.response == OrderResponse((Resting(1),))
        gtc = await send(producer, ALICE, limit("Gtc", True))
        cancel = await send(producer, BOB, CancelAction(cancels=(CancelWire(a=BTC, o=1),)))
        alo = await send(producer, CAROL, limit("Alo", True, px="49000"))
    block = drain(subscription)[1]
    assert [a.user for a in block.actions] == [CAROL, BOB, ALICE]
    assert alo.receive_nowait().response == OrderResponse((Resting(2),))
    assert cancel.receive_nowait().response == CancelResponse(("success",))
    # The cancel ran before the GTC buy, so there was nothing to take: it rests.
    assert gtc.receive_nowait().response == OrderResponse((Resting(3),))
    assert block.fills == ()


async def test_one_log_line_per_block(autojump_clock: trio.testing.MockClock) -> None:
    producer = make_producer()
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            await nursery.start(producer.run, 2)
            await producer.submit(ALICE, limit("Gtc", True))
    assert [entry for entry in logs if entry["event"] == "block"] == [
        {
            "event": "block",
            "log_level": "info",
            "height": 1,
            "time": GENESIS_MS + 1000,
            "actions": 1,
            "fills": 0,
            "liquidations": 0,
            "hash": "",
            "took_ms": 0.0,
        },
        {
            "event": "block",
            "log_level": "info",
            "height": 2,
            "time": GENESIS_MS + 2000,
            "actions": 0,
            "fills": 0,
            "liquidations": 0,
            "hash": "",
            "took_ms": 0.0,
        },
    ]


async def test_a_reply_that_does_not_fit_is_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    producer = make_producer()
    subscription = producer.subscribe()
    reply, answer = trio.open_memory_channel[ActionResult](0)  # no buffer: cannot take it
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run, 1)
        await producer.inbox.send(SubmitAction(ALICE, limit("Gtc", True), reply))
        later = await send(producer, BOB, NoopAction())
    assert [a.user for a in drain(subscription)[0].actions] == [BOB, ALICE]
    assert later.receive_nowait().height == 1
    with pytest.raises(trio.WouldBlock):
        answer.receive_nowait()


async def test_stopping_releases_waiting_submitters(
    autojump_clock: trio.testing.MockClock,
) -> None:
    producer = make_producer()
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run)
        answer = await send(producer, ALICE, NoopAction())
        nursery.cancel_scope.cancel()
    assert producer.height == 0
    with pytest.raises(trio.EndOfChannel):
        await answer.receive()
    with pytest.raises(ProducerStoppedError):
        await producer.submit(ALICE, NoopAction())
    with pytest.raises(RuntimeError):
        await producer.run()


async def test_instant_mining_makes_a_block_per_action(
    autojump_clock: trio.testing.MockClock,
) -> None:
    producer = make_producer(mining="instant")
    subscription = producer.subscribe()
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run)
        await trio.sleep(5)
        assert producer.height == 0  # no empty blocks
        first = await producer.submit(ALICE, NoopAction())
        second = await producer.submit(BOB, NoopAction())
        nursery.cancel_scope.cancel()
    # At once, stamped with the clock (5 s after the genesis), then 1 ms later at least.
    assert (first.height, first.time) == (1, GENESIS_MS + 5000)
    assert (second.height, second.time) == (2, GENESIS_MS + 5001)
    assert [len(b.actions) for b in drain(subscription)] == [1, 1]


async def test_mixed_mining_adds_empty_blocks_between_actions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    producer = make_producer(mining="mixed")
    subscription = producer.subscribe()
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run)
        await trio.sleep(2.5)  # two empty blocks, at 1 s and 2 s
        result = await producer.submit(ALICE, NoopAction())  # at once, at 2.5 s
        await trio.sleep(1.2)  # the next empty block is one block time after that one
        nursery.cancel_scope.cancel()
    assert (result.height, result.time) == (3, GENESIS_MS + 2500)
    blocks = drain(subscription)
    assert [(b.time - GENESIS_MS, len(b.actions)) for b in blocks] == [
        (1000, 0),
        (2000, 0),
        (2500, 1),
        (3500, 0),
    ]


async def test_manual_mining_spaces_blocks_by_dt_without_sleeping(
    autojump_clock: trio.testing.MockClock,
) -> None:
    producer = make_producer(mining="manual")
    subscription = producer.subscribe(100)
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run)
        await trio.sleep(10)
        assert producer.height == 0
        answer = await send(producer, ALICE, NoopAction())
        start = trio.current_time()
        mined = await producer.mine(3, dt_ms=60_000)
        assert trio.current_time() == start  # no sleeping
        advanced = await producer.advance_time(3_600_000)
        again = await producer.mine(1)
        nursery.cancel_scope.cancel()
    assert (mined.height, mined.time, mined.mode) == (3, GENESIS_MS + 180_000, "manual")
    # The chain clock is not behind the last block after mining ahead of the wall clock.
    assert mined.chain_time >= mined.time
    assert advanced.chain_time >= GENESIS_MS + 180_000 + 3_600_000
    # An advance moves the next mined block too: last + advance + dt (the block time).
    assert again.time == GENESIS_MS + 180_000 + 3_600_000 + BLOCK_MS
    assert answer.receive_nowait().height == 1
    assert [b.time - GENESIS_MS for b in drain(subscription)] == [
        60_000,
        120_000,
        180_000,
        180_000 + 3_600_000 + 1000,
    ]


async def test_switching_modes_never_moves_time_backwards(
    autojump_clock: trio.testing.MockClock,
) -> None:
    producer = make_producer(mining="manual")
    subscription = producer.subscribe(100)
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run)
        await producer.mine(2, dt_ms=30_000)  # 60 s ahead of the wall clock
        switched = await producer.set_mining("interval", block_time_ms=500)
        await trio.sleep(1.2)  # two interval blocks
        advanced = await producer.advance_time(10_000)
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert (switched.mode, switched.block_time_ms) == ("interval", 500)
    times = [b.time - GENESIS_MS for b in drain(subscription)]
    # Interval blocks continue from the chain clock, which mining put at the last block.
    assert times == [30_000, 60_000, 60_500, 61_000, 71_500]
    assert advanced.chain_time == GENESIS_MS + 71_200


async def test_a_control_during_shutdown_is_released(
    autojump_clock: trio.testing.MockClock,
) -> None:
    producer = make_producer(mining="manual")
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run)
        nursery.cancel_scope.cancel()
    with pytest.raises(ProducerStoppedError):
        await producer.mine(1)
