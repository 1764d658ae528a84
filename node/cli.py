"""The `devnet` command: `devnet start` runs a devnet node on a config file.

Exit status: 0 after a clean stop (Ctrl-C / SIGINT, SIGTERM, or `--blocks N` reached), 2 for a
bad command line or config (argparse's usage errors exit 2 too).

Output: the start banner goes to stdout, structlog lines to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import math
import signal
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TextIO

import structlog
import trio

from node.api.history import History
from node.api.server import Api, ApiBindError, first_error, serve_api
from node.api.verifier import Verifier
from node.blocklog import CorruptLogError, read_records
from node.blocks import BlockProducer, follow_trio_clock
from node.chainstore import (
    BadLogError,
    Index,
    ReplayMismatchError,
    export_fixture,
    open_store,
    replay_records,
)
from node.config import DEFAULT_CONFIG_PATH, MINING_MODES, NodeConfig, load_config, override
from node.devaccounts import derive_accounts
from node.market_maker import MARKET_MAKER, MarketMaker
from protocol.markets import ConfigError

API_HOST = "127.0.0.1"
EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_MISMATCH = 1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

log = structlog.get_logger(__name__)


def _block_time_ms(text: str) -> int:
    """`--block-time` in seconds, as whole milliseconds (at least 1)."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or round(seconds * 1000) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: need at least 0.001 seconds")
    return round(seconds * 1000)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: need at least 1")
    return value


def _port(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devnet", description="A local devnet imitating Hyperliquid's HyperCore."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    start = commands.add_parser("start", help="run a devnet node", description="Run a node.")
    start.add_argument(
        "--config",
        default=DEFAULT_CONFIG_PATH,
        metavar="PATH",
        help=f"TOML config file (default: {DEFAULT_CONFIG_PATH})",
    )
    start.add_argument(
        "--block-time",
        type=_block_time_ms,
        dest="block_time_ms",
        metavar="S",
        help="seconds between blocks (default: the config's node.block_time_ms, else 1)",
    )
    start.add_argument(
        "--mining",
        choices=MINING_MODES,
        help="when blocks are made (default: the config's node.mining, else interval)",
    )
    start.add_argument(
        "--market-maker",
        action=argparse.BooleanOptionalAction,
        help="run the built-in market maker (default: the config's market_maker.enabled)",
    )
    start.add_argument(
        "--data-dir", metavar="DIR", help="data directory (default: node.data_dir, else data)"
    )
    start.add_argument(
        "--port", type=_port, metavar="N", help="HTTP API port (default: node.port, else 3001)"
    )
    replay = commands.add_parser(
        "replay", help="re-execute a data directory's log", description="Replay a block log."
    )
    replay.add_argument("data_dir", metavar="DATA_DIR")
    replay.add_argument("--to", type=_positive_int, metavar="HEIGHT", help="stop at HEIGHT")
    replay.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="check every block's state hash and part digests (default: on)",
    )
    replay.add_argument(
        "--from-snapshot",
        action="store_true",
        help="start from the newest snapshot at most --to that checks out (default: genesis)",
    )
    replay.add_argument(
        "--print-hashes", action="store_true", help="print each block's height and state hash"
    )
    replay.add_argument("--log-format", choices=("console", "json"), default="console")
    export = commands.add_parser(
        "export-fixture",
        help="write a data directory's log as a replay fixture (JSON)",
        description="Write genesis + blocks + expected state hashes as a JSON fixture.",
    )
    export.add_argument("data_dir", metavar="DATA_DIR")
    export.add_argument("out", metavar="OUT")
    export.add_argument("--log-format", choices=("console", "json"), default="console")
    start.add_argument(
        "--blocks", type=_positive_int, metavar="N", help="stop after N blocks (default: run on)"
    )
    start.add_argument(
        "--log-format",
        choices=("console", "json"),
        default="console",
        help="structlog output format (default: console)",
    )
    return parser


def configure_logging(log_format: str, stream: TextIO | None = None) -> None:
    """structlog to `stream` (default stderr), one line per event, INFO and above."""
    stream = sys.stderr if stream is None else stream
    renderer: structlog.typing.Processor
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty(), sort_keys=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def _version() -> str:
    try:
        return metadata.version("hl-devnet")
    except metadata.PackageNotFoundError:
        return "unknown"


def banner(config: NodeConfig, genesis_time_ms: int, url: str) -> str:
    """The start banner: what this node runs, with every market's asset id."""
    markets = config.markets
    lines = [
        f"hl-devnet {_version()}: local HyperCore devnet",
        f"  config      {config.source}",
        f"  mining      {config.mining}, block time {config.block_time_ms} ms "
        f"(genesis time {genesis_time_ms} ms)",
        f"  data dir    {config.data_dir} (the block log; an existing one is resumed)",
        f"  perps       {len(markets.perps)}",
    ]
    lines.extend(
        f"    {perp.asset:>5}  {perp.name:<10} szDecimals {perp.sz_decimals}, "
        f"maxLeverage {perp.max_leverage}"
        for perp in markets.perps
    )
    lines.append(f"  spot pairs  {len(markets.pairs)}")
    for pair in markets.pairs:
        market = markets.by_coin[pair.name]
        base, quote = markets.tokens[pair.base].name, markets.tokens[pair.quote].name
        lines.append(f"    {market.asset:>5}  {pair.name:<10} {base}/{quote}")
    dev = config.dev_accounts
    funding = ", ".join(
        [f"{dev.perp_usdc} USDC on perps", *(f"{v} {k}" for k, v in dev.spot.items())]
    )
    lines.append(f"  dev accounts {dev.count}, each funded with {funding}:")
    lines.extend(
        f"    ({index}) {account.address}  key {account.private_key}"
        for index, account in enumerate(derive_accounts(dev.mnemonic, dev.count))
    )
    maker = config.market_maker
    state = "quoting every market" if maker.enabled else "off (funded, not quoting)"
    lines.append(f"  market maker {MARKET_MAKER} {state}")
    lines.append(f"  HTTP API    {url}  (POST /info, POST /exchange, POST /devnet)")
    lines.append(f"  WebSocket   {url.replace('http', 'ws', 1)}/ws")
    return "\n".join(lines)


async def run_node(
    config: NodeConfig,
    genesis_time_ms: int,
    max_blocks: int | None = None,
    wall_ms: Callable[[], int] | None = None,
    announce: Callable[[str], None] | None = None,
) -> BlockProducer:
    """Run the node until SIGINT/SIGTERM or `max_blocks` blocks; returns the stopped producer.
    A stop signal cancels between blocks, never inside one. The chain lives in
    `config.data_dir`: resumed from its log when there is one, else started at
    `genesis_time_ms` and logged from its genesis. `wall_ms` is the clock block times follow
    (the system clock by default); `announce` gets the API's URL once it listens."""

    def history_from(saved: Index | None) -> History:
        """The API's history: the one saved with the snapshot resumed from, fed the blocks
        replayed after it; a new one when the chain starts, or its replay, at the genesis (a
        replay's blocks then set its clock)."""
        return saved if isinstance(saved, History) else History(genesis_time_ms)

    data_dir = Path(config.data_dir)
    store, loaded = open_store(
        data_dir,
        config,
        config.text,
        genesis_time_ms,
        snapshot_every=config.snapshot_every,
        index=history_from,
    )
    history = loaded.index
    assert isinstance(history, History)
    tune_collector()
    maker = None
    if config.market_maker.enabled:
        maker = MarketMaker(config.markets, config.quoting)
    producer = BlockProducer(
        loaded.chain,
        last_time=loaded.time,
        block_time_ms=config.block_time_ms,
        height=loaded.height,
        mining=config.mining,
        store=store,
        maker=maker,
        # The system clock, read once and then followed on trio's clock.
        wall_ms=wall_ms or follow_trio_clock(time.time_ns() // 1_000_000),
    )
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for signum in signals:
                    log.info("stopping", signal=signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    return

            async def produce(*, task_status: trio.TaskStatus[None]) -> None:
                await producer.run(max_blocks, task_status=task_status)
                nursery.cancel_scope.cancel()  # max_blocks reached: stop the signal watcher

            nursery.start_soon(stop_on_signal)
            api = Api(producer, history, Verifier(config.verify_processes))
            url = await nursery.start(serve_api, api, API_HOST, config.port)
            if announce is not None:
                announce(url)
            await nursery.start(produce)
            log.info(
                "devnet started",
                api=url,
                mining=config.mining,
                block_time_ms=config.block_time_ms,
            )
    log.info("devnet stopped", height=producer.height, time=producer.time)
    return producer


def tune_collector() -> None:
    """Freeze what start-up built (markets, the chain as loaded, the libraries) out of the
    cyclic collector's reach, and collect the young generation 70x less often: the node's
    garbage is mostly short-lived request and block objects without cycles, and the default
    thresholds spent 25-30% of the server's CPU under API load (scripts/bench_api.py)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1_000)


def _start(args: argparse.Namespace) -> int:
    try:
        config = override(
            load_config(args.config),
            block_time_ms=args.block_time_ms,
            mining=args.mining,
            data_dir=args.data_dir,
            port=args.port,
            market_maker=args.market_maker,
        )
    except ConfigError as exc:
        print(f"devnet: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    genesis_time_ms = time.time_ns() // 1_000_000  # a new chain's genesis time

    def announce(url: str) -> None:
        print(banner(config, genesis_time_ms, url), flush=True)

    unserved: ApiBindError | None = None
    # KeyboardInterrupt: a Ctrl-C outside the signal receiver (start-up, shutdown) is clean too.
    with contextlib.suppress(KeyboardInterrupt):
        try:
            trio.run(run_node, config, genesis_time_ms, args.blocks, None, announce)
        except* ApiBindError as group:
            error = first_error(group)
            assert isinstance(error, ApiBindError)
            unserved = error
    if unserved is not None:
        print(f"devnet: error: {unserved}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    """Re-execute the log of a data directory from its genesis (or, `--from-snapshot`, from its
    newest snapshot that checks out), checking every block's state hash and part digests
    (`--verify`, the default). A mismatch is reported with its height and the differing parts
    of the state."""
    data_dir = Path(args.data_dir)
    tune_collector()
    try:
        payloads = read_records(data_dir)
        loaded = replay_records(
            payloads,
            args.data_dir,
            args.to,
            verify=args.verify,
            snapshot_dir=data_dir if args.from_snapshot else None,
            on_block=_print_hash if args.print_hashes else None,
        )
    except (ReplayMismatchError, BadLogError, CorruptLogError, ConfigError) as exc:
        print(f"devnet: replay: {exc}", file=sys.stderr)
        return EXIT_MISMATCH
    start = f" from the snapshot at height {loaded.start_height}" if loaded.start_height else ""
    print(f"replayed to height {loaded.height}{start}, state hash {loaded.last_hash.hex()}")
    return EXIT_OK


def _print_hash(height: int, digest: bytes) -> None:
    print(f"{height} {digest.hex()}")


def _export_fixture(args: argparse.Namespace) -> int:
    try:
        text = export_fixture(Path(args.data_dir))
    except (CorruptLogError, BadLogError) as exc:
        print(f"devnet: export-fixture: {exc}", file=sys.stderr)
        return EXIT_MISMATCH
    Path(args.out).write_bytes(text + b"\n")
    print(f"wrote {args.out}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_format)
    if args.command == "start":
        return _start(args)
    if args.command == "replay":
        return _replay(args)
    if args.command == "export-fixture":
        return _export_fixture(args)
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
