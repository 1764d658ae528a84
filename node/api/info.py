"""POST /info: every request type the hyperliquid-python-sdk sends, answered from the chain state
and the history index in Hyperliquid's shapes.

Invariants:
- Read only: answering never changes the chain or the history, so the same state gives the
  same answer. "Now" is the time of the latest block the history indexed.
- A body that does not decode into a known request (not an object, unknown `type`, a missing
  field, a field of the wrong type, an address that is not 0x and 40 hex digits, an unknown
  candle interval, an l2Book aggregation Hyperliquid does not offer, a dex other than the
  default one) gets 422 and Hyperliquid's plain-text message; everything else gets 200.
  `answer_info` returns the status with the body: for 422 the body is that text, to be sent as
  text/plain (the SDK raises ClientError on it), for 200 a JSON-able value.
- Addresses are compared in lower case, as the chain stores them.
- Decimals are strings printed by `wire`, ids, counts and times numbers, as on Hyperliquid.

Presentation choices where Hyperliquid's answer depends on state the devnet does not have:
- Unified and portfolio-margin accounts show ONE USDC balance in spotClearinghouseState: spot
  USDC, plus supply less debt, plus the perp side's value (cash, marked positions, isolated
  margin); its hold adds the perp margin in use (initial margin of positions and orders) to
  the spot orders' holds. tokenToAvailableAfterMaintenance is total less hold. Their
  clearinghouseState counts free spot USDC as cross cash, as the margin rules do.
- entryNtl is the USDC paid for a spot balance by its fills (transfers leave it unchanged).
- Candles exist only for intervals with trades; prevDayPx falls back to the mark (perps) or
  the spot price when nothing traded in or before the last 24 hours.
- portfolio gives one point per series, now: the account value, and the closed pnl less fees
  plus funding over the period; vlm is the user's traded notional in the period.
- A portfolio-margin account is liquidated on its ratio, not on a price per position: its cross
  positions show liquidationPx null. borrowLendUserState.health is "healthy" until the
  account is liquidatable, then "marketLiquidatable" while it holds perps, else
  "backstopLiquidatable" ("atRisk" has no documented threshold and is not used).
- Spot balances with a lending position (and every balance of a portfolio-margin account)
  carry ltv, borrowed and supplied; their total counts the supply and nets the debt.
- API wallets never expire on the devnet: extraAgents shows validUntil as null.
- Vaults, referrals, staking, TWAPs and multi-sig are not on the devnet's chain: their queries
  answer the empty value of their type.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from itertools import islice
from typing import TypeVar

import msgspec

from node.api.history import (
    EPOCH_ORDINAL,
    INTERVALS,
    FillRecord,
    FundingRateRecord,
    FundingRecord,
    History,
    LedgerRecord,
    OrderRecord,
)
from node.api.shapes import (
    Json,
    book_levels,
    candle_json,
    fills_json,
    frontend_order_json,
    funding_json,
    ledger_json,
    leverage_json,
    open_order_json,
    price,
    rate,
    size,
)
from node.api.wire import average_price, decimal, quotient, usd
from protocol.book import OrderBook
from protocol.borrow_lend import collateral_of, token_price, value_of
from protocol.chain import Chain
from protocol.clearinghouse import SPOT_USDC_PER_MICRO, UNIFIED_MODES, Account, Position
from protocol.exchange import DAY_MS, LiveOrder
from protocol.fixed import SPOT_NOTIONAL_DECIMALS, USD_SCALE
from protocol.funding import impact_notional_for, impact_price
from protocol.lending import LTV_DECIMALS
from protocol.margin import (
    CrossPosition,
    IsolatedPosition,
    MarginSummary,
    initial_margin,
    isolated_margin_used,
    liquidation_price,
    maintenance_margin,
    max_leverage_at,
    summarize_account,
)
from protocol.markets import Market
from protocol.modes import abstraction_of
from protocol.orders import ERR_DESERIALIZE, FILLED, OPEN, is_valid_cloid
from protocol.portfolio import RATIO_SCALE, margin_ratio, max_borrow
from protocol.portfolio_margin import PORTFOLIO_MARGIN
from protocol.transfers import normalize_address

UNPROCESSABLE = 422
TIME_RANGE_LIMIT = 500  # entries of a time-ranged answer (fills by time: FILLS_ANSWERED)
FILLS_ANSWERED = 2_000
HISTORICAL_ORDERS = 2_000
REQUEST_ALLOWANCE = 10_000  # requests an address may send before its volume earns more
PORTFOLIO_PERIODS = (
    ("day", DAY_MS, False),
    ("week", 7 * DAY_MS, False),
    ("month", 30 * DAY_MS, False),
    ("allTime", None, False),
    ("perpDay", DAY_MS, True),
    ("perpWeek", 7 * DAY_MS, True),
    ("perpMonth", 30 * DAY_MS, True),
    ("perpAllTime", None, True),
)


class InvalidRequestError(Exception):
    """The body decoded, but a value in it is one Hyperliquid's types do not admit."""


# Requests, as the SDK sends them. Unknown keys are ignored, as Hyperliquid's server does.


class _Request(msgspec.Struct, frozen=True, tag_field="type", rename="camel"):
    pass


class _UserRequest(_Request, frozen=True):
    user: str


class _DexRequest(_Request, frozen=True):
    dex: str | None = None


class _UserDexRequest(_UserRequest, frozen=True):
    dex: str | None = None


class MetaRequest(_DexRequest, frozen=True, tag="meta"):
    pass


class SpotMetaRequest(_Request, frozen=True, tag="spotMeta"):
    pass


class MetaAndAssetCtxsRequest(_DexRequest, frozen=True, tag="metaAndAssetCtxs"):
    pass


class SpotMetaAndAssetCtxsRequest(_Request, frozen=True, tag="spotMetaAndAssetCtxs"):
    pass


class PerpDexsRequest(_Request, frozen=True, tag="perpDexs"):
    pass


class AllMidsRequest(_DexRequest, frozen=True, tag="allMids"):
    pass


class ClearinghouseStateRequest(_UserDexRequest, frozen=True, tag="clearinghouseState"):
    pass


class SpotClearinghouseStateRequest(_UserRequest, frozen=True, tag="spotClearinghouseState"):
    pass


class OpenOrdersRequest(_UserDexRequest, frozen=True, tag="openOrders"):
    pass


class FrontendOpenOrdersRequest(_UserDexRequest, frozen=True, tag="frontendOpenOrders"):
    pass


class UserFillsRequest(_UserRequest, frozen=True, tag="userFills"):
    aggregate_by_time: bool = False


class UserFillsByTimeRequest(_UserRequest, frozen=True, tag="userFillsByTime"):
    start_time: int
    end_time: int | None = None
    aggregate_by_time: bool = False


class OrderStatusRequest(_UserRequest, frozen=True, tag="orderStatus"):
    oid: int | str  # an order id, or a cloid


class HistoricalOrdersRequest(_UserRequest, frozen=True, tag="historicalOrders"):
    pass


class L2BookRequest(_Request, frozen=True, tag="l2Book"):
    coin: str
    n_sig_figs: int | None = None
    mantissa: int | None = None


class CandleRange(msgspec.Struct, frozen=True, rename="camel"):
    coin: str
    interval: str
    start_time: int
    end_time: int


class CandleSnapshotRequest(_Request, frozen=True, tag="candleSnapshot"):
    req: CandleRange


class FundingHistoryRequest(_Request, frozen=True, tag="fundingHistory"):
    coin: str
    start_time: int
    end_time: int | None = None


class UserFundingRequest(_UserRequest, frozen=True, tag="userFunding"):
    start_time: int
    end_time: int | None = None


class UserNonFundingLedgerUpdatesRequest(
    _UserRequest, frozen=True, tag="userNonFundingLedgerUpdates"
):
    start_time: int
    end_time: int | None = None


class SubAccountsRequest(_UserRequest, frozen=True, tag="subAccounts"):
    pass


class ReferralRequest(_UserRequest, frozen=True, tag="referral"):
    pass


class UserFeesRequest(_UserRequest, frozen=True, tag="userFees"):
    pass


class UserRateLimitRequest(_UserRequest, frozen=True, tag="userRateLimit"):
    pass


class PortfolioRequest(_UserRequest, frozen=True, tag="portfolio"):
    pass


class UserRoleRequest(_UserRequest, frozen=True, tag="userRole"):
    pass


class ExtraAgentsRequest(_UserRequest, frozen=True, tag="extraAgents"):
    pass


class UserAbstractionRequest(_UserRequest, frozen=True, tag="userAbstraction"):
    pass


class BorrowLendReserveStateRequest(_Request, frozen=True, tag="borrowLendReserveState"):
    token: int


class AllBorrowLendReserveStatesRequest(_Request, frozen=True, tag="allBorrowLendReserveStates"):
    pass


class BorrowLendUserStateRequest(_UserRequest, frozen=True, tag="borrowLendUserState"):
    pass


# The SDK's other queries: the devnet has none of their state.


class UserBorrowLendInterestRequest(_UserRequest, frozen=True, tag="userBorrowLendInterest"):
    start_time: int | None = None
    end_time: int | None = None


class UserTwapSliceFillsRequest(_UserRequest, frozen=True, tag="userTwapSliceFills"):
    pass


class UserVaultEquitiesRequest(_UserRequest, frozen=True, tag="userVaultEquities"):
    pass


class DelegatorSummaryRequest(_UserRequest, frozen=True, tag="delegatorSummary"):
    pass


class DelegationsRequest(_UserRequest, frozen=True, tag="delegations"):
    pass


class DelegatorRewardsRequest(_UserRequest, frozen=True, tag="delegatorRewards"):
    pass


class DelegatorHistoryRequest(_UserRequest, frozen=True, tag="delegatorHistory"):
    pass


class UserToMultiSigSignersRequest(_UserRequest, frozen=True, tag="userToMultiSigSigners"):
    pass


class UserDexAbstractionRequest(_UserRequest, frozen=True, tag="userDexAbstraction"):
    pass


class SpotDeployStateRequest(_UserRequest, frozen=True, tag="spotDeployState"):
    pass


class PerpDeployAuctionStatusRequest(_Request, frozen=True, tag="perpDeployAuctionStatus"):
    pass


InfoRequest = (
    MetaRequest
    | SpotMetaRequest
    | MetaAndAssetCtxsRequest
    | SpotMetaAndAssetCtxsRequest
    | PerpDexsRequest
    | AllMidsRequest
    | ClearinghouseStateRequest
    | SpotClearinghouseStateRequest
    | OpenOrdersRequest
    | FrontendOpenOrdersRequest
    | UserFillsRequest
    | UserFillsByTimeRequest
    | OrderStatusRequest
    | HistoricalOrdersRequest
    | L2BookRequest
    | CandleSnapshotRequest
    | FundingHistoryRequest
    | UserFundingRequest
    | UserNonFundingLedgerUpdatesRequest
    | SubAccountsRequest
    | ReferralRequest
    | UserFeesRequest
    | UserRateLimitRequest
    | PortfolioRequest
    | UserRoleRequest
    | ExtraAgentsRequest
    | UserAbstractionRequest
    | BorrowLendReserveStateRequest
    | AllBorrowLendReserveStatesRequest
    | BorrowLendUserStateRequest
    | UserBorrowLendInterestRequest
    | UserTwapSliceFillsRequest
    | UserVaultEquitiesRequest
    | DelegatorSummaryRequest
    | DelegationsRequest
    | DelegatorRewardsRequest
    | DelegatorHistoryRequest
    | UserToMultiSigSignersRequest
    | UserDexAbstractionRequest
    | SpotDeployStateRequest
    | PerpDeployAuctionStatusRequest
)


def answer_info(request: object, chain: Chain, history: History) -> tuple[int, Json]:
    """(HTTP status, body) for a decoded /info body. A 422 body is plain text."""
    try:
        decoded = msgspec.convert(request, InfoRequest)
        return 200, _answer(decoded, chain, history)
    except (msgspec.ValidationError, InvalidRequestError):
        return UNPROCESSABLE, ERR_DESERIALIZE


def _answer(request: InfoRequest, chain: Chain, history: History) -> Json:
    if isinstance(request, _DexRequest | _UserDexRequest) and request.dex:
        raise InvalidRequestError(request.dex)  # the devnet has only the default perp dex
    if isinstance(request, _UserRequest):
        user = normalize_address(request.user)
        if user is None:
            raise InvalidRequestError(request.user)
        return _USER_ANSWERS[type(request)](request, user, chain, history)
    return _ANSWERS[type(request)](request, chain, history)


def _in_range(time: int, start: int, end: int | None) -> bool:
    return time >= start and (end is None or time <= end)


# What the time-ranged queries (fundingHistory, userFunding, userNonFundingLedgerUpdates) read.
_Record = TypeVar("_Record", FundingRateRecord, FundingRecord, LedgerRecord)


def _time_ranged(
    records: list[_Record], time_of: Callable[[_Record], int], start: int, end: int | None
) -> list[_Record]:
    """The records timed in [start, end], in order, at most TIME_RANGE_LIMIT of them: each
    is one entry of the answer, so only those are shaped."""
    in_range = (record for record in records if _in_range(time_of(record), start, end))
    return list(islice(in_range, TIME_RANGE_LIMIT))


def _rate_time(record: FundingRateRecord) -> int:
    return record.time


def _update_time(record: FundingRecord | LedgerRecord) -> int:
    return record.update.time


# Market metadata.


def _meta(request: MetaRequest, chain: Chain, history: History) -> Json:
    return meta_json(chain)


def meta_json(chain: Chain) -> dict[str, Json]:
    markets = chain.markets
    universe: list[Json] = []
    for perp in markets.perps:
        entry: dict[str, Json] = {
            "szDecimals": perp.sz_decimals,
            "name": perp.name,
            "maxLeverage": perp.max_leverage,
            "marginTableId": perp.margin_table_id,
        }
        if perp.only_isolated:
            entry["onlyIsolated"] = True
        universe.append(entry)
    tables: list[Json] = [
        [
            table.id,
            {
                "description": table.description,
                "marginTiers": [
                    {"lowerBound": usd(tier.lower_bound), "maxLeverage": tier.max_leverage}
                    for tier in table.tiers
                ],
            },
        ]
        for table in sorted(markets.margin_tables, key=lambda table: table.id)
    ]
    return {
        "universe": universe,
        "marginTables": tables,
        "collateralToken": chain.clearinghouse.usdc_token,
    }


def _spot_meta(request: SpotMetaRequest, chain: Chain, history: History) -> Json:
    return spot_meta_json(chain)


def spot_meta_json(chain: Chain) -> dict[str, Json]:
    markets = chain.markets
    universe: list[Json] = [
        {
            "tokens": [pair.base, pair.quote],
            "name": pair.name,
            "index": pair.index,
            "isCanonical": pair.is_canonical,
        }
        for pair in markets.pairs
    ]
    tokens: list[Json] = [
        {
            "name": token.name,
            "szDecimals": token.sz_decimals,
            "weiDecimals": token.wei_decimals,
            "index": token.index,
            "tokenId": token.token_id,
            "isCanonical": token.is_canonical,
            "evmContract": None,
            "fullName": token.full_name,
        }
        for token in markets.tokens
    ]
    return {"universe": universe, "tokens": tokens}


def _meta_and_asset_ctxs(request: MetaAndAssetCtxsRequest, chain: Chain, history: History) -> Json:
    contexts: list[Json] = [
        _perp_context(chain, history, perp.asset) for perp in chain.markets.perps
    ]
    return [meta_json(chain), contexts]


def _perp_context(chain: Chain, history: History, asset: int) -> dict[str, Json]:
    clearinghouse = chain.clearinghouse
    market = chain.markets.by_asset[asset]
    book = chain.exchange.books[asset]
    mark = clearinghouse.mark(asset)
    pending = chain.funding.pending_rate(asset)
    stats = history.day_stats(market.coin)
    open_interest = sum(max(account.szi(asset), 0) for account in clearinghouse.accounts.values())
    notional = impact_notional_for(market.coin)
    impact_bid = impact_price(book.depth(is_bid=True), notional)
    impact_ask = impact_price(book.depth(is_bid=False), notional)
    impacts: Json = None
    if impact_bid is not None and impact_ask is not None:
        impacts = [price(impact_bid, market), price(impact_ask, market)]
    oracle = chain.oracle.price(asset) if chain.prices_driven else mark
    return {
        "funding": rate(pending.rate),
        "openInterest": size(open_interest, market),
        "prevDayPx": price(mark if stats.prev_day_px is None else stats.prev_day_px, market),
        "dayNtlVlm": usd(stats.notional),
        "premium": rate(pending.premium) if pending.n_samples else None,
        "oraclePx": price(oracle, market),
        "markPx": price(mark, market),
        "midPx": _mid(book, market),
        "impactPxs": impacts,
        "dayBaseVlm": size(stats.volume, market),
    }


def _spot_meta_and_asset_ctxs(
    request: SpotMetaAndAssetCtxsRequest, chain: Chain, history: History
) -> Json:
    contexts: list[Json] = []
    for pair in chain.markets.pairs:
        market = chain.markets.by_coin[pair.name]
        base = chain.markets.tokens[pair.base]
        stats = history.day_stats(pair.name)
        mark = _spot_price(chain, market)
        supply = decimal(_token_supply(chain, pair.base), base.wei_decimals)
        prev = mark if stats.prev_day_px is None else stats.prev_day_px
        contexts.append(
            {
                "prevDayPx": price(prev or 0, market),
                "dayNtlVlm": decimal(stats.notional, SPOT_NOTIONAL_DECIMALS),
                "markPx": price(mark or 0, market),
                "midPx": _mid(chain.exchange.books[market.asset], market),
                "circulatingSupply": supply,
                "coin": pair.name,
                "totalSupply": supply,
                "dayBaseVlm": size(stats.volume, market),
            }
        )
    return [spot_meta_json(chain), contexts]


def _token_supply(chain: Chain, token: int) -> int:
    """Every wei of the token on the chain: balances, reserve cash and collected fees."""
    clearinghouse = chain.clearinghouse
    held = sum(account.spot_total.get(token, 0) for account in clearinghouse.accounts.values())
    reserve = chain.lending.reserves.get(token)
    return held + (0 if reserve is None else reserve.cash) + clearinghouse.spot_fees.get(token, 0)


def _perp_dexs(request: PerpDexsRequest, chain: Chain, history: History) -> Json:
    return [None]  # the default dex only, which Hyperliquid lists as null


# Prices and books.


def _mid(book: OrderBook, market: Market) -> str | None:
    """The exact midpoint of a two-sided book (one decimal finer than the tick allows)."""
    bid, ask = book.best_bid(), book.best_ask()
    if bid is None or ask is None:
        return None
    return decimal((bid + ask) * 5, market.px_decimals + 1)


def _spot_price(chain: Chain, market: Market) -> int | None:
    """A spot pair's price at its scale: the last trade, else the base token's oracle price
    (from the perp of the same name), else None."""
    traded = chain.clearinghouse.last_trade.get(market.asset)
    if traded:
        return traded
    token = chain.markets.tokens[market.base_token]
    micro = token_price(chain.clearinghouse, token)
    return micro * 10**market.px_decimals // USD_SCALE or None


def _all_mids(request: AllMidsRequest, chain: Chain, history: History) -> Json:
    """Every coin with a price: the book's mid, else the last trade, else the mark (perps) or
    the oracle price of the base token (spot)."""
    clearinghouse = chain.clearinghouse
    mids: dict[str, Json] = {}
    for asset in sorted(chain.markets.by_asset):
        market = chain.markets.by_asset[asset]
        mid = _mid(chain.exchange.books[asset], market)
        if mid is None:
            px = _spot_price(chain, market) if market.is_spot else clearinghouse.mark(asset)
            if not px:
                continue
            mid = price(px, market)
        mids[market.coin] = mid
    return mids


def _l2_book(request: L2BookRequest, chain: Chain, history: History) -> Json:
    sig_figs, mantissa = request.n_sig_figs, request.mantissa
    if sig_figs not in (None, 2, 3, 4, 5) or (
        mantissa is not None and (sig_figs != 5 or mantissa not in (1, 2, 5))
    ):
        raise InvalidRequestError(request)
    market = chain.markets.by_coin.get(request.coin)
    if market is None:
        return None
    book = chain.exchange.books[market.asset]
    return {
        "coin": market.coin,
        "time": history.time,
        "levels": [
            book_levels(book.depth(is_bid=True), True, market, sig_figs, mantissa),
            book_levels(book.depth(is_bid=False), False, market, sig_figs, mantissa),
        ],
    }


def _candle_snapshot(request: CandleSnapshotRequest, chain: Chain, history: History) -> Json:
    req = request.req
    if req.interval not in INTERVALS:
        raise InvalidRequestError(req.interval)
    market = chain.markets.by_coin.get(req.coin)
    if market is None:
        return []
    candles = history.candles(market.coin, req.interval, req.start_time, req.end_time)
    return [candle_json(candle, market) for candle in candles]


def _funding_history(request: FundingHistoryRequest, chain: Chain, history: History) -> Json:
    records = _time_ranged(
        history.funding_rates(request.coin), _rate_time, request.start_time, request.end_time
    )
    return [
        {
            "coin": record.coin,
            "fundingRate": rate(record.rate),
            "premium": rate(record.premium),
            "time": record.time,
        }
        for record in records
    ]


# Perp and spot account state.


def _clearinghouse_state(
    request: ClearinghouseStateRequest, user: str, chain: Chain, history: History
) -> Json:
    return clearinghouse_state_json(chain, user, history.time)


def clearinghouse_state_json(chain: Chain, user: str, time: int) -> dict[str, Json]:
    clearinghouse = chain.clearinghouse
    account = clearinghouse.accounts.get(user)
    if account is None:
        account = Account(user)
    cross: list[CrossPosition] = []
    isolated: list[IsolatedPosition] = []
    held = sorted((a, p) for a, p in account.positions.items() if p.szi)
    for asset, position in held:
        leverage = clearinghouse.leverage_of(account, asset)
        mark = clearinghouse.mark(asset)
        if leverage.is_cross:
            table = clearinghouse.tables[asset]
            cross.append(CrossPosition(position.szi, mark, leverage.value, table))
        else:
            isolated.append(IsolatedPosition(position.szi, mark, position.isolated_raw))
    summary = summarize_account(account.usd + clearinghouse.unified_usdc(account), cross, isolated)
    # A portfolio-margin account is liquidated on its portfolio ratio, not on a price per
    # position, so its cross positions show no liquidation price.
    cross_margin: int | None = None
    if account.abstraction != PORTFOLIO_MARGIN:
        cross_margin = (
            summary.cross_margin_summary.account_value - summary.cross_maintenance_margin_used
        )
    positions: list[Json] = [
        _position_json(chain, account, asset, position, cross_margin) for asset, position in held
    ]
    return {
        "marginSummary": _summary_json(summary.margin_summary),
        "crossMarginSummary": _summary_json(summary.cross_margin_summary),
        "crossMaintenanceMarginUsed": usd(summary.cross_maintenance_margin_used),
        "withdrawable": usd(clearinghouse.withdrawable(account)),
        "assetPositions": positions,
        "time": time,
    }


def _summary_json(summary: MarginSummary) -> dict[str, Json]:
    return {
        "accountValue": usd(summary.account_value),
        "totalNtlPos": usd(summary.total_ntl_pos),
        "totalRawUsd": usd(summary.total_raw_usd),
        "totalMarginUsed": usd(summary.total_margin_used),
    }


def _position_json(
    chain: Chain, account: Account, asset: int, position: Position, cross_margin: int | None
) -> dict[str, Json]:
    """One assetPositions entry. `cross_margin` is the cross account's value less its
    maintenance margin (None when cross positions have no liquidation price)."""
    clearinghouse = chain.clearinghouse
    market = chain.markets.by_asset[asset]
    leverage = clearinghouse.leverage_of(account, asset)
    table = clearinghouse.tables[asset]
    mark = clearinghouse.mark(asset)
    szi = position.szi
    notional = abs(szi) * mark
    entry = position.entry_ntl
    pnl = szi * mark - entry if szi > 0 else entry - notional
    margin_used = initial_margin(notional, leverage.value)
    available = cross_margin
    if not leverage.is_cross:
        margin_used = isolated_margin_used(position.isolated_raw, szi, mark)
        available = margin_used - maintenance_margin(table, notional)
    liquidation = None
    if available is not None:
        liquidation = liquidation_price(mark, szi, available, max_leverage_at(table, notional))
    return {
        "type": "oneWay",
        "position": {
            "coin": market.coin,
            "szi": size(szi, market),
            "leverage": leverage_json(leverage, position.isolated_raw),
            "entryPx": average_price(entry, abs(szi), market),
            "positionValue": usd(notional),
            "unrealizedPnl": usd(pnl),
            # Return on the margin the position was opened with: pnl / (entry / leverage).
            "returnOnEquity": quotient(pnl * leverage.value, entry) if entry else "0.0",
            "liquidationPx": None if liquidation is None else price(liquidation, market),
            "marginUsed": usd(margin_used),
            "maxLeverage": chain.markets.perps[asset].max_leverage,
            "cumFunding": {
                "allTime": usd(position.funding_all_time),
                "sinceOpen": usd(position.funding_since_open),
                "sinceChange": usd(position.funding_since_change),
            },
        },
    }


def _spot_clearinghouse_state(
    request: SpotClearinghouseStateRequest, user: str, chain: Chain, history: History
) -> Json:
    return spot_state_json(chain, history, user)


def spot_state_json(chain: Chain, history: History, user: str) -> dict[str, Json]:
    """Spot balances; for unified and portfolio-margin accounts the one balance of each token
    across spot, lending and perps (see the module docstring)."""
    clearinghouse = chain.clearinghouse
    lending = chain.lending
    markets = chain.markets
    usdc = clearinghouse.usdc_token
    account = clearinghouse.accounts.get(user)
    if account is None:
        return {"balances": []}
    unified = account.abstraction in UNIFIED_MODES
    portfolio = account.abstraction == PORTFOLIO_MARGIN
    touched = set(account.spot_total) | {
        token
        for token in lending.reserves
        if lending.user_supply(user, token) or lending.user_borrow(user, token)
    }
    if unified:
        touched.add(usdc)
    balances: list[Json] = []
    available: list[Json] = []
    for token in sorted(touched):
        supplied = lending.user_supply(user, token)
        borrowed = lending.user_borrow(user, token)
        total = account.spot_total.get(token, 0) + supplied - borrowed
        hold = account.spot_hold.get(token, 0)
        if unified and token == usdc:
            total += clearinghouse.perp_value(account) * SPOT_USDC_PER_MICRO
            hold += _perp_margin(chain, account) * SPOT_USDC_PER_MICRO
        wei = markets.tokens[token].wei_decimals
        entry: dict[str, Json] = {
            "coin": markets.tokens[token].name,
            "token": token,
            "total": decimal(total, wei),
            "hold": decimal(hold, wei),
            "entryNtl": decimal(history.spot_entry_notional(user, token), SPOT_NOTIONAL_DECIMALS),
        }
        if portfolio or supplied or borrowed:
            reserve = lending.reserves.get(token)
            ltv = 0 if reserve is None else reserve.params.ltv
            entry["ltv"] = decimal(ltv, LTV_DECIMALS)
            entry["borrowed"] = decimal(borrowed, wei)
            entry["supplied"] = decimal(supplied, wei)
        balances.append(entry)
        if portfolio or (unified and token == usdc):
            available.append([token, decimal(max(total - hold, 0), wei)])
    if not unified:
        return {"balances": balances}
    if not portfolio:
        return {"balances": balances, "tokenToAvailableAfterMaintenance": available}
    result: dict[str, Json] = {"portfolioMarginEnabled": True, "balances": balances}
    requirement, value = chain.portfolio.margin_state(account)
    ratio = margin_ratio(requirement, value)
    if ratio is not None:
        result["portfolioMarginRatio"] = quotient(ratio, RATIO_SCALE)
    result["tokenToPortfolioBorrowRatio"] = [
        [token, quotient(lending.user_borrow(user, token), reserve.params.user_borrow_cap)]
        for token, reserve in lending.reserves.items()
        if reserve.params.borrowable and reserve.params.user_borrow_cap
    ]
    result["tokenToAvailableAfterMaintenance"] = available
    return result


def _perp_margin(chain: Chain, account: Account) -> int:
    """Perp margin in use: initial margin of cross positions and resting orders, and the
    isolated positions' margin, micro-USDC."""
    clearinghouse = chain.clearinghouse
    isolated = sum(
        clearinghouse.isolated_value(asset, position)
        for asset, position in account.positions.items()
        if position.szi and not clearinghouse.leverage_of(account, asset).is_cross
    )
    return clearinghouse.cross_margin_used(account) + account.reserved + isolated


def _sub_accounts(request: SubAccountsRequest, user: str, chain: Chain, history: History) -> Json:
    # Hyperliquid answers null when there are none; the SDK's examples iterate, so [].
    return [
        {
            "name": sub.name,
            "subAccountUser": sub.address,
            "master": sub.master,
            "clearinghouseState": clearinghouse_state_json(chain, sub.address, history.time),
            "spotState": spot_state_json(chain, history, sub.address),
        }
        for sub in chain.clearinghouse.sub_accounts_of(user)
    ]


# Orders.


def _children(chain: Chain, oid: int) -> list[Json]:
    """The TP/SL orders waiting for `oid` to fill (normalTpsl)."""
    waiting = [chain.exchange.triggers[child] for child in chain.exchange.children.get(oid, ())]
    return [frontend_order_json(child, child.sz, None, [], chain.markets) for child in waiting]


def _live_frontend_order(
    chain: Chain, order: LiveOrder, record: OrderRecord | None
) -> dict[str, Json]:
    """A live order as it rests now; its history `record` keeps the TP/SL it began as."""
    trigger = None if record is None else record.trigger
    children = _children(chain, order.oid)
    return frontend_order_json(order, order.sz, trigger, children, chain.markets)


def _order_entry(
    chain: Chain, history: History, user: str, record: OrderRecord | None, oid: int
) -> Json:
    """The orderStatus / historicalOrders entry of an order: live orders as they rest now."""
    live = chain.exchange.live_order(user, oid)
    if live is not None:
        time = live.timestamp if record is None else record.time
        order = _live_frontend_order(chain, live, record)
        return {"order": order, "status": OPEN, "statusTimestamp": time}
    assert record is not None
    remaining = 0 if record.status == FILLED else record.order.sz
    order = frontend_order_json(record.order, remaining, record.trigger, [], chain.markets)
    return {"order": order, "status": record.status, "statusTimestamp": record.time}


def _order_status(request: OrderStatusRequest, user: str, chain: Chain, history: History) -> Json:
    oid: int | None = None
    if isinstance(request.oid, int):
        oid = request.oid
    elif not is_valid_cloid(request.oid):
        raise InvalidRequestError(request.oid)
    else:
        oid = chain.exchange.cloids.get((user, request.oid))
        ended = history.order_by_cloid(user, request.oid)
        if oid is None and ended is not None:
            oid = ended.order.oid
    record = None if oid is None else history.order(user, oid)
    if oid is None or (record is None and chain.exchange.live_order(user, oid) is None):
        return {"status": "unknownOid"}
    return {"status": "order", "order": _order_entry(chain, history, user, record, oid)}


def _historical_orders(
    request: HistoricalOrdersRequest, user: str, chain: Chain, history: History
) -> Json:
    return [
        _order_entry(chain, history, user, record, record.order.oid)
        for record in history.orders(user)[:HISTORICAL_ORDERS]
    ]


def _open_orders(request: OpenOrdersRequest, user: str, chain: Chain, history: History) -> Json:
    orders = reversed(chain.exchange.open_orders(user))  # newest first, as Hyperliquid lists
    return [open_order_json(order, chain.markets) for order in orders]


def _frontend_open_orders(
    request: FrontendOpenOrdersRequest, user: str, chain: Chain, history: History
) -> Json:
    return [
        _live_frontend_order(chain, order, history.order(user, order.oid))
        for order in reversed(chain.exchange.open_orders(user))
    ]


# Fills, funding, ledger.


def _user_fills(request: UserFillsRequest, user: str, chain: Chain, history: History) -> Json:
    newest_first = list(reversed(history.fills(user)))
    return _fills_answered(newest_first, chain, request.aggregate_by_time)


def _user_fills_by_time(
    request: UserFillsByTimeRequest, user: str, chain: Chain, history: History
) -> Json:
    # Oldest first from startTime, so a client pages on with the last fill's time.
    records = [
        record
        for record in history.fills(user)
        if _in_range(record.fill.time, request.start_time, request.end_time)
    ]
    return _fills_answered(records, chain, request.aggregate_by_time)


def _fills_answered(records: list[FillRecord], chain: Chain, aggregate: bool) -> Json:
    """The first FILLS_ANSWERED fills of `records`. Unaggregated, each record is one entry,
    so only those are shaped; aggregated, an entry may stand for several records, so the cut
    comes after aggregating."""
    if aggregate:
        return fills_json(records, chain.markets, True)[:FILLS_ANSWERED]
    return fills_json(records[:FILLS_ANSWERED], chain.markets, False)


def _user_funding(request: UserFundingRequest, user: str, chain: Chain, history: History) -> Json:
    records = _time_ranged(
        history.funding(user), _update_time, request.start_time, request.end_time
    )
    return [funding_json(record, chain.markets) for record in records]


def _user_non_funding_ledger_updates(
    request: UserNonFundingLedgerUpdatesRequest, user: str, chain: Chain, history: History
) -> Json:
    records = _time_ranged(history.ledger(user), _update_time, request.start_time, request.end_time)
    return [ledger_json(record, chain.markets) for record in records]


# Account information.


def _user_fees(request: UserFeesRequest, user: str, chain: Chain, history: History) -> Json:
    fees = chain.markets.fees
    base = {
        "cross": fee_rate(fees.perp_taker),
        "add": fee_rate(fees.perp_maker),
        "spotCross": fee_rate(fees.spot_taker),
        "spotAdd": fee_rate(fees.spot_maker),
    }
    return {
        "dailyUserVlm": [
            {
                "date": date.fromordinal(EPOCH_ORDINAL + day.day).isoformat(),
                "userCross": usd(day.cross),
                "userAdd": usd(day.add),
                "exchange": usd(day.exchange),
            }
            for day in history.daily_volumes(user)
        ],
        "feeSchedule": {
            **base,
            "tiers": {"vip": [], "mm": []},
            "referralDiscount": "0.0",
            "stakingDiscountTiers": [],
        },
        # The devnet has one fee tier: every user pays the base rates.
        "userCrossRate": base["cross"],
        "userAddRate": base["add"],
        "userSpotCrossRate": base["spotCross"],
        "userSpotAddRate": base["spotAdd"],
        "activeReferralDiscount": "0.0",
        "trial": None,
        "feeTrialReward": "0.0",
        "nextTrialAvailableTimestamp": None,
        "stakingLink": None,
        "activeStakingDiscount": {"bpsOfMaxSupply": "0.0", "discount": "0.0"},
    }


def fee_rate(millionths: int) -> str:
    return decimal(millionths, 6)


def _user_rate_limit(
    request: UserRateLimitRequest, user: str, chain: Chain, history: History
) -> Json:
    volume = history.totals(user)[0]
    return {
        "cumVlm": usd(volume),
        "nRequestsUsed": history.request_count(user),
        "nRequestsCap": REQUEST_ALLOWANCE + volume // USD_SCALE,  # 1 per USDC traded
        "nRequestsSurplus": 0,
    }


def _referral(request: ReferralRequest, user: str, chain: Chain, history: History) -> Json:
    return {
        "referredBy": None,
        "cumVlm": usd(history.totals(user)[0]),
        "unclaimedRewards": "0.0",
        "claimedRewards": "0.0",
        "builderRewards": "0.0",
        "tokenToState": [],
        "referrerState": {"stage": "needToCreateCode"},
        "rewardHistory": [],
    }


def _portfolio(request: PortfolioRequest, user: str, chain: Chain, history: History) -> Json:
    now = history.time
    account = chain.clearinghouse.accounts.get(user) or Account(user)
    perp_value = chain.clearinghouse.perp_value(account)
    total_value = perp_value + _spot_value(chain, account)
    all_time = history.totals(user)
    result: list[Json] = []
    for name, length, perp_only in PORTFOLIO_PERIODS:
        volume, perp_volume, pnl = (
            all_time if length is None else history.window(user, now - length)
        )
        value = perp_value if perp_only else total_value
        result.append(
            [
                name,
                {
                    "accountValueHistory": [[now, usd(value)]],
                    "pnlHistory": [[now, usd(pnl)]],
                    "vlm": usd(perp_volume if perp_only else volume),
                },
            ]
        )
    return result


def _spot_value(chain: Chain, account: Account) -> int:
    """Spot balances and lending positions at the borrow oracle prices, micro-USDC."""
    clearinghouse = chain.clearinghouse
    lending = chain.lending
    total = 0
    for token in chain.markets.tokens:
        wei = (
            account.spot_total.get(token.index, 0)
            + lending.user_supply(account.owner, token.index)
            - lending.user_borrow(account.owner, token.index)
        )
        if wei:
            total += value_of(clearinghouse, token, wei, up=False)
    return total


def _user_role(request: UserRoleRequest, user: str, chain: Chain, history: History) -> Json:
    master = chain.clearinghouse.master_of(user)
    if master is not None:
        return {"role": "subAccount", "data": {"master": master}}
    principal = chain.agents.master_of(user)
    if principal is not None:
        return {"role": "agent", "data": {"user": principal}}
    return {"role": "user" if user in chain.clearinghouse.accounts else "missing"}


def _extra_agents(request: ExtraAgentsRequest, user: str, chain: Chain, history: History) -> Json:
    """The user's API wallets, the unnamed one with the name "". The devnet's agents do not
    expire: validUntil is null."""
    return [
        {"name": agent.name, "address": agent.address, "validUntil": None}
        for agent in chain.agents.agents_of(user)
    ]


def _user_abstraction(
    request: UserAbstractionRequest, user: str, chain: Chain, history: History
) -> Json:
    return abstraction_of(chain.clearinghouse, user)


# Borrow/lend.


def _reserve_json(chain: Chain, token_index: int) -> dict[str, Json] | None:
    state = chain.lending.reserve_state(token_index)
    if state is None:
        return None
    token = chain.markets.tokens[token_index]
    wei = token.wei_decimals
    return {
        "borrowYearlyRate": rate(state.borrow_yearly_rate),
        "supplyYearlyRate": rate(state.supply_yearly_rate),
        "balance": decimal(state.balance, wei),
        "utilization": rate(state.utilization),
        "oraclePx": usd(token_price(chain.clearinghouse, token)),
        "ltv": decimal(state.ltv, LTV_DECIMALS),
        "totalSupplied": decimal(state.total_supplied, wei),
        "totalBorrowed": decimal(state.total_borrowed, wei),
    }


def _borrow_lend_reserve_state(
    request: BorrowLendReserveStateRequest, chain: Chain, history: History
) -> Json:
    return _reserve_json(chain, request.token)


def _all_borrow_lend_reserve_states(
    request: AllBorrowLendReserveStatesRequest, chain: Chain, history: History
) -> Json:
    return [[token, _reserve_json(chain, token)] for token in chain.lending.reserves]


def _borrow_lend_user_state(
    request: BorrowLendUserStateRequest, user: str, chain: Chain, history: History
) -> Json:
    markets = chain.markets
    states: list[Json] = []
    for token, state in chain.lending.user_state(user).token_to_state:
        wei = markets.tokens[token].wei_decimals
        states.append(
            [
                token,
                {
                    "borrow": {
                        "basis": decimal(state.borrow.basis, wei),
                        "value": decimal(state.borrow.value, wei),
                    },
                    "supply": {
                        "basis": decimal(state.supply.basis, wei),
                        "value": decimal(state.supply.value, wei),
                    },
                },
            ]
        )
    health, factor = _health(chain, user)
    return {"tokenToState": states, "health": health, "healthFactor": factor}


def _health(chain: Chain, user: str) -> tuple[str, Json]:
    """("healthy" or a liquidatable state, the health factor): collateral x price x LTV over
    the USDC debt, null without a debt. A portfolio-margin account past its threshold is
    "marketLiquidatable" while it holds perps (they go through the book first), else
    "backstopLiquidatable"."""
    account = chain.clearinghouse.accounts.get(user)
    if account is None or account.abstraction != PORTFOLIO_MARGIN:
        return "healthy", None
    debt = chain.portfolio.debt(account)
    factor: Json = None
    if debt:
        capacity = max_borrow(collateral_of(chain.clearinghouse, chain.lending, account))
        factor = quotient(capacity, debt)
    if not chain.portfolio.liquidatable(account):
        return "healthy", factor
    if any(position.szi for position in account.positions.values()):
        return "marketLiquidatable", factor
    return "backstopLiquidatable", factor


# Queries of state the devnet does not have: the empty value of their type.


def _empty_list(request: _UserRequest, user: str, chain: Chain, history: History) -> Json:
    return []


def _delegator_summary(
    request: DelegatorSummaryRequest, user: str, chain: Chain, history: History
) -> Json:
    return {
        "delegated": "0.0",
        "undelegated": "0.0",
        "totalPendingWithdrawal": "0.0",
        "nPendingWithdrawals": 0,
    }


def _multi_sig_signers(
    request: UserToMultiSigSignersRequest, user: str, chain: Chain, history: History
) -> Json:
    return None


def _user_dex_abstraction(
    request: UserDexAbstractionRequest, user: str, chain: Chain, history: History
) -> Json:
    return False


def _no_auction(history: History) -> dict[str, Json]:
    """A deploy auction that is not running."""
    return {
        "startTimeSeconds": history.time // 1000,
        "durationSeconds": 0,
        "startGas": "0.0",
        "currentGas": None,
        "endGas": None,
    }


def _spot_deploy_state(
    request: SpotDeployStateRequest, user: str, chain: Chain, history: History
) -> Json:
    return {"states": [], "gasAuction": _no_auction(history)}


def _perp_deploy_auction_status(
    request: PerpDeployAuctionStatusRequest, chain: Chain, history: History
) -> Json:
    return _no_auction(history)


_ANSWERS: dict[type, Callable[..., Json]] = {
    MetaRequest: _meta,
    SpotMetaRequest: _spot_meta,
    MetaAndAssetCtxsRequest: _meta_and_asset_ctxs,
    SpotMetaAndAssetCtxsRequest: _spot_meta_and_asset_ctxs,
    PerpDexsRequest: _perp_dexs,
    AllMidsRequest: _all_mids,
    L2BookRequest: _l2_book,
    CandleSnapshotRequest: _candle_snapshot,
    FundingHistoryRequest: _funding_history,
    BorrowLendReserveStateRequest: _borrow_lend_reserve_state,
    AllBorrowLendReserveStatesRequest: _all_borrow_lend_reserve_states,
    PerpDeployAuctionStatusRequest: _perp_deploy_auction_status,
}
_USER_ANSWERS: dict[type, Callable[..., Json]] = {
    ClearinghouseStateRequest: _clearinghouse_state,
    SpotClearinghouseStateRequest: _spot_clearinghouse_state,
    OpenOrdersRequest: _open_orders,
    FrontendOpenOrdersRequest: _frontend_open_orders,
    UserFillsRequest: _user_fills,
    UserFillsByTimeRequest: _user_fills_by_time,
    OrderStatusRequest: _order_status,
    HistoricalOrdersRequest: _historical_orders,
    UserFundingRequest: _user_funding,
    UserNonFundingLedgerUpdatesRequest: _user_non_funding_ledger_updates,
    SubAccountsRequest: _sub_accounts,
    ReferralRequest: _referral,
    UserFeesRequest: _user_fees,
    UserRateLimitRequest: _user_rate_limit,
    PortfolioRequest: _portfolio,
    UserRoleRequest: _user_role,
    ExtraAgentsRequest: _extra_agents,
    UserAbstractionRequest: _user_abstraction,
    BorrowLendUserStateRequest: _borrow_lend_user_state,
    UserBorrowLendInterestRequest: _empty_list,
    UserTwapSliceFillsRequest: _empty_list,
    UserVaultEquitiesRequest: _empty_list,
    DelegationsRequest: _empty_list,
    DelegatorRewardsRequest: _empty_list,
    DelegatorHistoryRequest: _empty_list,
    DelegatorSummaryRequest: _delegator_summary,
    UserToMultiSigSignersRequest: _multi_sig_signers,
    UserDexAbstractionRequest: _user_dex_abstraction,
    SpotDeployStateRequest: _spot_deploy_state,
}
