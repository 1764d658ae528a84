"""The node's HTTP/1.1 and WebSocket server against raw sockets: keep-alive and pipelining,
bodies in any framing, every refusal closing cleanly, an app's exception answered 500 while the
connection goes on, the idle deadline (autojump clock), and WebSocket framing by wsproto on the
client side. The app here echoes; the API's own answers are tested through a real node."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionType
from wsproto.events import CloseConnection, Message, Ping, Pong, TextMessage

from node.api.http_server import (
    IDLE_SECONDS,
    MAX_HEAD_BYTES,
    HttpRequest,
    HttpResponse,
    WebSocket,
    serve_http,
)

MAX_BODY = 1000


class EchoApp:
    """Answers `<method> <path> <client> <body>`; /boom raises; /slow waits for `release`."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.sockets = 0

    async def http(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/boom":
            raise RuntimeError("a bug in the app")
        if request.path == "/slow":
            await self.release.wait()
        text = f"{request.method} {request.path} {request.client} ".encode() + request.body
        return HttpResponse(200, b"text/plain", text)

    async def websocket(self, socket: WebSocket) -> None:
        self.sockets += 1
        while (text := await socket.receive_text()) is not None:
            if text == "close me":
                await socket.close()
                return
            await socket.send_text("echo " + text)


@asynccontextmanager
async def served(app: EchoApp, seconds: float = 30) -> AsyncIterator[int]:
    """The server on a free port; the test fails after `seconds` (trio's clock) rather than
    hang."""
    with trio.fail_after(seconds):
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(
                lambda task_status: serve_http(
                    app, "127.0.0.1", 0, max_body=MAX_BODY, ws_path="/ws", task_status=task_status
                )
            )
            yield port
            nursery.cancel_scope.cancel()


async def read_until_closed(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(1 << 16):
        data += chunk
    return data


async def read_answers(stream: trio.SocketStream, count: int) -> list[tuple[int, bytes]]:
    """`count` whole answers (status, body), framed by content-length."""
    buffer, answers = b"", list[tuple[int, bytes]]()
    while len(answers) < count:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            head = buffer[:end].decode().lower().split("\r\n")
            fields = dict(line.split(": ", 1) for line in head[1:])
            length = int(fields["content-length"])
            if len(buffer) >= end + 4 + length:
                answers.append((int(head[0].split()[1]), buffer[end + 4 : end + 4 + length]))
                buffer = buffer[end + 4 + length :]
                continue
        chunk = await stream.receive_some(1 << 16)
        assert chunk, f"closed after {answers}"
        buffer += chunk
    return answers


def post(path: str, body: bytes, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


async def test_keep_alive_and_pipelined_requests_are_answered_in_order() -> None:
    async with served(EchoApp()) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(post("/a?q=1", b"one"))
        assert await read_answers(stream, 1) == [(200, b"POST /a 127.0.0.1 one")]
        await stream.send_all(post("/b", b"two") + post("/c", b"three") + post("/d", b""))
        assert await read_answers(stream, 3) == [
            (200, b"POST /b 127.0.0.1 two"),
            (200, b"POST /c 127.0.0.1 three"),
            (200, b"POST /d 127.0.0.1 "),
        ]


async def test_a_chunked_body_arrives_whole() -> None:
    async with served(EchoApp()) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        head = b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        await stream.send_all(head + b"3\r\nabc\r\n")
        await trio.sleep(0.01)
        await stream.send_all(b"2\r\nde\r\n0\r\n\r\n")
        assert await read_answers(stream, 1) == [(200, b"POST /x 127.0.0.1 abcde")]


@pytest.mark.parametrize(
    "request_bytes",
    [
        post("/x", b"a" * (MAX_BODY + 1)),
        # More than the server reads at once: it must read the rest before closing, or the
        # close resets the connection and the client loses the answer.
        post("/x", b"a" * 300_000),
        b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{MAX_BODY:x}\r\n".encode()
        + b"a" * MAX_BODY
        + b"\r\n1\r\nb\r\n0\r\n\r\n",
    ],
    ids=["declared", "declared, unread", "chunked"],
)
async def test_a_body_over_the_limit_gets_413_and_the_connection_closes(
    request_bytes: bytes,
) -> None:
    async with served(EchoApp()) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(request_bytes)
        answer = await read_until_closed(stream)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert answer.endswith(f"Body larger than {MAX_BODY} bytes".encode())
        assert b"connection: close" in answer.lower()
        at_limit = await trio.open_tcp_stream("127.0.0.1", port)
        await at_limit.send_all(post("/x", b"a" * MAX_BODY))
        [(status, body)] = await read_answers(at_limit, 1)
        assert (status, len(body)) == (200, len("POST /x 127.0.0.1 ") + MAX_BODY)


@pytest.mark.parametrize(
    ("garbage", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
        (b"POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nab", b"400"),
        (b"POST /x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEAD_BYTES, b"431"),
    ],
    ids=["request line", "no host", "headers too large"],
)
async def test_malformed_http_is_refused_and_the_server_goes_on(
    garbage: bytes, status: bytes
) -> None:
    async with served(EchoApp()) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(garbage)
        assert (await read_until_closed(stream)).startswith(b"HTTP/1.1 " + status + b" ")
        fresh = await trio.open_tcp_stream("127.0.0.1", port)
        await fresh.send_all(post("/x", b"ok"))
        assert await read_answers(fresh, 1) == [(200, b"POST /x 127.0.0.1 ok")]


async def test_an_app_exception_is_a_500_and_the_connection_goes_on() -> None:
    async with served(EchoApp()) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(post("/boom", b"") + post("/x", b"after"))
        assert await read_answers(stream, 2) == [
            (500, b"Internal Server Error"),
            (200, b"POST /x 127.0.0.1 after"),
        ]


async def test_expect_100_continue_is_answered_before_the_body() -> None:
    async with served(EchoApp()) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        # The head alone, declaring a body: the server must ask for it.
        await stream.send_all(
            post("/x", b"", extra="Expect: 100-continue\r\n").replace(
                b"Content-Length: 0", b"Content-Length: 4"
            )
        )
        assert (await stream.receive_some(1 << 16)).startswith(b"HTTP/1.1 100 ")
        await stream.send_all(b"body")
        assert await read_answers(stream, 1) == [(200, b"POST /x 127.0.0.1 body")]


async def test_head_gets_the_length_without_the_body() -> None:
    async with served(EchoApp()) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n" + post("/y", b"next"))
        data = b""
        while b"next" not in data:
            data += await stream.receive_some(1 << 16)
        first, second = data.split(b"HTTP/1.1 200 ")[1:]
        assert b"content-length: 18\r\n" in first.lower() and first.endswith(b"\r\n\r\n")
        assert second.endswith(b"POST /y 127.0.0.1 next")


async def test_a_connection_idle_past_the_deadline_is_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = EchoApp()
    async with served(app, seconds=10 * IDLE_SECONDS) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(post("/x", b"1"))
        await read_answers(stream, 1)
        started = trio.current_time()
        assert await read_until_closed(stream) == b""
        assert trio.current_time() - started == pytest.approx(IDLE_SECONDS, abs=1)


async def test_a_request_the_app_is_working_on_has_no_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = EchoApp()
    async with served(app, seconds=20 * IDLE_SECONDS) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(post("/slow", b"waited"))
        await trio.sleep(10 * IDLE_SECONDS)
        app.release.set()
        assert await read_answers(stream, 1) == [(200, b"POST /slow 127.0.0.1 waited")]


class WsClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WsConnection(ConnectionType.CLIENT)
        self.events: list[object] = []

    async def send(self, event: object) -> None:
        await self.stream.send_all(self.ws.send(event))  # type: ignore[arg-type]

    async def next_event(self) -> object:
        while not self.events:
            data = await self.stream.receive_some(1 << 16)
            self.ws.receive_data(data or None)
            self.events.extend(self.ws.events())
        return self.events.pop(0)


async def open_ws(port: int, path: str = "/ws") -> tuple[bytes, WsClient]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    key = base64.b64encode(b"the sample nonce").decode()  # RFC 6455's example key
    await stream.send_all(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await stream.receive_some(1)
        assert chunk, head
        head += chunk
    return head, WsClient(stream)


async def test_websocket_handshake_messages_ping_and_close() -> None:
    async with served(EchoApp()) as port:
        head, client = await open_ws(port)
        assert head.startswith(b"HTTP/1.1 101 ")
        # RFC 6455 section 1.3's worked example
        assert b"\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
        await client.send(Message(data="hi"))
        reply = await client.next_event()
        assert isinstance(reply, TextMessage) and reply.data == "echo hi"
        # A message in fragments is one message to the app.
        await client.send(Message(data="frag", message_finished=False))
        await client.send(Message(data="ments"))
        reply = await client.next_event()
        assert isinstance(reply, TextMessage) and reply.data == "echo fragments"
        await client.send(Ping(b"p"))
        assert await client.next_event() == Pong(b"p")
        await client.send(CloseConnection(code=1000))
        closed = await client.next_event()
        assert isinstance(closed, CloseConnection) and closed.code == 1000


async def test_the_app_can_close_a_websocket_with_a_code() -> None:
    async with served(EchoApp()) as port:
        _, client = await open_ws(port)
        await client.send(Message(data="close me"))
        closed = await client.next_event()
        assert isinstance(closed, CloseConnection) and closed.code == 1008


async def test_a_websocket_message_over_the_limit_closes_with_1009() -> None:
    async with served(EchoApp()) as port:
        _, client = await open_ws(port)
        await client.send(Message(data="x" * (MAX_BODY + 1)))
        closed = await client.next_event()
        assert isinstance(closed, CloseConnection) and closed.code == 1009


async def test_a_websocket_has_no_idle_deadline(autojump_clock: trio.testing.MockClock) -> None:
    async with served(EchoApp(), seconds=20 * IDLE_SECONDS) as port:
        _, client = await open_ws(port)
        await trio.sleep(10 * IDLE_SECONDS)
        await client.send(Message(data="still here"))
        reply = await client.next_event()
        assert isinstance(reply, TextMessage) and reply.data == "echo still here"


@pytest.mark.parametrize(
    ("path", "version", "status"),
    [("/elsewhere", "13", b"404"), ("/ws", "8", b"400")],
)
async def test_a_websocket_upgrade_elsewhere_or_of_another_version_is_refused(
    path: str, version: str, status: bytes
) -> None:
    app = EchoApp()
    async with served(app) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: eA==\r\nSec-WebSocket-Version: {version}\r\n\r\n".encode()
        )
        assert (await read_until_closed(stream)).startswith(b"HTTP/1.1 " + status + b" ")
        assert app.sockets == 0
