"""The borrowLend action: supply, withdraw, borrow against collateral, repay.

USDC wei has 8 decimals, HYPE wei 8; the HYPE perp's price has 4 decimals (30 -> 300_000).
"""

from __future__ import annotations

from protocol.actions import (
    BorrowLendAction,
    DefaultResponse,
    ErrorResponse,
    SpotSendAction,
    UserSetAbstractionAction,
)
from protocol.borrow_lend import ERR_COLLATERAL, ERR_NOT_PM, borrow_capacity
from protocol.chain import Chain
from protocol.ledger import BorrowLend
from protocol.lending import LTV_SCALE, YEAR_MS, ReserveParams
from protocol.markets import Markets
from tests.protocol.conftest import HYPE_PERP, HYPE_TOKEN, USD, USDC_TOKEN

T = 1_700_000_000_000
A, B = "0x" + "a1" * 20, "0x" + "b2" * 20
WEI = 10**8
USDC_SPEC = "USDC:0xeb62eee3685fc4c43992febcd9e75443"


def new_chain(markets: Markets) -> Chain:
    """A: PM account with 10,000 USDC and 200 HYPE on spot; B supplies liquidity."""
    reserves = {
        USDC_TOKEN: ReserveParams(USDC_TOKEN, borrowable=True, user_borrow_cap=5_000 * WEI),
        HYPE_TOKEN: ReserveParams(HYPE_TOKEN, ltv=LTV_SCALE // 2),
    }
    chain = Chain(markets, start_time=T, lending=reserves)
    ch = chain.clearinghouse
    ch.set_mark(HYPE_PERP, 300_000)  # HYPE at 30
    ch.credit_spot(A, USDC_TOKEN, 10_000 * WEI)
    ch.credit_spot(A, HYPE_TOKEN, 200 * WEI)
    ch.credit_spot(B, USDC_TOKEN, 100_000 * WEI)
    assert chain.execute(A, UserSetAbstractionAction(A, "portfolioMargin"), T) == DefaultResponse()
    return chain


def op(chain: Chain, user: str, operation: str, token: int, amount: str | None) -> object:
    return chain.execute(user, BorrowLendAction(operation, token, amount), T)


def usdc_everywhere(chain: Chain) -> int:
    """Spot USDC of every account plus what the USDC reserve holds."""
    ch = chain.clearinghouse
    spot = sum(a.spot_total.get(USDC_TOKEN, 0) for a in ch.accounts.values())
    return spot + chain.lending.reserves[USDC_TOKEN].cash


def test_supply_and_withdraw(markets: Markets) -> None:
    """Supplying moves spot tokens into the reserve and withdrawing brings them back; both
    are recorded."""
    chain = new_chain(markets)
    total = usdc_everywhere(chain)
    assert op(chain, B, "supply", USDC_TOKEN, "50000") == DefaultResponse()
    assert chain.clearinghouse.accounts[B].spot_total[USDC_TOKEN] == 50_000 * WEI
    assert chain.lending.user_supply(B, USDC_TOKEN) == 50_000 * WEI
    assert [u.delta for u in chain.ledger] == [BorrowLend("USDC", "supply", 50_000 * WEI, 0)]
    assert op(chain, B, "withdraw", USDC_TOKEN, None) == DefaultResponse()
    assert chain.clearinghouse.accounts[B].spot_total[USDC_TOKEN] == 100_000 * WEI
    assert usdc_everywhere(chain) == total


def test_borrowing_needs_portfolio_margin_and_collateral(markets: Markets) -> None:
    """Only PM accounts borrow, up to collateral x price x LTV: 200 HYPE x 30 x 0.5 = 3000."""
    chain = new_chain(markets)
    op(chain, B, "supply", USDC_TOKEN, "50000")
    assert op(chain, B, "borrow", USDC_TOKEN, "10") == ErrorResponse(ERR_NOT_PM)
    assert borrow_capacity(chain.clearinghouse, chain.lending, A) == 3_000 * USD
    assert op(chain, A, "borrow", USDC_TOKEN, "3000.01") == ErrorResponse(ERR_COLLATERAL)
    total = usdc_everywhere(chain)
    assert op(chain, A, "borrow", USDC_TOKEN, "3000") == DefaultResponse()
    assert chain.clearinghouse.accounts[A].spot_total[USDC_TOKEN] == 13_000 * WEI
    assert borrow_capacity(chain.clearinghouse, chain.lending, A) == 0
    assert usdc_everywhere(chain) == total
    # A falling collateral price shrinks the capacity below what is owed.
    chain.clearinghouse.set_mark(HYPE_PERP, 200_000)
    assert borrow_capacity(chain.clearinghouse, chain.lending, A) == -1_000 * USD


def test_borrowed_funds_cannot_leave(markets: Markets) -> None:
    """Borrowed USDC trades but cannot be sent away until it is repaid."""
    chain = new_chain(markets)
    op(chain, B, "supply", USDC_TOKEN, "50000")
    op(chain, A, "borrow", USDC_TOKEN, "1000")
    send_all = SpotSendAction(B, USDC_SPEC, "11000")
    assert isinstance(chain.execute(A, send_all, T), ErrorResponse)
    assert chain.execute(A, SpotSendAction(B, USDC_SPEC, "10000"), T) == DefaultResponse()
    assert op(chain, A, "repay", USDC_TOKEN, None) == DefaultResponse()
    assert chain.lending.user_borrow(A, USDC_TOKEN) == 0


def test_interest_is_repaid_from_the_balance(markets: Markets) -> None:
    """A year at 5% continuous: repaying everything costs 1000 x e^0.05 = 1051.27 USDC."""
    chain = new_chain(markets)
    op(chain, B, "supply", USDC_TOKEN, "50000")
    op(chain, A, "borrow", USDC_TOKEN, "1000")
    chain.lending.accrue(T + YEAR_MS)
    debt = chain.lending.user_borrow(A, USDC_TOKEN)
    assert abs(debt - 105_127_109_638) <= 2  # 1000 x e^0.05 in wei
    before = chain.clearinghouse.accounts[A].spot_total[USDC_TOKEN]
    assert op(chain, A, "repay", USDC_TOKEN, None) == DefaultResponse()
    assert chain.clearinghouse.accounts[A].spot_total[USDC_TOKEN] == before - debt
    chain._check()


def test_bad_borrow_lend_inputs_change_nothing(markets: Markets) -> None:
    """Supplying a non-borrowable token, an unknown token or operation, a bad amount, and
    leaving portfolio margin with a borrow are refused."""
    chain = new_chain(markets)
    op(chain, B, "supply", USDC_TOKEN, "50000")
    op(chain, A, "borrow", USDC_TOKEN, "100")
    before = (
        dict(chain.clearinghouse.accounts[A].spot_total),
        chain.lending.user_borrow(A, USDC_TOKEN),
        len(chain.ledger),
    )
    assert op(chain, A, "supply", HYPE_TOKEN, "10") == ErrorResponse("Token is not borrowable")
    assert op(chain, A, "supply", 1, "10") == ErrorResponse(
        "Token is not supported for borrow lend"
    )
    assert op(chain, A, "lend", USDC_TOKEN, "10") == ErrorResponse("Invalid borrow lend operation")
    assert op(chain, A, "supply", USDC_TOKEN, "-1") == ErrorResponse("Invalid amount")
    assert op(chain, A, "borrow", USDC_TOKEN, None) == ErrorResponse("Invalid amount")
    leave = UserSetAbstractionAction(A, "disabled")
    assert chain.execute(A, leave, T) == ErrorResponse(
        "Cannot change account mode with open positions, orders or borrows."
    )
    after = (
        dict(chain.clearinghouse.accounts[A].spot_total),
        chain.lending.user_borrow(A, USDC_TOKEN),
        len(chain.ledger),
    )
    assert after == before


def test_leaving_portfolio_margin_returns_the_supply(markets: Markets) -> None:
    """The automatic supply of a PM account comes back to spot when it leaves PM."""
    chain = new_chain(markets)
    op(chain, A, "supply", USDC_TOKEN, "4000")
    assert chain.execute(A, UserSetAbstractionAction(A, "disabled"), T) == DefaultResponse()
    assert chain.lending.user_supply(A, USDC_TOKEN) == 0
    assert chain.clearinghouse.accounts[A].spot_total[USDC_TOKEN] == 10_000 * WEI
