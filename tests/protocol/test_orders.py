"""Wire order validation: tick and lot rules, minimum value, cloids and batch-level errors."""

from __future__ import annotations

import pytest

from protocol.book import TIF_ALO, TIF_GTC, TIF_IOC
from protocol.markets import Markets
from protocol.orders import (
    ERR_DESERIALIZE,
    ERR_EMPTY_BATCH,
    ERR_INVALID_PRICE,
    ERR_INVALID_SIZE,
    ERR_MIN_NOTIONAL,
    ERR_TICK,
    ERR_TPSL_NOT_REDUCE_ONLY,
    ERR_ZERO_SIZE,
    LimitWire,
    OrderRequest,
    OrderTypeWire,
    OrderWire,
    check_payload,
    is_valid_cloid,
    round_to_tick,
    validate_order,
)
from tests.protocol.conftest import BTC, HYPE_USDC, PURR_USDC, limit, trigger

DOGE, OP, UBTC_USDC = 6, 4, 10_002


@pytest.mark.parametrize(
    ("asset", "px", "valid"),
    [
        (DOGE, "1234.5", True),  # docs: perp, 5 significant figures
        (DOGE, "1234.56", False),  # 6 significant figures
        (DOGE, "0.001234", True),
        (DOGE, "0.0012345", False),  # 7 decimals > 6 - 0
        (OP, "0.01234", True),  # szDecimals 1: 5 decimals allowed
        (OP, "0.012345", False),
        (BTC, "123456", True),  # an integer price is always valid
        (BTC, "12345.6", False),  # 6 significant figures and not an integer
        (BTC, "100000.0", True),
        (PURR_USDC, "0.0001234", True),  # docs: spot szDecimals 0
        (HYPE_USDC, "0.0001234", False),  # spot szDecimals 2: 6 decimals allowed
        (UBTC_USDC, "0.0001234", False),
    ],
)
def test_price_tick_rule(markets: Markets, asset: int, px: str, valid: bool) -> None:
    """At most 5 significant figures and (6|8) - szDecimals decimals; integers always pass."""
    # Size chosen large enough for every market's $10 minimum at these prices.
    sz = {BTC: "1", DOGE: "100000", OP: "10000"}.get(asset, "100000")
    result = validate_order(markets, limit(asset, True, px, sz))
    if valid:
        assert isinstance(result, OrderRequest)
    else:
        assert result == ERR_TICK


def test_valid_order_becomes_integer_request(markets: Markets) -> None:
    """A valid wire order converts exactly to the market's integer scales."""
    request = validate_order(markets, limit(BTC, True, "100000", "0.0002", "Alo"))
    assert request == OrderRequest(BTC, True, 1_000_000, 20, False, TIF_ALO, None, None)
    assert isinstance(
        validate_order(markets, limit(BTC, False, "100000", "1", "Ioc")), OrderRequest
    )
    gtc = validate_order(markets, limit(BTC, False, "100000", "1"))
    assert isinstance(gtc, OrderRequest) and gtc.tif == TIF_GTC
    ioc = validate_order(markets, limit(BTC, False, "100000", "1", "Ioc"))
    assert isinstance(ioc, OrderRequest) and ioc.tif == TIF_IOC


@pytest.mark.parametrize(
    ("px", "sz", "error"),
    [
        ("100000", "0.000001", ERR_INVALID_SIZE),  # lot: 5 decimals on BTC
        ("100000", "0", ERR_ZERO_SIZE),
        ("100000", "0.00000", ERR_ZERO_SIZE),
        ("100000", "-1", ERR_INVALID_SIZE),
        ("100000", "abc", ERR_INVALID_SIZE),
        ("100000", "0.00009", ERR_MIN_NOTIONAL),  # $9
        ("0", "1", ERR_INVALID_PRICE),
        ("-5", "1", ERR_INVALID_PRICE),
        ("1e5", "1", ERR_INVALID_PRICE),
    ],
)
def test_per_order_errors(markets: Markets, px: str, sz: str, error: str) -> None:
    """Bad sizes, prices and values get Hyperliquid's per-order error strings."""
    assert validate_order(markets, limit(BTC, True, px, sz)) == error


def test_min_value_is_ten_quote_on_spot(markets: Markets) -> None:
    """Spot minimum is 10 of the quote token, named in the error."""
    assert (
        validate_order(markets, limit(PURR_USDC, True, "0.1", "99"))
        == "Order must have minimum value of 10 USDC."
    )
    assert isinstance(validate_order(markets, limit(PURR_USDC, True, "0.1", "100")), OrderRequest)


def test_exactly_ten_dollars_is_allowed(markets: Markets) -> None:
    """The minimum is inclusive."""
    assert isinstance(validate_order(markets, limit(BTC, True, "100000", "0.0001")), OrderRequest)


def test_cloid_format() -> None:
    """A cloid is 0x and exactly 32 hex digits."""
    assert is_valid_cloid("0x" + "0" * 31 + "1")
    assert is_valid_cloid("0xABCDEF" + "0" * 26)
    assert not is_valid_cloid("0x" + "0" * 31)
    assert not is_valid_cloid("0x" + "0" * 33)
    assert not is_valid_cloid("0x" + "g" * 32)
    assert not is_valid_cloid("00" + "0" * 32)
    assert not is_valid_cloid("0x0x" + "0" * 30)


def test_batch_level_errors(markets: Markets) -> None:
    """Empty batches, unknown tif, bad cloids, unknown assets and non-reduce-only TP/SL reject
    the whole batch with one error."""
    good = limit(BTC, True, "100000", "1")
    assert check_payload(markets, (good,)) is None
    assert check_payload(markets, ()) == ERR_EMPTY_BATCH
    bad_tif = OrderWire(BTC, True, "100000", "1", False, OrderTypeWire(limit=LimitWire("Fok")))
    assert check_payload(markets, (good, bad_tif)) == ERR_DESERIALIZE
    assert check_payload(markets, (limit(BTC, True, "1", "1", cloid="0x12"),)) == ERR_DESERIALIZE
    assert check_payload(markets, (limit(999, True, "1", "1"),)) == "Asset 999 does not exist."
    no_type = OrderWire(BTC, True, "100000", "1", False, OrderTypeWire())
    assert check_payload(markets, (no_type,)) == ERR_DESERIALIZE
    tpsl = trigger(BTC, False, "90000", "1", "90000", "sl")
    assert check_payload(markets, (tpsl,)) is None
    not_reduce = OrderWire(BTC, False, "90000", "1", False, tpsl.t)
    assert check_payload(markets, (not_reduce,)) == ERR_TPSL_NOT_REDUCE_ONLY


@pytest.mark.parametrize(
    ("px", "decimals", "up", "expected"),
    [
        (999_000, 1, False, 999_000),  # 99900.0: an integer price, any figures
        (1_234_567, 6, False, 1_234_500),  # 1.234567 -> 1.2345
        (1_234_567, 6, True, 1_234_600),
        (1_234_500, 6, True, 1_234_500),  # already 5 figures
        (99_999_9, 6, True, 1_000_000),  # 0.999999 up -> 1.0
        (12_345, 6, False, 12_345),
    ],
)
def test_round_to_tick(px: int, decimals: int, up: bool, expected: int) -> None:
    assert round_to_tick(px, decimals, up) == expected
