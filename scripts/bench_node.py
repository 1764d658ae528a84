"""Node benchmark: actions submitted in-process to the block producer's inbox, through every
actor (oracle, lending, market maker, matching, margin, the block store with fsync on, the
event bus), in interval mining at 100 ms blocks on the default config, market maker on.

Workload (seeded, built before the clock starts): the ten dev accounts send `order` actions of
`--batch` orders each on BTC and ETH: 60% passive GTC orders outside the maker's quotes, each
with a cloid; 25% `cancelByCloid` of an earlier passive order; 15% IOC orders that cross the
maker's quotes. Senders wait only when the inbox (10,000 messages) is full, so the node, not
the senders, sets the pace.

Figures: orders executed per second of wall time (sustained, over `--seconds`), the time each
block took to produce (p50/p99, from the producer's own measure), and the replay of the
resulting log through `Chain.apply_block` with every hash checked (blocks/s, actions/s,
orders/s, and its speed against the live run).

    .venv/bin/python scripts/bench_node.py [--seconds S] [--batch N] [--block-ms MS]
        [--actions N] [--rate ORDERS_PER_S] [--json]

Without `--rate` the senders keep the inbox full: that measures the most the node sustains
(blocks then take longer than the block time and hold what arrived meanwhile). With `--rate`
the load is paced, to see blocks keep their schedule and how much faster than that run a replay
goes.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog
import trio

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from node.actors import BlockEvent  # noqa: E402
from node.blocklog import read_records  # noqa: E402
from node.blocks import BlockProducer, SubmitAction  # noqa: E402
from node.chainstore import open_store, replay_records  # noqa: E402
from node.cli import tune_collector  # noqa: E402
from node.config import load_config, override  # noqa: E402
from node.devaccounts import derive_accounts  # noqa: E402
from node.market_maker import MarketMaker  # noqa: E402
from protocol.actions import CancelByCloidAction, CancelByCloidWire, OrderAction  # noqa: E402
from protocol.chain import Action  # noqa: E402
from protocol.orders import LimitWire, OrderTypeWire, OrderWire  # noqa: E402

CONFIG = ROOT / "configs" / "devnet.toml"
GTC = OrderTypeWire(LimitWire("Gtc"))
IOC = OrderTypeWire(LimitWire("Ioc"))
# (asset, reference price, size): the default config's BTC and ETH.
MARKETS = ((0, 100_000, "0.001"), (1, 3_000, "0.01"))


def workload(users: list[str], n_actions: int, batch: int, seed: int) -> list[tuple[str, Action]]:
    rng = random.Random(seed)
    placed: list[tuple[int, str]] = []  # (asset, cloid) of passive orders
    actions: list[tuple[str, Action]] = []
    next_cloid = 1
    for _ in range(n_actions):
        user = rng.choice(users)
        roll = rng.random()
        if roll < 0.25 and len(placed) >= batch:
            cancels = [placed.pop(rng.randrange(len(placed))) for _ in range(batch)]
            wires = tuple(CancelByCloidWire(asset, cloid) for asset, cloid in cancels)
            actions.append((user, CancelByCloidAction(wires)))
            continue
        orders = []
        for _ in range(batch):
            asset, ref, size = rng.choice(MARKETS)
            is_buy = rng.random() < 0.5
            if roll < 0.85:  # passive: 0.5% to 2% away from the reference
                away = rng.randint(50, 200)
                px = ref * (10_000 - away) // 10_000 if is_buy else ref * (10_000 + away) // 10_000
                cloid = f"0x{next_cloid:032x}"
                next_cloid += 1
                placed.append((asset, cloid))
                orders.append(OrderWire(asset, is_buy, str(px), size, False, GTC, cloid))
            else:  # crosses the maker's first level
                px = ref * 101 // 100 if is_buy else ref * 99 // 100
                orders.append(OrderWire(asset, is_buy, str(px), size, False, IOC))
        actions.append((user, OrderAction(tuple(orders))))
    return actions


def orders_in(action: Action) -> int:
    if isinstance(action, OrderAction):
        return len(action.orders)
    if isinstance(action, CancelByCloidAction):
        return len(action.cancels)
    return 1


async def run_live(
    data_dir: Path,
    actions: list[tuple[str, Action]],
    seconds: float,
    block_ms: int,
    rate: float | None = None,
) -> tuple[list[BlockEvent], float]:
    """Run the node for `seconds`, fed as fast as it takes (`rate` None) or at `rate` orders
    per second, in 10 ms steps."""
    config = override(load_config(CONFIG), block_time_ms=block_ms)
    store, loaded = open_store(data_dir, config, config.text, time.time_ns() // 1_000_000)
    producer = BlockProducer(
        loaded.chain,
        last_time=loaded.time,
        block_time_ms=block_ms,
        store=store,
        maker=MarketMaker(config.markets, config.quoting),
    )
    events: list[BlockEvent] = []
    subscription = producer.subscribe(buffer=100_000)

    async def feed() -> None:
        if rate is None:
            for user, action in actions:
                await producer.inbox.send(SubmitAction(user, action))
            return
        start, sent, offered = trio.current_time(), 0, 0.0
        for step in range(10**9):
            offered += rate / 100
            while sent < len(actions) and offered >= orders_in(actions[sent][1]):
                user, action = actions[sent]
                offered -= orders_in(action)
                await producer.inbox.send(SubmitAction(user, action))
                sent += 1
            await trio.sleep_until(start + (step + 1) / 100)

    async def watch() -> None:
        async for event in subscription:
            events.append(event)

    started = 0.0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        await nursery.start(producer.run)
        started = time.perf_counter()
        nursery.start_soon(feed)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    elapsed = time.perf_counter() - started
    store.log.close()
    return events, elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=20, help="orders per action")
    parser.add_argument("--block-ms", type=int, default=100)
    parser.add_argument("--actions", type=int, default=100_000, help="actions prepared")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--rate", type=float, help="offer this many orders/s (default: as fast as it takes)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    # One log line per block would be timed too: keep warnings only.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    tune_collector()  # as `devnet start` and `devnet replay` do
    config = load_config(CONFIG)
    users = [a.address for a in derive_accounts(config.dev_accounts.mnemonic, 10)]
    actions = workload(users, args.actions, args.batch, args.seed)
    with tempfile.TemporaryDirectory() as directory:
        data_dir = Path(directory)
        events, elapsed = trio.run(
            run_live, data_dir, actions, args.seconds, args.block_ms, args.rate
        )
        executed = [a for e in events for a in e.output.actions]
        orders = sum(orders_in(a.action) for a in executed)
        took = [e.took_ms for e in events]

        payloads = read_records(data_dir)
        started = time.perf_counter()
        replayed = replay_records(payloads, str(data_dir))
        replay_s = time.perf_counter() - started
    blocks = len(events)
    result = {
        "offered_orders_per_s": args.rate,
        "seconds": round(elapsed, 2),
        "blocks": blocks,
        "actions": len(executed),
        "orders": orders,
        "orders_per_s": round(orders / elapsed),
        "actions_per_s": round(len(executed) / elapsed),
        "block_p50_ms": round(statistics.median(took), 2) if took else 0.0,
        "block_p99_ms": round(percentile(took, 0.99), 2) if took else 0.0,
        "replay_blocks_per_s": round(replayed.height / replay_s),
        "replay_actions_per_s": round(len(executed) / replay_s),
        "replay_orders_per_s": round(orders / replay_s),
        "replay_speedup": round(elapsed / replay_s, 2),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    offered = "as fast as it takes" if args.rate is None else f"{args.rate:,.0f} orders/s"
    print(f"live: {blocks} blocks of {args.block_ms} ms in {elapsed:.1f} s, fsync on, {offered}")
    print(f"  orders/s   {result['orders_per_s']:>10,}  ({orders:,}, batches of {args.batch})")
    print(f"  actions/s  {result['actions_per_s']:>10,}")
    print(f"  block p50  {result['block_p50_ms']:>10} ms   p99 {result['block_p99_ms']} ms")
    print(f"replay: {replayed.height} blocks in {replay_s:.2f} s, every hash checked")
    print(f"  blocks/s   {result['replay_blocks_per_s']:>10,}")
    print(f"  actions/s  {result['replay_actions_per_s']:>10,}")
    print(f"  orders/s   {result['replay_orders_per_s']:>10,}")
    print(f"  speed      {result['replay_speedup']}x live")
    return 0


if __name__ == "__main__":
    sys.exit(main())
