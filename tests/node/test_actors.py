"""The actors: a block run through their phases equals `Chain.apply_block` (what replay runs),
whatever the task order, and the event bus never waits for a slow subscriber."""

from __future__ import annotations

import random
import tomllib
from pathlib import Path

import trio
import trio.testing

from node.actors import BlockEvent, EventBus
from node.blocklog import read_records
from node.blocks import ActionResult, BlockProducer, SubmitAction
from node.chainstore import open_store, replay_records
from node.config import load_config, parse_config
from node.devaccounts import derive_accounts
from node.market_maker import MarketMaker
from protocol.actions import (
    CancelByCloidAction,
    CancelByCloidWire,
    NoopAction,
    UpdateLeverageAction,
    UsdSendAction,
)
from protocol.chain import Action, BlockOutput
from tests.protocol.conftest import limit_action

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "devnet.toml"
GENESIS_MS = 1_700_000_000_000
BTC, ETH, HYPE_SPOT = 0, 1, 10_001
# BTC on a random walk, so the oracle moves, the maker requotes and the marks follow.
WALKING_BTC = 'source = "random_walk"\npx = "100000"\nstep_bps = 20\nseed = 7\n'


def config_text() -> str:
    text = CONFIG.read_text()
    return text.replace(
        '[oracle.BTC]\nsource = "constant"\npx = "100000"\n', "[oracle.BTC]\n" + WALKING_BTC
    )


def workload(users: list[str], blocks: int, seed: int) -> list[list[tuple[str, Action]]]:
    """Seeded actions per block: orders that take the maker's quotes, orders that rest, cancels,
    leverage changes, sends."""
    rng = random.Random(seed)
    script: list[list[tuple[str, Action]]] = []
    for height in range(blocks):
        actions: list[tuple[str, Action]] = []
        for _ in range(rng.randrange(4)):
            user = rng.choice(users)
            kind = rng.randrange(6)
            if kind == 0:  # take BTC quotes either way
                is_buy = rng.random() < 0.5
                px = "105000" if is_buy else "95000"
                actions.append((user, limit_action(BTC, is_buy, px, "0.01", "Ioc")))
            elif kind == 1:  # rest ETH away from the quotes, with a cloid
                cloid = f"0x{height:032x}"
                actions.append((user, limit_action(ETH, True, "2900", "0.1", "Gtc", cloid=cloid)))
            elif kind == 2:
                cloid = f"0x{rng.randrange(height + 1):032x}"
                actions.append((user, CancelByCloidAction((CancelByCloidWire(ETH, cloid),))))
            elif kind == 3:  # buy HYPE on spot from the maker
                actions.append((user, limit_action(HYPE_SPOT, True, "31", "1", "Ioc")))
            elif kind == 4:
                actions.append((user, UpdateLeverageAction(BTC, True, rng.randrange(1, 20))))
            else:
                other = rng.choice(users)
                send = UsdSendAction(destination=other, amount="1.5", time=GENESIS_MS + height)
                actions.append((user, send))
        script.append(actions)
    return script


async def run_script(
    data_dir: Path, script: list[list[tuple[str, Action]]], checkpoint_seed: int | None
) -> list[BlockEvent]:
    """Mine the script one block at a time (manual mining) with the market maker on; with
    `checkpoint_seed`, every actor first sleeps or yields a random number of times."""
    config = parse_config(tomllib.loads(config_text()), "test")
    store, loaded = open_store(data_dir, config, config_text(), GENESIS_MS)
    checkpoint = None
    jitters = 0  # the actors' calls of `checkpoint`
    if checkpoint_seed is not None:
        rng = random.Random(checkpoint_seed)

        async def checkpoint() -> None:
            nonlocal jitters
            jitters += 1
            for _ in range(rng.randrange(4)):
                if rng.random() < 0.5:
                    await trio.lowlevel.checkpoint()
                else:
                    await trio.sleep(rng.random() / 100)

    producer = BlockProducer(
        loaded.chain,
        last_time=loaded.time,
        block_time_ms=config.block_time_ms,
        mining="manual",
        store=store,
        maker=MarketMaker(config.markets, config.quoting),
        checkpoint=checkpoint,
    )
    subscription = producer.subscribe(len(script) + 1)
    async with trio.open_nursery() as nursery:
        await nursery.start(producer.run)
        for actions in script:
            answers = []
            for user, action in actions:
                reply, answer = trio.open_memory_channel[ActionResult](1)
                await producer.inbox.send(SubmitAction(user, action, reply))
                answers.append(answer)
            mined = await producer.mine(1)
            for answer in answers:
                assert answer.receive_nowait().height == mined.height  # answered in its block
        nursery.cancel_scope.cancel()
    store.log.close()
    # The producer handed the checkpoint to its actors, who ran it more than once a block.
    assert (jitters > len(script)) == (checkpoint_seed is not None), jitters
    events = []
    async for event in subscription:
        events.append(event)
    return events


async def test_random_checkpoints_in_the_actors_give_the_same_hashes(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    users = [a.address for a in derive_accounts(load_config(CONFIG).dev_accounts.mnemonic, 4)]
    script = workload(users, 40, seed=3)
    plain = await run_script(tmp_path / "plain", script, None)
    assert sum(len(e.output.fills) for e in plain) > 20  # the script trades
    for seed in (1, 2):
        jittered = await run_script(tmp_path / f"jitter{seed}", script, seed)
        assert [e.state_hash for e in jittered] == [e.state_hash for e in plain]
        assert [e.output for e in jittered] == [e.output for e in plain]


async def test_the_actors_run_what_replay_runs(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The log the actors wrote replays through `Chain.apply_block` to the same hash at every
    block: the two forms of a block's phases agree."""
    users = [a.address for a in derive_accounts(load_config(CONFIG).dev_accounts.mnemonic, 3)]
    events = await run_script(tmp_path, workload(users, 30, seed=5), 9)
    payloads = read_records(tmp_path)
    hashes: list[bytes] = []
    replay_records(payloads, "test", on_block=lambda height, digest: hashes.append(digest))
    assert hashes == [e.state_hash for e in events]


async def test_a_slow_subscriber_is_disconnected_not_waited_for(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus = EventBus()
    slow = bus.subscribe(buffer=2)
    keen = bus.subscribe(buffer=10)
    event = BlockEvent(BlockOutput(1, 0, (), (), (), (), ()), b"", 0.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bus.run)
        for _ in range(5):
            await bus.publish(event)
        await trio.sleep(1)
        bus.close()
    got = [e async for e in keen]
    assert len(got) == 5
    # The slow one got what fit in its buffer, then its channel ended.
    assert [e async for e in slow] == [event, event]


async def test_the_maker_acts_first_and_noop_answers(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    users = [a.address for a in derive_accounts(load_config(CONFIG).dev_accounts.mnemonic, 1)]
    events = await run_script(tmp_path, [[(users[0], NoopAction())]], None)
    [event] = events
    first = event.output.actions
    # cancels (class 2) run before the maker's orders and the user's noop (class 1 runs first).
    assert [type(a.action).__name__ for a in first] == [
        "NoopAction",
        "CancelByCloidAction",
        "OrderAction",
    ]
    assert [a.index for a in first] == [2, 0, 1]
