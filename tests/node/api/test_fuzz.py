"""Fuzzing /info and /exchange of a live node (the `devnet` fixture, instant mining) with
Hypothesis: random JSON values, random bytes, and random mutations of valid requests, the
/exchange ones signed after mutating so that they pass the signature check and reach the
action decoder and the chain.

Every answer must be 200 with a JSON body, 422 with exactly Hyperliquid's plain text, or 413
(only for a body over the limit); never a 500, a dropped connection or a hang (each request has
a timeout), and the node must answer a normal /info request after each one.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hyperliquid.utils.signing import (
    USD_SEND_SIGN_TYPES,
    sign_l1_action,
    sign_user_signed_action,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.api.server import MAX_BODY_BYTES
from node.pytest_plugin import Devnet
from tests.node.api.conftest import now_ms, raw

MALFORMED = b"Failed to deserialize the JSON body into the target type"
TIMEOUT_S = 10
USER = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"  # dev account 0
OTHER = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"  # dev account 1
CLOID = "0x" + "00" * 15 + "2a"
DUMMY_SIGNATURE = {"r": "0x1", "s": "0x1", "v": 27}  # for what the SDK cannot sign

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure here is reproducible
    suppress_health_check=[HealthCheck.too_slow],
)

INFO_REQUESTS: list[Any] = [
    {"type": "meta"},
    {"type": "spotMeta"},
    {"type": "metaAndAssetCtxs"},
    {"type": "allMids"},
    {"type": "clearinghouseState", "user": USER},
    {"type": "spotClearinghouseState", "user": USER},
    {"type": "openOrders", "user": USER},
    {"type": "frontendOpenOrders", "user": USER},
    {"type": "userFills", "user": USER, "aggregateByTime": True},
    {"type": "userFillsByTime", "user": USER, "startTime": 0, "endTime": None},
    {"type": "orderStatus", "user": USER, "oid": 1},
    {"type": "orderStatus", "user": USER, "oid": CLOID},
    {"type": "historicalOrders", "user": USER},
    {"type": "l2Book", "coin": "ETH", "nSigFigs": 2, "mantissa": None},
    {"type": "l2Book", "coin": "@1", "nSigFigs": 5, "mantissa": 5},
    {
        "type": "candleSnapshot",
        "req": {"coin": "BTC", "interval": "1m", "startTime": 0, "endTime": 2**62},
    },
    {"type": "fundingHistory", "coin": "ETH", "startTime": 0},
    {"type": "userFunding", "user": USER, "startTime": 0, "endTime": 2**62},
    {"type": "userNonFundingLedgerUpdates", "user": USER, "startTime": 0},
    {"type": "subAccounts", "user": USER},
    {"type": "userFees", "user": USER},
    {"type": "userRateLimit", "user": USER},
    {"type": "portfolio", "user": USER},
    {"type": "userRole", "user": USER},
    {"type": "extraAgents", "user": USER},
    {"type": "userAbstraction", "user": USER},
    {"type": "borrowLendReserveState", "token": 0},
    {"type": "allBorrowLendReserveStates"},
    {"type": "borrowLendUserState", "user": USER},
]


def order(asset: int, is_buy: bool, px: str, sz: str, tif: str = "Gtc") -> Any:
    return {"a": asset, "b": is_buy, "p": px, "s": sz, "r": False, "t": {"limit": {"tif": tif}}}


L1_ACTIONS: list[Any] = [
    {"type": "order", "orders": [order(1, True, "2000", "0.01")], "grouping": "na"},
    {
        "type": "order",
        "orders": [order(0, False, "90000", "0.001", "Ioc"), order(10_000, True, "0.1", "10")],
        "grouping": "na",
    },
    {
        "type": "order",
        "orders": [
            {
                "a": 1,
                "b": False,
                "p": "2500",
                "s": "0.01",
                "r": True,
                "t": {"trigger": {"isMarket": True, "triggerPx": "2500", "tpsl": "sl"}},
                "c": CLOID,
            }
        ],
        "grouping": "positionTpsl",
    },
    {"type": "cancel", "cancels": [{"a": 1, "o": 1}]},
    {"type": "cancelByCloid", "cancels": [{"asset": 1, "cloid": CLOID}]},
    {"type": "batchModify", "modifies": [{"oid": 1, "order": order(1, True, "2100", "0.01")}]},
    {"type": "scheduleCancel", "time": 2**62},
    {"type": "updateLeverage", "asset": 1, "isCross": True, "leverage": 5},
    {"type": "updateIsolatedMargin", "asset": 1, "isBuy": True, "ntli": 1_000_000},
    {"type": "createSubAccount", "name": "fuzz"},
    {"type": "noop"},
]


def usd_send(at: int) -> Any:
    return {"type": "usdSend", "destination": OTHER, "amount": "0.01", "time": at}


# Values that probe the edges of the decoders: 64-bit bounds, decimal strings, odd text.
EDGE_INTS = st.sampled_from([0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)])
EDGE_TEXT = st.sampled_from(
    [
        *("", "0", "-1", "1e9", "0.0000001", "1" * 40, "NaN", "inf", " 1", "0x", "\ud800"),
        *(CLOID, USER, "ETH", "@1", "PURR/USDC", "Gtc", "Ioc", "Alo", "tp", "sl", "na"),
    ]
)
KEYS = st.sampled_from(
    [
        *("type", "user", "coin", "a", "b", "p", "s", "r", "t", "o", "c", "oid", "orders"),
        *("startTime", "endTime", "req", "interval", "nonce", "action", "signature", "amount"),
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | EDGE_INTS
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | EDGE_TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(KEYS | st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


INFO_TYPES = sorted({request["type"] for request in INFO_REQUESTS})
ACTION_TYPES = sorted({action["type"] for action in L1_ACTIONS} | {"usdSend", "approveAgent"})


def shaped(types: list[str]) -> st.SearchStrategy[Any]:
    """Objects with a `type` (known, or an edge text) and random other keys: random values
    that get past the first check of a request decoder."""
    return st.builds(
        lambda kind, rest: {"type": kind, **rest},
        st.sampled_from(types) | EDGE_TEXT,
        st.dictionaries(KEYS, JSON_VALUES, max_size=4),
    )


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value, the root first."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


def like(value: Any) -> st.SearchStrategy[Any]:
    """Values of the same JSON type as `value`, edges first: they pass the decoders more often
    than arbitrary values do, so the chain's own checks get exercised too."""
    if isinstance(value, bool):
        return st.just(not value)
    if isinstance(value, int):
        return EDGE_INTS | st.integers()
    if isinstance(value, str):
        return EDGE_TEXT | st.text(max_size=20)
    return JSON_VALUES


@st.composite
def mutation(draw: st.DrawFn, template: Any) -> Any:
    """`template` with one to three random changes: a value replaced by one of its type or by
    any JSON value, a key removed or added, a list element dropped or repeated."""
    value = copy.deepcopy(template)
    for _ in range(draw(st.integers(1, 3))):
        # Not the root nor the action's type: the random-JSON tests cover those. Leaves first,
        # as Hypothesis draws the first elements most.
        places = [path for path in paths(value)[1:] if path != ("type",)][::-1]
        if not places:  # {"type": "noop"}: only a key can be added
            value[draw(KEYS)] = draw(JSON_VALUES)
            continue
        path = draw(st.sampled_from(places))
        parent: Any = None
        node = value
        for step in path:
            parent, node = node, node[step]
        choice = draw(st.sampled_from(["like", "like", "like", "like", "drop", "add", "any"]))
        if isinstance(node, dict) and node and choice == "drop":
            del node[draw(st.sampled_from(sorted(node)))]
        elif isinstance(node, dict) and choice == "add":
            node[draw(KEYS)] = draw(JSON_VALUES)
        elif isinstance(node, list) and node and choice == "drop":
            node.pop(draw(st.integers(0, len(node) - 1)))
        elif isinstance(node, list) and node and choice == "add":
            node.append(copy.deepcopy(node[-1]))
        else:
            parent[path[-1]] = draw(like(node) if choice == "like" else JSON_VALUES)
    return value


def sign(devnet: Devnet, action: Any, at: int) -> Any:
    """The SDK's signature of `action`, or None for an action it cannot sign (msgpack refuses
    an int beyond 64 bits, eth-account a usdSend field of the wrong type)."""
    wallet = devnet.wallet(0)
    try:
        if isinstance(action, dict) and action.get("type") == "usdSend":
            return sign_user_signed_action(
                wallet, action, USD_SEND_SIGN_TYPES, "HyperliquidTransaction:UsdSend", False
            )
        return sign_l1_action(wallet, action, None, at, None, False)
    except Exception:  # any refusal of the signer: the body is sent with a dummy signature
        return None


def send(devnet: Devnet, path: str, body: bytes) -> Any:
    """POST `body` and check the answer is one the node may give; its JSON, None for a 413 or
    422 (no JSON)."""
    answer = raw(devnet, path, body, timeout=TIMEOUT_S)
    status, kind = answer.status, answer.content_type
    decoded = None
    assert status in (200, 413, 422), (status, body[:300])
    if status == 413:
        assert len(body) > MAX_BODY_BYTES
    elif status == 422:
        assert (kind, answer.body) == ("text/plain; charset=utf-8", MALFORMED), body[:300]
    else:
        assert kind == "application/json", body[:300]
        decoded = json.loads(answer.body)
        if path == "/exchange":
            assert decoded["status"] in ("ok", "err"), decoded
    still = devnet.info({"type": "meta"})
    assert still["universe"][0]["name"] == "BTC"
    return decoded


def dumps(value: Any) -> bytes:
    # NaN and Infinity go out as the bare tokens Python writes: bodies Hyperliquid refuses.
    return json.dumps(value).encode()


@FUZZ
@given(value=JSON_VALUES | shaped(INFO_TYPES))
def test_info_random_json(devnet: Devnet, value: Any) -> None:
    send(devnet, "/info", dumps(value))


@FUZZ
@given(request=st.sampled_from(INFO_REQUESTS).flatmap(mutation))
def test_info_mutated_requests(devnet: Devnet, request: Any) -> None:
    send(devnet, "/info", dumps(request))


@FUZZ
@given(data=st.binary(max_size=64) | st.sampled_from(INFO_REQUESTS).map(dumps), cut=st.data())
def test_info_random_bytes(devnet: Devnet, data: bytes, cut: st.DataObject) -> None:
    """Bytes, or a valid request with a random byte overwritten."""
    if data and cut.draw(st.booleans()):
        at = cut.draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([cut.draw(st.integers(0, 255))]) + data[at + 1 :]
    send(devnet, "/info", data)


@FUZZ
@given(
    value=JSON_VALUES
    | st.fixed_dictionaries(
        {"action": shaped(ACTION_TYPES), "nonce": EDGE_INTS},
        optional={"signature": JSON_VALUES, "vaultAddress": JSON_VALUES},
    )
)
def test_exchange_random_json(devnet: Devnet, value: Any) -> None:
    send(devnet, "/exchange", dumps(value))


@FUZZ
@given(action=st.sampled_from(L1_ACTIONS).flatmap(mutation))
def test_exchange_mutated_signed_l1_actions(devnet: Devnet, action: Any) -> None:
    at = now_ms()
    signature = sign(devnet, action, at) or DUMMY_SIGNATURE
    send(devnet, "/exchange", dumps({"action": action, "nonce": at, "signature": signature}))


@FUZZ
@given(data=st.data())
def test_exchange_mutated_signed_usd_sends(devnet: Devnet, data: st.DataObject) -> None:
    at = now_ms()
    action = data.draw(mutation(usd_send(at)))
    signature = sign(devnet, action, at) or DUMMY_SIGNATURE
    send(devnet, "/exchange", dumps({"action": action, "nonce": at, "signature": signature}))


@FUZZ
@given(data=st.data())
def test_exchange_mutated_envelopes(devnet: Devnet, data: st.DataObject) -> None:
    """A signed order's envelope mutated after signing: nonce, signature, vault, expiry."""
    at = now_ms()
    action = L1_ACTIONS[0]
    envelope = {
        "action": action,
        "nonce": at,
        "signature": sign(devnet, action, at),
        "vaultAddress": None,
        "expiresAfter": None,
    }
    send(devnet, "/exchange", dumps(data.draw(mutation(envelope))))


def test_the_templates_are_signed_and_pass_the_signature_check(devnet: Devnet) -> None:
    """`sign` falls back to a dummy signature, so the mutation tests above would pass with it
    broken: unmutated, every template gets a real signature whose signer the chain knows."""
    for index in range(len(L1_ACTIONS) + 1):
        at = now_ms()
        action = L1_ACTIONS[index] if index < len(L1_ACTIONS) else usd_send(at)
        signature = sign(devnet, action, at)
        assert signature not in (None, DUMMY_SIGNATURE), action
        body = {"action": action, "nonce": at, "signature": signature}
        answer = send(devnet, "/exchange", dumps(body))
        assert answer is not None, action  # a JSON answer, not a 422
        response = json.dumps(answer["response"])
        assert "signer" not in response and "does not exist" not in response, (action, answer)
