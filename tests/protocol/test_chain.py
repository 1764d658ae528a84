"""The block's phases through Chain.apply_block: prices, actions, triggers, funding, liquidation.

BTC: price 1 decimal (100000 -> 1_000_000), size 5 decimals; oracle sources are constant unless a
test moves them with `oracle.set_price`.
"""

from __future__ import annotations

from protocol.actions import OrderAction, OrderResponse
from protocol.chain import Action, BlockOutput, Chain
from protocol.fixed import RATE_SCALE
from protocol.ledger import Deposit, Liquidation
from protocol.liquidation import LIQUIDATOR
from protocol.markets import Markets
from protocol.oracle import ConstantSource, Source
from protocol.orders import Filled, OrderWire, Resting
from tests.protocol.conftest import BTC, USD, limit, trigger

HOUR = 3_600_000
START = 500 * HOUR - 20_000  # 20 s before an hour boundary
U, M, B = "0x" + "1" * 40, "0x" + "2" * 40, "0x" + "3" * 40


def sources(markets: Markets) -> dict[int, Source]:
    """Every perp at a constant 100 units of its price scale, BTC at 100000."""
    prices: dict[int, Source] = {p.asset: ConstantSource(100) for p in markets.perps}
    prices[BTC] = ConstantSource(1_000_000)
    return prices


class Runner:
    def __init__(self, markets: Markets) -> None:
        self.chain = Chain(markets, sources(markets), START)
        self.height = 0
        self.time = START
        for user in (U, M, B, LIQUIDATOR):
            self.chain.clearinghouse.credit_usd(user, 1_000_000 * USD)

    def block(self, *actions: tuple[str, Action], dt: int = 1_000) -> BlockOutput:
        self.height += 1
        self.time += dt
        output = self.chain.apply_block(self.height, self.time, list(actions))
        self.chain._check()
        return output


def order(*wires: OrderWire) -> OrderAction:
    return OrderAction(wires)


def test_marks_follow_the_oracle_and_the_book(markets: Markets) -> None:
    """With an empty book the mark is the oracle; a book around the oracle keeps it there."""
    run = Runner(markets)
    assert run.chain.clearinghouse.mark(BTC) == 1_000_000
    run.block((M, order(limit(BTC, True, "99000", "0.1"), limit(BTC, False, "101000", "0.1"))))
    run.block(dt=3_000)
    assert run.chain.clearinghouse.mark(BTC) == 1_000_000


def test_actions_get_their_responses_in_three_class_order(markets: Markets) -> None:
    """The ALO proposed second runs first (and rests); the GTC then trades against it. Each
    answer carries the index its action had when proposed."""
    run = Runner(markets)
    gtc = order(limit(BTC, True, "99000", "0.1"))
    alo = order(limit(BTC, False, "99000", "0.1", "Alo"))
    output = run.block((U, gtc), (M, alo))
    assert [(e.index, e.response) for e in output.actions] == [
        (1, OrderResponse((Resting(1),))),
        (0, OrderResponse((Filled(2, 10_000, 990_000 * 10_000),))),
    ]


def test_funding_settles_at_the_hour(markets: Markets) -> None:
    """With no book the premium is zero: longs pay 0.00125% of oracle notional per hour."""
    run = Runner(markets)
    run.block((M, order(limit(BTC, False, "100000", "0.4"))))
    run.block((U, order(limit(BTC, True, "100000", "0.4", "Ioc"))))
    cash_u = run.chain.clearinghouse.accounts[U].usd
    cash_m = run.chain.clearinghouse.accounts[M].usd
    settled = []
    for _ in range(25):
        output = run.block()
        if output.funding:
            settled.append(output)
    assert len(settled) == 1
    funding = {f.user: f for f in settled[0].funding}
    # 0.4 BTC x 100000 x 0.0000125 = $0.50
    assert funding[U].usdc == -500_000 and funding[M].usdc == 500_000
    assert funding[U].funding_rate == 12_500_000 == RATE_SCALE // 80_000
    assert funding[U].szi == 40_000 and funding[M].szi == -40_000
    assert run.chain.clearinghouse.accounts[U].usd == cash_u - 500_000
    assert run.chain.clearinghouse.accounts[M].usd == cash_m + 500_000
    position = run.chain.clearinghouse.accounts[U].positions[BTC]
    assert position.funding_all_time == position.funding_since_open == 500_000


def test_stop_loss_fires_in_the_block_after_the_mark_moves(markets: Markets) -> None:
    """A TP/SL placed as an action fires in the triggers phase once the mark reaches it."""
    run = Runner(markets)
    run.block((M, order(limit(BTC, False, "100000", "0.1"))))
    run.block((U, order(limit(BTC, True, "100000", "0.1", "Ioc"))))
    run.block((U, order(trigger(BTC, False, "90000", "0.1", "95000", "sl"))))
    run.block((B, order(limit(BTC, True, "94000", "0.1"))))
    assert run.chain.clearinghouse.accounts[U].szi(BTC) == 100_000 // 10
    run.chain.oracle.set_price(BTC, 940_000)
    # The mark is a median with the book: move the book too, and let the EMAs catch up.
    run.block((B, order(limit(BTC, False, "94010", "0.1"))))
    for _ in range(60):
        output = run.block(dt=3_000)
        if any(u.status == "triggered" for u in output.order_updates):
            break
    else:
        raise AssertionError(f"never triggered; mark {run.chain.clearinghouse.mark(BTC)}")
    assert run.chain.clearinghouse.accounts[U].szi(BTC) == 0


def test_liquidation_runs_in_the_block(markets: Markets) -> None:
    """An account whose mark-valued equity falls below maintenance is liquidated in the
    block's last phase, and the ledger records it."""
    run = Runner(markets)
    run.chain.clearinghouse.credit_usd("0x" + "9" * 40, 1_000 * USD)
    poor = "0x" + "9" * 40
    run.block((M, order(limit(BTC, False, "100000", "0.15"))))
    run.block((poor, order(limit(BTC, True, "100000", "0.15", "Ioc"))))
    assert run.chain.clearinghouse.accounts[poor].szi(BTC) == 15_000
    run.chain.oracle.set_price(BTC, 900_000)
    run.block(
        (B, order(limit(BTC, True, "89990", "0.3"), limit(BTC, False, "90010", "0.3"))),
        (M, order(limit(BTC, True, "90000", "0.05"))),
    )
    liquidated = []
    for _ in range(60):
        output = run.block(dt=3_000)
        liquidated += [u for u in output.ledger if isinstance(u.delta, Liquidation)]
        if liquidated:
            break
    assert liquidated and liquidated[0].users == (poor,)
    assert run.chain.clearinghouse.accounts[poor].szi(BTC) == 0


def test_deposits_are_recorded(markets: Markets) -> None:
    """Money from outside lands in perp cash and in the next block's ledger."""
    run = Runner(markets)
    run.chain.deposit(U, 25 * USD, run.time)
    output = run.block()
    assert [(u.users, u.delta) for u in output.ledger] == [((U,), Deposit(25 * USD))]
    assert run.chain.clearinghouse.accounts[U].usd == 1_000_025 * USD
