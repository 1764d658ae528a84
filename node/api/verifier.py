"""Signature checks of POST /exchange bodies in worker processes, off the node's thread.

The node runs on one thread. For a 40-order batch, checking the request (JSON, msgpack, keccak,
secp256k1 recovery, decoding the action) is about a tenth of that thread's work per request;
a worker process (node/api/verify_worker.py) does it on another core. The body goes down a
pipe, and the `Verified` or `Refused` comes back in msgspec's msgpack.

Invariants:
- `Verifier.verify(body)` answers what `verify_request(body)` answers: the worker runs that
  same function, and msgspec's msgpack gives back the very structs it encoded.
- No request is lost with a worker: with `processes = 0`, before a worker is ready and after
  one exits, bodies are checked in this process; those waiting on a worker when it exits are
  checked here too.
- Answers are matched to requests by number, never by order. A request cancelled while it
  waits (its client went away) leaves nothing behind; its late answer is dropped.
- Frames reach a worker whole and in the order they were queued: a request writes its frame
  itself only when nothing is queued before it; otherwise the writer task sends the queue.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Final

import msgspec
import outcome
import structlog
import trio

from node.api.exchange import Refused, Verified, verify_request
from node.api.verify_worker import ANSWER_HEAD, REQUEST_HEAD, Answer

log = structlog.get_logger(__name__)

READ_BYTES: Final = 1 << 16
# Where `node` is imported from, for the worker's `python -m` (a checkout run from elsewhere).
_IMPORT_ROOT: Final = str(Path(__file__).resolve().parents[2])


class _Waiter:
    """A request parked until its answer: rescheduled with it by the reader (no event object
    per request: hundreds wait at once under load)."""

    __slots__ = ("body", "task")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.task = trio.lowlevel.current_task()

    def finish(self, result: Verified | Refused) -> None:
        trio.lowlevel.reschedule(self.task, outcome.Value(result))


class _Worker:
    """One worker process as this process sees it: the requests waiting for their answers and
    the bytes waiting to be written to its stdin."""

    def __init__(self, process: trio.Process) -> None:
        assert isinstance(process.stdin, trio.lowlevel.FdStream)  # a pipe, non-blocking
        self.process = process
        self.stdin = process.stdin.fileno()
        self.waiting: dict[int, _Waiter] = {}
        self.queued = bytearray()
        self.queue_filled = trio.Event()

    def send(self, frame: bytes) -> None:
        """Write `frame` now if nothing is queued and the pipe takes it; queue what is left."""
        if not self.queued:
            try:
                written = os.write(self.stdin, frame)
            except BlockingIOError:
                written = 0
            except OSError:  # the worker is gone: the reader sees its end
                return
            frame = frame[written:]
            if not frame:
                return
        self.queued += frame
        self.queue_filled.set()


class Verifier:
    """`verify_request` spread over `processes` worker processes (0: all in this process)."""

    def __init__(self, processes: int = 0) -> None:
        if processes < 0:
            raise ValueError(f"processes must be 0 or more, got {processes}")
        self.processes = processes
        self._ready: list[_Worker] = []
        self._last_request = 0

    @property
    def workers_ready(self) -> int:
        return len(self._ready)

    async def verify(self, body: bytes) -> Verified | Refused:
        ready = self._ready
        if not ready:
            return verify_request(body)
        request = self._last_request = (self._last_request + 1) & 0xFFFFFFFF
        worker = ready[request % len(ready)]  # round robin
        worker.waiting[request] = _Waiter(body)
        worker.send(REQUEST_HEAD.pack(request, len(body)) + body)

        def abort(_: object) -> trio.lowlevel.Abort:
            del worker.waiting[request]  # still there: an answered request is not cancelled
            return trio.lowlevel.Abort.SUCCEEDED

        result: Verified | Refused = await trio.lowlevel.wait_task_rescheduled(abort)
        return result

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the workers until cancelled. Reports started at once: requests are checked in
        this process until a worker is ready."""
        async with trio.open_nursery() as nursery:
            for _ in range(self.processes):
                nursery.start_soon(self._run_worker)
            task_status.started()

    async def _run_worker(self) -> None:
        environment = dict(os.environ)
        paths = [_IMPORT_ROOT, environment.get("PYTHONPATH", "")]
        environment["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        try:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "node.api.verify_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=environment,
            )
        except OSError as exc:
            log.warning("no verify worker; checking signatures in the node", error=str(exc))
            return
        worker = _Worker(process)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, worker)
                await self._read(worker)
                nursery.cancel_scope.cancel()
            log.warning("verify worker exited; checking signatures in the node")
        finally:
            # No await before the waiting requests are answered: none can join them meanwhile.
            if worker in self._ready:
                self._ready.remove(worker)
            for waiter in worker.waiting.values():
                waiter.finish(verify_request(waiter.body))
            worker.waiting.clear()
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
                for pipe in (process.stdin, process.stdout):
                    if pipe is not None:
                        await pipe.aclose()

    @staticmethod
    async def _write(worker: _Worker) -> None:
        """Send what requests could not write themselves."""
        while True:
            await worker.queue_filled.wait()
            while worker.queued:
                await trio.lowlevel.wait_writable(worker.stdin)
                try:
                    written = os.write(worker.stdin, worker.queued)
                except BlockingIOError:
                    continue
                except OSError:
                    return  # the worker is gone: the reader sees its end
                del worker.queued[:written]
            worker.queue_filled = trio.Event()

    async def _read(self, worker: _Worker) -> None:
        """Hand each answer to its request, until the worker's stdout ends."""
        stdout = worker.process.stdout
        assert stdout is not None
        decode = msgspec.msgpack.Decoder(Answer).decode
        buffer = b""
        while chunk := await stdout.receive_some(READ_BYTES):
            buffer += chunk
            at = 0
            while len(buffer) - at >= ANSWER_HEAD.size:
                (length,) = ANSWER_HEAD.unpack_from(buffer, at)
                start = at + ANSWER_HEAD.size
                if start + length > len(buffer):
                    break
                if length == 0:  # the worker's first frame: it is ready
                    self._ready.append(worker)
                else:
                    answer = decode(buffer[start : start + length])
                    waiter = worker.waiting.pop(answer.request, None)
                    if waiter is not None:
                        waiter.finish(answer.result)
                at = start + length
            buffer = buffer[at:]
