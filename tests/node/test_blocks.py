"""The block producer: virtual block time, one block per block_time, the three-class order."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
import trio
import trio.testing

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


def make_producer(blocks: list[BlockOutput] | None = None) -> BlockProducer:
    chain = Chain(load_markets(GENESIS))
    for user in (ALICE, BOB, CAROL):
        chain.clearinghouse.credit_usd(user, 100_000 * USD_SCALE)
    return BlockProducer(
        chain,
        genesis_time_ms=GENESIS_MS,
        block_time_ms=BLOCK_MS,
        on_block=None if blocks is None else blocks.append,
    )


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

    def on_block(block: BlockOutput) -> None:
        blocks.append(block)
        ticks.append(trio.current_time())

    producer = make_producer()
    producer.on_block = on_block
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
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
    blocks: list[BlockOutput] = []
    producer = make_producer(blocks)
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
    [block] = blocks
    assert [a.user for a in block.actions] == [BOB, ALICE]
    assert [(f.user, f.oid, f.crossed) for f in block.fills] == [(BOB, 1, False), (ALICE, 2, True)]


async def test_three_classes_no_gtc_ioc_then_cancels_then_gtc_ioc(
    autojump_clock: trio.testing.MockClock,
) -> None:
    blocks: list[BlockOutput] = []
    producer = make_producer(blocks)
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run, 2)
        resting = await producer.submit(BOB, limit("Alo", False))  # block 1: oid 1 rests
        assert resting.response == OrderResponse((Resting(1),))
        gtc = await send(producer, ALICE, limit("Gtc", True))
        cancel = await send(producer, BOB, CancelAction(cancels=(CancelWire(a=BTC, o=1),)))
        alo = await send(producer, CAROL, limit("Alo", True, px="49000"))
    block = blocks[1]
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
            "hash": "",
        },
        {
            "event": "block",
            "log_level": "info",
            "height": 2,
            "time": GENESIS_MS + 2000,
            "actions": 0,
            "fills": 0,
            "hash": "",
        },
    ]


async def test_a_reply_that_does_not_fit_is_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    blocks: list[BlockOutput] = []
    producer = make_producer(blocks)
    reply, answer = trio.open_memory_channel[ActionResult](0)  # no buffer: cannot take it
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run, 1)
        await producer.inbox.send(SubmitAction(ALICE, limit("Gtc", True), reply))
        later = await send(producer, BOB, NoopAction())
    assert [a.user for a in blocks[0].actions] == [BOB, ALICE]
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
