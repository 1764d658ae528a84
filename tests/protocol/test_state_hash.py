"""The canonical state hash: deterministic, canonical, and blind to pure caches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec

from protocol.actions import (
    CreateSubAccountAction,
    OrderAction,
    ScheduleCancelAction,
    UpdateLeverageAction,
    UsdSendAction,
)
from protocol.chain import Action, Chain
from protocol.fixed import WAD
from protocol.lending import YEAR_MS
from protocol.markets import Markets
from protocol.oracle import ConstantSource, Source
from protocol.state_hash import (
    GENESIS_HASH,
    ChainSnapshot,
    chain_snapshot,
    encode_snapshot,
    state_diff,
    state_hash,
)
from tests.protocol.conftest import (
    BTC,
    ETH,
    PURR_TOKEN,
    PURR_USDC,
    USD,
    USDC_TOKEN,
    default_markets,
    limit,
    trigger,
)

ROOT = Path(__file__).resolve().parents[2]
HOUR = 3_600_000
START = 500 * HOUR - 10_000  # 10 s before an hour boundary: funding settles in the run
U, M, B = "0x" + "1" * 40, "0x" + "2" * 40, "0x" + "3" * 40
Block = list[tuple[str, Action]]


def sources(markets: Markets) -> dict[int, Source]:
    prices: dict[int, Source] = {p.asset: ConstantSource(100) for p in markets.perps}
    prices[BTC] = ConstantSource(1_000_000)
    return prices


def new_chain(markets: Markets, users: tuple[str, ...] = (U, M, B)) -> Chain:
    """A chain whose `users` have 1M USDC on perps and 10k USDC, 1M PURR on spot."""
    chain = Chain(markets, sources(markets), START)
    for user in users:
        chain.clearinghouse.credit_usd(user, 1_000_000 * USD)
        chain.clearinghouse.credit_spot(user, USDC_TOKEN, 10_000 * 10**8)
        chain.clearinghouse.credit_spot(user, PURR_TOKEN, 1_000_000 * 10**5)
    return chain


def scenario() -> list[Block]:
    """Trades, resting orders on perp and spot, a TP/SL, leverage, a scheduled cancel, a
    sub-account, a send, and an hour boundary (funding)."""
    return [
        [
            (
                M,
                OrderAction((limit(BTC, False, "100000", "0.2"), limit(BTC, True, "99000", "0.2"))),
            ),
            (U, UpdateLeverageAction(ETH, False, 10)),
        ],
        [
            (U, OrderAction((limit(BTC, True, "100000", "0.1", "Ioc"),))),
            (M, OrderAction((limit(PURR_USDC, False, "0.2", "1000"),))),
            (U, OrderAction((trigger(BTC, False, "90000", "0.1", "90000", "sl"),))),
        ],
        [
            (B, OrderAction((limit(PURR_USDC, True, "0.2", "400"),))),
            (M, ScheduleCancelAction(START + 60_000)),
            (U, CreateSubAccountAction("trading")),
        ],
        [(B, UsdSendAction(U, "12.5"))],
        [(B, OrderAction((limit(ETH, True, "90", "2", cloid="0x" + "ab" * 16),)))],
        [],
        [(U, OrderAction((limit(BTC, True, "100000", "0.05", "Ioc"),)))],
    ]


def run(chain: Chain, blocks: list[Block]) -> list[bytes]:
    """Apply the blocks, 3 s apart, and return the hash chain after each."""
    hashes: list[bytes] = []
    previous = GENESIS_HASH
    for height, actions in enumerate(blocks, start=1):
        chain.apply_block(height, START + 3_000 * height, actions)
        previous = state_hash(chain, previous)
        hashes.append(previous)
    return hashes


def test_same_actions_give_the_same_hash_at_every_block() -> None:
    """Two chains built separately and fed the same blocks agree on every block's hash."""
    first, second = new_chain(default_markets()), new_chain(default_markets())
    hashes = run(first, scenario())
    assert hashes == run(second, scenario())
    assert len(set(hashes)) == len(hashes)
    assert all(len(h) == 32 for h in hashes)
    snapshot = chain_snapshot(first)
    assert snapshot.exchange.triggers and snapshot.clearinghouse.sub_accounts
    assert any(book.orders for book in snapshot.exchange.books)
    assert snapshot.exchange.scheduled_cancels and snapshot.exchange.cloids


def test_a_different_action_changes_the_hash() -> None:
    """One order's size differs in block 5: the hashes agree before it and differ from it."""
    other = scenario()
    other[4] = [(B, OrderAction((limit(ETH, True, "90", "3", cloid="0x" + "ab" * 16),)))]
    hashes = run(new_chain(default_markets()), scenario())
    changed = run(new_chain(default_markets()), other)
    assert hashes[:4] == changed[:4]
    assert all(a != b for a, b in zip(hashes[4:], changed[4:], strict=True))


def test_hash_does_not_depend_on_dict_insertion_order() -> None:
    """Accounts, balances and leverage settings created in opposite orders hash the same."""
    markets = default_markets()
    forward = new_chain(markets, (U, M, B))
    backward = new_chain(markets, (B, M, U))
    for user in (U, M, B):
        forward.clearinghouse.credit_spot(user, USDC_TOKEN, 5)
        forward.clearinghouse.credit_spot(user, PURR_TOKEN, 7)
    for user in (B, M, U):
        backward.clearinghouse.credit_spot(user, PURR_TOKEN, 7)
        backward.clearinghouse.credit_spot(user, USDC_TOKEN, 5)
    assert list(forward.clearinghouse.accounts) != list(backward.clearinghouse.accounts)
    assert state_hash(forward, GENESIS_HASH) == state_hash(backward, GENESIS_HASH)
    run(
        forward,
        [[(U, UpdateLeverageAction(ETH, False, 10))], [(U, UpdateLeverageAction(BTC, True, 5))]],
    )
    run(
        backward,
        [[(U, UpdateLeverageAction(BTC, True, 5))], [(U, UpdateLeverageAction(ETH, False, 10))]],
    )
    assert list(forward.clearinghouse.accounts[U].leverage) == [ETH, BTC]
    assert list(backward.clearinghouse.accounts[U].leverage) == [BTC, ETH]
    assert chain_snapshot(forward) == chain_snapshot(backward)
    assert state_hash(forward, GENESIS_HASH) == state_hash(backward, GENESIS_HASH)


_SCRIPT = """
from tests.protocol.test_state_hash import new_chain, run, scenario
from tests.protocol.conftest import default_markets
print(run(new_chain(default_markets()), scenario())[-1].hex())
"""


def test_hash_is_stable_across_hash_seeds() -> None:
    """Processes with different PYTHONHASHSEED print the same final hash as this one."""
    printed = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", _SCRIPT],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        printed.append(result.stdout.strip())
    expected = run(new_chain(default_markets()), scenario())[-1].hex()
    assert printed == [expected, expected]


def test_state_diff_names_the_differing_parts() -> None:
    """Equal snapshots have no diff; a changed account, book and oracle are each named."""
    first, second = new_chain(default_markets()), new_chain(default_markets())
    run(first, scenario())
    run(second, scenario())
    assert state_diff(chain_snapshot(first), chain_snapshot(second)) == []
    second.clearinghouse.accounts[M].usd += 1
    second.exchange.books[BTC].remove(second.exchange.books[BTC].resting_in_priority()[0].oid)
    second.oracle.set_price(ETH, 123)
    assert state_diff(chain_snapshot(first), chain_snapshot(second)) == [
        f"clearinghouse.accounts[{M}]",
        "exchange.books",
        "oracle",
    ]
    third = new_chain(default_markets())
    run(third, scenario())
    third.clearinghouse.account("0x" + "9" * 40)
    third.liquidator.last_partial[U] = START
    assert state_diff(chain_snapshot(first), chain_snapshot(third)) == [
        "clearinghouse.accounts[0x" + "9" * 40 + "]",
        "liquidator",
    ]


def test_pure_cache_does_not_change_the_hash() -> None:
    """Filling `notional_limits` (a cache of a pure function) leaves the hash unchanged."""
    chain = new_chain(default_markets())
    run(chain, scenario())
    before = state_hash(chain, GENESIS_HASH)
    cache = chain.clearinghouse.notional_limits
    cache.clear()
    empty = state_hash(chain, GENESIS_HASH)
    for perp in chain.markets.perps:
        for leverage in range(1, perp.max_leverage + 1):
            chain.clearinghouse.within_tier(perp.asset, leverage, 0)
    assert cache
    assert state_hash(chain, GENESIS_HASH) == empty == before


def test_ints_above_64_bits_encode() -> None:
    """Lending indexes after decades of accrual and a huge balance exceed 2**64 and still
    hash, as decimal strings; the encoding round-trips to the same snapshot."""
    chain = new_chain(default_markets())
    reserve = chain.lending.reserves[USDC_TOKEN]
    reserve.scaled_borrow = reserve.borrows[U] = 10**8
    reserve.scaled_supply = reserve.supplies[M] = 10**8
    reserve.cash = 0
    chain.lending.accrue(START + 40 * YEAR_MS)
    assert reserve.borrow_index > 2**64 > WAD
    chain.clearinghouse.credit_usd(B, 2**70)
    snapshot = chain_snapshot(chain)
    assert snapshot.clearinghouse.accounts[2].usd == str(1_000_000 * USD + 2**70)
    assert int(snapshot.lending.reserves[0].borrow_index) == reserve.borrow_index
    encoded = encode_snapshot(snapshot)
    assert msgspec.msgpack.decode(encoded, type=ChainSnapshot) == snapshot
    assert len(state_hash(chain, GENESIS_HASH)) == 32
