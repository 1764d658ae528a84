"""The node's HTTP/1.1 and WebSocket server on trio: h11 parses HTTP, wsproto frames WebSocket
messages, and this module is the loop between them and the sockets.

Why not an ASGI server: hypercorn, which served the API before, spent about 530 us of the
server's CPU on a bare keep-alive request on this machine (a new task per request, another to
time it out, the ASGI messages, three socket writes per answer); the same request through h11
here costs about 100 us (scripts/bench_api.py measures the bare route against the API).

Invariants:
- One request at a time per connection; pipelined requests are answered in order, and an
  answer is written with one send.
- A connection has `IDLE_SECONDS` to send a whole request and to take its answer; while the
  app works on a request (an /exchange waiting for its block, which in manual mining lasts
  until someone mines) it has no deadline.
- Bad HTTP never reaches the app and never stops the server: malformed requests get h11's
  4xx, a body over `max_body` bytes (declared or sent) a 413, each as plain text, and the
  connection is closed. An exception from the app is logged and answered with a 500; the
  connection and the server go on.
- WebSocket: a GET with `Upgrade: websocket` on `ws_path` is switched (RFC 6455, no
  extensions) and handed to the app; wsproto answers pings and close frames; a message over
  `max_body` bytes closes the connection with 1009 (message too big).
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections import deque
from functools import cache, partial
from http import HTTPStatus
from typing import Protocol

import h11
import msgspec
import structlog
import trio
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    TextMessage,
)

IDLE_SECONDS = 75.0  # keep-alive: as long as hypercorn's default the API used before
RECV_BYTES = 1 << 16
MAX_HEAD_BYTES = 1 << 14  # request line and headers (h11's default)
DRAIN_BYTES = 4 << 20  # read from a refused request before closing, so the client sees the answer
DRAIN_SECONDS = 1.0
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
WS_MESSAGE_TOO_BIG = 1009
TEXT = b"text/plain; charset=utf-8"

log = structlog.get_logger(__name__)


class HttpRequest(msgspec.Struct, frozen=True, gc=False):
    method: str
    path: str  # without the query
    client: str  # the peer's IP address
    body: bytes


class HttpResponse(msgspec.Struct, frozen=True, gc=False):
    status: int
    content_type: bytes
    body: bytes


class App(Protocol):
    async def http(self, request: HttpRequest) -> HttpResponse: ...

    async def websocket(self, socket: WebSocket) -> None: ...


def text_response(status: int, text: str) -> HttpResponse:
    return HttpResponse(status, TEXT, text.encode())


class _RefusedError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


async def serve_http(
    app: App,
    host: str,
    port: int,
    *,
    max_body: int,
    ws_path: str,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; reports the bound (host, port) once listening. An address that
    cannot be listened on raises OSError before that."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound_host, bound_port = listeners[0].socket.getsockname()[:2]
    task_status.started((bound_host, bound_port))
    serve = partial(_serve_connection, app, max_body=max_body, ws_path=ws_path)
    await trio.serve_listeners(serve, listeners)


async def _serve_connection(
    app: App, stream: trio.SocketStream, *, max_body: int, ws_path: str
) -> None:
    try:
        client = str(stream.socket.getpeername()[0])
        await _HttpConnection(app, stream, client, max_body, ws_path).serve()
    except (trio.BrokenResourceError, trio.ClosedResourceError):  # the client left
        pass
    except Exception:  # a bug in this module: the server goes on without this connection
        log.exception("http connection failed")
    finally:
        await trio.aclose_forcefully(stream)


class _HttpConnection:
    def __init__(
        self, app: App, stream: trio.SocketStream, client: str, max_body: int, ws_path: str
    ) -> None:
        self.app, self.stream, self.client = app, stream, client
        self.max_body, self.ws_path = max_body, ws_path
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)

    async def serve(self) -> None:
        with trio.CancelScope() as deadline:
            while True:
                deadline.deadline = trio.current_time() + IDLE_SECONDS
                try:
                    read = await self._read_request()
                except h11.RemoteProtocolError as exc:
                    await self._refuse(exc.error_status_hint, str(exc))
                    return
                except _RefusedError as exc:
                    await self._refuse(exc.status, exc.text)
                    return
                if read is None:
                    return
                head, body = read
                path = head.target.partition(b"?")[0].decode("latin-1")
                deadline.deadline = math.inf  # none while the app works, nor once upgraded
                if _is_upgrade(head):
                    await self._websocket(head, path)
                    return
                method = head.method.decode("ascii")
                response = await self._answer(HttpRequest(method, path, self.client, body))
                deadline.deadline = trio.current_time() + IDLE_SECONDS
                await self._send_response(response, head_only=method == "HEAD")
                if self.h11.our_state is h11.MUST_CLOSE:
                    return
                self.h11.start_next_cycle()

    async def _read_request(self) -> tuple[h11.Request, bytes] | None:
        """The next request's head and whole body; None when the client closed between
        requests."""
        connection = self.h11
        head: h11.Request | None = None
        chunks: list[bytes] = []
        size = 0
        while True:
            event = connection.next_event()
            kind = type(event)
            if event is h11.NEED_DATA:
                if connection.they_are_waiting_for_100_continue:
                    continue_ = h11.InformationalResponse(status_code=100, headers=[])
                    await self.stream.send_all(connection.send(continue_) or b"")
                connection.receive_data(await self.stream.receive_some(RECV_BYTES))
            elif kind is h11.Data:
                assert isinstance(event, h11.Data)
                size += len(event.data)
                if size > self.max_body:
                    raise _RefusedError(413, f"Body larger than {self.max_body} bytes")
                chunks.append(event.data)
            elif kind is h11.Request:
                assert isinstance(event, h11.Request)
                head = event
                if _content_length(event) > self.max_body:
                    raise _RefusedError(413, f"Body larger than {self.max_body} bytes")
            elif kind is h11.EndOfMessage:
                assert head is not None
                return head, chunks[0] if len(chunks) == 1 else b"".join(chunks)
            else:  # ConnectionClosed between requests (h11 raises if one is cut short)
                return None

    async def _answer(self, request: HttpRequest) -> HttpResponse:
        try:
            return await self.app.http(request)
        except Exception:
            log.exception("api request failed", method=request.method, path=request.path)
            return text_response(500, "Internal Server Error")

    def _encode(
        self,
        status: int,
        content_type: bytes,
        body: bytes,
        *,
        head_only: bool = False,
        close: bool = False,
    ) -> bytes:
        """The bytes of a whole response, passed through h11 so it tracks the connection."""
        headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
        if close:
            headers.append((b"connection", b"close"))
        send = self.h11.send
        data = (
            send(h11.Response(status_code=status, headers=headers, reason=_reason(status))) or b""
        )
        if not head_only:  # the answer to a HEAD has the length of the body it does not carry
            data += send(h11.Data(data=body)) or b""
        data += send(h11.EndOfMessage()) or b""
        return data

    async def _send_response(self, response: HttpResponse, head_only: bool) -> None:
        await self.stream.send_all(
            self._encode(response.status, response.content_type, response.body, head_only=head_only)
        )

    async def _refuse(self, status: int, text: str) -> None:
        """Answer `status` and close, reading (a bounded amount of) what the client is still
        sending first: closing on unread data resets the connection, and the client would
        lose the answer."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        await self.stream.send_all(self._encode(status, TEXT, text.encode(), close=True))
        drained = 0
        with trio.move_on_after(DRAIN_SECONDS):
            while drained < DRAIN_BYTES:
                chunk = await self.stream.receive_some(RECV_BYTES)
                if not chunk:
                    break
                drained += len(chunk)

    async def _websocket(self, head: h11.Request, path: str) -> None:
        key = _header(head, b"sec-websocket-key")
        if path != self.ws_path:
            await self._refuse(404, "Not Found")
            return
        if head.method != b"GET" or not key or _header(head, b"sec-websocket-version") != b"13":
            await self._refuse(400, "Bad WebSocket handshake")
            return
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        switch = h11.InformationalResponse(
            status_code=101,
            reason=_reason(101),
            headers=[
                (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
                (b"sec-websocket-accept", accept),
            ],
        )
        await self.stream.send_all(self.h11.send(switch) or b"")
        trailing, _ = self.h11.trailing_data
        await self.app.websocket(WebSocket(self.stream, trailing, self.max_body))


@cache
def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _header(head: h11.Request, name: bytes) -> bytes:
    """The last value of a header (h11 lower-cases the names)."""
    value = b""
    for key, item in head.headers:
        if key == name:
            value = item
    return value


def _content_length(head: h11.Request) -> int:
    length = _header(head, b"content-length")
    return int(length) if length else 0  # h11 has checked it is digits


def _is_upgrade(head: h11.Request) -> bool:
    return b"websocket" in _header(head, b"upgrade").lower()


class WebSocket:
    """One switched connection, as the app sees it: whole text messages in and out."""

    def __init__(self, stream: trio.SocketStream, trailing: bytes, max_message: int) -> None:
        self._stream = stream
        self._ws = WsConnection(ConnectionType.SERVER, trailing_data=trailing)
        self._events: deque[Event] = deque(self._ws.events())
        self._send_lock = trio.Lock()
        self._max_message = max_message

    async def receive_text(self) -> str | None:
        """The next whole message (a binary one decoded as UTF-8); None once the client has
        closed or left."""
        parts: list[str] = []
        size = 0
        while True:
            while not self._events:
                data = await self._receive()
                self._ws.receive_data(data or None)
                self._events.extend(self._ws.events())
                if not data and not self._events:
                    return None
            event = self._events.popleft()
            if isinstance(event, (TextMessage, BytesMessage)):
                part = event.data
                text = part if isinstance(part, str) else bytes(part).decode("utf-8", "replace")
                size += len(text)
                if size > self._max_message:
                    await self.close(WS_MESSAGE_TOO_BIG)
                    return None
                parts.append(text)
                if event.message_finished:
                    return "".join(parts)
            elif isinstance(event, Ping):
                await self._send(event.response())
            elif isinstance(event, CloseConnection):
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    await self._send(event.response())
                return None

    async def send_text(self, text: str) -> None:
        await self._send(Message(data=text))

    async def close(self, code: int = 1008) -> None:
        """Send a close frame (1008: policy violation, as for a client too slow to keep up)."""
        if self._ws.state is ConnectionState.OPEN:
            await self._send(CloseConnection(code=code))

    async def _receive(self) -> bytes:
        try:
            return await self._stream.receive_some(RECV_BYTES)
        except trio.BrokenResourceError:
            return b""

    async def _send(self, event: Event) -> None:
        # Framed under the lock too, so frames go out in the order they were made.
        async with self._send_lock:
            await self._stream.send_all(self._ws.send(event))
