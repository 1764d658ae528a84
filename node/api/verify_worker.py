"""A signature-checking worker process (started by `node.api.verifier.Verifier`): reads request
bodies on stdin, runs `verify_request` on each, writes the answers on stdout.

The pipe protocol, both ways a sequence of frames:
- in:  request number (u32 BE) | body length (u32 BE) | body
- out: answer length (u32 BE) | msgpack of a `VerifiedAnswer` or a `RefusedAnswer`
The first frame out is empty: the worker has imported what it needs and is ready.

The worker keeps no state between requests and decides nothing: it answers what the node's own
thread would. It ignores SIGINT (Ctrl-C in a terminal reaches the whole process group; the
node decides when to stop) and exits when its stdin closes, as it does when the node exits or
dies.
"""

from __future__ import annotations

import os
import signal
import struct
from collections.abc import Callable
from typing import Any, Final

import msgspec

from node.api.exchange import Refused, Verified, verify_request
from protocol.actions import SignedAction

REQUEST_HEAD: Final = struct.Struct(">II")  # request number, body length
ANSWER_HEAD: Final = struct.Struct(">I")  # answer length
READY: Final = ANSWER_HEAD.pack(0)
READ_BYTES: Final = 1 << 20


class VerifiedAnswer(msgspec.Struct, frozen=True, tag=True, array_like=True):
    request: int
    signer: str
    action: SignedAction


class RefusedAnswer(msgspec.Struct, frozen=True, tag=True, array_like=True):
    request: int
    status: int
    body: Any


Answer = VerifiedAnswer | RefusedAnswer


def to_answer(request: int, result: Verified | Refused) -> Answer:
    if isinstance(result, Verified):
        return VerifiedAnswer(request, result.signer, result.action)
    return RefusedAnswer(request, result.status, result.body)


def to_result(answer: Answer) -> Verified | Refused:
    if isinstance(answer, VerifiedAnswer):
        return Verified(answer.signer, answer.action)
    return Refused(answer.status, answer.body)


def answer_requests(buffer: bytes, encode: Callable[[Any], bytes]) -> tuple[list[bytes], int]:
    """The framed answers to the whole requests at the start of `buffer`, and the number of
    bytes those requests took."""
    frames: list[bytes] = []
    at = 0
    while len(buffer) - at >= REQUEST_HEAD.size:
        request, length = REQUEST_HEAD.unpack_from(buffer, at)
        start = at + REQUEST_HEAD.size
        if start + length > len(buffer):
            break
        encoded = encode(to_answer(request, verify_request(buffer[start : start + length])))
        frames += (ANSWER_HEAD.pack(len(encoded)), encoded)
        at = start + length
    return frames, at


def _write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    encode = msgspec.msgpack.Encoder().encode
    _write_all(READY)
    buffer = b""
    while chunk := os.read(0, READ_BYTES):
        buffer += chunk
        frames, used = answer_requests(buffer, encode)
        buffer = buffer[used:]
        if frames:
            _write_all(b"".join(frames))


if __name__ == "__main__":
    main()
