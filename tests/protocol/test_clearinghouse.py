"""The clearinghouse through `Chain`: account value, withdrawable with open positions and
resting orders, and how transfers are bounded by it.

BTC: price 1 decimal (100,000.0 = 1_000_000), size 5 decimals (0.05 = 5_000), so px * sz is
micro-USDC. Fees: maker 0.015%, taker 0.045%, rounded up. The BTC margin table is 40x below
10,000 USDC of notional, 25x from 10,000, 10x from 50,000; default leverage 20x cross.
"""

from __future__ import annotations

from protocol.actions import (
    CancelAction,
    CancelResponse,
    CancelWire,
    DefaultResponse,
    OrderAction,
    OrderResponse,
    UpdateLeverageAction,
    UsdClassTransferAction,
    UsdSendAction,
    Withdraw3Action,
)
from protocol.chain import Chain
from protocol.clearinghouse import Account
from protocol.orders import Filled, Resting
from protocol.transfers import ERR_WITHDRAWABLE
from tests.protocol.conftest import BTC, ETH, USD, default_markets, limit
from tests.protocol.test_transfers import T, fingerprint, ok, refused, usdc_supply_wei

MAKER = "0x" + "1" * 40
TRADER = "0x" + "2" * 40
OTHER = "0x" + "3" * 40
PX_100K = 1_000_000  # BTC 100,000.0


def trading_chain(trader_usd: int) -> Chain:
    """A market maker with 1,000,000 USDC, TRADER with `trader_usd`, BTC marked at 100,000."""
    chain = Chain(default_markets())
    chain.clearinghouse.credit_usd(MAKER, 1_000_000 * USD)
    chain.clearinghouse.credit_usd(TRADER, trader_usd)
    chain.clearinghouse.set_mark(BTC, PX_100K)
    return chain


def take(chain: Chain, user: str, asset: int, is_buy: bool, px: str, sz: str) -> None:
    """MAKER rests the opposite order and `user` takes all of it with an IOC."""
    maker = chain.execute(MAKER, OrderAction((limit(asset, not is_buy, px, sz),)), T)
    assert isinstance(maker, OrderResponse)
    assert isinstance(maker.statuses[0], Resting), maker
    taker = chain.execute(user, OrderAction((limit(asset, is_buy, px, sz, "Ioc"),)), T)
    assert isinstance(taker, OrderResponse)
    assert isinstance(taker.statuses[0], Filled), taker
    chain._check()


def account(chain: Chain, user: str = TRADER) -> Account:
    return chain.clearinghouse.accounts[user]


def withdrawable(chain: Chain, user: str = TRADER) -> int:
    return chain.clearinghouse.withdrawable(account(chain, user))


def test_withdrawable_of_a_flat_account_is_its_cash() -> None:
    """No positions, no orders: everything can leave."""
    chain = trading_chain(1_000 * USD)
    assert withdrawable(chain) == 1_000 * USD
    ok(chain, TRADER, UsdSendAction(OTHER, "1000"))
    assert withdrawable(chain) == 0
    refused(chain, TRADER, UsdSendAction(OTHER, "0.000001"), ERR_WITHDRAWABLE)


def test_withdrawable_keeps_ten_percent_of_notional() -> None:
    """Long 0.05 BTC at 100,000 (notional 5,000) at 20x: IM is 250 but 10% of notional is 500,
    so 500 is kept back."""
    chain = trading_chain(1_000 * USD)
    take(chain, TRADER, BTC, True, "100000", "0.05")
    # Cash 1000 - 5000 - 2.25 (0.045% of 5000); value at the mark -4002.25 + 5000 = 997.75.
    assert account(chain).usd == -4_002_250_000
    assert chain.clearinghouse.account_value(account(chain)) == 997_750_000
    assert chain.clearinghouse.cross_margin_used(account(chain)) == 250 * USD
    assert withdrawable(chain) == 497_750_000  # 997.75 - max(250, 500)
    refused(chain, TRADER, UsdSendAction(OTHER, "497.750001"), ERR_WITHDRAWABLE)
    refused(chain, TRADER, Withdraw3Action(OTHER, "497.750001"), ERR_WITHDRAWABLE)
    refused(chain, TRADER, UsdClassTransferAction("497.750001", False), ERR_WITHDRAWABLE)
    ok(chain, TRADER, UsdSendAction(OTHER, "497.75"))
    assert withdrawable(chain) == 0
    # What is left still covers the initial margin: 500 - 250.
    assert chain.clearinghouse.cross_available(account(chain)) == 250 * USD


def test_withdrawable_keeps_initial_margin_when_it_is_larger() -> None:
    """At 6x the IM of 5,000 of notional, 833.333334 (rounded up), beats the 10% rule."""
    chain = trading_chain(1_000 * USD)
    assert chain.execute(TRADER, UpdateLeverageAction(BTC, True, 6), T) == DefaultResponse()
    take(chain, TRADER, BTC, True, "100000", "0.05")
    assert chain.clearinghouse.cross_margin_used(account(chain)) == 833_333_334
    assert withdrawable(chain) == 997_750_000 - 833_333_334  # 164.416666
    refused(chain, TRADER, UsdClassTransferAction("164.416667", False), ERR_WITHDRAWABLE)
    ok(chain, TRADER, UsdClassTransferAction("164.416666", False))
    assert account(chain).spot_total[0] == 16_441_666_600
    assert withdrawable(chain) == 0


def test_withdrawable_follows_the_mark() -> None:
    """Unrealized profit can be withdrawn, a loss shrinks withdrawable down to zero, never
    below; both for a long and a short."""
    chain = trading_chain(1_000 * USD)
    take(chain, TRADER, BTC, True, "100000", "0.05")
    chain.clearinghouse.set_mark(BTC, 1_100_000)
    # Notional 5,500: value -4002.25 + 5500 = 1497.75, IM 275, 10% 550.
    assert withdrawable(chain) == 947_750_000
    chain.clearinghouse.set_mark(BTC, 920_000)
    # Notional 4,600: value 597.75, 10% 460.
    assert withdrawable(chain) == 137_750_000
    chain.clearinghouse.set_mark(BTC, 800_000)
    # Notional 4,000: value -2.25.
    assert chain.clearinghouse.account_value(account(chain)) == -2_250_000
    assert withdrawable(chain) == 0

    chain = trading_chain(1_000 * USD)
    take(chain, TRADER, BTC, False, "100000", "0.05")
    assert account(chain).usd == 5_997_750_000  # 1000 + 5000 - 2.25
    chain.clearinghouse.set_mark(BTC, 950_000)
    # Notional 4,750: value 5997.75 - 4750 = 1247.75, 10% 475.
    assert withdrawable(chain) == 772_750_000
    chain.clearinghouse.set_mark(BTC, 1_100_000)
    # Notional 5,500: value 497.75 < 10% of 550.
    assert withdrawable(chain) == 0


def test_resting_orders_reserve_margin_from_withdrawable() -> None:
    """A resting bid of 0.1 BTC at 90,000 (9,000) reserves 9000 / 20 = 450; an ask on the
    other side is netted (max of the two sides) until it is the larger side."""
    chain = trading_chain(1_000 * USD)
    placed = chain.execute(TRADER, OrderAction((limit(BTC, True, "90000", "0.1"),)), T)
    assert placed == OrderResponse((Resting(1),))
    assert withdrawable(chain) == 550 * USD
    # An ask of 0.05 at 110,000 (5,500) is smaller than the bid: nothing more reserved.
    chain.execute(TRADER, OrderAction((limit(BTC, False, "110000", "0.05"),)), T)
    assert chain.clearinghouse.orders_reserved(account(chain)) == 450 * USD
    assert withdrawable(chain) == 550 * USD
    # Another 0.05 ask makes the sell side 11,000: 550 reserved.
    chain.execute(TRADER, OrderAction((limit(BTC, False, "110000", "0.05"),)), T)
    assert withdrawable(chain) == 450 * USD
    refused(chain, TRADER, UsdSendAction(OTHER, "450.000001"), ERR_WITHDRAWABLE)
    ok(chain, TRADER, UsdSendAction(OTHER, "450"))
    assert withdrawable(chain) == 0
    # Cancelling the asks leaves the bid's 450 reserved out of the 550 left.
    cancels = CancelAction((CancelWire(BTC, 2), CancelWire(BTC, 3)))
    assert chain.execute(TRADER, cancels, T) == CancelResponse(("success", "success"))
    assert withdrawable(chain) == 100 * USD


def test_reserves_add_to_initial_margin_under_the_ten_percent_floor() -> None:
    """The transfer requirement is max(IM + order reserves, 10% of notional): with a long of
    5,000 at 20x (IM 250, 10% 500) a bid reserving 225 still fits under the 500 floor, a larger
    one (270) makes IM + reserves 520 the requirement."""
    chain = trading_chain(1_000 * USD)
    take(chain, TRADER, BTC, True, "100000", "0.05")
    chain.execute(TRADER, OrderAction((limit(BTC, True, "90000", "0.05"),)), T)
    assert chain.clearinghouse.orders_reserved(account(chain)) == 225 * USD  # 4500 / 20
    assert withdrawable(chain) == 497_750_000  # 997.75 - max(250 + 225, 500)
    chain.execute(TRADER, OrderAction((limit(BTC, True, "90000", "0.01"),)), T)
    assert chain.clearinghouse.orders_reserved(account(chain)) == 270 * USD  # 5400 / 20
    assert withdrawable(chain) == 477_750_000  # 997.75 - (250 + 270)


def test_isolated_margin_is_not_withdrawable() -> None:
    """An isolated position's cash leg is outside the cross account: withdrawable is the
    cross cash, and the 10% rule only counts cross notional."""
    chain = trading_chain(1_000 * USD)
    assert chain.execute(TRADER, UpdateLeverageAction(BTC, False, 10), T) == DefaultResponse()
    take(chain, TRADER, BTC, True, "100000", "0.05")
    # 500 of initial margin (5000 / 10) moved to the isolated leg.
    assert account(chain).usd == 500 * USD
    assert withdrawable(chain) == 500 * USD
    ok(chain, TRADER, Withdraw3Action(OTHER, "500"))
    assert withdrawable(chain) == 0
    assert chain.clearinghouse.account_value(account(chain)) == 497_750_000


def test_account_value_is_cash_plus_marked_positions() -> None:
    """Cross BTC long and isolated ETH short: account value = cross cash + isolated cash legs
    + sum(szi x mark) = cross value + isolated value, at every mark."""
    chain = trading_chain(10_000 * USD)
    clearinghouse = chain.clearinghouse
    clearinghouse.set_mark(ETH, 300_000)  # ETH 3000.00 (4 size decimals, 2 price decimals)
    take(chain, TRADER, BTC, True, "100000", "0.05")
    assert chain.execute(TRADER, UpdateLeverageAction(ETH, False, 5), T) == DefaultResponse()
    take(chain, TRADER, ETH, False, "3000", "1")
    trader = account(chain)
    # BTC: 10000 - 5000 - 2.25. ETH short of 3,000 at 5x: 600 of margin leaves cross cash.
    assert trader.usd == 4_397_750_000
    # ETH leg: +3000 - 1.35 (0.045% of 3000) + 600.
    assert trader.positions[ETH].isolated_raw == 3_598_650_000
    assert clearinghouse.isolated_value(ETH, trader.positions[ETH]) == 598_650_000
    assert clearinghouse.account_value(trader) == 9_996_400_000  # 10000 - 2.25 - 1.35
    for btc_mark, eth_mark in ((1_050_000, 310_000), (900_000, 250_000), (1_234_500, 333_333)):
        clearinghouse.set_mark(BTC, btc_mark)
        clearinghouse.set_mark(ETH, eth_mark)
        cash = trader.usd + sum(p.isolated_raw for p in trader.positions.values())
        marked = 5_000 * btc_mark - 10_000 * eth_mark
        assert clearinghouse.account_value(trader) == cash + marked
        assert clearinghouse.account_value(trader) == clearinghouse.cross_value(
            trader
        ) + clearinghouse.isolated_value(ETH, trader.positions[ETH])
    clearinghouse.set_mark(BTC, 1_050_000)
    clearinghouse.set_mark(ETH, 310_000)
    # Cross value 4397.75 + 5250 = 9647.75; cross IM 5250 / 20 = 262.5, 10% = 525.
    assert withdrawable(chain) == 9_122_750_000


def test_trades_and_transfers_conserve_usdc() -> None:
    """Cash moves between accounts and into fees, nothing is created: the USDC supply in spot
    wei is what was credited, through trades, isolated margin and transfers."""
    chain = trading_chain(10_000 * USD)
    credited = usdc_supply_wei(chain)
    take(chain, TRADER, BTC, True, "100000", "0.05")
    chain.execute(TRADER, UpdateLeverageAction(ETH, False, 5), T)
    chain.clearinghouse.set_mark(ETH, 300_000)
    take(chain, TRADER, ETH, False, "3000", "1")
    ok(chain, TRADER, UsdClassTransferAction("100", False))
    ok(chain, TRADER, Withdraw3Action(OTHER, "50"))
    take(chain, TRADER, ETH, True, "2900", "1")
    take(chain, TRADER, BTC, False, "101000", "0.05")
    assert usdc_supply_wei(chain) == credited
    # 6.75 + 6.75 of fees: BTC 2.25 + 0.75 + 2.2725 + 0.7575, ETH 1.35 + 0.45 + 1.305 + 0.435.
    assert chain.clearinghouse.perp_fees == 9_570_000
    assert chain.clearinghouse.withdrawn == 49 * USD
    assert chain.clearinghouse.withdraw_fees == USD


def test_refused_transfer_with_positions_changes_nothing() -> None:
    """A refusal on an account with positions and orders leaves the whole chain unchanged."""
    chain = trading_chain(1_000 * USD)
    take(chain, TRADER, BTC, True, "100000", "0.05")
    chain.execute(TRADER, OrderAction((limit(BTC, True, "90000", "0.05"),)), T)
    before = fingerprint(chain)
    refused(chain, TRADER, UsdSendAction(OTHER, "497.750001"), ERR_WITHDRAWABLE)
    assert fingerprint(chain) == before


def test_max_trade_sizes_add_the_position_on_the_reducing_side() -> None:
    """Long 0.05 BTC at 100,000 with 1,000 USDC at 20x: value 997.75 less IM 250 leaves 747.75
    free, which opens 747.75 x 20 / 100,000 = 0.149550 BTC either way; a sell may also close
    the 0.05 long."""
    chain = trading_chain(1_000 * USD)
    assert chain.clearinghouse.max_trade_sizes(account(chain), BTC) == (20_000, 20_000)
    take(chain, TRADER, BTC, True, "100000", "0.05")
    assert chain.clearinghouse.cross_available(account(chain)) == 747_750_000
    assert chain.clearinghouse.max_trade_sizes(account(chain), BTC) == (14_955, 19_955)
