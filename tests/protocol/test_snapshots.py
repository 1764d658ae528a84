"""Devnet snapshots: a revert brings back the whole state saved, drops that snapshot and later
ones, keeps earlier ones; a replay of the same blocks gives the same hashes."""

from __future__ import annotations

from protocol.actions import (
    ActionResponse,
    DefaultResponse,
    ErrorResponse,
    FundAction,
    OrderAction,
    RevertAction,
    SnapshotAction,
    SnapshotResponse,
)
from protocol.chain import Action, Chain
from protocol.markets import Markets
from protocol.state_hash import GENESIS_HASH, chain_snapshot, state_hash
from tests.protocol.conftest import BTC, limit

T = 1_700_000_000_000
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b2" * 20


def blocks() -> list[list[tuple[str, Action]]]:
    buy = OrderAction((limit(BTC, True, "50000", "0.01"),))
    sell = OrderAction((limit(BTC, False, "50000", "0.004", tif="Ioc"),))
    return [
        [
            ("devnet", FundAction(ALICE, "USDC", "1000")),
            ("devnet", FundAction(BOB, "USDC", "1000")),
        ],
        [("devnet", SnapshotAction())],  # id 1: funded, no order
        [(ALICE, buy)],
        [("devnet", SnapshotAction())],  # id 2: Alice's bid rests
        [(BOB, sell)],
        [("devnet", RevertAction(2))],  # back to the resting bid, before Bob's sell
        [("devnet", RevertAction(2))],  # gone: reverting drops the snapshot reverted to
        [("devnet", RevertAction(1))],  # the earlier one survived
    ]


def run(markets: Markets) -> tuple[Chain, list[bytes], list[ActionResponse]]:
    chain = Chain(markets, start_time=T)
    hashes: list[bytes] = []
    responses: list[ActionResponse] = []
    digest = GENESIS_HASH
    for height, actions in enumerate(blocks(), start=1):
        output = chain.apply_block(height, T + height * 1000, actions)
        responses.append(output.actions[-1].response)
        digest = state_hash(chain, digest)
        hashes.append(digest)
        chain._check()
    return chain, hashes, responses


def test_revert_restores_the_saved_state(markets: Markets) -> None:
    chain = Chain(markets, start_time=T)
    script = blocks()
    snapshots = {}
    for height, actions in enumerate(script[:5], start=1):
        chain.apply_block(height, T + height * 1000, actions)
        snapshots[height] = chain_snapshot(chain)
    assert chain.clearinghouse.accounts[BOB].positions[BTC].szi == -400
    [revert] = chain.apply_block(6, T + 6000, script[5]).actions
    assert revert.response == DefaultResponse()
    assert chain.clearinghouse.accounts[BOB].positions.get(BTC) is None
    assert len(chain.exchange.books[BTC].orders) == 1  # Alice's whole bid again
    restored = chain_snapshot(chain)
    # Everything is as saved in block 4, but the lending clocks accrued by block 6's start.
    assert restored.exchange == snapshots[4].exchange
    assert restored.clearinghouse == snapshots[4].clearinghouse


def test_ids_after_a_revert_and_replay(markets: Markets) -> None:
    _, hashes, responses = run(markets)
    assert responses[1] == SnapshotResponse(1) and responses[3] == SnapshotResponse(2)
    assert responses[5] == DefaultResponse()
    assert responses[6] == ErrorResponse("Unknown snapshot id 2.")
    assert responses[7] == DefaultResponse()
    chain, again, _ = run(markets)
    assert again == hashes
    assert chain.saved == {} and chain.next_snapshot_id == 3  # ids are never reused
    assert ALICE in chain.clearinghouse.accounts and not chain.exchange.books[BTC].orders
