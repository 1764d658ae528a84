"""Account modes: switching rules, and USDC as one balance in the unified modes."""

from __future__ import annotations

from protocol.actions import (
    AgentSetAbstractionAction,
    CreateSubAccountAction,
    CreateSubAccountResponse,
    DefaultResponse,
    ErrorResponse,
    OrderAction,
    OrderResponse,
    UserSetAbstractionAction,
)
from protocol.chain import Chain
from protocol.markets import Markets
from protocol.modes import (
    ERR_AGENT_FROM_DEFAULT,
    ERR_MODE,
    ERR_OPEN,
    ERR_PM_VALUE,
    ERR_USER,
    abstraction_of,
)
from protocol.orders import OrderError, Resting
from tests.protocol.conftest import BTC, PURR_USDC, USD, USDC_TOKEN, limit

T = 1_700_000_000_000
A, B = "0x" + "a1" * 20, "0x" + "b2" * 20
WEI = 10**8


def new_chain(markets: Markets, usd: int = 20_000) -> Chain:
    chain = Chain(markets)
    chain.clearinghouse.set_mark(BTC, 1_000_000)
    chain.clearinghouse.credit_usd(A, usd * USD)
    chain.clearinghouse.credit_usd(B, 1_000_000 * USD)
    return chain


def set_mode(chain: Chain, user: str, mode: str, target: str | None = None) -> object:
    return chain.execute(user, UserSetAbstractionAction(target or user, mode), T)


def test_default_until_set_and_cash_moves_to_spot(markets: Markets) -> None:
    """A fresh account reads "default"; entering a unified mode moves perp cash to spot USDC."""
    chain = new_chain(markets)
    assert abstraction_of(chain.clearinghouse, A) == "default"
    assert set_mode(chain, A, "unifiedAccount") == DefaultResponse()
    account = chain.clearinghouse.accounts[A]
    assert abstraction_of(chain.clearinghouse, A) == "unifiedAccount"
    assert (account.usd, account.spot_total[USDC_TOKEN]) == (0, 20_000 * WEI)
    assert set_mode(chain, A, "disabled") == DefaultResponse()
    assert account.spot_total[USDC_TOKEN] == 20_000 * WEI  # stays in spot


def test_portfolio_margin_needs_ten_thousand(markets: Markets) -> None:
    """PM needs an account value of $10,000; refusals change nothing."""
    chain = new_chain(markets, usd=9_999)
    assert set_mode(chain, A, "portfolioMargin") == ErrorResponse(ERR_PM_VALUE)
    assert abstraction_of(chain.clearinghouse, A) == "default"
    chain.clearinghouse.credit_usd(A, 1 * USD)
    assert set_mode(chain, A, "portfolioMargin") == DefaultResponse()


def test_no_switch_with_positions_or_orders(markets: Markets) -> None:
    """The mode cannot change under an open order or position."""
    chain = new_chain(markets)
    order = chain.execute(A, OrderAction((limit(BTC, True, "99000", "0.01"),)), T)
    assert order == OrderResponse((Resting(1),))
    assert set_mode(chain, A, "unifiedAccount") == ErrorResponse(ERR_OPEN)
    chain.exchange.cancel(A, BTC, 1, T)
    chain.execute(B, OrderAction((limit(BTC, False, "100000", "0.01"),)), T)
    chain.execute(A, OrderAction((limit(BTC, True, "100000", "0.01", "Ioc"),)), T)
    assert chain.clearinghouse.accounts[A].szi(BTC) == 1_000
    assert set_mode(chain, A, "unifiedAccount") == ErrorResponse(ERR_OPEN)


def test_targets_and_agents(markets: Markets) -> None:
    """The signer may set its own mode or a sub-account's; an agent only from default."""
    chain = new_chain(markets)
    created = chain.execute(A, CreateSubAccountAction("one"), T)
    assert isinstance(created, CreateSubAccountResponse)
    assert set_mode(chain, A, "unifiedAccount", created.address) == DefaultResponse()
    assert abstraction_of(chain.clearinghouse, created.address) == "unifiedAccount"
    assert set_mode(chain, B, "unifiedAccount", A) == ErrorResponse(ERR_USER)
    assert set_mode(chain, A, "hedgeMode") == ErrorResponse(ERR_MODE)
    assert chain.execute(A, AgentSetAbstractionAction("x"), T) == ErrorResponse(ERR_MODE)
    assert chain.execute(A, AgentSetAbstractionAction("u"), T) == DefaultResponse()
    assert chain.execute(A, AgentSetAbstractionAction("i"), T) == ErrorResponse(
        ERR_AGENT_FROM_DEFAULT
    )


def test_unified_spot_buy_spends_perp_cash(markets: Markets) -> None:
    """In a unified account a spot buy draws on USDC wherever it sits; a standard account
    cannot spend its perp cash on spot."""
    chain = new_chain(markets)
    buy = OrderAction((limit(PURR_USDC, True, "0.2", "1000"),))  # 200 USDC
    assert chain.execute(A, buy, T) == OrderResponse(
        (OrderError("Order has insufficient spot balance to trade"),)
    )
    chain = new_chain(markets)
    set_mode(chain, A, "unifiedAccount")
    account = chain.clearinghouse.accounts[A]
    # Give the perp side cash again, and empty spot: the buy must draw on the perp cash.
    account.usd, account.spot_total[USDC_TOKEN] = account.spot_total[USDC_TOKEN] // 100, 0
    assert chain.execute(A, buy, T) == OrderResponse((Resting(1),))
    assert account.spot_hold[USDC_TOKEN] == 200 * WEI
    assert account.usd == 19_800 * USD
    chain._check()


def test_unified_perp_margin_uses_spot_usdc(markets: Markets) -> None:
    """Spot USDC backs perp orders in a unified account, and only there."""
    for mode, expected in (("disabled", False), ("unifiedAccount", True)):
        chain = Chain(markets)
        chain.clearinghouse.set_mark(BTC, 1_000_000)
        chain.clearinghouse.credit_spot(A, USDC_TOKEN, 1_000 * WEI)
        set_mode(chain, A, mode)
        response = chain.execute(A, OrderAction((limit(BTC, True, "100000", "0.1"),)), T)
        assert isinstance(response, OrderResponse)
        assert isinstance(response.statuses[0], Resting) is expected, mode
