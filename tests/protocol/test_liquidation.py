"""Liquidation of standard accounts: market liquidation, backstop, auto-deleveraging.

BTC: price 1 decimal (100000 -> 1_000_000), size 5 decimals (0.15 -> 15_000); default leverage
20x; margin table 56 (40x below $10k, 25x to $50k, 10x above): MM = notional / 50 - $75 between
$10k and $50k.
"""

from __future__ import annotations

from protocol.actions import OrderAction, OrderResponse, UpdateLeverageAction
from protocol.chain import Chain
from protocol.ledger import LiquidatedPosition, Liquidation
from protocol.liquidation import LIQUIDATOR, Liquidator
from protocol.markets import Markets
from protocol.orders import OrderWire
from tests.protocol.conftest import BTC, USD, limit

T = 1_700_000_000_000
U, M, B, C = "0x" + "1" * 40, "0x" + "2" * 40, "0x" + "3" * 40, "0x" + "4" * 40


def setup(markets: Markets) -> tuple[Chain, Liquidator]:
    """U holds $1,000 and goes long 0.15 BTC at 100000 against M (a $15,000 position)."""
    chain = Chain(markets)
    ch = chain.clearinghouse
    ch.set_mark(BTC, 1_000_000)
    ch.credit_usd(U, 1_000 * USD)
    for user in (M, B, C):
        ch.credit_usd(user, 1_000_000 * USD)
    ch.credit_usd(LIQUIDATOR, 1_000_000 * USD)
    place(chain, M, limit(BTC, False, "100000", "0.15"))
    place(chain, U, limit(BTC, True, "100000", "0.15", "Ioc"))
    assert ch.accounts[U].szi(BTC) == 15_000
    chain.exchange.take_events()
    return chain, Liquidator(chain.exchange)


def place(chain: Chain, user: str, *orders: OrderWire) -> None:
    response = chain.execute(user, OrderAction(orders), T)
    assert isinstance(response, OrderResponse), response


def total_usd(chain: Chain) -> int:
    """All perp USDC: cross cash, isolated cash legs and fees."""
    ch = chain.clearinghouse
    isolated = sum(p.isolated_raw for a in ch.accounts.values() for p in a.positions.values())
    return sum(a.usd for a in ch.accounts.values()) + isolated + ch.perp_fees


def test_healthy_account_is_left_alone(markets: Markets) -> None:
    """Above maintenance nothing happens, orders included."""
    chain, liquidator = setup(markets)
    chain.clearinghouse.set_mark(BTC, 950_000)  # value ~$243 > MM $210
    place(chain, U, limit(BTC, False, "120000", "0.01"))
    assert liquidator.run(T) == []
    assert chain.exchange.user_orders[U]


def test_market_liquidation_through_the_book(markets: Markets) -> None:
    """Between 2/3 MM and MM the position is sold through the book as a reduce-only IOC,
    after the account's orders are cancelled."""
    chain, liquidator = setup(markets)
    ch = chain.clearinghouse
    account = ch.accounts[U]
    place(chain, U, limit(BTC, False, "120000", "0.01"))  # a resting order, to be cancelled
    place(chain, B, limit(BTC, True, "94000", "0.15"))
    ch.set_mark(BTC, 945_000)
    value = ch.cross_value(account)
    # $1000 - $6.75 taker fee - 0.15 x 5500 = $168.25; MM = 14175 / 50 - 75 = $208.50
    assert value == 168_250_000
    assert ch.cross_maintenance(account) == 208_500_000
    chain.exchange.take_events()
    before = total_usd(chain)
    updates = liquidator.run(T + 1)
    assert [u.delta for u in updates] == [
        Liquidation(168_250_000, "Cross", (LiquidatedPosition("BTC", 15_000),))
    ]
    fills, order_updates = chain.exchange.take_events()
    assert [(u.status) for u in order_updates][:1] == ["liquidatedCanceled"]
    assert account.szi(BTC) == 0
    mine = [f for f in fills if f.user == U]
    assert [(f.px, f.sz, f.liquidation is not None) for f in mine] == [(940_000, 15_000, True)]
    assert mine[0].liquidation is not None and mine[0].liquidation.method == "market"
    # Sold at 94000: cash = $1000 - 6.75 - 0.15 x 6000 - 6.345 taker fee.
    assert account.usd == 86_905_000
    assert total_usd(chain) == before
    chain._check()


def test_partial_liquidation_of_large_positions(markets: Markets) -> None:
    """Above $100k of notional only 20% is sent, and within 30 s the next liquidation order
    takes the whole position."""
    chain = Chain(markets)
    ch = chain.clearinghouse
    ch.set_mark(BTC, 1_000_000)
    ch.credit_usd(U, 20_100 * USD)
    for user in (M, B):
        ch.credit_usd(user, 10_000_000 * USD)
    for user in (U, M, B):
        chain.execute(user, _leverage(10), T)  # $200k sits in the 10x tier
    place(chain, M, limit(BTC, False, "100000", "2"))
    place(chain, U, limit(BTC, True, "100000", "2", "Ioc"))
    place(chain, B, limit(BTC, True, "93000", "2"))
    ch.set_mark(BTC, 930_000)
    account = ch.accounts[U]
    # value = 20100 - 90 fee - 2 x 7000 = $6,010; MM = 186000 x 5% - 1575 deduction = $7,725
    assert (ch.cross_value(account), ch.cross_maintenance(account)) == (
        6_010 * USD,
        7_725 * USD,
    )
    liquidator = Liquidator(chain.exchange)
    liquidator.run(T + 1)
    assert account.szi(BTC) == 160_000  # 20% of 2 BTC sold at 93000
    assert liquidator.last_partial[U] == T + 1
    # 6010 - 16.74 fee = 5993.26 >= MM of 1.6 BTC: 148800 x 5% - 1575 = 5865
    assert ch.cross_value(account) == 5_993_260_000
    assert ch.cross_maintenance(account) == 5_865 * USD
    ch.set_mark(BTC, 925_000)  # 5193.26 < 148000 x 5% - 1575 = 5825
    liquidator.run(T + 2)  # within the cooldown: the whole rest of the position
    assert account.szi(BTC) == 0
    chain._check()


def _leverage(value: int) -> UpdateLeverageAction:
    return UpdateLeverageAction(BTC, True, value)


def test_backstop_takes_positions_and_margin(markets: Markets) -> None:
    """Below 2/3 MM the liquidator takes the position at the mark and all the cross cash; the
    maintenance margin is not returned."""
    chain, liquidator = setup(markets)
    ch = chain.clearinghouse
    ch.set_mark(BTC, 940_000)  # value $93.25 < 2/3 x $207 = $138
    before = total_usd(chain)
    liq_value_before = ch.account_value(ch.accounts[LIQUIDATOR])
    updates = liquidator.run(T + 1)
    assert len(updates) == 1
    user = ch.accounts[U]
    assert user.szi(BTC) == 0 and user.usd == 0
    liq = ch.accounts[LIQUIDATOR]
    assert liq.szi(BTC) == 15_000
    # The liquidator gained the account's value, marked at 94000.
    assert ch.account_value(liq) - liq_value_before == 93_250_000
    fills, _ = chain.exchange.take_events()
    assert {f.liquidation.method for f in fills if f.liquidation} == {"backstop"}
    assert all(f.fee == 0 for f in fills)
    assert total_usd(chain) == before
    chain._check()


def test_underwater_account_is_deleveraged(markets: Markets) -> None:
    """Below zero, positions close at the mark against the opposite side, and the loss left
    is charged to those counterparties, so the account ends at exactly zero."""
    chain, liquidator = setup(markets)
    ch = chain.clearinghouse
    ch.set_mark(BTC, 920_000)  # value $1000 - 6.75 - 1200 = -$206.75
    assert ch.cross_value(ch.accounts[U]) == -206_750_000
    before = total_usd(chain)
    m_value = ch.account_value(ch.accounts[M])
    liquidator.run(T + 1)
    assert ch.accounts[U].szi(BTC) == 0
    assert ch.accounts[U].usd == 0
    assert ch.accounts[M].szi(BTC) == 0
    # M was short 0.15 from 100000: its gain at 92000 shrinks by U's shortfall.
    assert ch.account_value(ch.accounts[M]) == m_value - 206_750_000
    assert total_usd(chain) == before
    chain._check()


def test_isolated_position_is_liquidated_alone(markets: Markets) -> None:
    """An isolated position below its own maintenance goes to the backstop with its margin;
    the cross account keeps the rest."""
    chain = Chain(markets)
    ch = chain.clearinghouse
    ch.set_mark(BTC, 1_000_000)
    ch.credit_usd(U, 1_000 * USD)
    ch.credit_usd(M, 1_000_000 * USD)
    ch.credit_usd(LIQUIDATOR, 1_000_000 * USD)
    chain.execute(U, UpdateLeverageAction(BTC, False, 20), T)
    place(chain, M, limit(BTC, False, "100000", "0.1"))
    place(chain, U, limit(BTC, True, "100000", "0.1", "Ioc"))
    account = ch.accounts[U]
    # $500 of isolated margin moved out of $1000 cross cash (the $4.50 fee came from the leg).
    assert account.usd == 500 * USD
    ch.set_mark(BTC, 955_000)  # isolated value = 500 - 4.5 - 450 = $45.50 < 2/3 x $95.50
    before = total_usd(chain)
    updates = Liquidator(chain.exchange).run(T + 1)
    assert [u.delta.leverage_type for u in updates if isinstance(u.delta, Liquidation)] == [
        "Isolated"
    ]
    assert account.szi(BTC) == 0
    assert account.usd == 500 * USD
    assert total_usd(chain) == before
    chain._check()


def test_debt_without_positions_goes_to_the_liquidator(markets: Markets) -> None:
    """Negative cash with no position left (the account closed its own position underwater)
    is taken over by the liquidator, so no debt is left unowned and nothing is created."""
    chain, liquidator = setup(markets)
    ch = chain.clearinghouse
    place(chain, B, limit(BTC, True, "90000", "0.15"))
    place(chain, U, limit(BTC, False, "90000", "0.15", "Ioc"))  # sells at a $1,500 loss
    assert ch.accounts[U].usd < 0 and ch.accounts[U].szi(BTC) == 0
    debt = ch.accounts[U].usd
    before = total_usd(chain)
    liq_before = ch.accounts[LIQUIDATOR].usd
    updates = liquidator.run(T + 1)
    assert [u.delta for u in updates] == [Liquidation(debt, "Cross", ())]
    assert ch.accounts[U].usd == 0
    assert ch.accounts[LIQUIDATOR].usd == liq_before + debt
    assert total_usd(chain) == before
