"""The signature-checking worker processes: a worker answers exactly what `verify_request` answers
in the node's thread, whatever the body; no request is lost when a worker dies; a cancelled
request leaves nothing behind. These start real worker processes (a real clock)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import eth_account
import msgspec
import pytest
import trio
from hyperliquid.utils.signing import (
    order_request_to_order_wire,
    order_wires_to_order_action,
    sign_l1_action,
    sign_usd_transfer_action,
)

from node.api.exchange import Refused, Verified, verify_request
from node.api.verifier import Verifier, _Worker
from node.api.verify_worker import ANSWER_HEAD, REQUEST_HEAD, Answer, answer_requests

WALLET = eth_account.Account.from_key("0x" + "17" * 32)
NONCE = 1_700_000_000_000


def order_body(orders: int, nonce: int = NONCE) -> bytes:
    wires = [
        order_request_to_order_wire(
            {
                "coin": "ETH",
                "is_buy": i % 2 == 0,
                "sz": 0.01,
                "limit_px": 2000.0 + i,
                "order_type": {"limit": {"tif": "Gtc"}},
                "reduce_only": False,
                "cloid": None,
            },
            1,
        )
        for i in range(orders)
    ]
    action = order_wires_to_order_action(wires)
    signature = sign_l1_action(WALLET, action, None, nonce, None, False)
    return json.dumps({"action": action, "nonce": nonce, "signature": signature}).encode()


def usd_send_body() -> bytes:
    action = {"type": "usdSend", "destination": "0x" + "ab" * 20, "amount": "1", "time": NONCE}
    signature = sign_usd_transfer_action(WALLET, dict(action), False)
    return json.dumps({"action": action, "nonce": NONCE, "signature": signature}).encode()


def tampered(body: bytes) -> bytes:
    request = json.loads(body)
    request["nonce"] += 1
    return json.dumps(request).encode()


BODIES = [
    order_body(1),
    order_body(40),
    usd_send_body(),
    tampered(order_body(1)),  # another signer: still Verified, for the chain to refuse
    json.dumps({"action": {"type": "noop"}, "nonce": 1, "signature": None}).encode(),
    b"{",
    b"[]",
    b'{"action": {"type": "order"}, "nonce": 5, "signature": {"r": "0x1", "s": "0x1", "v": 27}}',
    b'{"action": {"type": "order", "orders": "x", "grouping": "na"}, "nonce": 5}',
]


@asynccontextmanager
async def running(processes: int) -> AsyncIterator[Verifier]:
    """A verifier whose workers are ready."""
    verifier = Verifier(processes)
    async with trio.open_nursery() as nursery:
        await nursery.start(verifier.run)
        with trio.fail_after(20):
            while verifier.workers_ready < processes:
                await trio.sleep(0.01)
        yield verifier
        nursery.cancel_scope.cancel()


def paused_worker(verifier: Verifier) -> _Worker:
    """The first worker, stopped (SIGSTOP): requests sent to it wait."""
    worker = verifier._ready[0]
    os.kill(worker.process.pid, signal.SIGSTOP)
    return worker


def test_answers_cross_the_pipe_unchanged() -> None:
    """The frames a worker writes decode to the result it computed."""
    encode = msgspec.msgpack.Encoder().encode
    decode = msgspec.msgpack.Decoder(Answer).decode
    frames = b"".join(REQUEST_HEAD.pack(i, len(b)) + b for i, b in enumerate(BODIES))
    answers, used = answer_requests(frames, encode)
    assert used == len(frames)
    out = b"".join(answers)
    at, results = 0, []
    while at < len(out):
        (length,) = ANSWER_HEAD.unpack_from(out, at)
        answer = decode(out[at + ANSWER_HEAD.size : at + ANSWER_HEAD.size + length])
        results.append((answer.request, answer.result))
        at += ANSWER_HEAD.size + length
    assert results == [(i, verify_request(b)) for i, b in enumerate(BODIES)]
    assert any(isinstance(r, Verified) for _, r in results)
    assert any(isinstance(r, Refused) and r.status == 422 for _, r in results)


def test_a_partial_request_waits_for_its_remaining_bytes() -> None:
    encode = msgspec.msgpack.Encoder().encode
    whole = REQUEST_HEAD.pack(7, len(BODIES[0])) + BODIES[0]
    partial = REQUEST_HEAD.pack(8, len(BODIES[1])) + BODIES[1][:10]
    answers, used = answer_requests(whole + partial, encode)
    assert (len(answers), used) == (2, len(whole))  # one frame: its header and its answer
    assert answer_requests(whole[:5], encode) == ([], 0)


@pytest.mark.parametrize("processes", [0, 1, 2])
async def test_the_workers_answer_as_the_node_would(processes: int) -> None:
    async with running(processes) as verifier:
        results: dict[int, Verified | Refused] = {}

        async def check(index: int, body: bytes) -> None:
            results[index] = await verifier.verify(body)

        with trio.fail_after(20):
            async with trio.open_nursery() as requests:
                for index, body in enumerate(BODIES * 3):
                    requests.start_soon(check, index, body)
        assert results == {i: verify_request(b) for i, b in enumerate(BODIES * 3)}
        # Every request went to a worker (numbered from 1), none with 0 processes.
        assert verifier._last_request == (len(BODIES) * 3 if processes else 0)
        # Answers of both kinds crossed (with 0 processes, this thread gave them).
        assert any(isinstance(r, Verified) for r in results.values())
        assert any(isinstance(r, Refused) and r.status == 422 for r in results.values())


async def test_requests_waiting_on_a_dead_worker_are_answered_here() -> None:
    async with running(1) as verifier:
        worker = paused_worker(verifier)
        results: list[Any] = []

        async def check(body: bytes) -> None:
            results.append(await verifier.verify(body))

        with trio.fail_after(20):
            async with trio.open_nursery() as requests:
                for body in BODIES:
                    requests.start_soon(check, body)
                await trio.sleep(0.2)
                assert results == [] and len(worker.waiting) == len(BODIES)
                os.kill(worker.process.pid, signal.SIGKILL)
        assert sorted(map(repr, results)) == sorted(repr(verify_request(b)) for b in BODIES)
        assert verifier.workers_ready == 0
        assert await verifier.verify(BODIES[0]) == verify_request(BODIES[0])  # in this process


async def test_a_cancelled_request_leaves_nothing_behind() -> None:
    async with running(1) as verifier:
        worker = paused_worker(verifier)
        with trio.move_on_after(0.1) as waited:
            await verifier.verify(BODIES[1])
        assert waited.cancelled_caught  # it waited on the stopped worker until cancelled
        assert worker.waiting == {}
        os.kill(worker.process.pid, signal.SIGCONT)
        # The late answer is dropped; the next request is matched to its own.
        with trio.fail_after(20):
            assert await verifier.verify(BODIES[2]) == verify_request(BODIES[2])
