"""The exchange's matching against the naive reference book (tests/naive_book.py).

(a) A Hypothesis state machine drives `Exchange` and `NaiveBook` side by side on BTC perp with
    well-funded users (margin never refuses) and, after every step, demands the same trades, the
    same statuses and order updates, and the same resting orders.
(b) A seeded stress run over a perp and a spot market with some poorly funded users (so margin
    and balance refusals, marginCanceled and reduce-only paths happen) checks the exchange's own
    invariants and the conservation of USDC and spot tokens after every step.
"""

from __future__ import annotations

import random
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from protocol.book import TIF_ALO, TIF_GTC, TIF_IOC, RestingOrder
from protocol.exchange import Exchange, Fill, OrderUpdate
from protocol.markets import Markets, load_markets
from protocol.orders import (
    BAD_ALO_PX_REJECTED,
    CANCELED,
    ERR_IOC_CANCEL,
    FILLED,
    IOC_CANCEL_REJECTED,
    OPEN,
    SELF_TRADE_CANCELED,
    Filled,
    OrderError,
    OrderRequest,
    OrderStatus,
    Resting,
)
from tests.naive_book import FILLED as NAIVE_FILLED
from tests.naive_book import (
    IOC_CANCELED,
    REJECTED_ALO,
    REJECTED_IOC,
    RESTING,
    NaiveBook,
    Placed,
    Trade,
)

ROOT = Path(__file__).resolve().parents[2]


def _load_markets() -> Markets:
    with (ROOT / "configs" / "devnet.toml").open("rb") as f:
        return load_markets(tomllib.load(f)["genesis"])


MARKETS = _load_markets()
BTC = 0
PURR_USDC = 10_000
USDC_TOKEN = 0
PURR_TOKEN = 1
BTC_MID_USD = 50_000  # whole dollars are always valid ticks; px has 1 decimal
BTC_MIN_LOTS = 20  # 0.0002 BTC at $50,000 = $10, the minimum notional
RICH_USD = 10**9 * 10**6  # a billion USDC in micro-USDC
USERS = [f"0x{i:040x}" for i in range(1, 5)]
T0 = 1_700_000_000_000


def btc_px(dollars: int) -> int:
    return dollars * 10


def trades_of(fills: list[Fill]) -> list[Trade]:
    """Pairs of fill records (maker then taker, same tid) as trades."""
    assert len(fills) % 2 == 0, "fills come in maker/taker pairs"
    trades: list[Trade] = []
    for maker, taker in zip(fills[::2], fills[1::2], strict=True):
        assert maker.tid == taker.tid
        assert not maker.crossed and taker.crossed
        assert maker.px == taker.px and maker.sz == taker.sz
        assert maker.is_buy != taker.is_buy
        assert maker.user != taker.user, "self-trade"
        trades.append(Trade(maker.oid, taker.oid, taker.px, taker.sz))
    tids = [f.tid for f in fills[::2]]
    assert tids == sorted(tids) and len(set(tids)) == len(tids)
    return trades


def oid_of(status: OrderStatus, updates: list[OrderUpdate]) -> int:
    """The oid the exchange gave a new order: in its status, or in its rejection update."""
    if isinstance(status, Resting | Filled):
        return status.oid
    assert isinstance(status, OrderError), status
    own = [u for u in updates if u.status != SELF_TRADE_CANCELED]
    assert len(own) == 1, own
    return own[0].order.oid


class BookMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.exchange = Exchange(MARKETS)
        for user in USERS:
            self.exchange.clearinghouse.credit_usd(user, RICH_USD)
        self.credited = RICH_USD * len(USERS)
        self.naive = NaiveBook()
        self.next_oid = 1
        self.time = T0

    def _tick(self) -> int:
        self.time += 1
        return self.time

    @rule(
        user=st.sampled_from(USERS),
        is_buy=st.booleans(),
        offset=st.integers(-6, 6),
        sz=st.integers(BTC_MIN_LOTS, 6 * BTC_MIN_LOTS),
        tif=st.sampled_from([TIF_GTC, TIF_GTC, TIF_IOC, TIF_ALO]),
    )
    def place(self, user: str, is_buy: bool, offset: int, sz: int, tif: int) -> None:
        px = btc_px(BTC_MID_USD + offset)
        request = OrderRequest(BTC, is_buy, px, sz, False, tif)
        status = self.exchange.place_order(user, request, self._tick())
        fills, updates = self.exchange.take_events()
        oid = oid_of(status, updates)
        assert oid == self.next_oid, f"oid {oid}, expected {self.next_oid}"
        self.next_oid += 1
        placed = self.naive.place(oid, user, is_buy, px, sz, tif)
        self._compare_placed(oid, sz, status, fills, updates, placed)

    def _compare_placed(
        self,
        oid: int,
        sz: int,
        status: OrderStatus,
        fills: list[Fill],
        updates: list[OrderUpdate],
        placed: Placed,
    ) -> None:
        trades = trades_of(fills)
        assert trades == placed.trades
        ntl = sum(t.px * t.sz for t in trades)
        if placed.outcome == RESTING:
            assert status == Resting(oid)
        elif placed.outcome in (NAIVE_FILLED, IOC_CANCELED):
            assert status == Filled(oid, placed.filled_sz, ntl)
        elif placed.outcome == REJECTED_ALO:
            assert isinstance(status, OrderError)
            assert status.error.startswith("Post only order would have immediately matched")
        else:
            assert placed.outcome == REJECTED_IOC
            assert status == OrderError(ERR_IOC_CANCEL)
        expired = [u.order.oid for u in updates if u.status == SELF_TRADE_CANCELED]
        assert expired == placed.self_trade_canceled
        makers_done = {t.maker_oid for t in trades if t.maker_oid not in self.naive.where}
        assert {u.order.oid for u in updates if u.status == FILLED and u.order.oid != oid} == (
            makers_done
        )
        expected_own = {
            RESTING: OPEN,
            NAIVE_FILLED: FILLED,
            IOC_CANCELED: CANCELED,
            REJECTED_ALO: BAD_ALO_PX_REJECTED,
            REJECTED_IOC: IOC_CANCEL_REJECTED,
        }[placed.outcome]
        own = [u for u in updates if u.order.oid == oid]
        assert [u.status for u in own] == [expected_own]
        assert isinstance(own[0].order, RestingOrder)
        assert own[0].order.orig_sz == sz
        assert own[0].order.sz == (0 if placed.outcome == NAIVE_FILLED else sz - placed.filled_sz)
        others = [u for u in updates if u.order.oid != oid]
        assert len(others) == len(expired) + len(makers_done)

    @rule(
        user=st.sampled_from(USERS),
        pick=st.integers(0, 10**6),
        resting_target=st.booleans(),
        as_owner=st.booleans(),
    )
    def cancel(self, user: str, pick: int, resting_target: bool, as_owner: bool) -> None:
        resting = self.naive.resting()
        if resting_target and resting:
            target = resting[pick % len(resting)]
            oid = target.oid
            if as_owner:
                user = target.user
        else:
            oid = pick % (self.next_oid + 2)
        expect_ok = self.naive.owner(oid) == user
        result = self.exchange.cancel(user, BTC, oid, self._tick())
        fills, updates = self.exchange.take_events()
        assert not fills
        if expect_ok:
            assert result == "success"
            assert self.naive.cancel(oid)
            assert [(u.order.oid, u.status) for u in updates] == [(oid, CANCELED)]
        else:
            assert isinstance(result, OrderError)
            assert not updates

    @invariant()
    def same_book(self) -> None:
        self.exchange._check()
        book = self.exchange.books[BTC]
        got = [(o.oid, o.user, o.is_buy, o.px, o.sz) for o in book.resting_in_priority()]
        assert got == [tuple(r) for r in self.naive.resting()]
        assert book.best_bid() == self.naive.best_bid()
        assert book.best_ask() == self.naive.best_ask()
        assert book.depth(True) == self.naive.depth(True)
        assert book.depth(False) == self.naive.depth(False)
        clearinghouse = self.exchange.clearinghouse
        usd = sum(a.usd for a in clearinghouse.accounts.values())
        assert usd + clearinghouse.perp_fees == self.credited


def test_exchange_matches_naive_book() -> None:
    run_state_machine_as_test(
        BookMachine,
        settings=settings(
            max_examples=150,
            stateful_step_count=80,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_exchange_matches_naive_book_long_seeded(seed: int) -> None:
    """The same comparison over long seeded runs on a deeper book: long queues near the mid,
    sparse levels far from it, many cancels and a few sweeps, so that the book compacts its
    queues and rebuilds its price heaps along the way."""
    rng = random.Random(seed)
    machine = BookMachine()
    for _ in range(2500):
        roll = rng.random()
        user = rng.choice(USERS)
        is_buy = rng.random() < 0.5
        if roll < 0.35:
            machine.cancel(user, rng.randrange(10**6), rng.random() < 0.95, rng.random() < 0.95)
        elif roll < 0.95:
            near = rng.random() < 0.6
            offset = rng.randint(1, 4) if near else rng.randint(20, 200)
            sz = rng.randint(BTC_MIN_LOTS, 4 * BTC_MIN_LOTS)
            tif = TIF_ALO if rng.random() < 0.3 else TIF_GTC
            machine.place(user, is_buy, -offset if is_buy else offset, sz, tif)
        else:
            offset = rng.randint(1, 3)
            sz = rng.randint(BTC_MIN_LOTS, 20 * BTC_MIN_LOTS)
            tif = TIF_GTC if rng.random() < 0.3 else TIF_IOC
            machine.place(user, is_buy, offset if is_buy else -offset, sz, tif)
        machine.same_book()


# (b) Seeded stress run.


PURR_MID = 20_000_000  # $0.2 at 8 decimals (PURR has szDecimals 0)
PURR_TICK = 10_000  # $0.0001: 0.2xxx stays within 5 significant figures
PURR_MIN_LOTS = 50  # 50 PURR at $0.2 = 10 USDC


def _spot_holds(exchange: Exchange) -> dict[tuple[str, int], int]:
    """What the resting spot orders should hold, per (user, token)."""
    market = MARKETS.by_asset[PURR_USDC]
    holds: dict[tuple[str, int], int] = {}
    for order in exchange.books[PURR_USDC].orders.values():
        if order.is_buy:
            key, amount = (order.user, market.quote_token), order.px * order.sz
        else:
            key, amount = (order.user, market.base_token), order.sz * market.base_wei_per_lot
        holds[key] = holds.get(key, 0) + amount
    return holds


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stress_invariants_and_conservation(seed: int) -> None:
    rng = random.Random(seed)
    exchange = Exchange(MARKETS)
    clearinghouse = exchange.clearinghouse
    users = [f"0x{i:040x}" for i in range(1, 7)]
    poor = set(users[4:])
    credited_usd = 0
    credited_spot: dict[int, int] = {USDC_TOKEN: 0, PURR_TOKEN: 0}
    for user in users:
        usd = 12 * 10**6 if user in poor else RICH_USD
        quote = 30 * 10**8 if user in poor else 10**6 * 10**8
        base = 150 * 10**5 if user in poor else 10**7 * 10**5
        clearinghouse.credit_usd(user, usd)
        clearinghouse.credit_spot(user, USDC_TOKEN, quote)
        clearinghouse.credit_spot(user, PURR_TOKEN, base)
        credited_usd += usd
        credited_spot[USDC_TOKEN] += quote
        credited_spot[PURR_TOKEN] += base

    tifs = [TIF_GTC] * 3 + [TIF_IOC, TIF_ALO]
    time = T0
    for step in range(3000):
        time += rng.randint(0, 3)
        user = rng.choice(users)
        roll = rng.random()
        if roll < 0.45:
            reduce_only = rng.random() < 0.1
            px = btc_px(BTC_MID_USD + rng.randint(-10, 10))
            sz = rng.randint(BTC_MIN_LOTS, 8 * BTC_MIN_LOTS)
            if rng.random() < 0.05:
                sz *= 20  # a sweep
            request = OrderRequest(BTC, rng.random() < 0.5, px, sz, reduce_only, rng.choice(tifs))
            exchange.place_order(user, request, time)
        elif roll < 0.75:
            px = PURR_MID + PURR_TICK * rng.randint(-10, 10)
            sz = rng.randint(PURR_MIN_LOTS, 8 * PURR_MIN_LOTS)
            request = OrderRequest(PURR_USDC, rng.random() < 0.5, px, sz, False, rng.choice(tifs))
            exchange.place_order(user, request, time)
        elif roll < 0.95:
            mine = exchange.open_orders(user)
            if mine:
                order = rng.choice(mine)
                assert exchange.cancel(user, order.asset, order.oid, time) == "success"
        else:
            asset = rng.choice([BTC, PURR_USDC])
            oid = rng.randint(1, exchange.next_oid + 1)
            live = exchange.user_orders.get(user, {}).get(oid) == asset
            result = exchange.cancel(user, asset, oid, time)
            assert (result == "success") == live
        if step % 100 == 99:
            exchange.take_events()

        exchange._check()
        usd = sum(a.usd for a in clearinghouse.accounts.values())
        assert usd + clearinghouse.perp_fees == credited_usd, f"step {step}: USDC not conserved"
        for token, credited in credited_spot.items():
            total = sum(a.spot_total.get(token, 0) for a in clearinghouse.accounts.values())
            fees = clearinghouse.spot_fees.get(token, 0)
            assert total + fees == credited, f"step {step}: token {token} not conserved"
        holds = {
            (user, token): hold
            for user, account in clearinghouse.accounts.items()
            for token, hold in account.spot_hold.items()
            if hold
        }
        assert holds == _spot_holds(exchange), f"step {step}: spot holds != resting orders"
