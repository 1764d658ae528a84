"""Bad input against a live node (the `devnet` fixture, instant mining), over raw HTTP: every
request gets the real API's answer (422 with Hyperliquid's plain text for a body that does not
deserialize, the err envelope with HTTP 200 otherwise, 404/405/413 for the wrong path, method
or size), changes nothing, and leaves the node serving.

Requests refused before a block (shape, signature) must leave the chain's height and state
hash as they were. Requests refused inside a block (an unknown signer, a nonce) do make a block
in instant mining, so for them the signer's account is compared instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hyperliquid.utils.signing import (
    order_request_to_order_wire,
    order_wires_to_order_action,
    sign_l1_action,
    sign_usd_transfer_action,
)

from node.api.server import MAX_BODY_BYTES
from node.pytest_plugin import Devnet
from tests.node.api.conftest import Answer, now_ms, raw

MALFORMED = "Failed to deserialize the JSON body into the target type"
TWO_DAYS_MS = 2 * 86_400_000
ETH = 1
SIGNATURE = {"r": "0x" + "11" * 32, "s": "0x" + "22" * 32, "v": 27}  # well-shaped, signs nothing
SECP256K1_GX = 0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798


def post(devnet: Devnet, path: str, value: Any) -> Answer:
    return raw(devnet, path, json.dumps(value).encode())


def status(devnet: Devnet) -> tuple[int, str]:
    answer = devnet.control({"type": "status"})["response"]
    return answer["height"], answer["stateHash"]


def assert_serving(devnet: Devnet) -> None:
    meta = devnet.info({"type": "meta"})
    assert [asset["name"] for asset in meta["universe"]][:2] == ["BTC", "ETH"]


@contextmanager
def no_block(devnet: Devnet) -> Iterator[None]:
    """The requests inside make no block: height and state hash are unchanged after them."""
    before = status(devnet)
    yield
    assert_serving(devnet)
    assert status(devnet) == before


def account(devnet: Devnet, user: str) -> Any:
    state = devnet.info({"type": "clearinghouseState", "user": user})
    del state["time"]  # the time of the latest block, which a refused action still makes
    spot = devnet.info({"type": "spotClearinghouseState", "user": user})
    return state, spot, devnet.info({"type": "openOrders", "user": user})


@contextmanager
def account_unchanged(devnet: Devnet, user: str) -> Iterator[None]:
    before = account(devnet, user)
    yield
    assert_serving(devnet)
    assert account(devnet, user) == before


def order_action(px: float = 2000.0) -> Any:
    """A GTC buy of 0.01 ETH far under the maker's quotes: it rests."""
    wire = order_request_to_order_wire(
        {
            "coin": "ETH",
            "is_buy": True,
            "sz": 0.01,
            "limit_px": px,
            "order_type": {"limit": {"tif": "Gtc"}},
            "reduce_only": False,
        },
        ETH,
    )
    return order_wires_to_order_action([wire])


def signed_order(devnet: Devnet, index: int, nonce: int, px: float = 2000.0) -> Any:
    action = order_action(px)
    signature = sign_l1_action(devnet.wallet(index), action, None, nonce, None, False)
    return {"action": action, "nonce": nonce, "signature": signature, "vaultAddress": None}


def signed_usd_send(devnet: Devnet, index: int, destination: str, amount: str) -> Any:
    nonce = now_ms()
    action = {"type": "usdSend", "destination": destination, "amount": amount, "time": nonce}
    signature = sign_usd_transfer_action(devnet.wallet(index), action, False)
    return {"action": action, "nonce": nonce, "signature": signature}


def assert_malformed(answer: Answer) -> None:
    assert (answer.status, answer.text()) == (422, MALFORMED)


# Bodies that do not deserialize: 422, before any block.

NOT_JSON = [b"", b"{", b'{"type": "meta"', b"\xff\xfe{}", b"{'type': 'meta'}", b"nul"]
NOT_AN_OBJECT = [b"[]", b'[{"type": "meta"}]', b"42", b'"meta"', b"null", b"true"]
# What Python's json reads but Hyperliquid's parser (serde_json) refuses; a lone surrogate is a
# str the block log cannot encode, so one reaching a block stopped the node.
STRICT_JSON = [
    b'{"type": "meta", "x": NaN}',
    b'{"type": "meta", "x": 1e400}',
    b'{"type": "meta", "x": "\\ud800"}',
    b'{"type": "meta", "x": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
]


@pytest.mark.parametrize("path", ["/info", "/exchange", "/devnet"])
@pytest.mark.parametrize("body", NOT_JSON + NOT_AN_OBJECT[:4] + STRICT_JSON)
def test_undeserializable_bodies_get_422(devnet: Devnet, path: str, body: bytes) -> None:
    with no_block(devnet):
        answer = raw(devnet, path, body)
        if path == "/devnet" and body in NOT_AN_OBJECT:
            # The devnet's own controls: JSON that is not a control is an err envelope.
            assert answer.status == 200 and answer.json()["status"] == "err"
        else:
            assert_malformed(answer)


@pytest.mark.parametrize(
    "body",
    [
        {"type": "fund", "user": "\ud800", "amount": "1"},
        {"type": "setOraclePrice", "coin": "\udfff", "px": "1"},
    ],
)
def test_a_lone_surrogate_in_a_control_never_reaches_a_block(devnet: Devnet, body: Any) -> None:
    with no_block(devnet):
        assert_malformed(post(devnet, "/devnet", body))


@pytest.mark.parametrize(
    "request_body",
    [
        {"type": "nope"},
        {"type": "clearinghouseState"},
        {"type": "clearinghouseState", "user": 5},
        {"type": "clearinghouseState", "user": "0x1234"},
        {"type": "clearinghouseState", "user": "0x" + "g" * 40},
        {"type": "l2Book", "coin": ["ETH"]},
        {"type": "candleSnapshot", "req": {"coin": "ETH", "interval": "7m", "startTime": 0}},
        {"user": "0x" + "0" * 40},
    ],
)
def test_info_requests_that_do_not_decode_get_422(devnet: Devnet, request_body: Any) -> None:
    with no_block(devnet):
        assert_malformed(post(devnet, "/info", request_body))


def test_exchange_values_python_reads_but_hyperliquid_does_not(devnet: Devnet) -> None:
    body = json.dumps(signed_order(devnet, 0, now_ms())).encode()
    with no_block(devnet):
        for value in (b"NaN", b"1e400", b'"\\ud800"'):
            assert_malformed(raw(devnet, "/exchange", body.replace(b'"na"', value, 1)))


def test_exchange_envelopes_of_the_wrong_shape_get_422(devnet: Devnet) -> None:
    valid = signed_order(devnet, 0, now_ms())
    broken = [
        {**valid, "nonce": str(valid["nonce"])},
        {**valid, "nonce": float(valid["nonce"])},
        {**valid, "nonce": -1},
        {**valid, "nonce": 2**64},
        {**valid, "action": [valid["action"]]},
        {**valid, "action": json.dumps(valid["action"])},
        {key: value for key, value in valid.items() if key != "signature"},
        {key: value for key, value in valid.items() if key != "action"},
        {key: value for key, value in valid.items() if key != "nonce"},
        {**valid, "signature": "0x" + "00" * 65},
        {**valid, "signature": {**valid["signature"], "r": "0xzz"}},
        {**valid, "signature": {**valid["signature"], "r": int(valid["signature"]["r"], 16)}},
        {**valid, "signature": {**valid["signature"], "v": "27"}},
        {**valid, "vaultAddress": "0x1234"},
        {**valid, "expiresAfter": "soon"},
        {**valid, "action": {**valid["action"], "type": "nope"}},
        {**valid, "action": {key: v for key, v in valid["action"].items() if key != "type"}},
    ]
    with no_block(devnet):
        for body in broken:
            assert_malformed(post(devnet, "/exchange", body))
    assert account(devnet, devnet.accounts[0].address)[2] == []


@pytest.mark.parametrize(
    "change",
    [{"v": 29}, {"v": 0}, {"r": "0x0"}, {"s": "0x0"}, {"r": "0x" + "f" * 64}],
    ids=["v=29", "v=0", "r=0", "s=0", "r>=n"],
)
def test_a_signature_that_does_not_recover(devnet: Devnet, change: dict[str, Any]) -> None:
    body = signed_order(devnet, 0, now_ms())
    body["signature"] = {**body["signature"], **change}
    with no_block(devnet):
        answer = post(devnet, "/exchange", body)
    assert (answer.status, answer.json()) == (
        200,
        {"status": "err", "response": "Unable to recover signer."},
    )


def test_a_signature_over_another_action_names_a_stranger(devnet: Devnet) -> None:
    signer = devnet.accounts[0].address
    body = signed_order(devnet, 0, now_ms())
    # The same signature on a different price: it recovers some other address, unknown here.
    body["action"] = order_action(2100.0)
    with account_unchanged(devnet, signer):
        answer = post(devnet, "/exchange", body).json()
    assert answer["status"] == "err"
    stranger = re.fullmatch(
        r"User or API Wallet (0x[0-9a-f]{40}) does not exist\.", answer["response"]
    )
    assert stranger is not None and stranger[1] != signer


def test_an_r_off_the_curve_does_not_recover(devnet: Devnet) -> None:
    # SIGNATURE's r (0x11...11) is the x of no secp256k1 point.
    body = {"action": order_action(), "nonce": now_ms(), "signature": SIGNATURE}
    with no_block(devnet):
        answer = post(devnet, "/exchange", body).json()
    assert answer == {"status": "err", "response": "Unable to recover signer."}


def test_garbage_s_on_a_real_r_names_a_stranger(devnet: Devnet) -> None:
    # r is the generator's x, so some key recovers, and it is nobody's.
    signature = {**SIGNATURE, "r": hex(SECP256K1_GX)}
    body = {"action": order_action(), "nonce": now_ms(), "signature": signature}
    answer = post(devnet, "/exchange", body).json()
    assert answer["status"] == "err"
    assert re.fullmatch(r"User or API Wallet 0x[0-9a-f]{40} does not exist\.", answer["response"])
    assert_serving(devnet)


def test_a_replayed_request_is_refused_and_changes_nothing(devnet: Devnet) -> None:
    user = devnet.accounts[1].address
    body = signed_order(devnet, 1, now_ms())
    first = post(devnet, "/exchange", body).json()
    assert first["status"] == "ok", first
    oid = first["response"]["data"]["statuses"][0]["resting"]["oid"]
    with account_unchanged(devnet, user):
        second = post(devnet, "/exchange", body).json()
    assert second == {
        "status": "err",
        "response": f"Invalid nonce: duplicate nonce {body['nonce']}",
    }
    assert [order["oid"] for order in account(devnet, user)[2]] == [oid]


def test_a_nonce_older_than_two_days_is_refused(devnet: Devnet) -> None:
    user = devnet.accounts[2].address
    nonce = now_ms() - TWO_DAYS_MS - 60_000
    with account_unchanged(devnet, user):
        answer = post(devnet, "/exchange", signed_order(devnet, 2, nonce)).json()
    assert answer["status"] == "err"
    assert re.fullmatch(rf"Invalid nonce: nonce too low {nonce} < \d+", answer["response"])


def test_a_user_signed_action_whose_nonce_is_not_the_requests(devnet: Devnet) -> None:
    user = devnet.accounts[3].address
    body = signed_usd_send(devnet, 3, devnet.accounts[4].address, "1")
    body["nonce"] += 1
    with account_unchanged(devnet, user), no_block(devnet):
        answer = post(devnet, "/exchange", body).json()
    assert answer == {"status": "err", "response": "Nonce mismatch."}


def test_a_user_signed_action_for_mainnet_is_refused(devnet: Devnet) -> None:
    nonce = now_ms()
    action = {"type": "usdSend", "destination": devnet.accounts[4].address, "amount": "1"}
    action["time"] = nonce  # type: ignore[assignment]
    signature = sign_usd_transfer_action(devnet.wallet(3), action, True)
    with no_block(devnet):
        answer = post(
            devnet, "/exchange", {"action": action, "nonce": nonce, "signature": signature}
        )
    assert answer.json() == {
        "status": "err",
        "response": "Mainnet and testnet require different signature.",
    }


def spellings(devnet: Devnet, index: int) -> list[str]:
    """A dev account's address in lower case, with its hex digits in upper case, and in its
    EIP-55 checksum form (eth-account's)."""
    address = devnet.accounts[index].address
    checksummed = devnet.wallet(index).address
    assert checksummed.lower() == address != checksummed
    return [address, "0x" + address[2:].upper(), checksummed]


def test_info_reads_an_address_in_any_case(devnet: Devnet) -> None:
    placed = post(devnet, "/exchange", signed_order(devnet, 5, now_ms())).json()
    assert placed["status"] == "ok", placed
    for kind in ("clearinghouseState", "spotClearinghouseState", "openOrders", "historicalOrders"):
        answers = [
            post(devnet, "/info", {"type": kind, "user": spelled}).json()
            for spelled in spellings(devnet, 5)
        ]
        assert answers[1:] == answers[:1] * 2, kind
    [order] = devnet.info({"type": "openOrders", "user": spellings(devnet, 5)[2]})
    assert (order["coin"], order["limitPx"]) == ("ETH", "2000.0")


def test_usd_send_to_an_address_in_any_case_reaches_the_same_account(devnet: Devnet) -> None:
    receiver = devnet.accounts[7].address

    def value() -> float:
        state = devnet.info({"type": "clearinghouseState", "user": receiver})
        return float(state["marginSummary"]["accountValue"])

    before = value()
    for spelled in spellings(devnet, 7):
        answer = post(devnet, "/exchange", signed_usd_send(devnet, 6, spelled, "1")).json()
        assert answer == {"status": "ok", "response": {"type": "default"}}
    assert value() == before + 3
    assert float(
        devnet.info({"type": "clearinghouseState", "user": devnet.accounts[6].address})[
            "marginSummary"
        ]["accountValue"]
    ) == pytest.approx(1_000_000 - 3)


def test_an_oversized_body_gets_413(devnet: Devnet) -> None:
    with no_block(devnet):
        for path in ("/info", "/exchange", "/devnet"):
            answer = raw(devnet, path, b" " * (MAX_BODY_BYTES + 1))
            assert (answer.status, answer.text()) == (
                413,
                f"Body larger than {MAX_BODY_BYTES} bytes",
            )
        # At the limit the body is read and parsed: padding around a request is still JSON.
        padded = b'{"type": "meta"}' + b" " * (MAX_BODY_BYTES - 16)
        assert len(padded) == MAX_BODY_BYTES
        answer = raw(devnet, "/info", padded)
        assert answer.status == 200 and answer.json()["universe"][0]["name"] == "BTC"


def test_wrong_methods_and_paths(devnet: Devnet) -> None:
    with no_block(devnet):
        for path in ("/info", "/exchange", "/devnet"):
            for method in ("GET", "PUT", "DELETE"):
                answer = raw(devnet, path, method=method)
                assert (answer.status, answer.text()) == (405, "Method Not Allowed")
        for path in ("/", "/nope", "/info/", "/INFO", "/exchange/x"):
            answer = raw(devnet, path, b'{"type": "meta"}')
            assert (answer.status, answer.text()) == (404, "Not Found")


def test_devnet_controls_answer_loopback(devnet: Devnet) -> None:
    with no_block(devnet):
        answer = post(devnet, "/devnet", {"type": "status"}).json()
        assert answer["status"] == "ok" and answer["response"]["mining"] == "instant"
        for body in ({"type": "nope"}, {"type": "mine", "blocks": "2"}, {"type": 5}, {}):
            refused = post(devnet, "/devnet", body).json()
            assert refused["status"] == "err", body
