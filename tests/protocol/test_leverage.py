"""updateLeverage and updateIsolatedMargin through `Chain`, and isolated positions' cash legs.

BTC: price 1 decimal (100,000.0 = 1_000_000), size 5 decimals (0.05 = 5_000), so px * sz is
micro-USDC. BTC tiers: 40x below 10,000 USDC of notional, 25x from 10,000, 10x from 50,000.
Taker fee 0.045%: 2.25 USDC on 5,000. An isolated position's value is its cash leg
(`isolated_raw`) + szi x mark; opening moves notional / leverage (rounded up) from cross cash
into the leg.
"""

from __future__ import annotations

import tomllib

import pytest

from protocol.actions import (
    DefaultResponse,
    ErrorResponse,
    OrderAction,
    OrderResponse,
    UpdateIsolatedMarginAction,
    UpdateLeverageAction,
)
from protocol.chain import Chain
from protocol.clearinghouse import Account
from protocol.leverage import (
    ERR_INVALID_LEVERAGE,
    ERR_ISOLATED_MARGIN,
    ERR_LEVERAGE_MARGIN,
    ERR_NO_ISOLATED_POSITION,
    ERR_ONLY_ISOLATED,
    ERR_SWITCH_WITH_POSITION,
    ERR_UNKNOWN_ASSET,
    ERR_ZERO_AMOUNT,
)
from protocol.margin import max_leverage_at
from protocol.markets import ConfigError, Markets, load_markets
from protocol.orders import OrderError, Resting
from tests.protocol.conftest import BTC, CONFIG, ETH, HYPE_PERP, USD, default_markets, limit
from tests.protocol.test_clearinghouse import (
    MAKER,
    TRADER,
    account,
    take,
    trading_chain,
    withdrawable,
)
from tests.protocol.test_transfers import T, fingerprint, refused

SOL, OP = 2, 4


def leverage(chain: Chain, asset: int, is_cross: bool, value: int) -> None:
    """An updateLeverage that must succeed; it records no ledger update."""
    ledger = len(chain.ledger)
    assert chain.execute(TRADER, UpdateLeverageAction(asset, is_cross, value), T) == (
        DefaultResponse()
    )
    assert len(chain.ledger) == ledger
    setting = chain.clearinghouse.leverage_of(account(chain), asset)
    assert (setting.is_cross, setting.value) == (is_cross, value)


def margin(chain: Chain, ntli: int) -> None:
    """An updateIsolatedMargin on BTC that must succeed."""
    assert chain.execute(TRADER, UpdateIsolatedMarginAction(BTC, True, ntli), T) == (
        DefaultResponse()
    )
    chain._check()


def iso_value(chain: Chain) -> int:
    position = account(chain).positions[BTC]
    return chain.clearinghouse.isolated_value(BTC, position)


def iso_raw(chain: Chain) -> int:
    return account(chain).positions[BTC].isolated_raw


def isolated_long(chain: Chain, value: int) -> None:
    """TRADER goes long 0.05 BTC at 100,000 isolated at `value`x."""
    leverage(chain, BTC, False, value)
    take(chain, TRADER, BTC, True, "100000", "0.05")


# updateLeverage.


def test_default_leverage_is_20x_cross_or_the_asset_max() -> None:
    """BTC, ETH and SOL default to 20x cross; HYPE and OP (max 10x) to 10x cross."""
    chain = Chain(default_markets())
    for asset, value in ((BTC, 20), (ETH, 20), (SOL, 20), (HYPE_PERP, 10), (OP, 10)):
        setting = chain.clearinghouse.leverage_of(Account("0x" + "0" * 40), asset)
        assert (setting.is_cross, setting.value) == (True, value)


def test_default_leverage_sizes_orders() -> None:
    """With 100 USDC at HYPE's default 10x, a resting bid of 1,000 USDC of notional fits and
    one of 1,000.25 does not."""
    chain = trading_chain(100 * USD)
    chain.clearinghouse.set_mark(HYPE_PERP, 250_000)  # HYPE 25.0000
    refused_order = OrderAction((limit(HYPE_PERP, True, "25", "40.01"),))
    response = chain.execute(TRADER, refused_order, T)
    assert isinstance(response, OrderResponse)
    assert isinstance(response.statuses[0], OrderError)
    fits = chain.execute(TRADER, OrderAction((limit(HYPE_PERP, True, "25", "40"),)), T)
    assert isinstance(fits, OrderResponse)
    assert isinstance(fits.statuses[0], Resting)
    assert chain.clearinghouse.orders_reserved(account(chain)) == 100 * USD


def test_update_leverage_sets_mode_and_value() -> None:
    """Any integer from 1 to the asset's max, cross or isolated, while flat."""
    chain = trading_chain(1_000 * USD)
    leverage(chain, BTC, False, 7)
    leverage(chain, BTC, True, 40)
    leverage(chain, BTC, True, 1)
    leverage(chain, ETH, False, 25)
    leverage(chain, HYPE_PERP, True, 10)
    assert chain.ledger == []


@pytest.mark.parametrize(
    ("asset", "value", "error"),
    [
        (BTC, 0, ERR_INVALID_LEVERAGE),
        (BTC, -1, ERR_INVALID_LEVERAGE),
        (BTC, 41, ERR_INVALID_LEVERAGE),
        (ETH, 26, ERR_INVALID_LEVERAGE),
        (HYPE_PERP, 11, ERR_INVALID_LEVERAGE),
        (8, 5, ERR_UNKNOWN_ASSET),
        (-1, 5, ERR_UNKNOWN_ASSET),
        (10_000, 1, ERR_UNKNOWN_ASSET),  # spot PURR/USDC has no leverage
    ],
)
def test_invalid_leverage_is_refused(asset: int, value: int, error: str) -> None:
    """Leverage 0, negative, above the asset's max, or an asset that is not a perp: refused,
    cross and isolated alike, with nothing changed."""
    chain = trading_chain(1_000 * USD)
    leverage(chain, BTC, True, 20)
    for is_cross in (True, False):
        refused(chain, TRADER, UpdateLeverageAction(asset, is_cross, value), error)


def test_leverage_above_the_tier_at_the_current_notional_is_refused() -> None:
    """Long 0.15 BTC (15,000 at 100,000) is in the 25x tier: 26x is refused, 25x allowed; at
    a mark of 400,000 (60,000) the tier is 10x."""
    chain = trading_chain(10_000 * USD)
    take(chain, TRADER, BTC, True, "100000", "0.15")
    refused(chain, TRADER, UpdateLeverageAction(BTC, True, 26), ERR_INVALID_LEVERAGE)
    refused(chain, TRADER, UpdateLeverageAction(BTC, True, 40), ERR_INVALID_LEVERAGE)
    leverage(chain, BTC, True, 25)
    chain.clearinghouse.set_mark(BTC, 4_000_000)
    refused(chain, TRADER, UpdateLeverageAction(BTC, True, 11), ERR_INVALID_LEVERAGE)
    refused(chain, TRADER, UpdateLeverageAction(BTC, True, 25), ERR_INVALID_LEVERAGE)
    leverage(chain, BTC, True, 10)
    chain.clearinghouse.set_mark(BTC, 600_000)  # 9,000 of notional: 40x again
    leverage(chain, BTC, True, 40)


def test_switching_margin_mode_needs_a_flat_position() -> None:
    """cross -> isolated and isolated -> cross are refused while a position is open, and
    allowed once it is closed; the value alone may change either way."""
    chain = trading_chain(1_000 * USD)
    take(chain, TRADER, BTC, True, "100000", "0.05")
    refused(chain, TRADER, UpdateLeverageAction(BTC, False, 20), ERR_SWITCH_WITH_POSITION)
    refused(chain, TRADER, UpdateLeverageAction(BTC, False, 10), ERR_SWITCH_WITH_POSITION)
    leverage(chain, BTC, True, 10)
    take(chain, TRADER, BTC, False, "100000", "0.05")
    leverage(chain, BTC, False, 10)
    take(chain, TRADER, BTC, False, "100000", "0.05")  # an isolated short
    refused(chain, TRADER, UpdateLeverageAction(BTC, True, 10), ERR_SWITCH_WITH_POSITION)
    leverage(chain, BTC, False, 20)
    take(chain, TRADER, BTC, True, "100000", "0.05")
    leverage(chain, BTC, True, 20)
    # Another asset's mode is independent of the open BTC position.
    take(chain, TRADER, BTC, True, "100000", "0.05")
    leverage(chain, ETH, False, 3)


def test_lowering_cross_leverage_must_fit_the_margin() -> None:
    """Long 0.05 BTC at 100,000 with 997.75 of value: 5x needs 1,000 of IM (refused), 6x
    needs 833.333334 (allowed); raising is always allowed."""
    chain = trading_chain(1_000 * USD)
    take(chain, TRADER, BTC, True, "100000", "0.05")
    refused(chain, TRADER, UpdateLeverageAction(BTC, True, 5), ERR_LEVERAGE_MARGIN)
    refused(chain, TRADER, UpdateLeverageAction(BTC, True, 1), ERR_LEVERAGE_MARGIN)
    leverage(chain, BTC, True, 6)
    assert chain.clearinghouse.cross_available(account(chain)) == 164_416_666
    leverage(chain, BTC, True, 40)
    assert chain.clearinghouse.cross_available(account(chain)) == 872_750_000  # 997.75 - 125


def test_lowering_leverage_counts_resting_orders() -> None:
    """Flat with 100 USDC and a bid of 1,500 of notional: 15x reserves exactly 100 (allowed),
    14x would reserve 107.142858 and 10x 150 (refused)."""
    chain = trading_chain(100 * USD)
    chain.execute(TRADER, OrderAction((limit(BTC, True, "100000", "0.015"),)), T)
    assert chain.clearinghouse.orders_reserved(account(chain)) == 75 * USD
    refused(chain, TRADER, UpdateLeverageAction(BTC, True, 10), ERR_LEVERAGE_MARGIN)
    refused(chain, TRADER, UpdateLeverageAction(BTC, False, 10), ERR_LEVERAGE_MARGIN)
    leverage(chain, BTC, True, 15)
    assert chain.clearinghouse.cross_available(account(chain)) == 0
    refused(chain, TRADER, UpdateLeverageAction(BTC, True, 14), ERR_LEVERAGE_MARGIN)


# Isolated positions.


def test_opening_an_isolated_position_moves_initial_margin() -> None:
    """Long 0.05 BTC at 100,000 isolated 10x: 500 leaves cross cash for the leg, which also
    pays the 5,000 and the 2.25 fee; account value is still cash + szi x mark."""
    chain = trading_chain(1_000 * USD)
    isolated_long(chain, 10)
    assert account(chain).usd == 500 * USD
    assert iso_raw(chain) == -4_502_250_000  # -5000 - 2.25 + 500
    assert iso_value(chain) == 497_750_000
    assert chain.clearinghouse.account_value(account(chain)) == 997_750_000
    assert chain.clearinghouse.cross_margin_used(account(chain)) == 0
    assert withdrawable(chain) == 500 * USD
    chain.clearinghouse.set_mark(BTC, 1_010_000)
    assert iso_value(chain) == 547_750_000  # +50 of unrealized pnl
    assert chain.clearinghouse.account_value(account(chain)) == 1_047_750_000
    assert withdrawable(chain) == 500 * USD  # the leg's profit stays in the leg
    # Growing by 0.04 at 101,000 (4,040) moves 404 more and pays 1.818 of fee.
    take(chain, TRADER, BTC, True, "101000", "0.04")
    assert account(chain).usd == 96 * USD
    assert iso_raw(chain) == -8_140_068_000  # -4502.25 - 4040 - 1.818 + 404
    assert iso_value(chain) == 949_932_000  # + 0.09 x 101,000
    assert chain.clearinghouse.account_value(account(chain)) == 1_045_932_000


def test_closing_an_isolated_position_returns_its_cash() -> None:
    """A partial close leaves the proceeds in the leg; the full close returns the whole leg
    (margin + pnl - fees) to cross cash."""
    chain = trading_chain(1_000 * USD)
    isolated_long(chain, 10)
    chain.clearinghouse.set_mark(BTC, 1_100_000)
    take(chain, TRADER, BTC, False, "110000", "0.02")
    # +2200 - 0.99 into the leg.
    assert iso_raw(chain) == -2_303_240_000
    assert account(chain).usd == 500 * USD
    assert iso_value(chain) == 996_760_000  # -2303.24 + 0.03 x 110,000
    take(chain, TRADER, BTC, False, "110000", "0.03")
    # +3300 - 1.485: the leg is 995.275 and goes back to cross.
    position = account(chain).positions[BTC]
    assert (position.szi, position.isolated_raw) == (0, 0)
    assert account(chain).usd == 1_495_275_000  # 1000 + 500 - 2.25 - 0.99 - 1.485
    assert withdrawable(chain) == 1_495_275_000
    chain._check()


def test_flipping_an_isolated_position_keeps_the_new_side_funded() -> None:
    """Long 0.05 isolated 10x, then sell 0.1 at 100,000: the long's leg returns to cross and
    the new short's leg holds its sale proceeds plus 500 of margin, so its value is about
    500 (less the fee), not 500 - 5,000."""
    chain = trading_chain(2_000 * USD)
    isolated_long(chain, 10)
    take(chain, TRADER, BTC, False, "100000", "0.1")
    assert account(chain).positions[BTC].szi == -5_000
    assert chain.clearinghouse.account_value(account(chain)) == 1_993_250_000  # 4.5 + 2.25 fees
    # The fill's 4.5 fee falls on one leg or the other: both legs end within 4.5 of their
    # fee-free values (cross 1,500, isolated 500).
    assert 495_500_000 <= iso_value(chain) <= 500_000_000
    assert 1_493_250_000 <= account(chain).usd <= 1_497_750_000
    assert withdrawable(chain) <= 1_500 * USD


def test_lowering_isolated_leverage_must_fit_the_leg() -> None:
    """The leg (497.75 after the fee) must cover IM at the new leverage: 9x (555.555556) is
    refused, even back to 10x (500) after raising; 100 more margin makes 9x fit."""
    chain = trading_chain(1_000 * USD)
    isolated_long(chain, 10)
    refused(chain, TRADER, UpdateLeverageAction(BTC, False, 9), ERR_LEVERAGE_MARGIN)
    leverage(chain, BTC, False, 20)
    assert iso_raw(chain) == -4_502_250_000  # raising moves no cash
    refused(chain, TRADER, UpdateLeverageAction(BTC, False, 10), ERR_LEVERAGE_MARGIN)
    margin(chain, 100 * USD)
    leverage(chain, BTC, False, 9)
    refused(chain, TRADER, UpdateLeverageAction(BTC, False, 5), ERR_LEVERAGE_MARGIN)


# updateIsolatedMargin.


def test_add_and_remove_isolated_margin() -> None:
    """At 10x on 5,000 both IM and 10% are 500: adding moves cross cash into the leg up to
    withdrawable, removing may leave the leg at 500 and no lower."""
    chain = trading_chain(1_000 * USD)
    isolated_long(chain, 10)
    margin(chain, 100 * USD)
    assert (account(chain).usd, iso_raw(chain)) == (400 * USD, -4_402_250_000)
    assert iso_value(chain) == 597_750_000
    refused(
        chain, TRADER, UpdateIsolatedMarginAction(BTC, True, 400 * USD + 1), ERR_ISOLATED_MARGIN
    )
    refused(chain, TRADER, UpdateIsolatedMarginAction(BTC, True, -97_750_001), ERR_ISOLATED_MARGIN)
    margin(chain, -97_750_000)
    assert (account(chain).usd, iso_value(chain)) == (497_750_000, 500 * USD)
    refused(chain, TRADER, UpdateIsolatedMarginAction(BTC, True, -1), ERR_ISOLATED_MARGIN)
    margin(chain, 497_750_000)
    assert account(chain).usd == 0
    assert iso_value(chain) == 997_750_000
    assert chain.clearinghouse.account_value(account(chain)) == 997_750_000
    assert chain.ledger == []


def test_removing_isolated_margin_keeps_initial_margin() -> None:
    """At 5x, IM (1,000 on 5,000) is above 10%: the leg keeps 1,000; at a mark of 101,000 it
    keeps 1,010 and its unrealized 50 may leave."""
    chain = trading_chain(2_000 * USD)
    isolated_long(chain, 5)
    assert (account(chain).usd, iso_value(chain)) == (1_000 * USD, 997_750_000)
    refused(chain, TRADER, UpdateIsolatedMarginAction(BTC, True, -1), ERR_ISOLATED_MARGIN)
    margin(chain, 50 * USD)
    refused(chain, TRADER, UpdateIsolatedMarginAction(BTC, True, -47_750_001), ERR_ISOLATED_MARGIN)
    margin(chain, -47_750_000)
    assert iso_value(chain) == 1_000 * USD
    chain.clearinghouse.set_mark(BTC, 1_010_000)
    refused(chain, TRADER, UpdateIsolatedMarginAction(BTC, True, -40_000_001), ERR_ISOLATED_MARGIN)
    margin(chain, -40 * USD)
    assert iso_value(chain) == 1_010 * USD
    assert account(chain).usd == 1_037_750_000  # 2000 - 1000 (IM) - 50 + 47.75 + 40


def test_removing_isolated_margin_keeps_ten_percent_of_notional() -> None:
    """At 40x, IM on 5,000 is only 125 but the leg must keep 10% of notional, 500."""
    chain = trading_chain(1_000 * USD)
    isolated_long(chain, 40)
    assert (account(chain).usd, iso_value(chain)) == (875 * USD, 122_750_000)
    margin(chain, 400 * USD)
    refused(chain, TRADER, UpdateIsolatedMarginAction(BTC, True, -22_750_001), ERR_ISOLATED_MARGIN)
    margin(chain, -22_750_000)
    assert iso_value(chain) == 500 * USD


def test_isolated_margin_refusals() -> None:
    """A zero amount, a cross position, a flat isolated setting, a non-perp asset: refused."""
    chain = trading_chain(1_000 * USD)
    isolated_long(chain, 10)
    refused(chain, TRADER, UpdateIsolatedMarginAction(BTC, True, 0), ERR_ZERO_AMOUNT)
    for asset in (8, -1, 10_000):
        refused(chain, TRADER, UpdateIsolatedMarginAction(asset, True, USD), ERR_UNKNOWN_ASSET)
    # ETH isolated but flat.
    leverage(chain, ETH, False, 10)
    refused(chain, TRADER, UpdateIsolatedMarginAction(ETH, True, USD), ERR_NO_ISOLATED_POSITION)
    refused(chain, TRADER, UpdateIsolatedMarginAction(ETH, False, -USD), ERR_NO_ISOLATED_POSITION)
    # A cross position.
    chain.clearinghouse.set_mark(ETH, 300_000)
    leverage(chain, ETH, True, 10)
    take(chain, TRADER, ETH, True, "3000", "0.01")
    refused(chain, TRADER, UpdateIsolatedMarginAction(ETH, True, USD), ERR_NO_ISOLATED_POSITION)
    refused(chain, TRADER, UpdateIsolatedMarginAction(ETH, True, -USD), ERR_NO_ISOLATED_POSITION)
    # The maker's BTC short is cross.
    refused(chain, MAKER, UpdateIsolatedMarginAction(BTC, True, USD), ERR_NO_ISOLATED_POSITION)


def test_isolated_margin_refusal_on_an_untouched_asset_changes_nothing() -> None:
    """No position and no leverage setting on SOL: refused, and no setting appears."""
    chain = trading_chain(1_000 * USD)
    before = fingerprint(chain)
    response = chain.execute(TRADER, UpdateIsolatedMarginAction(SOL, True, USD), T)
    assert response == ErrorResponse(ERR_NO_ISOLATED_POSITION)
    assert fingerprint(chain) == before


# Only-isolated assets.


def only_isolated_markets() -> Markets:
    """The devnet genesis with HYPE perp marked only_isolated."""
    with CONFIG.open("rb") as f:
        genesis = tomllib.load(f)["genesis"]
    genesis["perps"][HYPE_PERP]["only_isolated"] = True
    return load_markets(genesis)


def only_isolated_chain() -> Chain:
    chain = Chain(only_isolated_markets())
    chain.clearinghouse.credit_usd(MAKER, 1_000_000 * USD)
    chain.clearinghouse.credit_usd(TRADER, 1_000 * USD)
    chain.clearinghouse.set_mark(HYPE_PERP, 250_000)
    return chain


def test_only_isolated_asset_refuses_cross() -> None:
    """Cross leverage on an only-isolated asset is refused; isolated is fine."""
    chain = only_isolated_chain()
    refused(chain, TRADER, UpdateLeverageAction(HYPE_PERP, True, 5), ERR_ONLY_ISOLATED)
    leverage(chain, HYPE_PERP, False, 5)


def test_only_isolated_asset_trades_isolated_by_default() -> None:
    """A trader who never sent updateLeverage opens an only-isolated asset isolated."""
    chain = only_isolated_chain()
    take(chain, TRADER, HYPE_PERP, True, "25", "10")
    setting = chain.clearinghouse.leverage_of(account(chain), HYPE_PERP)
    assert not setting.is_cross
    assert account(chain).positions[HYPE_PERP].isolated_raw != 0


# Tiers and the asset's max leverage.


def test_raising_leverage_under_a_resting_order_keeps_the_tier() -> None:
    """A bid for 0.6 BTC (60,000, the 10x tier) rests at 10x; raising leverage to 40x while it
    rests must not leave a 60,000 position margined at 40x once it fills."""
    chain = trading_chain(7_000 * USD)
    leverage(chain, BTC, True, 10)
    placed = chain.execute(TRADER, OrderAction((limit(BTC, True, "100000", "0.6"),)), T)
    assert placed == OrderResponse((Resting(1),))
    chain.execute(TRADER, UpdateLeverageAction(BTC, True, 40), T)
    assert chain.execute(MAKER, UpdateLeverageAction(BTC, True, 10), T) == DefaultResponse()
    chain.execute(MAKER, OrderAction((limit(BTC, False, "100000", "0.6", "Ioc"),)), T)
    trader = account(chain)
    notional = abs(trader.szi(BTC)) * chain.clearinghouse.mark(BTC)
    table = chain.markets.margin_table(chain.markets.perps[BTC].margin_table_id)
    assert chain.clearinghouse.leverage_of(trader, BTC).value <= max_leverage_at(table, notional)


def test_leverage_never_exceeds_the_assets_max_leverage() -> None:
    """A genesis giving BTC maxLeverage 20 with the 40x table: either the config is refused
    or updateLeverage refuses 21x."""
    with CONFIG.open("rb") as f:
        genesis = tomllib.load(f)["genesis"]
    genesis["perps"][BTC]["max_leverage"] = 20
    try:
        markets = load_markets(genesis)
    except ConfigError:
        return
    chain = Chain(markets)
    chain.clearinghouse.credit_usd(TRADER, 1_000 * USD)
    refused(chain, TRADER, UpdateLeverageAction(BTC, True, 21), ERR_INVALID_LEVERAGE)
