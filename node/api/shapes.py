"""Hyperliquid's JSON shapes for the records the chain and the history keep: fills, orders as
the frontend sees them, a position's leverage, ledger and funding updates, candles and book
levels. /info builds its answers from these, and the WebSocket feeds can send the same
objects.

Invariants:
- Pure presentation: each function reads its arguments and returns new JSON-able values;
  nothing here decides a business rule.
- Keys, key order and value types are Hyperliquid's: decimals are strings (`wire.decimal`),
  ids, counts and times are numbers, optional keys are left out rather than sent as null
  unless Hyperliquid sends null (an order's `cloid`, a trigger-less order's `tif`).
- A price carries its market's price decimals, a size its size decimals, a USDC amount 6
  decimals, a token amount the token's wei decimals.
"""

from __future__ import annotations

from typing import TypeAlias

from node.api.history import Candle, FillRecord, FundingRecord, LedgerRecord
from node.api.wire import average_price, decimal, usd
from protocol.book import RestingOrder
from protocol.clearinghouse import Leverage
from protocol.exchange import LiveOrder, TriggerOrder
from protocol.fixed import RATE_DECIMALS, SPOT_NOTIONAL_DECIMALS
from protocol.ledger import (
    AccountClassTransfer,
    BorrowLend,
    Deposit,
    InternalTransfer,
    Liquidation,
    Send,
    SpotTransfer,
    SubAccountTransfer,
    Withdraw,
)
from protocol.markets import Market, Markets
from protocol.orders import TIF_WIRE

Json: TypeAlias = str | int | bool | list["Json"] | dict[str, "Json"] | None

BOOK_LEVELS = 20  # levels per side in an l2Book answer


def side(is_buy: bool) -> str:
    return "B" if is_buy else "A"


def price(value: int, market: Market) -> str:
    return decimal(value, market.px_decimals)


def size(value: int, market: Market) -> str:
    return decimal(value, market.sz_decimals)


def rate(value: int) -> str:
    """A funding rate or premium at RATE_SCALE."""
    return decimal(value, RATE_DECIMALS)


def token_amount(markets: Markets, name: str, wei: int) -> str:
    token = markets.token_by_name(name)
    return decimal(wei, SPOT_NOTIONAL_DECIMALS if token is None else token.wei_decimals)


# Fills.


def fills_json(records: list[FillRecord], markets: Markets, aggregate: bool) -> list[Json]:
    """Fills in the order given. With `aggregate`, the fills of one order in one block become
    one, where the first of them was."""
    if not aggregate:
        return [fill_json(record, markets) for record in records]
    groups: dict[tuple[int, int], list[FillRecord]] = {}
    for record in records:
        groups.setdefault((record.fill.oid, record.fill.time), []).append(record)
    return [_aggregate(group, markets) for group in groups.values()]


def fill_json(record: FillRecord, markets: Markets) -> dict[str, Json]:
    fill = record.fill
    market = markets.by_asset[fill.asset]
    if market.is_spot:
        base = markets.tokens[market.base_token]
        start = decimal(fill.start_position, base.wei_decimals)
    else:
        start = size(fill.start_position, market)
    result: dict[str, Json] = {
        "coin": fill.coin,
        "px": price(fill.px, market),
        "sz": size(fill.sz, market),
        "side": side(fill.is_buy),
        "time": fill.time,
        "startPosition": start,
        "dir": record.direction,
        "closedPnl": usd(fill.closed_pnl),
        "hash": record.hash,
        "oid": fill.oid,
        "crossed": fill.crossed,
        "fee": _fee(markets, market, fill.fee_token, fill.fee),
        "tid": fill.tid,
    }
    if fill.cloid is not None:
        result["cloid"] = fill.cloid
    if fill.liquidation is not None:
        result["liquidation"] = {
            "liquidatedUser": fill.liquidation.liquidated_user,
            "markPx": price(fill.liquidation.mark_px, market),
            "method": fill.liquidation.method,
        }
    result["feeToken"] = fill.fee_token
    return result


def _aggregate(group: list[FillRecord], markets: Markets) -> dict[str, Json]:
    """One fill for an order's fills in a block: the earliest one's start position, trade id
    and hash, the sizes, fees and closed pnl summed, the price averaged."""
    first = min(group, key=lambda record: record.fill.tid)
    result = fill_json(first, markets)
    if len(group) == 1:
        return result
    market = markets.by_asset[first.fill.asset]
    total_sz = sum(record.fill.sz for record in group)
    total_ntl = sum(record.fill.px * record.fill.sz for record in group)
    result["px"] = average_price(total_ntl, total_sz, market)
    result["sz"] = size(total_sz, market)
    result["closedPnl"] = usd(sum(record.fill.closed_pnl for record in group))
    fee = sum(record.fill.fee for record in group)
    result["fee"] = _fee(markets, market, first.fill.fee_token, fee)
    return result


def _fee(markets: Markets, market: Market, token: str, amount: int) -> str:
    """A fill's fee: in the fee token's decimals on spot, in USDC on perps."""
    return token_amount(markets, token, amount) if market.is_spot else usd(amount)


# Orders.


def open_order_json(order: LiveOrder, markets: Markets) -> dict[str, Json]:
    """An `openOrders` entry."""
    market = markets.by_asset[order.asset]
    orig = order.orig_sz if isinstance(order, RestingOrder) else order.sz
    result: dict[str, Json] = {
        "coin": market.coin,
        "side": side(order.is_buy),
        "limitPx": price(order.px, market),
        "sz": size(order.sz, market),
        "oid": order.oid,
        "timestamp": order.timestamp,
        "origSz": size(orig, market),
    }
    if order.cloid is not None:
        result["cloid"] = order.cloid
    return result


def frontend_order_json(
    order: LiveOrder,
    remaining: int,
    trigger: TriggerOrder | None,
    children: list[Json],
    markets: Markets,
) -> dict[str, Json]:
    """The frontend order of `frontendOpenOrders`, `orderStatus` and `historicalOrders`.
    `remaining` is the size still open; `trigger` the TP/SL the order began as (it keeps its
    trigger fields after firing); `children` the TP/SL orders waiting for it to fill."""
    market = markets.by_asset[order.asset]
    if isinstance(order, TriggerOrder):
        trigger = order
    result: dict[str, Json] = {
        "coin": market.coin,
        "side": side(order.is_buy),
        "limitPx": price(order.px, market),
        "sz": size(remaining, market),
        "oid": order.oid,
    }
    if trigger is None:
        assert isinstance(order, RestingOrder)
        result.update(
            timestamp=order.timestamp,
            triggerCondition="N/A",
            isTrigger=False,
            triggerPx="0.0",
            children=children,
            isPositionTpsl=False,
            reduceOnly=order.reduce_only,
            orderType="Limit",
            origSz=size(order.orig_sz, market),
            tif=TIF_WIRE[order.tif],
        )
    else:
        spec = trigger.trigger
        # Take profit sells above its trigger and buys below; stop loss the reverse.
        above = spec.is_tp != trigger.is_buy
        trigger_px = price(spec.trigger_px, market)
        kind = "Take Profit" if spec.is_tp else "Stop"
        result.update(
            timestamp=trigger.timestamp,
            triggerCondition=f"Price {'above' if above else 'below'} {trigger_px}",
            isTrigger=True,
            triggerPx=trigger_px,
            children=children,
            isPositionTpsl=trigger.is_position_tpsl,
            reduceOnly=trigger.reduce_only,
            orderType=f"{kind} {'Market' if spec.is_market else 'Limit'}",
            origSz=size(trigger.sz, market),
            tif=None,
        )
    result["cloid"] = order.cloid
    return result


# Positions.


def leverage_json(leverage: Leverage, isolated_raw: int) -> dict[str, Json]:
    """A position's `leverage`; `isolated_raw` (micro-USDC) is shown only when isolated."""
    if leverage.is_cross:
        return {"type": "cross", "value": leverage.value}
    return {"type": "isolated", "value": leverage.value, "rawUsd": usd(isolated_raw)}


# Ledger and funding.


def ledger_json(record: LedgerRecord, markets: Markets) -> dict[str, Json]:
    """A `userNonFundingLedgerUpdates` entry."""
    delta = record.update.delta
    body: dict[str, Json]
    match delta:
        case Deposit():
            body = {"type": "deposit", "usdc": usd(delta.usdc)}
        case Withdraw():
            body = {
                "type": "withdraw",
                "usdc": usd(delta.usdc),
                "nonce": delta.nonce,
                "fee": usd(delta.fee),
            }
        case AccountClassTransfer():
            body = {
                "type": "accountClassTransfer",
                "usdc": usd(delta.usdc),
                "toPerp": delta.to_perp,
            }
        case InternalTransfer():
            body = {
                "type": "internalTransfer",
                "usdc": usd(delta.usdc),
                "user": delta.user,
                "destination": delta.destination,
                "fee": usd(delta.fee),
            }
        case SubAccountTransfer():
            body = {
                "type": "subAccountTransfer",
                "usdc": usd(delta.usdc),
                "user": delta.user,
                "destination": delta.destination,
            }
        case SpotTransfer():
            body = {
                "type": "spotTransfer",
                "token": delta.token,
                "amount": token_amount(markets, delta.token, delta.amount),
                "usdcValue": usd(record.usdc_value),
                "user": delta.user,
                "destination": delta.destination,
                "fee": usd(delta.fee),
                "nativeTokenFee": "0.0",
                "nonce": None,
                "feeToken": "",
            }
        case Send():
            body = {
                "type": "send",
                "user": delta.user,
                "destination": delta.destination,
                "sourceDex": delta.source_dex,
                "destinationDex": delta.destination_dex,
                "token": delta.token,
                "amount": token_amount(markets, delta.token, delta.amount),
                "usdcValue": usd(record.usdc_value),
                "fee": usd(delta.fee),
                "nativeTokenFee": "0.0",
                "nonce": None,
                "feeToken": "",
            }
        case Liquidation():
            body = {
                "type": "liquidation",
                "liquidatedNtlPos": usd(record.usdc_value),
                "accountValue": usd(delta.account_value),
                "leverageType": delta.leverage_type,
                "liquidatedPositions": [
                    {
                        "coin": position.coin,
                        "szi": size(position.szi, markets.by_coin[position.coin]),
                    }
                    for position in delta.liquidated_positions
                ],
            }
        case BorrowLend():
            body = {
                "type": "borrowLend",
                "token": delta.token,
                "operation": delta.operation,
                "amount": token_amount(markets, delta.token, delta.amount),
                "interestAmount": token_amount(markets, delta.token, delta.interest_amount),
            }
    return {"time": record.update.time, "hash": record.hash, "delta": body}


def funding_json(record: FundingRecord, markets: Markets) -> dict[str, Json]:
    """A `userFunding` entry."""
    update = record.update
    return {
        "time": update.time,
        "hash": record.hash,
        "delta": {
            "type": "funding",
            "coin": update.coin,
            "usdc": usd(update.usdc),
            "szi": size(update.szi, markets.by_coin[update.coin]),
            "fundingRate": rate(update.funding_rate),
            "nSamples": update.n_samples,
        },
    }


# Market data.


def candle_json(candle: Candle, market: Market) -> dict[str, Json]:
    return {
        "t": candle.open_time,
        "T": candle.close_time,
        "s": candle.coin,
        "i": candle.interval,
        "o": price(candle.open, market),
        "c": price(candle.close, market),
        "h": price(candle.high, market),
        "l": price(candle.low, market),
        "v": size(candle.volume, market),
        "n": candle.trades,
    }


def book_levels(
    depth: list[tuple[int, int, int]],
    is_bid: bool,
    market: Market,
    n_sig_figs: int | None,
    mantissa: int | None,
) -> list[Json]:
    """One side of an l2Book, best first, at most 20 levels. With `n_sig_figs`, prices are
    bucketed to that many significant figures (in steps of `mantissa` at the last one): bids
    down, asks up, so a bucket never looks better than its orders."""
    levels: list[list[int]] = []  # [px, sz, n]
    for level_px, sz, count in depth:
        px = level_px if n_sig_figs is None else _bucket(level_px, is_bid, n_sig_figs, mantissa)
        if levels and levels[-1][0] == px:
            levels[-1][1] += sz
            levels[-1][2] += count
        elif len(levels) == BOOK_LEVELS:
            break
        else:
            levels.append([px, sz, count])
    return [{"px": price(px, market), "sz": size(sz, market), "n": n} for px, sz, n in levels]


def _bucket(px: int, is_bid: bool, n_sig_figs: int, mantissa: int | None) -> int:
    # The price's integer form has the same significant digits as the decimal price.
    exponent = len(str(px)) - n_sig_figs
    if exponent < 0:
        return px
    unit: int = (mantissa or 1) * 10**exponent
    return px // unit * unit if is_bid else -(-px // unit) * unit
