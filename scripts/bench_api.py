"""HTTP API benchmark: signed /exchange orders against a node's bare request rate, measured from
a separate load process over keep-alive connections.

The node runs in a subprocess (this script with `--serve`): the default config, market maker
on, block log with fsync, interval mining at `--block-ms` (50 ms), signatures checked by the
config's worker processes (`--verify-processes` to change), served by the node's own HTTP
server (node/api/http_server.py). For the ceiling its app is the node's `Api` with one extra path,
`/bench/noop`, answered before any of the API's work (the body is read, `{}` sent back): the
cheapest request that server can answer. That route exists only in this script.

The load process (this script) signs every request before the clock starts, with the SDK's
`sign_l1_action` over the dev accounts' keys (in a process pool), each with its own
millisecond nonce. It then drives `--connections` keep-alive connections (1,000) from one
thread with non-blocking sockets and prebuilt request bytes, one request in flight per
connection, so that the block time is not the limit: the server stays near 100% of its core.
(At 400 connections it was idle 30% of the single-order phase: a request waits a block or two
for its answer, so the rate was the connections over that wait, not the server's.) Each answer
is read in full and checked after the clock stops (every order must rest).

Phases, in one run against one server: bare `POST /bench/noop`, single-order `order` actions,
then `order` actions of `--batch` (40) orders. The orders are passive GTC buys and sells on
BTC and ETH, 1% to 6% away from the oracle, so they all rest and never match.

Figures: requests/s of each phase (orders/s for the batches), their ratio to the bare rate,
latency p50/p99, and what limits them: the CPU share of the server's main process, of its
verify workers and of the load process over each phase (from /proc and
`time.process_time`), the server's share in its cyclic garbage collector (`gc.callbacks`,
signalled per phase), its CPU per request, and the cost of
the API's verification (`verify_request`: JSON, signature recovery, action decoding) per body,
timed in this process on the same bodies. A server near 100% of its one core is the limit; the
load process's small share shows it is not. `--profile PHASE` adds a cProfile of the server
during that phase, summed by area (event loop, HTTP, signature recovery, JSON, API, chain).
The server tunes its garbage collector as the node does (`node.cli.tune_collector`);
`--default-gc` runs it with Python's default thresholds instead, to see what the tuning gains.

    .venv/bin/python scripts/bench_api.py [--connections N] [--bare N] [--singles N]
        [--batches N] [--batch N] [--block-ms MS] [--verify-processes N] [--profile PHASE]
        [--default-gc] [--json]

`--json` prints one object with `single_actions_per_s`, `bare_requests_per_s` and
`batched_orders_per_s` among its keys. Targets: single-order actions at >= 50% of the bare
rate; >= 50,000 orders/s in batches.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import json
import logging
import os
import pstats
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402
import structlog  # noqa: E402
import trio  # noqa: E402
from eth_account import Account  # noqa: E402
from hyperliquid.utils.signing import (  # noqa: E402
    order_request_to_order_wire,
    order_wires_to_order_action,
    sign_l1_action,
)

from node.api.exchange import Verified, verify_request  # noqa: E402
from node.api.history import History  # noqa: E402
from node.api.http_server import HttpRequest, HttpResponse  # noqa: E402
from node.api.server import Api, serve_api  # noqa: E402
from node.api.verifier import Verifier  # noqa: E402
from node.blocks import BlockProducer  # noqa: E402
from node.chainstore import open_store  # noqa: E402
from node.cli import tune_collector  # noqa: E402
from node.config import load_config, override  # noqa: E402
from node.devaccounts import derive_accounts  # noqa: E402
from node.market_maker import MarketMaker  # noqa: E402
from scripts.bench_node import percentile  # noqa: E402

CONFIG = ROOT / "configs" / "devnet.toml"
NOOP_PATH = "/bench/noop"
# (asset, coin, oracle price, size, price step): the default config's BTC and ETH; prices are
# whole numbers of at most 5 significant figures, so every one is on the tick.
MARKETS = ((0, "BTC", 100_000, 0.001, 10), (1, "ETH", 3_000, 0.01, 1))
RECV_BYTES = 1 << 16
NOOP_RESPONSE = HttpResponse(200, b"application/json", b"{}")


class BenchApi(Api):
    """The node's API with the benchmark's bare route in front of it."""

    async def http(self, request: HttpRequest) -> HttpResponse:
        if request.path == NOOP_PATH:
            return NOOP_RESPONSE
        return await super().http(request)


# The server process.


async def serve(data_dir: Path, block_ms: int, verify_processes: int | None, signers: int) -> None:
    config = override(load_config(CONFIG), block_time_ms=block_ms, mining="interval")
    accounts = msgspec.structs.replace(config.dev_accounts, count=signers)
    config = msgspec.structs.replace(config, dev_accounts=accounts)
    if verify_processes is None:
        verify_processes = config.verify_processes
    store, loaded = open_store(data_dir, config, config.text, time.time_ns() // 1_000_000)
    producer = BlockProducer(
        loaded.chain,
        last_time=loaded.time,
        block_time_ms=block_ms,
        mining="interval",
        store=store,
        maker=MarketMaker(config.markets, config.quoting),
    )
    api = BenchApi(producer, History(loaded.time), Verifier(verify_processes))
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_api, api, "127.0.0.1", 0)
        await nursery.start(producer.run)
        print(url, flush=True)  # the load process waits for this line


class PhaseMeter:
    """The server's side of a phase, between SIGUSR1 (start) and SIGUSR2 (end) from the load
    process: the time the cyclic garbage collector ran (from `gc.callbacks`), and with a
    profile path, a cProfile of the phase. At the end it writes `report` (JSON) and the
    profile; the load process waits for the report file."""

    def __init__(self, report: Path, profile: Path | None) -> None:
        self.report, self.profile = report, profile
        self.profiler = cProfile.Profile() if profile is not None else None
        self.gc_seconds, self.gc_full, self._gc_started = 0.0, 0, 0.0
        self._at_start = (0.0, 0)
        gc.callbacks.append(self._on_gc)
        signal.signal(signal.SIGUSR1, self.start)
        signal.signal(signal.SIGUSR2, self.end)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        self.gc_seconds += time.perf_counter() - self._gc_started
        self.gc_full += info["generation"] == 2

    def start(self, *_: object) -> None:
        self._at_start = (self.gc_seconds, self.gc_full)
        if self.profiler is not None:
            self.profiler.enable()

    def end(self, *_: object) -> None:
        if self.profiler is not None and self.profile is not None:
            self.profiler.disable()
            self.profiler.dump_stats(self.profile)
            self.profiler = cProfile.Profile()
        seconds, full = self.gc_seconds - self._at_start[0], self.gc_full - self._at_start[1]
        self.report.write_text(json.dumps({"gc_seconds": seconds, "gc_full_collections": full}))


def serve_main(
    data_dir: Path,
    block_ms: int,
    profile: Path | None,
    default_gc: bool,
    verify_processes: int | None,
    signers: int,
) -> int:
    # One JSON line per block on stderr: the load process counts the blocks of each phase.
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    PhaseMeter(data_dir.parent / "phase.json", profile)
    if not default_gc:
        tune_collector()
    trio.run(serve, data_dir, block_ms, verify_processes, signers)
    return 0


# Signing, before the clock.


def passive_order(index: int) -> tuple[int, Any]:
    """(asset, SDK order request) of the index-th passive order: buys and sells alternate,
    stepping away from the oracle from 1% to 6%."""
    asset, coin, oracle, size, step = MARKETS[index % 2]
    is_buy = (index // 2) % 2 == 0
    away = oracle // 100 + ((index // 4) % 50) * oracle // 1000
    px = (oracle - away if is_buy else oracle + away) // step * step
    request = {
        "coin": coin,
        "is_buy": is_buy,
        "sz": size,
        "limit_px": float(px),
        "order_type": {"limit": {"tif": "Gtc"}},
        "reduce_only": False,
    }
    return asset, request


def order_action(first: int, count: int) -> Any:
    wires = []
    for index in range(first, first + count):
        asset, request = passive_order(index)
        wires.append(order_request_to_order_wire(request, asset))
    return order_wires_to_order_action(wires)


def sign_chunk(jobs: Sequence[tuple[str, Any, int]]) -> list[Any]:
    """Signatures of (private key, action, nonce) jobs; runs in a pool worker."""
    wallets = {key: Account.from_key(key) for key in {job[0] for job in jobs}}
    return [
        sign_l1_action(wallets[key], action, None, nonce, None, False)
        for key, action, nonce in jobs
    ]


def signers_for(connections: int) -> int:
    """Dev accounts to sign with: one per 10 connections (at least the default 10). A signer's
    connections run at their own pace, so its nonces arrive out of order by about a round of
    its connections per round one falls behind; with 10 connections a signer, a connection
    would have to fall 10 rounds behind its peers for a nonce to drop below the 100 the chain
    keeps (`Invalid nonce: nonce too low`). With 40 connections a signer (400 connections,
    10 signers) and 100 ms blocks, some did."""
    return max(10, connections // 10)


def signed_bodies(
    keys: Sequence[str], connections: int, count: int, orders_per_action: int, nonce0: int
) -> list[bytes]:
    """`count` signed /exchange bodies. Request i goes out on connection i % connections and is
    signed by key (i % connections) % len(keys), with nonce `nonce0 + i`: each signer's
    requests travel on a fixed set of connections, each in nonce order (see `signers_for`)."""
    jobs = []
    for i in range(count):
        key = keys[(i % connections) % len(keys)]
        jobs.append((key, order_action(i * orders_per_action, orders_per_action), nonce0 + i))
    chunks = [jobs[at : at + 500] for at in range(0, len(jobs), 500)]
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        signatures = [s for chunk in pool.map(sign_chunk, chunks) for s in chunk]
    return [
        json.dumps(
            {
                "action": action,
                "nonce": nonce,
                "signature": signature,
                "vaultAddress": None,
                "expiresAfter": None,
            }
        ).encode()
        for (_, action, nonce), signature in zip(jobs, signatures, strict=True)
    ]


def verify_cost_us(bodies: Sequence[bytes]) -> float:
    """Microseconds `verify_request` takes per body (best of three passes)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for body in bodies:
            assert isinstance(verify_request(body), Verified)
        best = min(best, time.perf_counter() - started)
    return best / len(bodies) * 1e6


# The load.


def http_request(host: str, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Connection:
    """One keep-alive connection and the requests it is to send, in order."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.sock = self._open()
        self.buffer = b""
        self.queue: list[bytes] = []
        self.next = 0
        self.sent_at = 0.0
        self.reconnects = 0

    def _open(self) -> socket.socket:
        sock = socket.create_connection(self.address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def reopen(self) -> None:
        """A new connection, as a client does when the server closes one after answering."""
        self.sock.close()
        self.sock, self.buffer = self._open(), b""
        self.reconnects += 1

    def send_next(self) -> bool:
        if self.next == len(self.queue):
            return False
        self.sent_at = time.perf_counter()
        self.sock.sendall(self.queue[self.next])
        self.next += 1
        return True

    def take_response(self) -> tuple[int, bytes, bool] | None:
        """(status, body, whether the server closes the connection) of the first complete
        response in the buffer, which it then leaves; None until one is complete."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self.buffer[:end].lower() + b"\r\n"
        at = head.index(b"content-length:") + 15
        length = int(head[at : head.index(b"\r\n", at)])
        if len(self.buffer) < end + 4 + length:
            return None
        body = self.buffer[end + 4 : end + 4 + length]
        self.buffer = self.buffer[end + 4 + length :]
        return int(head[9:12]), body, b"\r\nconnection: close\r\n" in head


class Phase:
    def __init__(self, seconds: float, answers: list[tuple[int, bytes]], latencies: list[float]):
        self.seconds = seconds
        self.answers = answers
        self.latencies = latencies

    def latency_ms(self, q: float) -> float:
        return round(percentile(self.latencies, q) * 1000, 2)


def run_phase(connections: Sequence[Connection], requests: Sequence[bytes]) -> Phase:
    """Send `requests` round-robin over the connections, one in flight on each, until every
    answer is in; the wall time from the first send to the last answer."""
    for connection in connections:
        connection.queue, connection.next = [], 0
    for index, request in enumerate(requests):
        connections[index % len(connections)].queue.append(request)
    answers: list[tuple[int, bytes]] = []
    latencies: list[float] = []
    selector = selectors.DefaultSelector()
    started = time.perf_counter()
    busy = 0
    for connection in connections:
        if connection.send_next():
            selector.register(connection.sock, selectors.EVENT_READ, connection)
            busy += 1
    while busy:
        for key, _ in selector.select():
            connection = key.data
            chunk = connection.sock.recv(RECV_BYTES)
            if not chunk:
                raise RuntimeError("the server closed a connection")
            connection.buffer += chunk
            answer = connection.take_response()
            if answer is None:
                continue
            latencies.append(time.perf_counter() - connection.sent_at)
            status, body, closing = answer
            answers.append((status, body))
            if closing:
                selector.unregister(connection.sock)
                connection.reopen()
                selector.register(connection.sock, selectors.EVENT_READ, connection)
            if not connection.send_next():
                selector.unregister(connection.sock)
                busy -= 1
    seconds = time.perf_counter() - started
    selector.close()
    return Phase(seconds, answers, latencies)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds(pid: int) -> float:
    """CPU seconds so far of the processes `pid` started (the server's verify workers). Each
    thread lists its own children, and trio starts processes from a worker thread."""
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that has just ended
            children.update(int(child) for child in (task / "children").read_text().split())
    return sum(cpu_seconds(child) for child in sorted(children))


def blocks_logged(log: Path) -> int:
    lines = log.read_text().splitlines()
    return sum(json.loads(line).get("event") == "block" for line in lines if line.startswith("{"))


class Server:
    """The node subprocess, its stderr log, and the profile it writes when asked."""

    def __init__(
        self,
        directory: Path,
        block_ms: int,
        profile: bool,
        default_gc: bool,
        verify_processes: int | None,
        signers: int,
    ) -> None:
        self.log = directory / "server.log"
        self.phase_report = directory / "phase.json"  # PhaseMeter's
        self.profile = directory / "server.prof" if profile else None
        argv = [sys.executable, __file__, "--serve", str(directory / "data")]
        argv += ["--block-ms", str(block_ms)]
        if verify_processes is not None:
            argv += ["--verify-processes", str(verify_processes)]
        argv += ["--signers", str(signers)]
        if self.profile is not None:
            argv += ["--profile-to", str(self.profile)]
        if default_gc:
            argv.append("--default-gc")
        with self.log.open("wb") as stderr:
            self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().decode().strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the node did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def measured(
    server: Server, connections: Sequence[Connection], requests: Sequence[bytes]
) -> tuple[Phase, dict[str, Any]]:
    """Run a phase and what it cost: the CPU share of the server and of this process, the
    server's share in its garbage collector, its blocks meanwhile, the reconnections."""
    blocks = blocks_logged(server.log)
    reconnects = sum(c.reconnects for c in connections)
    server.phase_report.unlink(missing_ok=True)
    server.process.send_signal(signal.SIGUSR1)
    time.sleep(0.1)  # the server's handler runs at its next bytecode; epoll is interrupted
    pid = server.process.pid
    server_before, load_before = cpu_seconds(pid), time.process_time()
    workers_before = children_cpu_seconds(pid)
    phase = run_phase(connections, requests)
    server_cpu = cpu_seconds(pid) - server_before
    workers_cpu = children_cpu_seconds(pid) - workers_before
    load_cpu = time.process_time() - load_before
    server.process.send_signal(signal.SIGUSR2)
    for _ in range(100):
        if server.phase_report.exists():
            break
        time.sleep(0.05)
    meter = json.loads(server.phase_report.read_text())
    return phase, {
        "server_cpu_share": round(server_cpu / phase.seconds, 3),
        "workers_cpu_share": round(workers_cpu / phase.seconds, 3),
        "server_gc_share": round(meter["gc_seconds"] / phase.seconds, 3),
        "server_full_gcs": meter["gc_full_collections"],
        "load_cpu_share": round(load_cpu / phase.seconds, 3),
        "blocks": blocks_logged(server.log) - blocks,
        "reconnects": sum(c.reconnects for c in connections) - reconnects,
    }


def check_orders(phase: Phase, orders_per_action: int) -> None:
    """Every answer is 200 and every order rested: otherwise the rate would count refusals."""
    for status, body in phase.answers:
        answer = json.loads(body)
        statuses = []
        if status == 200 and answer.get("status") == "ok":
            statuses = answer["response"]["data"]["statuses"]
        if sum("resting" in s for s in statuses if isinstance(s, dict)) != orders_per_action:
            raise RuntimeError(f"an order action was not executed as planned: {status} {body!r}")


# Where the server's time goes, by the code it is in: (area, what to look for in a profile
# entry's file name or, for built-ins, its function name). The first match wins.
AREAS = (
    ("signature recovery", ("_libsecp256k1", "coincurve", "/Crypto/", "node/api/signing.py")),
    ("HTTP (h11, wsproto, http_server.py)", ("/h11/", "/wsproto/", "node/api/http_server.py")),
    (
        "event loop (trio)",
        ("trio", "outcome", "select.epoll", "_socket.socket", "contextlib", "_contextvars"),
    ),
    ("JSON, msgpack, msgspec", ("msgspec", "msgpack", "/json/")),
    ("API (node/api)", ("/node/api/",)),
    ("chain and node (protocol/, node/)", ("/protocol/", "/node/", "posix.fsync")),
)


def print_profile(path: Path, limit: int = 15) -> None:
    """The profile of one phase: time by area, then the functions that took most."""
    stats = pstats.Stats(str(path))
    by_area: dict[str, float] = {}
    entries: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    for (filename, _, function), (_, _, own, *_) in entries.items():
        where = filename + function
        area = next((a for a, marks in AREAS if any(m in where for m in marks)), "other")
        by_area[area] = by_area.get(area, 0.0) + own
    total = sum(by_area.values())
    print(f"server profile ({total:.2f} s of CPU under cProfile, which slows it):")
    for area, seconds in sorted(by_area.items(), key=lambda item: -item[1]):
        print(f"  {area:36} {seconds / total:>6.1%}")
    stats.sort_stats("tottime").print_stats(limit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=1_000)
    parser.add_argument("--bare", type=int, default=40_000, help="bare requests timed")
    parser.add_argument("--singles", type=int, default=24_000, help="single-order actions")
    parser.add_argument("--batches", type=int, default=4_000, help="batched order actions")
    parser.add_argument("--batch", type=int, default=40, help="orders per batched action")
    parser.add_argument("--block-ms", type=int, default=50)
    parser.add_argument(
        "--profile",
        choices=("bare", "single", "batch"),
        help="profile the server (cProfile) during one phase and print its top functions",
    )
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="run the server with Python's default collector thresholds, not the node's",
    )
    parser.add_argument(
        "--verify-processes",
        type=int,
        help="the server's signature-checking worker processes (default: the config's)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--serve", metavar="DATA_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--signers", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # A socket per connection on each side: past the usual soft limit of 1,024 descriptors.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.serve:
        profile_to = None if args.profile_to is None else Path(args.profile_to)
        return serve_main(
            Path(args.serve),
            args.block_ms,
            profile_to,
            args.default_gc,
            args.verify_processes,
            args.signers,
        )

    config = load_config(CONFIG)
    signers = signers_for(args.connections)
    keys = [a.private_key for a in derive_accounts(config.dev_accounts.mnemonic, signers)]
    say = (lambda *_: None) if args.json else print
    say(f"signing {args.singles:,} single-order and {args.batches:,} {args.batch}-order actions")
    nonce0 = time.time_ns() // 1_000_000
    singles = signed_bodies(keys, args.connections, args.singles, 1, nonce0)
    # The batches' orders follow the singles' in the price ladder, and their nonces too.
    batches = signed_bodies(keys, args.connections, args.batches, args.batch, nonce0 + args.singles)
    single_verify_us = verify_cost_us(singles[:2_000])
    batch_verify_us = verify_cost_us(batches[:200])

    with tempfile.TemporaryDirectory() as directory:
        server = Server(
            Path(directory),
            args.block_ms,
            args.profile is not None,
            args.default_gc,
            args.verify_processes,
            signers,
        )
        try:
            host, port = server.url.removeprefix("http://").split(":")
            connections = [Connection((host, int(port))) for _ in range(args.connections)]
            bare = http_request(f"{host}:{port}", NOOP_PATH, b"{}")
            run_phase(connections, [bare] * (args.connections * 5))  # warm up
            say(f"{args.connections} connections to {server.url}, blocks every {args.block_ms} ms")
            phases: dict[str, tuple[Phase, dict[str, Any]]] = {}
            plan = {
                "bare": [bare] * args.bare,
                "single": [http_request(f"{host}:{port}", "/exchange", b) for b in singles],
                "batch": [http_request(f"{host}:{port}", "/exchange", b) for b in batches],
            }
            for name, requests in plan.items():
                phases[name] = measured(server, connections, requests)
                if args.profile == name and server.profile is not None:
                    print_profile(server.profile)
            check_orders(phases["single"][0], 1)
            check_orders(phases["batch"][0], args.batch)
            for connection in connections:
                connection.sock.close()
        finally:
            server.stop()

    rates = {name: len(phase.answers) / phase.seconds for name, (phase, _) in phases.items()}
    result: dict[str, Any] = {
        "default_gc": args.default_gc,
        "connections": args.connections,
        "block_ms": args.block_ms,
        "batch": args.batch,
        "bare_requests_per_s": round(rates["bare"]),
        "single_actions_per_s": round(rates["single"]),
        "single_to_bare": round(rates["single"] / rates["bare"], 3),
        "batched_actions_per_s": round(rates["batch"]),
        "batched_orders_per_s": round(rates["batch"] * args.batch),
        "verify_us_per_single_action": round(single_verify_us, 1),
        "verify_us_per_batched_action": round(batch_verify_us, 1),
    }
    for name, (phase, cost) in phases.items():
        result[f"{name}_p50_ms"] = phase.latency_ms(0.5)
        result[f"{name}_p99_ms"] = phase.latency_ms(0.99)
        result[f"{name}_server_us_per_request"] = round(
            1e6 * cost["server_cpu_share"] / rates[name], 1
        )
        for key, value in cost.items():
            result[f"{name}_{key}"] = value
    if args.json:
        print(json.dumps(result))
    else:
        report(result)
    return 0


def report(r: dict[str, Any]) -> None:
    rows = [
        ("bare POST /bench/noop", "requests/s", r["bare_requests_per_s"], "bare"),
        ("single-order actions", "actions/s", r["single_actions_per_s"], "single"),
        (f"{r['batch']}-order actions", "orders/s", r["batched_orders_per_s"], "batch"),
    ]
    print()
    print(
        f"{'':23}{'rate':>19}  {'p50 ms':>7} {'p99 ms':>7}  server CPU (GC)  workers"
        "  load CPU  blocks"
    )
    for name, unit, rate, key in rows:
        print(
            f"{name:23}{rate:>8,} {unit:<10} {r[f'{key}_p50_ms']:>7} {r[f'{key}_p99_ms']:>7}"
            f"  {r[f'{key}_server_cpu_share']:>10.0%} ({r[f'{key}_server_gc_share']:.0%})"
            f" {r[f'{key}_workers_cpu_share']:>8.0%} {r[f'{key}_load_cpu_share']:>9.0%}"
            f"  {r[f'{key}_blocks']:>6}"
        )
    print()
    print(f"single-order actions / bare requests: {r['single_to_bare']:.2f}  (target >= 0.50)")
    print(f"orders/s in batches: {r['batched_orders_per_s']:,}  (target >= 50,000)")
    print("server CPU per request (its CPU share / its rate):")
    print(f"  bare request           {r['bare_server_us_per_request']:>8} us  (HTTP)")
    print(
        f"  single-order action    {r['single_server_us_per_request']:>8} us  "
        f"(verify_request alone: {r['verify_us_per_single_action']} us)"
    )
    print(
        f"  {r['batch']}-order action{'':7}{r['batch_server_us_per_request']:>8} us  "
        f"(verify_request alone: {r['verify_us_per_batched_action']} us)"
    )


if __name__ == "__main__":
    sys.exit(main())
