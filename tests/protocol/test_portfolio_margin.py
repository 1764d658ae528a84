"""Portfolio margin on the chain: auto-borrow, cap fallback, idle supply, liquidation.

Marks are set by hand (a Chain without oracle sources), blocks run through apply_block.
BTC perp: price 1 decimal, size 5; UBTC: wei 10 decimals, priced at the BTC mark. HYPE perp:
price 4 decimals; HYPE spot wei 8 decimals. USDC spot wei: 8 decimals.
"""

from __future__ import annotations

from protocol.actions import (
    BorrowLendAction,
    DefaultResponse,
    OrderAction,
    OrderResponse,
    UpdateLeverageAction,
    UserAction,
    UserSetAbstractionAction,
)
from protocol.chain import Chain
from protocol.ledger import Liquidation
from protocol.lending import LTV_SCALE, ReserveParams
from protocol.markets import Markets
from protocol.orders import ERR_PERP_MARGIN, OrderError, OrderWire, Resting
from protocol.portfolio_margin import PM_LIQUIDATOR
from tests.protocol.conftest import BTC, HYPE_PERP, HYPE_TOKEN, HYPE_USDC, USD, USDC_TOKEN, limit

T = 1_700_000_000_000
A, B, C = "0x" + "a1" * 20, "0x" + "b2" * 20, "0x" + "c3" * 20
WEI = 10**8
UBTC_TOKEN = 3


def reserves(usdc_cap: int | None = None) -> dict[int, ReserveParams]:
    half = LTV_SCALE // 2
    return {
        USDC_TOKEN: ReserveParams(USDC_TOKEN, borrowable=True, user_borrow_cap=usdc_cap),
        HYPE_TOKEN: ReserveParams(HYPE_TOKEN, ltv=half),
        UBTC_TOKEN: ReserveParams(UBTC_TOKEN, ltv=half),
    }


class Run:
    def __init__(self, markets: Markets, usdc_cap: int | None = None) -> None:
        self.chain = Chain(markets, start_time=T, lending=reserves(usdc_cap))
        self.height, self.time = 0, T
        ch = self.chain.clearinghouse
        ch.set_mark(BTC, 1_000_000)
        ch.set_mark(HYPE_PERP, 300_000)
        ch.credit_spot(A, USDC_TOKEN, 10_000 * WEI)
        ch.credit_usd(B, 10_000_000 * USD)
        ch.credit_spot(B, USDC_TOKEN, 2_000_000 * WEI)
        ch.credit_spot(B, HYPE_TOKEN, 100_000 * WEI)
        ch.credit_spot(PM_LIQUIDATOR, USDC_TOKEN, 1_000_000 * WEI)
        self.do(B, BorrowLendAction("supply", USDC_TOKEN, "1000000"))
        assert self.do(A, UserSetAbstractionAction(A, "portfolioMargin")) == DefaultResponse()

    def do(self, user: str, action: UserAction) -> object:
        return self.chain.execute(user, action, self.time)

    def order(self, user: str, *wires: OrderWire) -> object:
        return self.do(user, OrderAction(wires))

    def block(self) -> None:
        self.height += 1
        self.time += 1_000
        self.output = self.chain.apply_block(self.height, self.time, [])
        self.chain._check()

    def debt(self) -> int:
        return self.chain.lending.user_borrow(A, USDC_TOKEN)


def about(wei: int, usdc: int) -> bool:
    """Within a hundredth of a cent: the seconds of interest and the wei of rounding between
    blocks (borrows round up, collateral down)."""
    return abs(wei - usdc * WEI) <= 10**6


def carry_trade(markets: Markets) -> Run:
    """A: 1 UBTC spot + 10,000 USDC, short 1 BTC perp at 10x from 100,000."""
    run = Run(markets)
    ch = run.chain.clearinghouse
    ch.credit_spot(A, UBTC_TOKEN, 10**10)
    for user in (A, B):
        run.do(user, UpdateLeverageAction(BTC, True, 10))
    run.order(B, limit(BTC, True, "100000", "1"))
    assert run.order(A, limit(BTC, False, "100000", "1", "Ioc")) is not None
    assert ch.accounts[A].szi(BTC) == -100_000
    run.block()
    return run


def test_carry_trade_borrows_as_the_short_loses(markets: Markets) -> None:
    """At 100k only the 45 USDC taker fee is borrowed (the 10k margin is A's own); at 150k the
    50k loss and the 5k of extra margin are borrowed against the spot BTC: 55k (the docs say
    "about 50k"). When the price comes back the surplus repays."""
    run = carry_trade(markets)
    assert about(run.debt(), 45)
    run.chain.clearinghouse.set_mark(BTC, 1_500_000)
    run.block()
    # own funds = 10,000 - 45 fee - 50,000 loss = -40,045; IM at 150k = 15,000.
    assert about(run.debt(), 55_045)
    assert not run.output.ledger
    # At 120k: own funds 10,000 - 45 - 20,000 = -10,045, IM 12,000: the debt falls to 22,045.
    run.chain.clearinghouse.set_mark(BTC, 1_200_000)
    run.block()
    assert about(run.debt(), 22_045)


def test_carry_trade_is_liquidated_past_its_borrowing_limit(markets: Markets) -> None:
    """At 200k the borrow is capped by collateral (1 BTC x 200k x 0.5 = 100k) and the account
    still holds its maintenance; at 205k it does not, and the short is bought back."""
    run = carry_trade(markets)
    ch = run.chain.clearinghouse
    run.order(B, limit(BTC, False, "205000", "1"))
    ch.set_mark(BTC, 2_000_000)
    run.block()
    assert about(run.debt(), 100_000)
    assert ch.accounts[A].szi(BTC) == -100_000
    ch.set_mark(BTC, 2_050_000)
    run.block()
    assert ch.accounts[A].szi(BTC) == 0
    assert [u.users for u in run.output.ledger if isinstance(u.delta, Liquidation)] == [(A,)]


def test_borrow_cap_falls_back_to_normal_margin(markets: Markets) -> None:
    """With a 1,000 USDC borrow cap an order may lean on at most 1,000 of borrowing; beyond
    that the account needs its own USDC, as a standard account would."""
    run = Run(markets, usdc_cap=1_000 * WEI)
    run.chain.clearinghouse.credit_spot(A, HYPE_TOKEN, 1_000 * WEI)  # capacity 15,000 > cap
    run.do(A, UpdateLeverageAction(BTC, True, 2))
    # 0.21 BTC at 100,000 at 2x needs 10,500 of margin: 500 more than A's 10,000.
    assert run.order(A, limit(BTC, True, "100000", "0.21")) == OrderResponse((Resting(1),))
    # Another 0.02 needs 1,000 more: the cap leaves only 500.
    assert run.order(A, limit(BTC, True, "100000", "0.02")) == OrderResponse(
        (OrderError(ERR_PERP_MARGIN),)
    )


def test_idle_usdc_is_supplied_and_earns(markets: Markets) -> None:
    """A PM account's idle USDC goes to the reserve at the end of the block and still counts
    as margin."""
    run = Run(markets)
    run.block()
    assert run.chain.lending.user_supply(A, USDC_TOKEN) == 10_000 * WEI
    assert run.chain.clearinghouse.accounts[A].spot_total[USDC_TOKEN] == 0
    assert run.order(A, limit(BTC, True, "100000", "0.4")) == OrderResponse((Resting(1),))


def test_collateral_drop_liquidates_by_takeover(markets: Markets) -> None:
    """A leveraged HYPE holder: when HYPE falls until the ratio passes 0.95, the PM
    liquidator takes over the collateral and the debt."""
    run = Run(markets)
    ch = run.chain.clearinghouse
    ch.credit_spot(A, HYPE_TOKEN, 1_000 * WEI)
    assert run.do(A, BorrowLendAction("borrow", USDC_TOKEN, "14000")) == DefaultResponse()
    run.order(B, limit(HYPE_USDC, False, "30", "800"))
    assert isinstance(run.order(A, limit(HYPE_USDC, True, "30", "800", "Ioc")), OrderResponse)
    run.block()
    debt = run.debt()
    assert about(debt, 14_000)
    ch.set_mark(HYPE_PERP, 130_000)
    # Borrow price = mean of spot 30 and mark 13 = 21.5: ratio ~0.48, healthy.
    run.block()
    assert about(run.debt(), 14_000)
    # HYPE falls to 10 on the perp and on spot (the borrow price is their median).
    ch.set_mark(HYPE_PERP, 100_000)
    ch.credit_spot(C, USDC_TOKEN, 100 * WEI)
    run.order(B, limit(HYPE_USDC, False, "10", "1"))
    run.order(C, limit(HYPE_USDC, True, "10", "1", "Ioc"))
    liquidator_usdc = ch.accounts[PM_LIQUIDATOR].spot_total[USDC_TOKEN]
    run.block()
    assert [u.users for u in run.output.ledger if isinstance(u.delta, Liquidation)] == [(A,)]
    assert run.debt() == 0
    assert ch.accounts[A].spot_total.get(HYPE_TOKEN, 0) == 0
    assert about(ch.accounts[PM_LIQUIDATOR].spot_total[USDC_TOKEN], liquidator_usdc // WEI - 14_000)
    assert ch.accounts[PM_LIQUIDATOR].spot_total[HYPE_TOKEN] > 1_700 * WEI
