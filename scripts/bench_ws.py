"""WebSocket benchmark: does a crowd of subscribers slow block production?

One node runs in this process as `devnet start` runs it (block producer in interval mining at
`--block-ms`, the market maker, the block log with fsync, the HTTP/WebSocket server on a
loopback port), under a steady order load sent straight into the producer's inbox: the
seeded workload of scripts/bench_node.py (passive orders with cloids, cancels, orders that
cross the maker's quotes on BTC and ETH) at `--orders-per-s`.

The run has three phases of `--seconds` each, measured on the same node one after the other
(the books grow as the run goes on, so the phases without clients frame the one with them):
1. and 3. no WebSocket client;
2. `--subscribers` clients, each subscribed to l2Book and trades of BTC and ETH, in a separate
   process so that their work is not the node's: one thread over plain sockets that counts
   whole frames without decoding them (a Python client decoding every message, such as
   websocket-client, cannot keep up with the node and would measure itself).

Figures without clients (phases 1 and 3) and with them (phase 2): blocks per second and
orders executed per second (from the event bus), the producer's own time per block (p50/p99);
with clients also the messages they received per second, the delay from a block's time to an
l2Book message of that block arriving (p50/p99), and how many of them the node disconnected
as too slow. The target: the block rate with clients is the rate without them.

    .venv/bin/python scripts/bench_ws.py [--seconds S] [--subscribers N]
        [--orders-per-s R] [--block-ms MS] [--json]
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog
import trio

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from node.actors import BlockEvent  # noqa: E402
from node.api.history import History  # noqa: E402
from node.api.server import Api, serve_api  # noqa: E402
from node.blocks import BlockProducer, SubmitAction  # noqa: E402
from node.chainstore import open_store  # noqa: E402
from node.config import load_config, override  # noqa: E402
from node.devaccounts import derive_accounts  # noqa: E402
from node.market_maker import MarketMaker  # noqa: E402
from protocol.chain import Action  # noqa: E402
from scripts.bench_node import orders_in, percentile, workload  # noqa: E402

CONFIG = ROOT / "configs" / "devnet.toml"
COINS = ("BTC", "ETH")
BATCH = 20  # orders per action
WARM_UP_S = 1.0
FEED_TICK_S = 0.01


# The subscribers' process: one thread and a selector over plain sockets, reading whole
# frames without decoding them (an l2Book's time excepted), so the clients keep up with the
# node and what is measured is the node.


class Subscriber:
    """A minimal RFC 6455 client: the upgrade handshake, masked text frames out, unmasked
    frames in."""

    def __init__(self, host: str, port: int, subscriptions: list[dict[str, str]]) -> None:
        self.sock = socket.create_connection((host, port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.decode(errors="replace"))
        for subscription in subscriptions:
            self.send({"method": "subscribe", "subscription": subscription})
        self.sock.setblocking(False)
        self.frames = 0
        self.closed = False
        self.delays: list[int] = []

    def send(self, message: dict[str, Any]) -> None:
        payload = json.dumps(message).encode()
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def read(self) -> None:
        """Take what arrived and count the whole frames in it."""
        try:
            chunk = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        if not chunk:
            self.closed = True
            return
        data = self.buffer + chunk
        at = 0
        while len(data) - at >= 2:
            opcode, length, start = data[at] & 0x0F, data[at + 1] & 0x7F, at + 2
            if length == 126:
                if len(data) - at < 4:
                    break
                length, start = int.from_bytes(data[at + 2 : at + 4]), at + 4
            elif length == 127:
                if len(data) - at < 10:
                    break
                length, start = int.from_bytes(data[at + 2 : at + 10]), at + 10
            if len(data) - start < length:
                break
            if opcode == 0x8:
                self.closed = True
            elif data.startswith(b'{"channel":"l2Book"', start):
                time_at = data.index(b'"time":', start) + 7
                block_ms = int(data[time_at : data.index(b",", time_at)])
                self.delays.append(time.time_ns() // 1_000_000 - block_ms)
            self.frames += 1
            at = start + length
        self.buffer = data[at:]


def subscribers(url: str, count: int) -> None:
    """Open `count` subscribers, print "ready" once every subscription is acknowledged, count
    what arrives until stdin closes, then print the figures as JSON."""
    host, port = url.removeprefix("http://").split(":")
    wanted = [{"type": kind, "coin": coin} for coin in COINS for kind in ("l2Book", "trades")]
    clients = [Subscriber(host, int(port), wanted) for _ in range(count)]
    selector = selectors.DefaultSelector()
    for client in clients:
        selector.register(client.sock, selectors.EVENT_READ, client)
    selector.register(sys.stdin, selectors.EVENT_READ, None)
    # Each subscription is answered by its ack, and l2Book by a snapshot too: ready once every
    # client has had that many frames.
    answers = len(wanted) + len(COINS)
    while any(client.frames < answers for client in clients):
        for key, _ in selector.select(timeout=30):
            if key.data is not None:
                key.data.read()
    for client in clients:
        client.frames, client.delays = 0, []
    started = time.perf_counter()
    print("ready", flush=True)
    stopping = False
    while not stopping:
        for key, _ in selector.select(timeout=1):
            if key.data is None:
                stopping = True  # the node's side closed stdin
            elif not key.data.closed:
                key.data.read()
    elapsed = time.perf_counter() - started
    delays = sorted(float(d) for client in clients for d in client.delays)
    report = {
        "messages_per_s": round(sum(client.frames for client in clients) / elapsed),
        "delay_p50_ms": statistics.median(delays) if delays else None,
        "delay_p99_ms": percentile(delays, 0.99) if delays else None,
        "disconnected": sum(client.closed for client in clients),
    }
    print(json.dumps(report), flush=True)


# The node's process.


class Phase:
    """The blocks the bus delivered during one measured phase."""

    def __init__(self) -> None:
        self.events: list[BlockEvent] = []
        self.seconds = 0.0


def figures(phases: list[Phase]) -> dict[str, Any]:
    seconds = sum(phase.seconds for phase in phases)
    events = [event for phase in phases for event in phase.events]
    took = [event.took_ms for event in events]
    orders = sum(orders_in(a.action) for e in events for a in e.output.actions)
    return {
        "seconds": round(seconds, 2),
        "blocks": len(events),
        "blocks_per_s": round(len(events) / seconds, 2),
        "orders_per_s": round(orders / seconds),
        "block_p50_ms": round(statistics.median(took), 2) if took else 0.0,
        "block_p99_ms": round(percentile(took, 0.99), 2) if took else 0.0,
    }


async def feed(producer: BlockProducer, actions: list[tuple[str, Action]], rate: float) -> None:
    """`rate` actions a second by the clock, whatever the ticks of FEED_TICK_S are delayed by,
    so both phases are offered the same load."""
    started = trio.current_time()
    sent = 0
    while sent < len(actions):
        due = min(len(actions), int((trio.current_time() - started) * rate))
        for user, action in actions[sent:due]:
            await producer.inbox.send(SubmitAction(user, action))
        sent = max(sent, due)
        await trio.sleep(FEED_TICK_S)


async def measure(producer: BlockProducer, seconds: float) -> Phase:
    phase = Phase()
    started = time.perf_counter()
    with producer.subscribe(1000) as events, trio.move_on_after(seconds):
        async for event in events:
            phase.events.append(event)
    phase.seconds = time.perf_counter() - started
    return phase


async def bench(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    config = override(load_config(CONFIG), block_time_ms=args.block_ms)
    store, loaded = open_store(data_dir, config, config.text, time.time_ns() // 1_000_000)
    producer = BlockProducer(
        loaded.chain,
        last_time=loaded.time,
        block_time_ms=args.block_ms,
        store=store,
        maker=MarketMaker(config.markets, config.quoting),
        wall_ms=lambda: time.time_ns() // 1_000_000,  # block times the subscribers can compare
    )
    api = Api(producer, History(loaded.time))
    users = [a.address for a in derive_accounts(config.dev_accounts.mnemonic, 10)]
    rate = args.orders_per_s / BATCH
    actions = workload(users, int(rate * (3 * args.seconds + 30)), BATCH, args.seed)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_api, api, "127.0.0.1", 0)
        await nursery.start(producer.run)
        nursery.start_soon(feed, producer, actions, rate)
        await trio.sleep(WARM_UP_S)
        before = await measure(producer, args.seconds)
        child = await trio.to_thread.run_sync(start_subscribers, url, args.subscribers)
        crowded = await measure(producer, args.seconds)
        report = await trio.to_thread.run_sync(stop_subscribers, child)
        after = await measure(producer, args.seconds)
        nursery.cancel_scope.cancel()
    store.log.close()
    # The books fill up as the run goes on, so the phases without subscribers frame the one
    # with them.
    without, with_ = figures([before, after]), figures([crowded]) | report
    return {
        "block_ms": args.block_ms,
        "orders_per_s_offered": args.orders_per_s,
        "subscribers": args.subscribers,
        "without": without,
        "with": with_,
        "block_rate_ratio": round(with_["blocks_per_s"] / without["blocks_per_s"], 3),
    }


def start_subscribers(url: str, count: int) -> subprocess.Popen[str]:
    argv = [sys.executable, __file__, "--subscribers-of", url, "--subscribers", str(count)]
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    line = child.stdout.readline()
    if line.strip() != "ready":
        child.kill()
        raise RuntimeError(f"the subscribers did not start: {line!r}")
    return child


def stop_subscribers(child: subprocess.Popen[str]) -> dict[str, Any]:
    output, _ = child.communicate(timeout=60)
    report: dict[str, Any] = json.loads(output)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--orders-per-s", type=int, default=10_000)
    parser.add_argument("--block-ms", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--subscribers-of", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.subscribers_of:
        subscribers(args.subscribers_of, args.subscribers)
        return 0

    # One log line per block would be timed too: keep warnings only.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as directory:
        result = trio.run(bench, args, Path(directory))
    if args.json:
        print(json.dumps(result))
        return 0
    without, with_ = result["without"], result["with"]
    print(
        f"node: {args.block_ms} ms blocks, {args.orders_per_s:,} orders/s offered, "
        f"market maker and fsync on; {args.seconds:g} s per phase"
    )
    for name, phase in (("no subscriber", without), (f"{args.subscribers} subscribers", with_)):
        print(
            f"  {name:<16} {phase['blocks_per_s']:>6} blocks/s  "
            f"{phase['orders_per_s']:>7,} orders/s  "
            f"block p50 {phase['block_p50_ms']} ms  p99 {phase['block_p99_ms']} ms"
        )
    print(
        f"  subscribers got {with_['messages_per_s']:,} messages/s; l2Book delay after the "
        f"block time p50 {with_['delay_p50_ms']} ms, p99 {with_['delay_p99_ms']} ms; "
        f"{with_['disconnected']} disconnected as too slow"
    )
    print(f"  block rate with / without: {result['block_rate_ratio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
