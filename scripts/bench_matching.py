"""Matching benchmark: the exchange's order path against the naive reference book.

Workload (seeded, generated up front by simulating it on the naive book, so both sides see the
same oids and every cancel targets a resting order): on BTC perp (asset 0),
- 60% passive GTC limit orders that do not cross, mostly near the top of the book,
- 25% cancels of random resting orders (by their owner),
- 15% orders crossing 1-3 levels (IOC or GTC; a GTC remainder rests),
from 8 generously funded users (self-trade prevention happens when a taker meets its own order).

The exchange runs it through its public API (`Exchange.place_order` with prebuilt
`OrderRequest`s, `Exchange.cancel`), draining `take_events()` every 1000 operations as the node
does per block; the naive book runs the same operations through `place`/`cancel`.

Passes, each on fresh state: a verification pass (also the warm-up) that checks every status
against the naive outcome and the final books against each other; a throughput pass without
per-op timers; a pass timing each operation (p50/p99); a tracemalloc pass (peak memory); and
a memory-per-resting-order pass (tracemalloc difference after resting 100k orders).

    .venv/bin/python scripts/bench_matching.py [--ops N] [--seed S] [--json] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import random
import sys
import time
import tomllib
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from protocol.book import TIF_GTC, TIF_IOC  # noqa: E402
from protocol.clearinghouse import Leverage  # noqa: E402
from protocol.exchange import Exchange  # noqa: E402
from protocol.markets import Markets, load_markets  # noqa: E402
from protocol.orders import Filled, OrderError, OrderRequest, Resting  # noqa: E402
from tests.naive_book import FILLED, IOC_CANCELED, RESTING, NaiveBook  # noqa: E402

ASSET = 0  # BTC perp: px has 1 decimal, sz 5
MID_USD = 50_000
MIN_NOTIONAL = 10 * 10**6  # $10 in micro-USDC (px * sz)
USERS = [f"0x{i:040x}" for i in range(1, 9)]
FUNDS = 10**12 * 10**6  # a trillion USDC each: margin never refuses
BLOCK_OPS = 1000
T0 = 1_700_000_000_000


class Place(NamedTuple):
    user: str
    is_buy: bool
    px: int
    sz: int
    tif: int
    oid: int  # the oid both sides assign
    outcome: str  # the naive book's outcome (tests/naive_book.py)
    kind: str  # "passive" or "cross"


class Cancel(NamedTuple):
    user: str
    oid: int


Op = Place | Cancel


def load_default_markets() -> Markets:
    with (ROOT / "configs" / "devnet.toml").open("rb") as f:
        return load_markets(tomllib.load(f)["genesis"])


def min_lots(px: int) -> int:
    return -(-MIN_NOTIONAL // px)


def generate(n_ops: int, seed: int) -> tuple[list[Op], float]:
    """The workload, simulated on a naive book to keep it valid (non-crossing passives, cancels
    of live orders, crossing orders sized to reach 1-3 levels). Also returns the mean number
    of resting orders seen by an operation."""
    rng = random.Random(seed)
    book = NaiveBook()
    owner: dict[int, str] = {}
    live: list[int] = []  # resting oids; `slot` gives O(1) removal by swap-pop
    slot: dict[int, int] = {}

    def forget(oid: int) -> None:
        i = slot.pop(oid)
        last = live.pop()
        if last != oid:
            live[i] = last
            slot[last] = i

    resting_sum = 0
    ops: list[Op] = []
    next_oid = 1
    for _ in range(n_ops):
        resting_sum += len(live)
        roll = rng.random()
        if roll < 0.25 and live:
            oid = live[rng.randrange(len(live))]
            ops.append(Cancel(owner[oid], oid))
            assert book.cancel(oid)
            forget(oid)
            continue
        user = rng.choice(USERS)
        is_buy = rng.random() < 0.5
        opposite = book.asks if is_buy else book.bids
        kind = "cross" if roll >= 0.85 and opposite else "passive"
        if kind == "cross":
            depth = min(rng.randint(1, 3), len(opposite))
            sz = 0
            for k in range(depth):
                px, level = opposite.peekitem(k if is_buy else -1 - k)
                level_sz = sum(entry[2] for entry in level)
                sz += level_sz if k < depth - 1 else rng.randint(1, level_sz)
            tif = TIF_IOC if rng.random() < 0.5 else TIF_GTC
        else:
            best_bid, best_ask = book.best_bid(), book.best_ask()
            step = min(int(rng.expovariate(1 / 8)), 300) * 10  # whole dollars
            if is_buy:
                anchor = best_ask - 10 if best_ask is not None else MID_USD * 10
                px = anchor - step
            else:
                anchor = best_bid + 10 if best_bid is not None else MID_USD * 10
                px = anchor + step
            sz = rng.randint(25, 2_000)
            tif = TIF_GTC
        sz = max(sz, min_lots(px))
        placed = book.place(next_oid, user, is_buy, px, sz, tif)
        assert kind == "cross" or placed.outcome == RESTING
        ops.append(Place(user, is_buy, px, sz, tif, next_oid, placed.outcome, kind))
        for oid in [t.maker_oid for t in placed.trades] + placed.self_trade_canceled:
            if oid in slot and oid not in book.where:
                forget(oid)
        if placed.outcome == RESTING:
            owner[next_oid] = user
            slot[next_oid] = len(live)
            live.append(next_oid)
        next_oid += 1
    return ops, resting_sum / max(n_ops, 1)


def new_exchange(markets: Markets) -> Exchange:
    exchange = Exchange(markets)
    clearinghouse = exchange.clearinghouse
    clearinghouse.set_mark(ASSET, MID_USD * 10)
    for user in USERS:
        clearinghouse.credit_usd(user, FUNDS)
        # 1x: positions of any size stay inside every margin tier.
        clearinghouse.set_leverage(clearinghouse.account(user), ASSET, Leverage(True, 1))
    return exchange


# Runners. Each takes the prepared operations and returns (elapsed ns, per-op ns or empty).

Prepared = list[tuple[str, OrderRequest | None, int]]  # (user, request or None, cancel oid)


def prepare_exchange(ops: list[Op]) -> Prepared:
    prepared: Prepared = []
    for op in ops:
        if isinstance(op, Place):
            request = OrderRequest(ASSET, op.is_buy, op.px, op.sz, False, op.tif)
            prepared.append((op.user, request, 0))
        else:
            prepared.append((op.user, None, op.oid))
    return prepared


def run_exchange(
    markets: Markets, prepared: Prepared, per_op: bool
) -> tuple[int, list[int], Exchange]:
    exchange = new_exchange(markets)
    place = exchange.place_order
    cancel = exchange.cancel
    take = exchange.take_events
    clock = time.perf_counter_ns
    times: list[int] = []
    record = times.append
    t = T0
    start = clock()
    for i, (user, request, oid) in enumerate(prepared):
        if i % BLOCK_OPS == 0:
            take()
            t += 1
        if per_op:
            t0 = clock()
            if request is not None:
                place(user, request, t)
            else:
                cancel(user, ASSET, oid, t)
            record(clock() - t0)
        elif request is not None:
            place(user, request, t)
        else:
            cancel(user, ASSET, oid, t)
    take()
    return clock() - start, times, exchange


def run_naive(ops: list[Op], per_op: bool) -> tuple[int, list[int], NaiveBook]:
    book = NaiveBook()
    place = book.place
    cancel = book.cancel
    clock = time.perf_counter_ns
    times: list[int] = []
    record = times.append
    start = clock()
    for op in ops:
        if per_op:
            t0 = clock()
            if isinstance(op, Place):
                place(op.oid, op.user, op.is_buy, op.px, op.sz, op.tif)
            else:
                cancel(op.oid)
            record(clock() - t0)
        elif isinstance(op, Place):
            place(op.oid, op.user, op.is_buy, op.px, op.sz, op.tif)
        else:
            cancel(op.oid)
    return clock() - start, times, book


def verify(markets: Markets, ops: list[Op], prepared: Prepared) -> None:
    """Every exchange status agrees with the naive outcome, and the final books are equal."""
    exchange = new_exchange(markets)
    t = T0
    for i, (op, (user, request, oid)) in enumerate(zip(ops, prepared, strict=True)):
        if i % BLOCK_OPS == 0:
            exchange.take_events()
            t += 1
        if request is None:
            result = exchange.cancel(user, ASSET, oid, t)
            assert result == "success", f"op {i}: cancel {oid}: {result}"
            continue
        assert isinstance(op, Place)
        status = exchange.place_order(user, request, t)
        if op.outcome == RESTING:
            ok = status == Resting(op.oid)
        elif op.outcome in (FILLED, IOC_CANCELED):
            ok = isinstance(status, Filled) and status.oid == op.oid
        else:
            ok = isinstance(status, OrderError) and exchange.next_oid == op.oid + 1
        assert ok, f"op {i}: exchange {status}, naive {op.outcome}"
    _, _, naive = run_naive(ops, per_op=False)
    got = [
        (o.oid, o.user, o.is_buy, o.px, o.sz) for o in exchange.books[ASSET].resting_in_priority()
    ]
    assert got == [tuple(r) for r in naive.resting()], "final books differ"
    exchange._check()


def percentile(sorted_ns: list[int], q: float) -> float:
    index = min(len(sorted_ns) - 1, max(0, round(q * (len(sorted_ns) - 1))))
    return sorted_ns[index] / 1000


def peak_memory(run: Callable[[], object]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def resting_memory(markets: Markets, n: int, seed: int) -> tuple[float, float]:
    """Bytes per resting order, exchange and naive: traced memory after resting `n`
    non-crossing orders (bids below the mid, asks above, over ~1000 levels a side) minus before.
    Prices and sizes are computed inside the traced region so their int objects count, as they
    would for orders decoded from the wire."""
    rng = random.Random(seed)
    plan = [
        (rng.randrange(len(USERS)), rng.random() < 0.5, rng.randrange(1, 1000), rng.randrange(2000))
        for _ in range(n)
    ]
    base_px = MID_USD * 10

    def traced(fill: Callable[[], object]) -> float:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            keep = fill()
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        del keep
        return (after - before) / n

    exchange = new_exchange(markets)

    def fill_exchange() -> object:
        t = T0
        for i, (u, is_buy, step, extra) in enumerate(plan):
            if i % BLOCK_OPS == 0:
                exchange.take_events()
                t += 1
            px = base_px - step * 10 if is_buy else base_px + step * 10
            request = OrderRequest(ASSET, is_buy, px, 25 + extra, False, TIF_GTC)
            exchange.place_order(USERS[u], request, t)
        exchange.take_events()
        assert len(exchange.books[ASSET].orders) == n
        return exchange

    book = NaiveBook()

    def fill_naive() -> object:
        for i, (u, is_buy, step, extra) in enumerate(plan):
            px = base_px - step * 10 if is_buy else base_px + step * 10
            book.place(i + 1, USERS[u], is_buy, px, 25 + extra, TIF_GTC)
        assert len(book) == n
        return book

    return traced(fill_exchange), traced(fill_naive)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ops", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--resting", type=int, default=100_000, help="orders for bytes/order")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--profile", action="store_true", help="cProfile the exchange run")
    args = parser.parse_args(argv)

    markets = load_default_markets()
    ops, mean_resting = generate(args.ops, args.seed)
    prepared = prepare_exchange(ops)
    verify(markets, ops, prepared)

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run_exchange(markets, prepared, per_op=False)
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(25)

    ex_ns, _, ex_final = run_exchange(markets, prepared, per_op=False)
    nv_ns, _, _ = run_naive(ops, per_op=False)
    _, ex_times, _ = run_exchange(markets, prepared, per_op=True)
    _, nv_times, _ = run_naive(ops, per_op=True)
    ex_times.sort()
    nv_times.sort()
    ex_peak = peak_memory(lambda: run_exchange(markets, prepared, per_op=False))
    nv_peak = peak_memory(lambda: run_naive(ops, per_op=False))
    ex_bytes, nv_bytes = resting_memory(markets, args.resting, args.seed)

    n = len(ops)
    places = [op for op in ops if isinstance(op, Place)]
    result = {
        "ops": n,
        "seed": args.seed,
        "passive": sum(op.kind == "passive" for op in places),
        "crossing": sum(op.kind == "cross" for op in places),
        "cancels": n - len(places),
        "fills": ex_final.next_tid - 1,
        "mean_resting": mean_resting,
        "final_resting": len(ex_final.books[ASSET].orders),
        "ops_per_s": n / (ex_ns / 1e9),
        "p50_us": percentile(ex_times, 0.50),
        "p99_us": percentile(ex_times, 0.99),
        "peak_memory_bytes": ex_peak,
        "bytes_per_resting_order": ex_bytes,
        "baseline_ops_per_s": n / (nv_ns / 1e9),
        "baseline_p50_us": percentile(nv_times, 0.50),
        "baseline_p99_us": percentile(nv_times, 0.99),
        "baseline_peak_memory_bytes": nv_peak,
        "baseline_bytes_per_resting_order": nv_bytes,
    }
    result["ratio_ops_per_s"] = result["ops_per_s"] / result["baseline_ops_per_s"]
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"workload: {n} ops (seed {args.seed}): {result['passive']} passive, "
        f"{result['crossing']} crossing, {result['cancels']} cancels; "
        f"{result['fills']} trades; {mean_resting:.0f} orders resting on average, "
        f"{result['final_resting']} at the end"
    )
    for name, prefix in (("exchange", ""), ("naive", "baseline_")):
        print(
            f"{name:>9}: {result[prefix + 'ops_per_s']:>10,.0f} ops/s"
            f"  p50 {result[prefix + 'p50_us']:6.2f} us  p99 {result[prefix + 'p99_us']:7.2f} us"
            f"  peak {result[prefix + 'peak_memory_bytes'] / 2**20:6.2f} MiB"
            f"  {result[prefix + 'bytes_per_resting_order']:5.0f} B/resting order"
        )
    print(f"exchange/naive ops/s: {result['ratio_ops_per_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
