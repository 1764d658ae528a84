"""The HTTP and WebSocket server: Hyperliquid's POST /info, POST /exchange and /ws, and the
devnet's POST /devnet, as the app of the node's own HTTP server (node/api/http_server.py).

Invariants:
- The API decides no rule: /exchange verifies the signature (in a worker process when it has
  one, node/api/verifier.py) and forwards a `SignedAction` into
  the block producer's inbox, then answers from the block's result; /info and /ws read the
  chain and the history only under the producer's state lock, so they always see whole blocks.
- Bad input never changes state and never stops the server: a body over `MAX_BODY_BYTES` is
  refused with 413 before it is read further, an undeserializable one gets Hyperliquid's 422
  text, anything else wrong gets the err envelope with HTTP 200, and an unknown path 404.
- /devnet answers only loopback clients (403 otherwise). Its controls reach the chain as
  ordinary inputs: `setOraclePrice`, `fund`, `snapshot` and `revert` as actions in a block of
  their own (made at once in every mining mode), `mine`, `advanceTime` and `setMining` through
  the producer's inbox (their effect, the block times, is in the log). So a replay of the log
  reproduces every control.
"""

from __future__ import annotations

import ipaddress
from functools import partial
from typing import Any

import msgspec
import structlog
import trio

from node.api.exchange import (
    Refused,
    Verified,
    decode_body,
    err,
    response_json,
)
from node.api.history import History
from node.api.http_server import HttpRequest, HttpResponse, WebSocket, serve_http, text_response
from node.api.info import answer_info
from node.api.verifier import Verifier
from node.api.ws import WsHub
from node.blocks import BlockProducer, ControlResult, ProducerStoppedError
from node.config import MINING_MODES
from protocol.actions import (
    DevnetAction,
    ErrorResponse,
    FundAction,
    RevertAction,
    SetOraclePriceAction,
    SnapshotAction,
    SnapshotResponse,
)
from protocol.chain import Chain
from protocol.orders import ERR_DESERIALIZE

MAX_BODY_BYTES = 1 << 20  # Hyperliquid does not document one; a 40-order batch is ~4 KiB
WS_PATH = "/ws"
DEVNET_USER = "devnet"  # the proposer of the devnet's control actions in the log

log = structlog.get_logger(__name__)

Json = Any


class ApiBindError(Exception):
    """The API's address cannot be listened on (a port in use, say)."""


def first_error(error: BaseException) -> BaseException:
    """The first exception inside (possibly nested) exception groups, trio's nurseries' way of
    raising."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


class Api:
    """The ASGI application of one node."""

    def __init__(
        self, producer: BlockProducer, history: History, verifier: Verifier | None = None
    ) -> None:
        self.producer = producer
        self.verifier = Verifier() if verifier is None else verifier
        self.chain: Chain = producer.chain
        self.history = history
        self.ws = WsHub(producer, history)
        producer.before_commit.append(lambda block: history.on_block(block, producer.chain))
        self._routes = {"/info": self._info, "/exchange": self._exchange, "/devnet": self._devnet}

    async def http(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        handler = self._routes.get(path)
        if handler is None:
            return text_response(404, "Not Found")
        if request.method != "POST":
            return text_response(405, "Method Not Allowed")
        if path == "/devnet" and not _is_loopback(request.client):
            return text_response(403, "the devnet controls answer loopback clients only")
        status, answer = await handler(request.body)
        return _response(status, answer)

    async def _info(self, body: bytes) -> tuple[int, Json]:
        try:
            request = decode_body(body)
        except ValueError:
            return 422, ERR_DESERIALIZE
        async with self.producer.state_lock:
            return answer_info(request, self.chain, self.history)

    async def _exchange(self, body: bytes) -> tuple[int, Json]:
        verified = await self.verifier.verify(body)
        if isinstance(verified, Refused):
            return verified.status, verified.body
        assert isinstance(verified, Verified)
        try:
            result = await self.producer.submit(verified.signer, verified.action)
        except ProducerStoppedError:
            return 200, err("The node is stopping.").body
        return 200, response_json(verified.action.action, result.response, self.chain.markets)

    async def _devnet(self, body: bytes) -> tuple[int, Json]:
        try:
            request = decode_body(body)
        except ValueError:
            return 422, ERR_DESERIALIZE
        if not isinstance(request, dict) or not isinstance(request.get("type"), str):
            return 200, err("Expected an object with a string `type`.").body
        try:
            return 200, await self._control(request)
        except (KeyError, TypeError, ValueError) as exc:
            return 200, err(f"Bad {request['type']} request: {exc}").body
        except ProducerStoppedError:
            return 200, err("The node is stopping.").body

    async def _control(self, request: dict[str, Json]) -> Json:
        kind = request["type"]
        producer = self.producer
        if kind == "status":
            async with producer.state_lock:
                return _ok(self._status())
        if kind == "mine":
            blocks = _int(request.get("blocks", 1), "blocks", low=1)
            dt = request.get("dt")
            dt_ms = None if dt is None else _ms(dt, "dt", low=1)
            return _ok(_control_json(await producer.mine(blocks, dt_ms)))
        if kind == "advanceTime":
            return _ok(
                _control_json(await producer.advance_time(_ms(request["seconds"], "seconds")))
            )
        if kind == "setMining":
            mode = request["mode"]
            if mode not in MINING_MODES:
                raise ValueError(f"mode must be one of {', '.join(MINING_MODES)}")
            block_time = request.get("blockTime")
            block_ms = None if block_time is None else _ms(block_time, "blockTime", low=1)
            return _ok(_control_json(await producer.set_mining(mode, block_ms)))
        if kind == "setOraclePrice":
            action = SetOraclePriceAction(_str(request["coin"]), _str(request["px"]))
            return await self._in_block(action)
        if kind == "fund":
            user, token = _str(request["user"]), _str(request.get("token", "USDC"))
            return await self._in_block(FundAction(user, token, _str(request["amount"])))
        if kind == "snapshot":
            return await self._in_block(SnapshotAction())
        if kind == "revert":
            return await self._in_block(RevertAction(_int(request["id"], "id", low=1)))
        raise ValueError(f"unknown type {kind!r}")

    async def _in_block(self, action: DevnetAction) -> Json:
        """Run a control action in a block of its own, made at once in every mining mode."""
        result = await self.producer.submit(DEVNET_USER, action, alone=True)
        response = result.response
        if isinstance(response, ErrorResponse):
            return err(response.error).body
        answer: Json = {"type": "default", "height": result.height}
        if isinstance(response, SnapshotResponse):
            answer = {"type": "snapshot", "id": response.id, "height": result.height}
        return _ok(answer)

    def _status(self) -> Json:
        producer = self.producer
        return {
            "height": producer.height,
            "time": producer.time,
            "chainTime": producer.clock.now(),
            "stateHash": "0x" + producer.last_hash.hex(),
            "mining": producer.mining,
            "blockTime": producer.block_time_ms / 1000,
        }

    async def websocket(self, socket: WebSocket) -> None:
        await self.ws.serve_connection(socket.receive_text, socket.send_text, socket.close)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _ok(response: Json) -> Json:
    return {"status": "ok", "response": response}


def _control_json(result: ControlResult) -> Json:
    return {
        "height": result.height,
        "time": result.time,
        "chainTime": result.chain_time,
        "mining": result.mode,
        "blockTime": result.block_time_ms / 1000,
    }


def _int(value: Json, name: str, low: int = 0) -> int:
    if type(value) is not int or value < low:
        raise ValueError(f"{name} must be an integer >= {low}")
    return value


def _ms(seconds: Json, name: str, low: int = 0) -> int:
    """Seconds (int or float) as whole milliseconds."""
    if type(seconds) not in (int, float) or not low <= seconds * 1000 <= 10**13:
        raise ValueError(f"{name} must be a number of seconds >= {low / 1000}")
    ms: float = seconds * 1000
    return round(ms)


def _str(value: Json) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _response(status: int, body: Json) -> HttpResponse:
    """JSON for objects and lists, plain text for a string body of an error status."""
    if isinstance(body, str) and status != 200:
        return text_response(status, body)
    return HttpResponse(status, b"application/json", msgspec.json.encode(body))


async def serve_api(
    api: Api,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; reports the base URL (http://host:port) once listening."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(api.ws.run)
        await nursery.start(api.verifier.run)
        try:
            bound = await nursery.start(
                partial(serve_http, api, host, port, max_body=MAX_BODY_BYTES, ws_path=WS_PATH)
            )
        except OSError as exc:
            reason = exc.strerror or exc
            raise ApiBindError(f"cannot listen on {host}:{port}: {reason}") from None
        url = f"http://{bound[0]}:{bound[1]}".replace("0.0.0.0", "127.0.0.1")
        log.info("api listening", url=url)
        task_status.started(url)
