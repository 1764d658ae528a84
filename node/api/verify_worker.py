"""A signature-checking worker process (started by `node.api.verifier.Verifier`): reads request
bodies on stdin, runs `verify_request` on each, writes the answers on stdout.

The pipe protocol, both ways a sequence of frames:
- in:  request number (u32 BE) | body length (u32 BE) | body
- out: answer length (u32 BE) | msgpack of an `Answer` (the request number and its result)
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

REQUEST_HEAD: Final = struct.Struct(">II")  # request number, body length
ANSWER_HEAD: Final = struct.Struct(">I")  # answer length
READY: Final = ANSWER_HEAD.pack(0)
READ_BYTES: Final = 1 << 20


class Answer(msgspec.Struct, frozen=True, array_like=True):
    request: int
    result: Verified | Refused


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
        encoded = encode(Answer(request, verify_request(buffer[start : start + length])))
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
