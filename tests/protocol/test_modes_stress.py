"""A seeded stress run of the three account modes and portfolio margin, driven only through
`Chain.apply_block` (plus recorded credits and oracle `set_price` jumps between blocks).

Accounts: standard ones ("default", and one set to "disabled"), `unifiedAccount` ones and
`portfolioMargin` ones (set at genesis while flat), all holding USDC, HYPE and UBTC spot; two
portfolio-margin "degens" who lean on borrowing to hold HYPE long; two standard gamblers at
high leverage (one cross, one isolated); a maker quoting BTC and HYPE perps and the HYPE/USDC
(`@1`) and UBTC/USDC (`@2`) spot pairs around the oracle every block; a USDC supplier; both
liquidators, funded. Lending reserves: generous caps (and a steep USDC rate curve, so interest
adds up), or the default tight ones in two runs, so the borrow cap falls back to standard margin.

Actions: perp orders (cross; isolated after `updateLeverage`, mostly by standard accounts, now
and then by unified and portfolio-margin ones), spot orders, cancels,
`borrowLend` (valid and not), `spotSend`, `usdSend`, `usdClassTransfer` and mode switches (mostly
refused: open positions or orders). Oracles walk; HYPE jumps down 20% a few times (portfolio
margin accounts become liquidatable and the PM liquidator takes over), and some blocks come
25 minutes or a month after the last, so funding settles and interest accrues.

After every block: the chain's own checks (lending's included); every token conserved exactly
(USDC across spot, perp cash, isolated legs, reserve cash and fees; HYPE, UBTC and PURR across
spot, reserve cash and fees: debts and claims are books, not tokens); each reserve solvent
(cash + borrowed >= supplied + protocol share) with its rounding dust and protocol share never
shrinking; no spot balance or hold negative; only portfolio-margin accounts borrow, and only
USDC; funding conserved; every standard or unified account below maintenance was liquidated
in the block (but for deleveraging counterparties, charged after their turn in the pass), and
every portfolio-margin account that is liquidatable was liquidated in the block.

What breaks a rule is recorded (`StressRun.anomalies`) and asserted absent by the tests at the
end. Each kind was a real bug these runs found (unified cash split by liquidation, unified spot
USDC leaving its positions, PM accounts left below zero, PM isolated positions never liquidated,
borrowed USDC leaving by usdSend, PM spot buys overdrawing); each keeps a hand-made regression
test below.
"""

from __future__ import annotations

import functools
import random
from collections import Counter

import pytest

from protocol.actions import (
    AgentSetAbstractionAction,
    BorrowLendAction,
    CancelAction,
    CancelWire,
    DefaultResponse,
    ErrorResponse,
    OrderAction,
    SpotSendAction,
    UpdateLeverageAction,
    UsdClassTransferAction,
    UsdSendAction,
    UserSetAbstractionAction,
)
from protocol.borrow_lend import ERR_COLLATERAL, ERR_NOT_PM
from protocol.chain import Action, BlockOutput, Chain
from protocol.clearinghouse import Account
from protocol.fixed import RATE_SCALE, WAD, format_fixed
from protocol.ledger import (
    AccountClassTransfer,
    BorrowLend,
    InternalTransfer,
    Liquidation,
    SpotTransfer,
)
from protocol.lending import ERR_CAP, LTV_SCALE, ReserveParams
from protocol.liquidation import LIQUIDATOR
from protocol.modes import ERR_OPEN, ERR_PM_VALUE
from protocol.oracle import RandomWalkSource
from protocol.orders import OrderWire
from protocol.portfolio_margin import PM_LIQUIDATOR
from tests.protocol.conftest import (
    BTC,
    HYPE_PERP,
    HYPE_TOKEN,
    HYPE_USDC,
    PURR_TOKEN,
    USD,
    USDC_TOKEN,
    default_markets,
    limit,
)
from tests.protocol.test_chain_stress import HOUR_MS, START, USDC_ID, WEI_PER_MICRO

PM = "portfolioMargin"
UNIFIED = "unifiedAccount"
UBTC_TOKEN = 3
UBTC_USDC = 10_002
TOKENS = (USDC_TOKEN, PURR_TOKEN, HYPE_TOKEN, UBTC_TOKEN)
WEI = 10**8  # USDC and HYPE wei per token
UBTC_WEI = 10**10
HYPE_ID = "HYPE:0x7317beb7cceed72ef0b346074cc8e7ab"
UBTC_ID = "UBTC:0x8f254b963e8468305d409b33aa137c67"
TOKEN_IDS = {USDC_TOKEN: USDC_ID, HYPE_TOKEN: HYPE_ID, UBTC_TOKEN: UBTC_ID}
BLOCKS = 300
# (seed, tight): tight runs use the default lending caps (USDC borrow 1000 per user, HYPE
# supply 200, UBTC 0.1), the others generous ones.
RUNS = ((1, False), (2, False), (3, False), (4, False), (5, True), (6, True))
PERPS = (BTC, HYPE_PERP)
SPOTS = (HYPE_USDC, UBTC_USDC)
# Orders are priced in "ticks": whole dollars for BTC and UBTC, thousandths for HYPE. A perp
# mark or oracle price is ticks x 10 for both perps (BTC 1 decimal, HYPE 4).
TICK_DECIMALS = {BTC: 0, HYPE_PERP: 3, HYPE_USDC: 3, UBTC_USDC: 0}
SZ_DECIMALS = {BTC: 5, HYPE_PERP: 2, HYPE_USDC: 2, UBTC_USDC: 5}
PRICED_BY = {BTC: BTC, HYPE_PERP: HYPE_PERP, HYPE_USDC: HYPE_PERP, UBTC_USDC: BTC}
# The maker's ladder: (basis points from the oracle, USD notional) per level and side.
LADDER = {
    BTC: ((5, 20_000), (30, 40_000), (150, 100_000), (600, 200_000)),
    HYPE_PERP: ((5, 20_000), (30, 40_000), (150, 100_000), (600, 200_000)),
    HYPE_USDC: ((10, 5_000), (50, 20_000), (200, 60_000)),
    UBTC_USDC: ((10, 5_000), (50, 20_000), (200, 60_000)),
}
WALK_BPS = {BTC: 40, HYPE_PERP: 60}
SHORT_GAP_MS = 1_500_000  # 25 minutes: the block crosses an hour now and then
LONG_GAP_MS = 30 * 24 * HOUR_MS  # a month of interest (and one funding settlement)
GAPS = {40: SHORT_GAP_MS, 110: SHORT_GAP_MS, 175: LONG_GAP_MS, 230: SHORT_GAP_MS}
# What the runs found that breaks a rule (see the tests at the end).
UNIFIED_CASH = "liquidation zeroes the negative perp cash of a unified account keeping spot USDC"
UNIFIED_SPOT_EXIT = "unified account liquidated in the block it supplied or sent spot USDC"
PM_NEGATIVE = "PM account left below zero after its liquidation, liquidated again every block"
PM_ISOLATED = "isolated position of a PM account below maintenance, never liquidated"


def address(tag: int) -> str:
    return "0x" + f"{tag:02x}" * 20


MAKER = address(0x6D)
SUPPLIER = address(0x5E)
OUTSIDER = address(0xEE)  # receives sends, never trades
STANDARD = (address(0x11), address(0x12), address(0x13))  # the last one set to "disabled"
UNIFIEDS = (address(0x21), address(0x22))
PMS = (address(0x31), address(0x32), address(0x33), address(0x34))
DEGENS = (address(0x41), address(0x42))  # portfolio margin, long HYPE on borrowed USDC
GAMBLERS = (address(0x91), address(0x92))  # standard, 25x BTC / 10x HYPE, cross and isolated
TRADERS = STANDARD + UNIFIEDS + PMS
HOME_MODE = {
    **dict.fromkeys(STANDARD[:2], "default"),
    STANDARD[2]: "disabled",
    **dict.fromkeys(UNIFIEDS, UNIFIED),
    **dict.fromkeys(PMS + DEGENS, PM),
}
KINDS = {
    "perp": 30,
    "spot": 18,
    "cancel": 6,
    "borrowLend": 18,
    "spotSend": 4,
    "usdSend": 3,
    "class": 5,
    "mode": 4,
    "leverage": 5,
}


def generous_reserves() -> dict[int, ReserveParams]:
    """USDC borrowable with a 1M per-user cap and a kink at 20% utilization (100% a year at
    40%); HYPE and UBTC collateral at LTV 0.5 with caps far above what anyone holds."""
    half = LTV_SCALE // 2
    return {
        USDC_TOKEN: ReserveParams(
            USDC_TOKEN,
            borrowable=True,
            global_supply_cap=10**9 * WEI,
            global_borrow_cap=5 * 10**8 * WEI,
            user_borrow_cap=10**6 * WEI,
            kink=RATE_SCALE // 5,  # 0.2: the rate climbs steeply, so interest adds up
        ),
        HYPE_TOKEN: ReserveParams(
            HYPE_TOKEN, ltv=half, global_supply_cap=10**7 * WEI, user_supply_cap=10**5 * WEI
        ),
        UBTC_TOKEN: ReserveParams(
            UBTC_TOKEN, ltv=half, global_supply_cap=2_000 * UBTC_WEI, user_supply_cap=100 * UBTC_WEI
        ),
    }


def round5(ticks: int, decimals: int) -> int:
    """A price in ticks cut to 5 significant figures (an integer price is always valid)."""
    digits = len(str(ticks))
    drop = digits - max(5, digits - decimals)
    return ticks // 10**drop * 10**drop if drop > 0 else ticks


class StressRun:
    """One seeded run: the chain, what was credited, what the run exercised, what broke."""

    def __init__(self, seed: int, tight: bool) -> None:
        self.seed, self.tight = seed, tight
        self.failure: str | None = None  # the first failed check, when one failed
        self.rng = random.Random(seed)
        sources = {
            BTC: RandomWalkSource(1_000_000, WALK_BPS[BTC], seed),
            HYPE_PERP: RandomWalkSource(300_000, WALK_BPS[HYPE_PERP], seed + 1_000),
        }
        lending = None if tight else generous_reserves()
        self.chain = Chain(default_markets(), dict(sources), START, lending=lending)
        self.time = START
        self.height = 0
        self.credited: dict[int, int] = dict.fromkeys(TOKENS, 0)  # spot wei; USDC incl. perp
        self.counts: Counter[str] = Counter()
        self.anomalies: dict[str, list[str]] = {}
        self.manual: set[int] = set()  # perps whose oracle the run now walks with set_price
        self.last_hour = START // HOUR_MS
        self.dust = dict.fromkeys(self.chain.lending.reserves, 0)
        self.protocol = dict.fromkeys(self.chain.lending.reserves, 0)
        self.pm_liquidated: set[str] = set()  # PM accounts liquidated in the last block
        rng = self.rng
        self.jumps = {
            60 + rng.randrange(15): (HYPE_PERP, -20),
            100 + rng.randrange(10): (HYPE_PERP, 15),
            130 + rng.randrange(15): (BTC, rng.choice((-8, 8))),
            150 + rng.randrange(15): (HYPE_PERP, -20),
            200 + rng.randrange(10): (HYPE_PERP, 20),
            250 + rng.randrange(20): (HYPE_PERP, -20),
        }
        self._genesis()

    # Genesis.

    def _credit_usd(self, user: str, micro: int) -> None:
        self.chain.clearinghouse.credit_usd(user, micro)
        self.credited[USDC_TOKEN] += micro * WEI_PER_MICRO

    def _credit_spot(self, user: str, token: int, wei: int) -> None:
        self.chain.clearinghouse.credit_spot(user, token, wei)
        self.credited[token] += wei

    def _genesis(self) -> None:
        rng = self.rng
        self._credit_usd(MAKER, 50_000_000 * USD)
        self._credit_spot(MAKER, USDC_TOKEN, 20_000_000 * WEI)
        self._credit_spot(MAKER, HYPE_TOKEN, 1_000_000 * WEI)
        self._credit_spot(MAKER, UBTC_TOKEN, 300 * UBTC_WEI)
        self._credit_spot(SUPPLIER, USDC_TOKEN, 2_000_000 * WEI)
        self._credit_usd(LIQUIDATOR, 5_000_000 * USD)
        self._credit_spot(PM_LIQUIDATOR, USDC_TOKEN, 50_000_000 * WEI)
        for user in STANDARD + UNIFIEDS:
            self._credit_usd(user, rng.choice((3_000, 20_000, 60_000)) * USD)
            self._credit_spot(user, USDC_TOKEN, rng.choice((1_000, 10_000)) * WEI)
            self._credit_spot(user, HYPE_TOKEN, rng.choice((50, 300)) * WEI)
            self._credit_spot(user, UBTC_TOKEN, rng.choice((1, 10)) * UBTC_WEI // 100)
        for user in PMS:
            self._credit_usd(user, rng.choice((0, 5_000)) * USD)  # moves to spot on the switch
            self._credit_spot(user, USDC_TOKEN, rng.choice((12_000, 25_000, 60_000)) * WEI)
            self._credit_spot(user, HYPE_TOKEN, rng.choice((100, 600, 2_000)) * WEI)
            self._credit_spot(user, UBTC_TOKEN, rng.choice((5, 20, 50)) * UBTC_WEI // 100)
        for user in DEGENS:
            self._top_up_degen(user)
        for user in GAMBLERS:
            self._credit_usd(user, 3_000 * USD)
        actions: list[tuple[str, Action]] = [
            (user, UserSetAbstractionAction(user, mode))
            for user, mode in HOME_MODE.items()
            if mode != "default"
        ]
        actions += [(MAKER, UpdateLeverageAction(asset, True, 10)) for asset in PERPS]
        for gambler, is_cross in zip(GAMBLERS, (True, False), strict=True):
            actions += [
                (gambler, UpdateLeverageAction(BTC, is_cross, 25)),
                (gambler, UpdateLeverageAction(HYPE_PERP, is_cross, 10)),
            ]
        supplied = rng.choice((50_000, 150_000))
        actions.append((SUPPLIER, BorrowLendAction("supply", USDC_TOKEN, str(supplied))))
        block = self._apply(actions)
        refused = [e for e in block.actions if not isinstance(e.response, DefaultResponse)]
        assert not refused, f"genesis actions refused: {refused}"
        ch = self.chain.clearinghouse
        for user, mode in HOME_MODE.items():
            assert ch.accounts[user].abstraction == mode, user

    def _top_up_degen(self, user: str) -> None:
        self._credit_spot(user, USDC_TOKEN, 11_000 * WEI)
        self._credit_spot(user, HYPE_TOKEN, 1_000 * WEI)

    # Prices.

    def _ticks(self, asset: int, oracle: bool = False) -> int:
        """The fair price of a perp or spot pair in ticks: its perp's oracle or mark."""
        perp = PRICED_BY[asset]
        px = self.chain.oracle.price(perp) if oracle else self.chain.clearinghouse.mark(perp)
        return max(1, px // 10)

    def _between_blocks(self, index: int) -> None:
        """Oracle jumps, the run's own walk of the perps it took over, and top-ups of the
        gamblers and degens once they have lost nearly everything."""
        oracle = self.chain.oracle
        jump = self.jumps.get(index)
        if jump is not None:
            asset, percent = jump
            oracle.set_price(asset, oracle.price(asset) * (100 + percent) // 100)
            self.manual.add(asset)
            self.counts["oracle jumps"] += 1
        for asset in sorted(self.manual):
            if jump is None or jump[0] != asset:
                step = WALK_BPS[asset] if self.rng.random() < 0.5 else -WALK_BPS[asset]
                oracle.set_price(asset, max(1, oracle.price(asset) * (10_000 + step) // 10_000))
        ch = self.chain.clearinghouse
        for gambler in GAMBLERS:
            if ch.account_value(ch.accounts[gambler]) < 500 * USD:
                self._credit_usd(gambler, 3_000 * USD)
                self.counts["gambler top-ups"] += 1
        portfolio = self.chain.portfolio
        for degen in DEGENS:
            account = ch.accounts[degen]
            flat = not any(p.szi for p in account.positions.values())
            _, value = portfolio.margin_state(account)
            if flat and value - portfolio.debt(account) < 3_000 * USD:
                self._top_up_degen(degen)
                self.counts["degen top-ups"] += 1

    # Orders.

    def _wire(
        self, asset: int, is_buy: bool, ticks: int, usd: int, tif: str, reduce_only: bool = False
    ) -> OrderWire:
        """An order of about `usd` dollars (at least 11) at `ticks`."""
        decimals, sz_decimals = TICK_DECIMALS[asset], SZ_DECIMALS[asset]
        ticks = round5(max(1, ticks), decimals)
        sz = max(1, -(-max(usd, 11) * 10 ** (decimals + sz_decimals) // ticks))
        px, size = format_fixed(ticks, decimals), format_fixed(sz, sz_decimals)
        return limit(asset, is_buy, px, size, tif, reduce_only)

    def _maker_actions(self) -> list[tuple[str, Action]]:
        """Cancel every maker order, then a fresh GTC ladder around the oracle on both perps
        and both spot pairs."""
        actions: list[tuple[str, Action]] = []
        mine = self.chain.exchange.open_orders(MAKER)
        if mine:
            actions.append((MAKER, CancelAction(tuple(CancelWire(o.asset, o.oid) for o in mine))))
        wires: list[OrderWire] = []
        for asset, ladder in LADDER.items():
            center = self._ticks(asset, oracle=True)
            for bps, usd in ladder:
                wires.append(self._wire(asset, True, center * (10_000 - bps) // 10_000, usd, "Gtc"))
                wires.append(
                    self._wire(asset, False, -(-center * (10_000 + bps) // 10_000), usd, "Gtc")
                )
        actions.append((MAKER, OrderAction(tuple(wires))))
        return actions

    def _trader_action(self, user: str) -> Action | None:
        """One random action, built from the state before the block (so some no longer
        apply when they run, and are refused)."""
        rng = self.rng
        kind = rng.choices(tuple(KINDS), tuple(KINDS.values()))[0]
        if kind == "perp":
            return self._perp_order(user, rng.choice(PERPS))
        if kind == "spot":
            return self._spot_order(user)
        if kind == "cancel":
            mine = self.chain.exchange.open_orders(user)
            if not mine:
                return None
            chosen = rng.sample(mine, rng.randint(1, len(mine)))
            return CancelAction(tuple(CancelWire(o.asset, o.oid) for o in chosen))
        if kind == "borrowLend":
            return self._borrow_lend(user)
        if kind == "mode":
            return self._mode_switch(user)
        if kind == "leverage":
            # Isolated mostly for standard accounts; a unified or PM account tries it rarely.
            standard = HOME_MODE[user] in ("default", "disabled")
            is_cross = rng.random() < (0.5 if standard else 0.9)
            return UpdateLeverageAction(rng.choice(PERPS), is_cross, rng.choice((2, 5, 10, 20)))
        return self._transfer(user, kind)

    def _perp_order(self, user: str, asset: int) -> Action:
        """GTC and ALO orders around the mark, IOC orders crossing it by up to 3%, of $15 up
        to 8 times the account's free cross margin (borrow headroom included for portfolio
        margin); sometimes reduce-only for the whole position."""
        rng = self.rng
        ch = self.chain.clearinghouse
        account = ch.accounts[user]
        is_buy = rng.random() < 0.5
        tif = rng.choices(("Gtc", "Ioc", "Alo"), (40, 40, 20))[0]
        side = 1 if is_buy else -1
        bps = rng.randint(20, 300) * side if tif == "Ioc" else rng.randint(-150, 40) * side
        ticks = self._ticks(asset) * (10_000 + bps) // 10_000
        free = max(ch.cross_available(account) // USD, 0)
        usd = min(rng.choice((15, 200, 2_000, 3 * free, 8 * free)), 300_000)
        szi = account.szi(asset)
        if szi and rng.random() < 0.15:
            decimals, sz_decimals = TICK_DECIMALS[asset], SZ_DECIMALS[asset]
            px = format_fixed(round5(max(1, ticks), decimals), decimals)
            size = format_fixed(abs(szi), sz_decimals)
            return OrderAction((limit(asset, szi < 0, px, size, tif, reduce_only=True),))
        return OrderAction((self._wire(asset, is_buy, ticks, usd, tif),))

    def _spot_order(self, user: str) -> Action:
        """HYPE/USDC or UBTC/USDC around the fair price; sells sometimes of all the account
        holds (more than it has free when some is on hold or supplied)."""
        rng = self.rng
        asset = rng.choice(SPOTS)
        is_buy = rng.random() < 0.5
        tif = rng.choices(("Gtc", "Ioc", "Alo"), (35, 45, 20))[0]
        side = 1 if is_buy else -1
        bps = rng.randint(20, 300) * side if tif == "Ioc" else rng.randint(-150, 40) * side
        ticks = self._ticks(asset) * (10_000 + bps) // 10_000
        usd = rng.choice((15, 200, 2_000, 10_000))
        wire = self._wire(asset, is_buy, ticks, usd, tif)
        if not is_buy and rng.random() < 0.4:
            market = self.chain.markets.by_asset[asset]
            account = self.chain.clearinghouse.accounts[user]
            lots = account.spot_total.get(market.base_token, 0) // market.base_wei_per_lot
            if lots * ticks > 11 * 10 ** (TICK_DECIMALS[asset] + SZ_DECIMALS[asset]):
                size = format_fixed(lots, SZ_DECIMALS[asset])
                wire = limit(asset, False, wire.p, size, tif)
        return OrderAction((wire,))

    def _borrow_lend(self, user: str) -> Action:
        """Supply, withdraw, borrow and repay of USDC, HYPE, UBTC and PURR (no reserve), of
        sensible and absurd amounts, everything (None), zero and negative ones, and unknown
        operations. Standard and unified accounts may supply but not borrow."""
        rng = self.rng
        operation = rng.choices(
            ("supply", "withdraw", "borrow", "repay", "lend"), (25, 20, 30, 20, 5)
        )[0]
        token = rng.choices(TOKENS, (60, 5, 20, 15))[0]
        if operation in ("withdraw", "repay") and rng.random() < 0.4:
            return BorrowLendAction(operation, token, None)
        if rng.random() < 0.05:
            return BorrowLendAction(operation, token, rng.choice(("0", "-5", "1.000000001")))
        if operation == "borrow" and token == USDC_TOKEN and rng.random() < 0.5:
            # Up to 120% of the headroom: most fit, some are refused for collateral.
            account = self.chain.clearinghouse.accounts[user]
            headroom = self.chain.portfolio.headroom(account)
            micro = headroom * rng.randint(10, 120) // 100
            if micro > 0:
                return BorrowLendAction(operation, token, format_fixed(micro, 6))
        amounts = {
            USDC_TOKEN: ("10", "500", "5000", "50000", "10000000"),
            PURR_TOKEN: ("100",),
            HYPE_TOKEN: ("0.5", "10", "150", "5000"),
            UBTC_TOKEN: ("0.001", "0.01", "0.2", "50"),
        }
        return BorrowLendAction(operation, token, rng.choice(amounts[token]))

    def _mode_switch(self, user: str) -> Action:
        """Mostly back to the account's own mode or to another one while it trades (refused
        for open positions and orders), sometimes an invalid mode or an agent's switch."""
        rng = self.rng
        if rng.random() < 0.1:
            return AgentSetAbstractionAction(rng.choice(("i", "u", "p", "x")))
        home = HOME_MODE[user]
        choices = ("disabled", UNIFIED, PM, "cross", home if home != "default" else "disabled")
        return UserSetAbstractionAction(user, rng.choice(choices))

    def _transfer(self, user: str, kind: str) -> Action:
        """USDC, HYPE and UBTC sends, USDC sends from perps and class transfers, sometimes of
        more than the account has."""
        rng = self.rng
        destination = rng.choice((*TRADERS, OUTSIDER))
        if kind == "spotSend":
            token = rng.choice((USDC_TOKEN, HYPE_TOKEN, UBTC_TOKEN))
            amounts = {
                USDC_TOKEN: ("1", "100", "5000", "100000"),
                HYPE_TOKEN: ("1", "50", "5000"),
                UBTC_TOKEN: ("0.001", "0.1", "10"),
            }
            return SpotSendAction(destination, TOKEN_IDS[token], rng.choice(amounts[token]))
        if kind == "usdSend":
            return UsdSendAction(destination, rng.choice(("10", "500", "20000")))
        micro = rng.choice((25, 250, 2_500, 25_000)) * USD + rng.randrange(USD)
        return UsdClassTransferAction(format_fixed(micro, 6), rng.random() < 0.5)

    def _degen_action(self, user: str) -> Action | None:
        """Flat: an IOC buying HYPE perp for 50% to 90% of the free margin at 10x (borrow
        headroom included). Long: sometimes a borrow of USDC, or a spot HYPE buy."""
        rng = self.rng
        ch = self.chain.clearinghouse
        account = ch.accounts[user]
        if not account.szi(HYPE_PERP):
            usd = min(ch.cross_available(account) * 10 // USD * rng.randint(50, 90) // 100, 250_000)
            if usd < 20:
                return None
            ticks = self._ticks(HYPE_PERP) * 101 // 100
            return OrderAction((self._wire(HYPE_PERP, True, ticks, usd, "Ioc"),))
        if rng.random() < 0.5:
            headroom = self.chain.portfolio.headroom(account)
            if headroom > 100 * USD:
                micro = headroom * rng.randint(30, 90) // 100
                return BorrowLendAction("borrow", USDC_TOKEN, format_fixed(micro, 6))
            return None
        free = account.spot_available(USDC_TOKEN) // WEI
        if free < 20:
            return None
        ticks = self._ticks(HYPE_USDC) * 101 // 100
        return OrderAction((self._wire(HYPE_USDC, True, ticks, free * 9 // 10, "Ioc"),))

    def _gamble(self, user: str) -> Action | None:
        """An IOC for 50% to 95% of what the free margin allows at the gambler's leverage,
        crossing the mark by 2%."""
        rng = self.rng
        ch = self.chain.clearinghouse
        account = ch.accounts[user]
        asset = rng.choice(PERPS)
        leverage = ch.leverage_of(account, asset).value
        usd = min(
            ch.cross_available(account) * leverage // USD * rng.randint(50, 95) // 100, 45_000
        )
        if usd < 20:
            return None
        is_buy = rng.random() < 0.5
        ticks = self._ticks(asset) * (102 if is_buy else 98) // 100
        return OrderAction((self._wire(asset, is_buy, ticks, usd, "Ioc"),))

    def _supplier_action(self) -> Action:
        rng = self.rng
        operation = rng.choice(("supply", "withdraw"))
        return BorrowLendAction(operation, USDC_TOKEN, str(rng.choice((10_000, 100_000, 500_000))))

    # Blocks.

    def _apply(self, actions: list[tuple[str, Action]]) -> BlockOutput:
        before = self._snapshot()
        block = self.chain.apply_block(self.height, self.time, actions)
        self.height += 1
        self._check(block, before)
        return block

    def run(self, blocks: int) -> None:
        """`blocks` blocks of 1 s (longer for those in GAPS), each checked."""
        rng = self.rng
        for index in range(blocks):
            self.time += GAPS.get(index, 1_000)
            self._between_blocks(index)
            actions = self._maker_actions()
            for _ in range(rng.randint(4, 10)):
                user = rng.choice(TRADERS)
                action = self._trader_action(user)
                if action is not None:
                    actions.append((user, action))
            for user in DEGENS:
                degen = self._degen_action(user) if rng.random() < 0.35 else None
                if degen is not None:
                    actions.append((user, degen))
            for user in GAMBLERS:
                gamble = self._gamble(user) if rng.random() < 0.3 else None
                if gamble is not None:
                    actions.append((user, gamble))
            if rng.random() < 0.05:
                actions.append((SUPPLIER, self._supplier_action()))
            if rng.random() < 0.03:  # refused while it holds less than 10,000 USDC
                actions.append((OUTSIDER, UserSetAbstractionAction(OUTSIDER, PM)))
            rng.shuffle(actions)
            self._apply(actions)
        reserve = self.chain.lending.reserves[USDC_TOKEN]
        self.counts["USDC borrow index growth (ppm)"] = (reserve.borrow_index - WAD) * 10**6 // WAD
        self.counts["USDC protocol share (micro-USDC)"] = reserve.protocol // WEI_PER_MICRO

    # Invariants.

    def _snapshot(self) -> dict[str, tuple[int, int]]:
        """Scaled USDC borrow and supply of every account, and the PM liquidator's collateral
        (HYPE wei, UBTC wei) under its own address."""
        reserve = self.chain.lending.reserves[USDC_TOKEN]
        users = set(reserve.borrows) | set(reserve.supplies)
        snapshot = {u: (reserve.borrows.get(u, 0), reserve.supplies.get(u, 0)) for u in users}
        liquidator = self.chain.clearinghouse.account(PM_LIQUIDATOR)
        collateral = (
            liquidator.spot_total.get(HYPE_TOKEN, 0),
            liquidator.spot_total.get(UBTC_TOKEN, 0),
        )
        snapshot[PM_LIQUIDATOR] = collateral
        return snapshot

    def _anomaly(self, kind: str, detail: str) -> None:
        self.anomalies.setdefault(kind, []).append(
            f"seed {self.seed} block {self.height}: {detail}"
        )

    def _check(self, block: BlockOutput, before: dict[str, tuple[int, int]]) -> None:
        """Everything that must hold after every block."""
        self.chain._check()
        self._check_tokens(block)
        self._check_reserves(block)
        self._check_funding(block)
        liquidated = self._liquidated(block)
        self._check_margin(block, liquidated)
        self._count(block, before, liquidated)

    def _check_tokens(self, block: BlockOutput) -> None:
        """No token created or destroyed, no negative spot balance or hold."""
        ch = self.chain.clearinghouse
        reserves = self.chain.lending.reserves
        perp = ch.perp_fees + ch.withdrawn + ch.withdraw_fees
        for account in ch.accounts.values():
            perp += account.usd + sum(p.isolated_raw for p in account.positions.values())
        for token in TOKENS:
            total = ch.spot_fees.get(token, 0)
            total += sum(a.spot_total.get(token, 0) for a in ch.accounts.values())
            reserve = reserves.get(token)
            total += 0 if reserve is None else reserve.cash
            if token == USDC_TOKEN:
                total += perp * WEI_PER_MICRO
            assert total == self.credited[token], (
                f"block {block.height}: token {token}: {total} != credited {self.credited[token]}"
            )
        for user, account in ch.accounts.items():
            for token, amount in account.spot_total.items():
                hold = account.spot_hold.get(token, 0)
                assert 0 <= hold <= amount, f"{user}: token {token} hold {hold}, total {amount}"

    def _check_reserves(self, block: BlockOutput) -> None:
        """Each reserve solvent; its rounding dust (cash + borrowed - supplied - protocol) and
        the protocol's share never shrink (interest moves between books exactly); only
        portfolio-margin accounts borrow, and only USDC."""
        ch = self.chain.clearinghouse
        for token, reserve in self.chain.lending.reserves.items():
            owed = reserve.total_supplied + reserve.protocol
            dust = reserve.cash + reserve.total_borrowed - owed
            assert dust >= 0, f"block {block.height}: reserve {token} owes {-dust} more than it has"
            assert dust >= self.dust[token], f"block {block.height}: reserve {token} dust shrank"
            assert reserve.protocol >= self.protocol[token], f"reserve {token}: protocol shrank"
            self.dust[token], self.protocol[token] = dust, reserve.protocol
            assert reserve.supply_index >= WAD and reserve.borrow_index >= WAD
            if token == USDC_TOKEN and reserve.total_supplied:
                utilization = reserve.total_borrowed * 100 // reserve.total_supplied
                self.counts["USDC max utilization (%)"] = max(
                    self.counts["USDC max utilization (%)"], utilization
                )
            for user in reserve.borrows:
                assert token == USDC_TOKEN, f"{user} borrows token {token}"
                assert ch.accounts[user].abstraction == PM, f"{user} borrows outside PM"

    def _check_funding(self, block: BlockOutput) -> None:
        """Each settlement pays within one coin: what payers lose, receivers gain."""
        hour = block.time // HOUR_MS
        settles = hour != self.last_hour
        self.last_hour = hour
        assert not block.funding or settles, f"block {block.height}: funding within an hour"
        sums: dict[tuple[int, str], int] = {}
        for update in block.funding:
            key = (update.time, update.coin)
            sums[key] = sums.get(key, 0) + update.usdc
        assert all(total == 0 for total in sums.values()), f"funding not conserved: {sums}"
        if settles:
            self.counts["hour crossings"] += 1
            self.counts["funding settlements"] += bool(block.funding)

    def _liquidated(self, block: BlockOutput) -> dict[str, list[Liquidation]]:
        liquidated: dict[str, list[Liquidation]] = {}
        for update in block.ledger:
            if isinstance(update.delta, Liquidation):
                (user,) = update.users
                liquidated.setdefault(user, []).append(update.delta)
        return liquidated

    def _check_margin(self, block: BlockOutput, liquidated: dict[str, list[Liquidation]]) -> None:
        """After the block every account is above maintenance or was liquidated in it:
        standard and unified accounts cross and per isolated position, portfolio-margin
        accounts by their own rule (and their isolated positions, which nothing watches)."""
        ch = self.chain.clearinghouse
        portfolio = self.chain.portfolio
        adl_counterparties = {
            f.user
            for f in block.fills
            if f.liquidation is not None
            and f.liquidation.method == "adl"
            and f.user != f.liquidation.liquidated_user
        }
        spenders = {  # moved spot USDC out: supplied it or sent it
            e.user
            for e in block.actions
            if isinstance(e.response, DefaultResponse)
            and (
                (isinstance(e.action, BorrowLendAction) and e.action.operation == "supply")
                or (isinstance(e.action, SpotSendAction) and e.action.token == USDC_ID)
            )
        }
        for user, account in sorted(ch.accounts.items()):
            if user in (LIQUIDATOR, PM_LIQUIDATOR):
                continue
            mine = liquidated.get(user, [])
            for asset, position in sorted(account.positions.items()):
                if not position.szi or ch.leverage_of(account, asset).is_cross:
                    continue
                value = ch.isolated_value(asset, position)
                mm = ch.maintenance_of(asset, position.szi)
                if value >= mm or any(d.leverage_type == "Isolated" for d in mine):
                    continue
                detail = f"{user} ({account.abstraction}) isolated {asset}: value {value} < MM {mm}"
                assert account.abstraction == PM, f"block {block.height}: {detail}"
                self._anomaly(PM_ISOLATED, detail)
            if account.abstraction == PM:
                if portfolio.liquidatable(account):
                    requirement, value = portfolio.margin_state(account)
                    detail = (
                        f"{user}: requirement {requirement}, value {value}, "
                        f"own funds {portfolio.own_funds(account)}, debt {portfolio.debt(account)}"
                        f", positions {[(a, p.szi) for a, p in account.positions.items() if p.szi]}"
                    )
                    assert mine, f"block {block.height}: PM account liquidatable: {detail}"
                    self.counts["PM liquidated, still liquidatable"] += 1
                    self._observe_stuck(user, account, detail)
                continue
            cross = [
                a for a, p in account.positions.items() if p.szi and self._is_cross(account, a)
            ]
            below = cross and ch.cross_value(account) < ch.cross_maintenance(account)
            if below and not any(d.leverage_type == "Cross" for d in mine):
                # Deleveraging charges its counterparties after their own turn in the pass
                # (address order): they are liquidated in the next block.
                assert user in adl_counterparties, (
                    f"block {block.height}: {user} below maintenance, not liquidated"
                )
                self.counts["ADL counterparties left below maintenance"] += 1
            spent = user in spenders and any(d.liquidated_positions for d in mine)
            if account.abstraction == UNIFIED and spent:
                self._anomaly(UNIFIED_SPOT_EXIT, f"{user}: {mine}")
            if mine and account.abstraction == UNIFIED and not cross and account.usd == 0:
                # Deleveraging, the backstop and the debt takeover zero the perp cash.
                free = ch.unified_usdc(account)
                # (An isolated position's loss is its own: the cross balance keeps its USDC.)
                if free > 0 and any(
                    d.account_value < 0 and d.leverage_type == "Cross" for d in mine
                ):
                    values = [d.account_value for d in mine]
                    self._anomaly(UNIFIED_CASH, f"{user}: {values}, keeps {free} micro USDC")

    def _is_cross(self, account: Account, asset: int) -> bool:
        return self.chain.clearinghouse.leverage_of(account, asset).is_cross

    def _observe_stuck(self, user: str, account: Account, detail: str) -> None:
        """A PM account still liquidatable after its liquidation: with positions left (the
        book could not take them) or with a negative balance and nothing left to take."""
        if any(p.szi for p in account.positions.values()):
            self.counts["PM liquidated, positions left"] += 1
        else:
            self._anomaly(PM_NEGATIVE, detail)

    def _count(
        self,
        block: BlockOutput,
        before: dict[str, tuple[int, int]],
        liquidated: dict[str, list[Liquidation]],
    ) -> None:
        if block.height == 0:
            return  # genesis: only the setup's own actions
        counts = self.counts
        ch = self.chain.clearinghouse
        portfolio = self.chain.portfolio
        counts["blocks"] += 1
        counts["actions"] += len(block.actions)
        counts["fills"] += len(block.fills) // 2
        counts["spot fills"] += sum(1 for f in block.fills if f.asset >= 10_000 and f.crossed)
        explicit: dict[str, set[str]] = {}
        spot_buyers: set[str] = set()
        for executed in block.actions:
            action, response, user = executed.action, executed.response, executed.user
            ok = isinstance(response, DefaultResponse)
            if isinstance(action, BorrowLendAction):
                counts[f"borrowLend {action.operation} {'ok' if ok else 'refused'}"] += 1
                if ok and action.token == USDC_TOKEN:
                    explicit.setdefault(user, set()).add(action.operation)
                if isinstance(response, ErrorResponse) and action.operation == "borrow":
                    error = response.error
                    if error in (ERR_CAP, ERR_COLLATERAL):
                        counts[f"refused borrows ({error})"] += 1
                    elif error == ERR_NOT_PM:
                        counts["refused borrows (not PM)"] += 1
            elif isinstance(action, UserSetAbstractionAction | AgentSetAbstractionAction):
                if ok:
                    counts["mode switches ok"] += 1
                else:
                    assert isinstance(response, ErrorResponse)
                    counts[f"mode switches refused ({response.error})"] += 1
                    counts["mode switches refused"] += 1
                    counts["mode switches refused (open)"] += response.error == ERR_OPEN
            elif isinstance(action, OrderAction) and any(
                w.a >= 10_000 and w.b for w in action.orders
            ):
                spot_buyers.add(user)
            elif isinstance(action, UpdateLeverageAction):
                counts[f"leverage {'ok' if ok else 'refused'}"] += 1
        reserve = self.chain.lending.reserves[USDC_TOKEN]
        for user in sorted(set(before) | set(reserve.borrows) | set(reserve.supplies)):
            if user == PM_LIQUIDATOR:
                continue
            borrow_before, supply_before = before.get(user, (0, 0))
            borrow, supply = reserve.borrows.get(user, 0), reserve.supplies.get(user, 0)
            done = explicit.get(user, set())
            if borrow > borrow_before and "borrow" not in done:
                counts["auto-borrows"] += 1
                if user not in spot_buyers:
                    counts["auto-borrows in settle"] += 1
            if borrow < borrow_before and "repay" not in done and user not in liquidated:
                counts["auto-repays"] += 1
            if supply > supply_before and "supply" not in done:
                counts["idle supplies"] += 1
        for user, deltas in liquidated.items():
            pm = ch.accounts[user].abstraction == PM
            if pm and user not in self.pm_liquidated:
                counts["PM liquidation episodes"] += 1  # not liquidated in the block before
            if pm and not portfolio.liquidatable(ch.accounts[user]):
                counts["PM liquidations ending clean"] += 1
            for delta in deltas:
                if pm:
                    counts["PM liquidations"] += 1
                elif delta.liquidated_positions:
                    counts[f"standard {delta.leverage_type} liquidations"] += 1
                    counts["standard liquidations"] += 1
                else:
                    counts["standard debt takeovers"] += 1
        self.pm_liquidated = {u for u in liquidated if ch.accounts[u].abstraction == PM}
        hype, ubtc = before[PM_LIQUIDATOR]
        liquidator = ch.accounts[PM_LIQUIDATOR]
        took = (liquidator.spot_total.get(HYPE_TOKEN, 0) > hype) or (
            liquidator.spot_total.get(UBTC_TOKEN, 0) > ubtc
        )
        if took:
            counts["PM takeovers"] += 1
        # Cap fallback: a PM account whose margin shortfall exceeds its debt because it is at
        # the per-user borrow cap.
        cap = portfolio.borrow_cap()
        for account in ch.accounts.values():
            if account.abstraction != PM or cap is None:
                continue
            debt = portfolio.debt(account)
            short = portfolio.needed(account) - portfolio.own_funds(account)
            if short > debt + USD and debt >= cap - USD:
                counts["borrow cap fallbacks"] += 1
        for update in block.ledger:
            if isinstance(update.delta, AccountClassTransfer):
                counts["class transfers"] += 1
            elif isinstance(update.delta, InternalTransfer):
                counts["usd sends"] += 1
            elif isinstance(update.delta, SpotTransfer):
                counts["spot sends"] += 1
            elif isinstance(update.delta, BorrowLend):
                counts["borrowLend ledger updates"] += 1


@functools.cache
def finished_run(seed: int, tight: bool) -> StressRun:
    """The run of a seed, checked after every block, up to its first failed check (kept in
    `failure`); shared by the tests below."""
    run = StressRun(seed, tight)
    try:
        run.run(BLOCKS)
    except AssertionError as error:
        run.failure = f"seed {seed} block {run.height - 1}: {error}"
    return run


@pytest.mark.parametrize(
    ("seed", "tight"),
    [pytest.param(seed, tight) for seed, tight in RUNS],
)
def test_modes_stress_run_keeps_every_invariant(seed: int, tight: bool) -> None:
    """Seeded random blocks in all three modes: invariants and exact conservation hold after
    every block."""
    run = finished_run(seed, tight)
    assert run.failure is None, run.failure
    counts = run.counts
    print(f"seed {seed} tight {tight}: {dict(sorted(counts.items()))}")
    for kind, seen in run.anomalies.items():
        print(f"  anomaly {kind}: {len(seen)}, first {seen[0]}")
    assert counts["fills"] > 0, counts
    assert counts["spot fills"] > 0, counts
    assert counts["funding settlements"] >= 2, counts
    assert counts["PM liquidations"] > 0, counts
    if tight:
        assert counts["borrow cap fallbacks"] > 0, counts


def test_modes_stress_runs_exercise_every_path() -> None:
    """Across the runs: auto-borrows (in settle too), repays, idle supply, PM liquidations
    with takeover, refused borrows and mode switches, standard liquidations, cap fallbacks."""
    total: Counter[str] = Counter()
    for seed, tight in RUNS:
        total.update(finished_run(seed, tight).counts)
    print(f"runs {RUNS}: {dict(sorted(total.items()))}")
    for name in (
        "auto-borrows",
        "auto-borrows in settle",
        "auto-repays",
        "borrowLend repay ok",
        "borrowLend supply ok",
        "borrowLend withdraw ok",
        "borrowLend borrow ok",
        "idle supplies",
        "PM liquidations",
        "PM takeovers",
        f"refused borrows ({ERR_COLLATERAL})",
        f"refused borrows ({ERR_CAP})",
        "refused borrows (not PM)",
        "mode switches refused (open)",
        f"mode switches refused ({ERR_PM_VALUE})",
        "mode switches ok",
        "standard liquidations",
        "standard Isolated liquidations",
        "standard Cross liquidations",
        "PM liquidations ending clean",
        "borrow cap fallbacks",
        "class transfers",
        "usd sends",
        "spot sends",
        "spot fills",
        "funding settlements",
        "oracle jumps",
    ):
        assert total[name] > 0, f"the runs never exercised {name}: {total}"


# What the runs found. Each kind below is recorded by the checks above; the tests after them
# reproduce it by hand. Marks are set by hand (chains without oracle sources).

# The rules the runs record breaks of (each was a bug these runs found; see the module doc).
RULES = (UNIFIED_CASH, UNIFIED_SPOT_EXIT, PM_NEGATIVE, PM_ISOLATED)


@pytest.mark.parametrize(
    "kind",
    [pytest.param(kind) for kind in RULES],
)
def test_modes_stress_runs_break_no_rule(kind: str) -> None:
    """No run records a broken rule of this kind."""
    seen = [s for seed, tight in RUNS for s in finished_run(seed, tight).anomalies.get(kind, [])]
    assert not seen, f"{kind}: {len(seen)} times, first {seen[:3]}"


T = 1_700_000_000_000
A, B, C = address(0xA1), address(0xB2), address(0xC3)


def _responses(block: BlockOutput) -> list[object]:
    return [executed.response for executed in block.actions]


def _liquidations(block: BlockOutput) -> list[Liquidation]:
    return [u.delta for u in block.ledger if isinstance(u.delta, Liquidation)]


def test_unified_class_transfer_is_not_paid_by_the_liquidator() -> None:
    """A unified account with 10,000 USDC moves 10,000 "from perps" to spot. The transfer used
    to count its spot USDC as withdrawable and leave perp cash at -10,000, which the
    liquidation pass handed to the liquidator (the account ended with 20,000). The transfer is
    refused now, nothing is liquidated, and the account keeps its 10,000."""
    chain = Chain(default_markets(), start_time=T)
    ch = chain.clearinghouse
    ch.credit_spot(A, USDC_TOKEN, 10_000 * WEI)
    block = chain.apply_block(
        1,
        T + 1_000,
        [(A, UserSetAbstractionAction(A, UNIFIED)), (A, UsdClassTransferAction("10000", False))],
    )
    responses = [e.response for e in sorted(block.actions, key=lambda e: e.index)]
    assert responses[1] == ErrorResponse("Action disabled when unified account is active.")
    assert _liquidations(block) == []
    account = ch.accounts[A]
    assert account.usd * WEI_PER_MICRO + account.spot_total[USDC_TOKEN] == 10_000 * WEI, (
        f"A holds {account.spot_total[USDC_TOKEN] // WEI} USDC, perp cash {account.usd}; "
        f"ledger {_liquidations(block)}"
    )


def test_unified_usdc_cannot_be_split_into_a_negative_perp_balance() -> None:
    """A unified account's USDC is one balance: a class transfer out of "perps" is refused
    (it used to leave perp cash at -50,000 for the liquidator to pay), and supplying the USDC
    that backs a position is refused."""
    chain = Chain(default_markets(), start_time=T)
    ch = chain.clearinghouse
    ch.set_mark(BTC, 1_000_000)
    ch.credit_spot(A, USDC_TOKEN, 100_000 * WEI)
    ch.credit_usd(B, 100_000 * USD)
    block = chain.apply_block(
        1,
        T + 1_000,
        [
            (A, UserSetAbstractionAction(A, UNIFIED)),
            (A, UsdClassTransferAction("50000", False)),
            (B, OrderAction((limit(BTC, False, "100000", "0.4"),))),
            (A, OrderAction((limit(BTC, True, "100000", "0.4", "Ioc"),))),
        ],
    )
    responses = [e.response for e in sorted(block.actions, key=lambda e: e.index)]
    assert responses[1] == ErrorResponse("Action disabled when unified account is active.")
    assert ch.accounts[A].usd < 0  # the long's raw cash; its USDC sits in spot
    block = chain.apply_block(2, T + 2_000, [(A, BorrowLendAction("supply", USDC_TOKEN, "100000"))])
    assert isinstance(block.actions[0].response, ErrorResponse)
    assert not _liquidations(block)


@pytest.mark.parametrize(
    "spend",
    [BorrowLendAction("supply", USDC_TOKEN, "10000"), SpotSendAction(C, USDC_ID, "10000")],
    ids=["supply", "spotSend"],
)
def test_unified_spot_usdc_backing_a_position_stays(spend: Action) -> None:
    """A unified account holds 10,000 USDC and 0.09 BTC long (perp cash -9,004.05): its spot
    USDC is its margin. Supplying or sending all of it used to pass, deleveraging the account
    at once; it must not."""
    chain = Chain(default_markets(), start_time=T)
    ch = chain.clearinghouse
    ch.set_mark(BTC, 1_000_000)
    ch.credit_spot(A, USDC_TOKEN, 10_000 * WEI)
    ch.credit_usd(B, 100_000 * USD)
    chain.apply_block(
        1,
        T + 1_000,
        [
            (A, UserSetAbstractionAction(A, UNIFIED)),
            (B, OrderAction((limit(BTC, False, "100000", "0.09"),))),
            (A, OrderAction((limit(BTC, True, "100000", "0.09", "Ioc"),))),
        ],
    )
    assert ch.accounts[A].szi(BTC) == 9_000
    block = chain.apply_block(2, T + 2_000, [(A, spend)])
    assert isinstance(_responses(block)[0], ErrorResponse), _liquidations(block)


def _pm_chain() -> Chain:
    """A: portfolio margin with 10,000 USDC; B: a deep standard account; HYPE at 30."""
    chain = Chain(default_markets(), start_time=T, lending=generous_reserves())
    ch = chain.clearinghouse
    ch.set_mark(HYPE_PERP, 300_000)
    ch.credit_spot(A, USDC_TOKEN, 10_000 * WEI)
    ch.credit_usd(B, 10_000_000 * USD)
    ch.credit_spot(B, USDC_TOKEN, 1_000_000 * WEI)
    ch.credit_spot(PM_LIQUIDATOR, USDC_TOKEN, 1_000_000 * WEI)
    ch.credit_usd(LIQUIDATOR, 1_000_000 * USD)
    return chain


def test_pm_liquidation_leaves_no_negative_balance() -> None:
    """A (PM, 10,000 USDC, no collateral) buys 3,000 HYPE perp at 30. At a mark of 26.5 it is
    liquidated and sold into B's bid at 26: -12,000 of loss, about -2,116 left. Nothing took
    that over, so A used to be liquidated again in every block that followed."""
    chain = _pm_chain()
    portfolio, account = chain.portfolio, chain.clearinghouse.account(A)
    chain.apply_block(
        1,
        T + 1_000,
        [
            (A, UserSetAbstractionAction(A, PM)),
            (B, OrderAction((limit(HYPE_PERP, False, "30", "3000"),))),
            (B, OrderAction((limit(HYPE_PERP, True, "26", "3000"),))),
            (A, OrderAction((limit(HYPE_PERP, True, "30", "3000", "Ioc"),))),
        ],
    )
    assert account.szi(HYPE_PERP) == 300_000
    chain.clearinghouse.set_mark(HYPE_PERP, 265_000)
    block = chain.apply_block(2, T + 2_000, [])
    assert len(_liquidations(block)) == 1
    assert account.szi(HYPE_PERP) == 0
    again = chain.apply_block(3, T + 3_000, [])
    assert not _liquidations(again), (
        f"liquidated again: own funds {portfolio.own_funds(account)}, "
        f"liquidatable {portfolio.liquidatable(account)}"
    )


def test_pm_isolated_position_is_liquidated() -> None:
    """A (PM, 10,000 USDC) holds 3,000 HYPE long isolated at 10x from 30. At 15 the position
    is worth -36,040 against a maintenance of 2,250; no pass used to liquidate it."""
    chain = _pm_chain()
    ch = chain.clearinghouse
    chain.apply_block(
        1,
        T + 1_000,
        [
            (A, UserSetAbstractionAction(A, PM)),
            (A, UpdateLeverageAction(HYPE_PERP, False, 10)),
            (B, OrderAction((limit(HYPE_PERP, False, "30", "3000"),))),
            (A, OrderAction((limit(HYPE_PERP, True, "30", "3000", "Ioc"),))),
        ],
    )
    account = ch.accounts[A]
    assert account.szi(HYPE_PERP) == 300_000
    ch.set_mark(HYPE_PERP, 150_000)
    block = chain.apply_block(2, T + 2_000, [])
    position = account.positions[HYPE_PERP]
    value = ch.isolated_value(HYPE_PERP, position) if position.szi else 0
    assert _liquidations(block), f"isolated value {value}, maintenance 2,250 USDC"


def test_pm_borrowed_usdc_cannot_leave_by_usd_send() -> None:
    """A (PM, 10,000 USDC, 1,000 HYPE at 30) borrows 15,000 USDC: spotSend of it is refused,
    and a usdSend of 25,000 in the same block used to pass, taking the borrowed 15,000 out. (In
    a later block it would be gone: the end-of-block settlement repays a borrow the account
    does not need.)"""
    chain = _pm_chain()
    ch = chain.clearinghouse
    ch.credit_spot(A, HYPE_TOKEN, 1_000 * WEI)
    chain.apply_block(
        1,
        T + 1_000,
        [
            (B, BorrowLendAction("supply", USDC_TOKEN, "500000")),
            (A, UserSetAbstractionAction(A, PM)),
        ],
    )
    block = chain.apply_block(
        2,
        T + 2_000,
        [
            (A, BorrowLendAction("borrow", USDC_TOKEN, "15000")),
            (A, SpotSendAction(C, USDC_ID, "25000")),
            (A, UsdSendAction(C, "25000")),
        ],
    )
    borrowed, spot_sent, usd_sent = _responses(block)
    assert borrowed == DefaultResponse()
    assert isinstance(spot_sent, ErrorResponse)
    assert isinstance(usd_sent, ErrorResponse), (
        f"sent; C holds {ch.accounts[C].usd} micro-USDC, A owes "
        f"{chain.lending.user_borrow(A, USDC_TOKEN)} wei"
    )


def test_pm_spot_buy_cannot_overdraw_spot_usdc() -> None:
    """A (PM, 10,000 USDC, no collateral) is long 1,000 HYPE perp from 30 (perp cash -30,013.5)
    and HYPE marks 40: the spot check counts the 10,000 of profit and lets A buy 0.15 UBTC
    for 15,000 USDC. Paying for it, the supply gives 10,000, perp cash nothing (negative) and
    the borrow fails (nobody else supplies USDC): A's spot USDC used to end at -5,000."""
    chain = _pm_chain()
    ch = chain.clearinghouse
    ch.set_mark(BTC, 1_000_000)
    ch.credit_spot(B, UBTC_TOKEN, UBTC_WEI)
    chain.apply_block(
        1,
        T + 1_000,
        [
            (A, UserSetAbstractionAction(A, PM)),
            (B, OrderAction((limit(HYPE_PERP, False, "30", "1000"),))),
            (A, OrderAction((limit(HYPE_PERP, True, "30", "1000", "Ioc"),))),
        ],
    )
    assert chain.lending.user_supply(A, USDC_TOKEN) == 10_000 * WEI
    ch.set_mark(HYPE_PERP, 400_000)
    block = chain.apply_block(
        2,
        T + 2_000,
        [
            (B, OrderAction((limit(UBTC_USDC, False, "100000", "0.15"),))),
            (A, OrderAction((limit(UBTC_USDC, True, "100000", "0.15", "Ioc"),))),
        ],
    )
    spot = ch.accounts[A].spot_total[USDC_TOKEN]
    assert spot >= 0, f"A's spot USDC {spot / WEI}; {_responses(block)[1]}"
