"""The built-in market maker: quotes every market around its reference price from its own
account, so a fresh devnet has liquidity on every book from the first block.

Invariants:
- It is a client, not a rule: its quotes are ordinary `cancelByCloid` and `order` actions that
  the block producer puts at the front of the block's proposals, logged with the block like any
  other action. A replay re-executes them from the log and needs no market maker.
- Its quotes are a pure function of what the producer hands it each block (the oracle prices
  and the markets it traded on in the previous block) and of what it quoted before, so a run
  gives the same actions whatever trio's scheduling.
- Every quote has a fixed cloid per (market, side, level): a requote cancels those cloids
  (cancels execute before GTC orders in a block) and places them again, so the maker never
  holds two live orders with one cloid and needs no order ids.
- A market is requoted when its reference price changed since its last quote, when the maker
  traded on it in the previous block (a level may be gone), and on the maker's first block
  (after a restart it does not know what rests, so it cancels every level it could own).

Reference prices: a perp's oracle price; a spot pair quoted in USDC takes the oracle price of
the perp named like its base token (or without a leading "U": UBTC at BTC's), converted to
the pair's price scale; a pair without such a perp uses `[market_maker.spot_prices]`, and is not
quoted when that has none.
"""

from __future__ import annotations

import msgspec

from node.devaccounts import parse_amount, parse_spot_amounts
from protocol.actions import (
    CancelByCloidAction,
    CancelByCloidWire,
    DefaultResponse,
    OrderAction,
    RevertAction,
)
from protocol.chain import BlockOutput
from protocol.clearinghouse import SPOT_USDC_PER_MICRO
from protocol.fixed import USD_DECIMALS, ceil_div, format_fixed, parse_fixed
from protocol.genesis import AccountFunding
from protocol.markets import ConfigError, Market, Markets
from protocol.orders import LimitWire, OrderTypeWire, OrderWire, round_to_tick

# Like the liquidators (0xaaaa..., 0xbbbb...), an address no key is known for.
MARKET_MAKER = "0x" + "cc" * 20
BPS = 10_000

_GTC = OrderTypeWire(limit=LimitWire("Gtc"))

MakerAction = CancelByCloidAction | OrderAction


class MarketMakerSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The `[market_maker]` table. The funding is part of the genesis; the quoting settings are
    the node's (a replay does not need them)."""

    enabled: bool = True
    levels: int = 3
    spread_bps: int = 10  # distance of the first level from the reference, each side
    level_step_bps: int = 10  # distance between levels
    level_usdc: str = "20000"  # notional of each level
    perp_usdc: str = "100000000"
    spot: dict[str, str] = msgspec.field(
        default_factory=lambda: {
            "USDC": "100000000",
            "HYPE": "1000000",
            "UBTC": "1000",
            "PURR": "100000000",
        }
    )
    spot_prices: dict[str, str] = msgspec.field(default_factory=lambda: {"PURR": "0.2"})
    # Supplied to lending at genesis from `spot`: the pool portfolio-margin accounts borrow from.
    supply: dict[str, str] = msgspec.field(default_factory=lambda: {"USDC": "50000000"})


class Quoting(msgspec.Struct, frozen=True):
    """The quoting settings, parsed."""

    levels: int
    spread_bps: int
    level_step_bps: int
    level_micro: int  # micro-USDC per level
    spot_refs: tuple[tuple[int, int], ...]  # (spot asset, price at its scale) from the config


def parse_quoting(spec: MarketMakerSpec, markets: Markets) -> Quoting:
    """The settings of the table; ConfigError names a bad one."""
    if not 1 <= spec.levels <= 20:
        raise ConfigError(f"market_maker.levels: {spec.levels} is not in [1, 20]")
    if not 1 <= spec.spread_bps < BPS // 2:
        raise ConfigError(f"market_maker.spread_bps: {spec.spread_bps} is not in [1, 5000)")
    if spec.level_step_bps < 0 or spec.spread_bps + spec.levels * spec.level_step_bps >= BPS:
        raise ConfigError("market_maker: the levels reach past 100% of the price")
    level_micro = parse_fixed(spec.level_usdc, 6)
    if level_micro is None or level_micro <= 0:
        raise ConfigError(f"market_maker.level_usdc: {spec.level_usdc!r} is not a positive amount")
    refs: list[tuple[int, int]] = []
    for name, text in sorted(spec.spot_prices.items()):
        token, usdc = markets.token_by_name(name), markets.token_by_name("USDC")
        market = (
            None if token is None or usdc is None else markets.pair_market(token.index, usdc.index)
        )
        if market is None:
            raise ConfigError(f"market_maker.spot_prices: no {name}/USDC spot pair")
        px = parse_fixed(text, market.px_decimals)
        if px is None or px <= 0:
            raise ConfigError(f"market_maker.spot_prices.{name}: {text!r} is not a price")
        refs.append((market.asset, px))
    return Quoting(spec.levels, spec.spread_bps, spec.level_step_bps, level_micro, tuple(refs))


def maker_funding(spec: MarketMakerSpec, markets: Markets) -> AccountFunding:
    """The maker's genesis funding. It is funded whether or not it quotes: the funding is part
    of the genesis (the recorded config), quoting is a setting of the running node."""
    spot = parse_spot_amounts(spec.spot, markets, "market_maker.spot")
    supply = parse_spot_amounts(spec.supply, markets, "market_maker.supply")
    held = dict(spot)
    for token, wei in supply:
        if wei > held.get(token, 0):
            name = markets.tokens[token].name
            raise ConfigError(f"market_maker.supply.{name}: more than market_maker.spot holds")
    return AccountFunding(
        MARKET_MAKER,
        parse_amount(spec.perp_usdc, USD_DECIMALS, "market_maker.perp_usdc"),
        spot,
        supply,
    )


def quote_cloid(asset: int, is_buy: bool, level: int) -> str:
    return f"0x{asset:016x}{int(is_buy):08x}{level:08x}"


class MarketMaker:
    """Decides each block's quotes; owns nothing of the chain."""

    def __init__(self, markets: Markets, quoting: Quoting) -> None:
        self.markets = markets
        self.quoting = quoting
        self.quoted: dict[int, int] = {}  # asset -> reference price of its live quotes
        self._started = False
        self._spot_refs = dict(quoting.spot_refs)
        # Spot pairs priced from a perp: (spot asset, perp asset, spot minus perp px decimals).
        self._spot_from_perp: list[tuple[int, int, int]] = []
        usdc = markets.token_by_name("USDC")
        for pair in markets.pairs:
            spot = markets.by_coin[pair.name]
            perp = markets.perp_of(markets.tokens[pair.base])
            if usdc is None or pair.quote != usdc.index or spot.asset in self._spot_refs:
                continue
            if perp is not None:
                shift = spot.px_decimals - perp.px_decimals
                self._spot_from_perp.append((spot.asset, perp.asset, shift))

    def reset(self) -> None:
        """Forget what it quoted: the next block requotes every market."""
        self.quoted.clear()
        self._started = False

    def observe(self, block: BlockOutput) -> frozenset[int]:
        """Learn from a committed block: after a devnet revert the books went back, so its
        memory of its quotes is wrong (it forgets them); returns the markets it traded on,
        whose levels may be gone (`quote` puts them back)."""
        if any(
            isinstance(e.action, RevertAction) and isinstance(e.response, DefaultResponse)
            for e in block.actions
        ):
            self.reset()
        return frozenset(f.asset for f in block.fills if f.user == MARKET_MAKER)

    def references(self, oracle: dict[int, int]) -> dict[int, int]:
        """Every quoted market's reference price at its own scale, by asset."""
        refs = {perp.asset: oracle[perp.asset] for perp in self.markets.perps}
        for spot_asset, perp_asset, shift in self._spot_from_perp:
            px = oracle[perp_asset]
            refs[spot_asset] = px * 10**shift if shift >= 0 else px // 10**-shift
        refs.update(self._spot_refs)
        return {asset: px for asset, px in sorted(refs.items()) if px > 0}

    def quote(self, oracle: dict[int, int], traded: frozenset[int]) -> list[MakerAction]:
        """The block's actions: for each market to requote, cancel its levels and place them at
        the new reference. Empty when nothing needs requoting."""
        refs = self.references(oracle)
        first = not self._started
        self._started = True
        requote = [
            asset
            for asset, px in refs.items()
            if first or asset in traded or self.quoted.get(asset) != px
        ]
        if not requote:
            return []
        cancels: list[CancelByCloidWire] = []
        orders: list[OrderWire] = []
        for asset in requote:
            if first or asset in self.quoted:
                cancels.extend(
                    CancelByCloidWire(asset, quote_cloid(asset, is_buy, level))
                    for level in range(self.quoting.levels)
                    for is_buy in (True, False)
                )
            orders.extend(self._levels(self.markets.by_asset[asset], refs[asset]))
            self.quoted[asset] = refs[asset]
        actions: list[MakerAction] = []
        if cancels:
            actions.append(CancelByCloidAction(tuple(cancels)))
        if orders:
            actions.append(OrderAction(tuple(orders)))
        return actions

    def _levels(self, market: Market, ref: int) -> list[OrderWire]:
        q = self.quoting
        budget = q.level_micro * (SPOT_USDC_PER_MICRO if market.is_spot else 1)
        orders: list[OrderWire] = []
        for level in range(q.levels):
            distance = q.spread_bps + level * q.level_step_bps
            for is_buy in (True, False):
                if is_buy:
                    px = round_to_tick(ref * (BPS - distance) // BPS, market.px_decimals, up=False)
                else:
                    # Both sides round away from the reference: the quotes never cross it.
                    raw = ceil_div(ref * (BPS + distance), BPS)
                    px = round_to_tick(raw, market.px_decimals, up=True)
                sz = budget // px
                if sz <= 0 or px * sz < market.min_notional:
                    continue
                orders.append(
                    OrderWire(
                        market.asset,
                        is_buy,
                        format_fixed(px, market.px_decimals),
                        format_fixed(sz, market.sz_decimals),
                        False,
                        _GTC,
                        quote_cloid(market.asset, is_buy, level),
                    )
                )
        return orders
