"""Signer recovery against the SDK: its golden vectors, and its own signing functions as the
oracle for random keys and actions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

import eth_account
import msgpack  # type: ignore[import-untyped]
import pytest
from hyperliquid.utils import signing as sdk
from hypothesis import given, settings
from hypothesis import strategies as st

from node.api.signing import (
    MAINNET,
    TESTNET,
    UNRECOVERABLE,
    USER_SIGNED_NONCE_FIELD,
    WRONG_NETWORK,
    Network,
    Rejected,
    connection_id,
    recover_signer,
)
from protocol.orders import ERR_DESERIALIZE

GOLDEN_KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"
GOLDEN_ADDRESS = "0x14791697260e4c9a71f18484c9f997b308e59325"
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

ORDER = (
    '{"type":"order","orders":[{"a":1,"b":true,"p":"100","s":"100","r":false,'
    '"t":{"limit":{"tif":"Gtc"}}}],"grouping":"na"}'
)
CLOID_ORDER = (
    '{"type":"order","orders":[{"a":1,"b":true,"p":"100","s":"100","r":false,'
    '"t":{"limit":{"tif":"Gtc"}},"c":"0x00000000000000000000000000000001"}],"grouping":"na"}'
)
TPSL_ORDER = (
    '{"type":"order","orders":[{"a":1,"b":true,"p":"100","s":"100","r":false,'
    '"t":{"trigger":{"isMarket":true,"triggerPx":"103","tpsl":"sl"}}}],"grouping":"na"}'
)
DUMMY = '{"type":"dummy","num":100000000000}'
SUB_ACCOUNT_TRANSFER = (
    '{"type":"subAccountTransfer","subAccountUser":"0x1d9470d4b963f552e6f671a81619d395877bf409",'
    '"isDeposit":true,"usd":10}'
)
VAULT = "0x1719884eb866cb12b2287399b15f7db5e7d775ea"

# (action as sent, vaultAddress, network, r, s, v): the SDK's tests/signing_test.py, nonce 0.
L1_VECTORS = [
    (
        DUMMY,
        None,
        MAINNET,
        "0x53749d5b30552aeb2fca34b530185976545bb22d0b3ce6f62e31be961a59298",
        "0x755c40ba9bf05223521753995abb2f73ab3229be8ec921f350cb447e384d8ed8",
        27,
    ),
    (
        DUMMY,
        None,
        TESTNET,
        "0x542af61ef1f429707e3c76c5293c80d01f74ef853e34b76efffcb57e574f9510",
        "0x17b8b32f086e8cdede991f1e2c529f5dd5297cbe8128500e00cbaf766204a613",
        28,
    ),
    (
        ORDER,
        None,
        MAINNET,
        "0xd65369825a9df5d80099e513cce430311d7d26ddf477f5b3a33d2806b100d78e",
        "0x2b54116ff64054968aa237c20ca9ff68000f977c93289157748a3162b6ea940e",
        28,
    ),
    (
        ORDER,
        None,
        TESTNET,
        "0x82b2ba28e76b3d761093aaded1b1cdad4960b3af30212b343fb2e6cdfa4e3d54",
        "0x6b53878fc99d26047f4d7e8c90eb98955a109f44209163f52d8dc4278cbbd9f5",
        27,
    ),
    (
        CLOID_ORDER,
        None,
        MAINNET,
        "0x41ae18e8239a56cacbc5dad94d45d0b747e5da11ad564077fcac71277a946e3",
        "0x3c61f667e747404fe7eea8f90ab0e76cc12ce60270438b2058324681a00116da",
        27,
    ),
    (
        CLOID_ORDER,
        None,
        TESTNET,
        "0xeba0664bed2676fc4e5a743bf89e5c7501aa6d870bdb9446e122c9466c5cd16d",
        "0x7f3e74825c9114bc59086f1eebea2928c190fdfbfde144827cb02b85bbe90988",
        28,
    ),
    (
        DUMMY,
        VAULT,
        MAINNET,
        "0x3c548db75e479f8012acf3000ca3a6b05606bc2ec0c29c50c515066a326239",
        "0x4d402be7396ce74fbba3795769cda45aec00dc3125a984f2a9f23177b190da2c",
        28,
    ),
    (
        DUMMY,
        VAULT,
        TESTNET,
        "0xe281d2fb5c6e25ca01601f878e4d69c965bb598b88fac58e475dd1f5e56c362b",
        "0x7ddad27e9a238d045c035bc606349d075d5c5cd00a6cd1da23ab5c39d4ef0f60",
        27,
    ),
    (
        TPSL_ORDER,
        None,
        MAINNET,
        "0x98343f2b5ae8e26bb2587daad3863bc70d8792b09af1841b6fdd530a2065a3f9",
        "0x6b5bb6bb0633b710aa22b721dd9dee6d083646a5f8e581a20b545be6c1feb405",
        27,
    ),
    (
        TPSL_ORDER,
        None,
        TESTNET,
        "0x971c554d917c44e0e1b6cc45d8f9404f32172a9d3b3566262347d0302896a2e4",
        "0x206257b104788f80450f8e786c329daa589aa0b32ba96948201ae556d5637eac",
        28,
    ),
    (
        '{"type":"createSubAccount","name":"example"}',
        None,
        MAINNET,
        "0x51096fe3239421d16b671e192f574ae24ae14329099b6db28e479b86cdd6caa7",
        "0xb71f7d293af92d3772572afb8b102d167a7cef7473388286bc01f52a5c5b423",
        27,
    ),
    (
        '{"type":"createSubAccount","name":"example"}',
        None,
        TESTNET,
        "0xa699e3ed5c2b89628c746d3298b5dc1cca604694c2c855da8bb8250ec8014a5b",
        "0x53f1b8153a301c72ecc655b1c315d64e1dcea3ee58921fd7507e35818fcc1584",
        28,
    ),
    (
        SUB_ACCOUNT_TRANSFER,
        None,
        MAINNET,
        "0x43592d7c6c7d816ece2e206f174be61249d651944932b13343f4d13f306ae602",
        "0x71a926cb5c9a7c01c3359ec4c4c34c16ff8107d610994d4de0e6430e5cc0f4c9",
        28,
    ),
    (
        SUB_ACCOUNT_TRANSFER,
        None,
        TESTNET,
        "0xe26574013395ad55ee2f4e0575310f003c5bb3351b5425482e2969fa51543927",
        "0xefb08999196366871f919fd0e138b3a7f30ee33e678df7cfaf203e25f0a4278",
        28,
    ),
    (
        '{"type":"scheduleCancel"}',
        None,
        MAINNET,
        "0x6cdfb286702f5917e76cd9b3b8bf678fcc49aec194c02a73e6d4f16891195df9",
        "0x6557ac307fa05d25b8d61f21fb8a938e703b3d9bf575f6717ba21ec61261b2a0",
        27,
    ),
    (
        '{"type":"scheduleCancel"}',
        None,
        TESTNET,
        "0xc75bb195c3f6a4e06b7d395acc20bbb224f6d23ccff7c6a26d327304e6efaeed",
        "0x342f8ede109a29f2c0723bd5efb9e9100e3bbb493f8fb5164ee3d385908233df",
        28,
    ),
    (
        '{"type":"scheduleCancel","time":123456789}',
        None,
        MAINNET,
        "0x609cb20c737945d070716dcc696ba030e9976fcf5edad87afa7d877493109d55",
        "0x16c685d63b5c7a04512d73f183b3d7a00da5406ff1f8aad33f8ae2163bab758b",
        28,
    ),
    (
        '{"type":"scheduleCancel","time":123456789}',
        None,
        TESTNET,
        "0x4e4f2dbd4107c69783e251b7e1057d9f2b9d11cee213441ccfa2be63516dc5bc",
        "0x706c656b23428c8ba356d68db207e11139ede1670481a9e01ae2dfcdb0e1a678",
        27,
    ),
]

TRANSFER = (
    '{"destination":"0x5e9ee1089755c3435139848e47e6635505d5a13a","amount":"1",'
    '"time":1687816341423,"type":"%s","signatureChainId":"0x66eee","hyperliquidChain":"Testnet"}'
)
USER_SIGNED_VECTORS = [
    (
        TRANSFER % "usdSend",
        "0x637b37dd731507cdd24f46532ca8ba6eec616952c56218baeff04144e4a77073",
        "0x11a6a24900e6e314136d2592e2f8d502cd89b7c15b198e1bee043c9589f9fad7",
        27,
    ),
    (
        TRANSFER % "withdraw3",
        "0x8363524c799e90ce9bc41022f7c39b4e9bdba786e5f9c72b20e43e1462c37cf9",
        "0x58b1411a775938b83e29182e8ef74975f9054c8e97ebf5ec2dc8d51bfc893881",
        28,
    ),
]


@pytest.mark.parametrize(("action", "vault", "network", "r", "s", "v"), L1_VECTORS)
def test_sdk_l1_vectors_recover_the_golden_address(
    action: str, vault: str | None, network: Network, r: str, s: str, v: int
) -> None:
    signature = {"r": r, "s": s, "v": v}
    assert recover_signer(json.loads(action), 0, vault, None, signature, network) == GOLDEN_ADDRESS


@pytest.mark.parametrize(("action", "r", "s", "v"), USER_SIGNED_VECTORS)
def test_sdk_user_signed_vectors_recover_the_golden_address(
    action: str, r: str, s: str, v: int
) -> None:
    signature = {"r": r, "s": s, "v": v}
    parsed = json.loads(action)
    assert recover_signer(parsed, parsed["time"], None, None, signature) == GOLDEN_ADDRESS


def test_msgpack_and_connection_id_of_the_spec_check_vector() -> None:
    action = json.loads(
        '{"type":"order","orders":[{"a":1,"b":true,"p":"1100","s":"0.2","r":false,'
        '"t":{"limit":{"tif":"Gtc"}}}],"grouping":"na"}'
    )
    packed = msgpack.packb(action).hex()
    assert packed.startswith("83a474797065a56f72646572a66f72646572739186a16101")
    assert packed.endswith("a867726f7570696e67a26e61")
    expected = "e4fdc41470fecc444a7d4b4ee8c125eadbd49c3d777ad7e147fcf0c381b4fb4f"
    assert connection_id(action, 0, None, None) == bytes.fromhex(expected)


def test_connection_id_of_the_sdk_production_vector() -> None:
    action = json.loads(
        '{"type":"order","orders":[{"a":4,"b":true,"p":"1670.1","s":"0.0147","r":false,'
        '"t":{"limit":{"tif":"Ioc"}}}],"grouping":"na"}'
    )
    expected = "0fcbeda5ae3c4950a548021552a4fea2226858c4453571bf3f24ba017eac2908"
    assert connection_id(action, 1677777606040, None, None) == bytes.fromhex(expected)


def test_connection_id_covers_vault_and_expiry() -> None:
    action = {"type": "noop"}
    plain = connection_id(action, 5, None, None)
    # Each marker is part of the hash: a vault flag of 0x01 + address, an expiry of 0x00 + 8 bytes.
    assert connection_id(action, 5, VAULT, None) != plain
    assert connection_id(action, 5, None, 0) != plain
    assert connection_id(action, 5, VAULT.upper().replace("0X", "0x"), None) == connection_id(
        action, 5, VAULT, None
    )


def test_user_signed_nonce_fields() -> None:
    assert dict(USER_SIGNED_NONCE_FIELD) == {
        "usdSend": "time",
        "spotSend": "time",
        "withdraw3": "time",
        "usdClassTransfer": "nonce",
        "sendAsset": "nonce",
        "approveAgent": "nonce",
        "approveBuilderFee": "nonce",
        "tokenDelegate": "nonce",
        "convertToMultiSigUser": "nonce",
        "userDexAbstraction": "nonce",
        "userSetAbstraction": "nonce",
    }


# The SDK as the oracle.

NONCE = 1_700_000_000_000
ADDRESS_B = "0x5e9ee1089755c3435139848e47e6635505d5a13a"

# Every user-signed type, as the SDK builds it (key order as it posts it), with its signer.
SDK_USER_SIGNED: list[tuple[dict[str, Any], Callable[..., dict[str, Any]]]] = [
    (
        {"destination": ADDRESS_B, "amount": "2.5", "time": NONCE, "type": "usdSend"},
        sdk.sign_usd_transfer_action,
    ),
    (
        {
            "destination": ADDRESS_B,
            "amount": "10",
            "token": "PURR:0xc4bf3f870c0e9465323c0b6ed28096c2",
            "time": NONCE,
            "type": "spotSend",
        },
        sdk.sign_spot_transfer_action,
    ),
    (
        {"destination": ADDRESS_B, "amount": "5", "time": NONCE, "type": "withdraw3"},
        sdk.sign_withdraw_from_bridge_action,
    ),
    (
        {"type": "usdClassTransfer", "amount": "1.0", "toPerp": True, "nonce": NONCE},
        sdk.sign_usd_class_transfer_action,
    ),
    (
        {
            "type": "sendAsset",
            "destination": ADDRESS_B,
            "sourceDex": "",
            "destinationDex": "spot",
            "token": "USDC:0x6d1e7cde53ba9467b783cb7c530ce054",
            "amount": "3",
            "fromSubAccount": "",
            "nonce": NONCE,
        },
        sdk.sign_send_asset_action,
    ),
    (
        {
            "type": "approveAgent",
            "agentAddress": "0x5E9ee1089755c3435139848e47E6635505D5A13a",
            "agentName": "bot",
            "nonce": NONCE,
        },
        sdk.sign_agent,
    ),
    (
        {"maxFeeRate": "0.001%", "builder": ADDRESS_B, "nonce": NONCE, "type": "approveBuilderFee"},
        sdk.sign_approve_builder_fee,
    ),
    (
        {
            "validator": ADDRESS_B,
            "wei": 10**8,
            "isUndelegate": False,
            "nonce": NONCE,
            "type": "tokenDelegate",
        },
        sdk.sign_token_delegate_action,
    ),
    (
        {
            "type": "convertToMultiSigUser",
            "signers": json.dumps({"authorizedUsers": [ADDRESS_B], "threshold": 1}),
            "nonce": NONCE,
        },
        sdk.sign_convert_to_multi_sig_user_action,
    ),
    (
        {"type": "userDexAbstraction", "user": ADDRESS_B, "enabled": True, "nonce": NONCE},
        sdk.sign_user_dex_abstraction_action,
    ),
    (
        {
            "type": "userSetAbstraction",
            "user": ADDRESS_B,
            "abstraction": "portfolioMargin",
            "nonce": NONCE,
        },
        sdk.sign_user_set_abstraction_action,
    ),
]


def _wire(value: Any) -> Any:
    """What the server sees: the value through JSON text and back."""
    return json.loads(json.dumps(value))


def test_every_user_signed_type_is_listed_once() -> None:
    assert sorted(a["type"] for a, _ in SDK_USER_SIGNED) == sorted(USER_SIGNED_NONCE_FIELD)


@pytest.mark.parametrize(
    ("action", "sign"), SDK_USER_SIGNED, ids=[a["type"] for a, _ in SDK_USER_SIGNED]
)
def test_every_user_signed_type_recovers_its_sdk_signer(
    action: dict[str, Any], sign: Callable[..., dict[str, Any]]
) -> None:
    wallet = eth_account.Account.from_key(GOLDEN_KEY)
    action = dict(action)
    signature = _wire(sign(wallet, action, False))
    assert recover_signer(_wire(action), NONCE, None, None, signature) == GOLDEN_ADDRESS
    # The SDK overwrites hyperliquidChain; signed for mainnet, the devnet refuses it outright.
    mainnet_signature = _wire(sign(wallet, action, True))
    assert recover_signer(_wire(action), NONCE, None, None, mainnet_signature) == Rejected(
        WRONG_NETWORK
    )
    assert (
        recover_signer(_wire(action), NONCE, None, None, mainnet_signature, MAINNET)
        == GOLDEN_ADDRESS
    )


def test_approve_agent_without_a_name_is_verified_with_an_empty_name() -> None:
    wallet = eth_account.Account.from_key(GOLDEN_KEY)
    action: dict[str, Any] = {
        "type": "approveAgent",
        "agentAddress": ADDRESS_B,
        "agentName": "",
        "nonce": NONCE,
    }
    signature = sdk.sign_agent(wallet, action, False)
    del action["agentName"]  # what the SDK posts for approve_agent(name=None)
    assert recover_signer(_wire(action), NONCE, None, None, signature) == GOLDEN_ADDRESS
    assert recover_signer({**action, "agentName": None}, NONCE, None, None, signature) == Rejected(
        ERR_DESERIALIZE, 422
    )


def test_multi_sig_outer_signer() -> None:
    wallet = eth_account.Account.from_key(GOLDEN_KEY)
    action = {
        "type": "multiSig",
        "signatureChainId": "0x66eee",
        "signatures": [{"r": "0x1", "s": "0x2", "v": 27}],
        "payload": {
            "multiSigUser": ADDRESS_B,
            "outerSigner": GOLDEN_ADDRESS,
            "action": {"type": "scheduleCancel", "time": NONCE + 10_000},
        },
    }
    for vault, expires in ((None, None), (VAULT, NONCE + 60_000)):
        signature = sdk.sign_multi_sig_action(wallet, action, False, vault, NONCE, expires)
        assert recover_signer(_wire(action), NONCE, vault, expires, signature) == GOLDEN_ADDRESS
        # The hash covers the nonce, the vault and the expiry, as an L1 action's does.
        assert recover_signer(_wire(action), NONCE + 1, vault, expires, signature) != (
            GOLDEN_ADDRESS
        )


# Random keys and actions.

keys = st.integers(1, N - 1).map(lambda k: k.to_bytes(32, "big"))
addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
decimals = st.from_regex(r"(0|[1-9][0-9]{0,9})(\.[0-9]{0,7}[1-9])?", fullmatch=True)
nonces = st.integers(0, 2**64 - 1)


@st.composite
def order_wires(draw: st.DrawFn) -> dict[str, Any]:
    order_type = draw(
        st.one_of(
            st.builds(lambda tif: {"limit": {"tif": tif}}, st.sampled_from(["Gtc", "Ioc", "Alo"])),
            st.builds(
                lambda market, px, tpsl: {
                    "trigger": {"isMarket": market, "triggerPx": px, "tpsl": tpsl}
                },
                st.booleans(),
                decimals,
                st.sampled_from(["tp", "sl"]),
            ),
        )
    )
    wire = {
        "a": draw(st.integers(0, 20_000)),
        "b": draw(st.booleans()),
        "p": draw(decimals),
        "s": draw(decimals),
        "r": draw(st.booleans()),
        "t": order_type,
    }
    if draw(st.booleans()):
        wire["c"] = "0x" + draw(st.binary(min_size=16, max_size=16)).hex()
    return wire


class Request(NamedTuple):
    action: dict[str, Any]
    nonce: int
    vault: str | None
    expires: int | None
    drop_agent_name: bool = False  # approve_agent(name=None): signed with "", posted without


@st.composite
def l1_requests(draw: st.DrawFn) -> Request:
    action = draw(
        st.one_of(
            st.builds(
                lambda orders, grouping: {"type": "order", "orders": orders, "grouping": grouping},
                st.lists(order_wires(), min_size=1, max_size=3),
                st.sampled_from(["na", "normalTpsl", "positionTpsl"]),
            ),
            st.builds(
                lambda cancels: {"type": "cancel", "cancels": cancels},
                st.lists(
                    st.builds(lambda a, o: {"a": a, "o": o}, st.integers(0, 20_000), nonces),
                    min_size=1,
                    max_size=3,
                ),
            ),
        )
    )
    vault = draw(st.none() | addresses)
    expires = draw(st.none() | nonces)
    return Request(action, draw(nonces), vault, expires)


@st.composite
def user_signed_requests(draw: st.DrawFn) -> Request:
    nonce = draw(nonces)
    kind = draw(st.sampled_from(["usdSend", "usdClassTransfer", "approveAgent"]))
    if kind == "usdSend":
        action = {
            "destination": draw(addresses),
            "amount": draw(decimals),
            "time": nonce,
            "type": "usdSend",
        }
        return Request(action, nonce, None, None)
    if kind == "usdClassTransfer":
        action = {
            "type": "usdClassTransfer",
            "amount": draw(decimals),
            "toPerp": draw(st.booleans()),
            "nonce": nonce,
        }
        return Request(action, nonce, None, None)
    name = draw(st.none() | st.text(max_size=16))
    action = {
        "type": "approveAgent",
        "agentAddress": draw(addresses),
        "agentName": name or "",
        "nonce": nonce,
    }
    return Request(action, nonce, None, None, drop_agent_name=name is None)


requests = l1_requests() | user_signed_requests()

USER_SIGNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "usdSend": sdk.sign_usd_transfer_action,
    "usdClassTransfer": sdk.sign_usd_class_transfer_action,
    "approveAgent": sdk.sign_agent,
}


def _sign(key: bytes, request: Request, mainnet: bool = False) -> tuple[Request, dict[str, Any]]:
    """The request as posted (through JSON) and its signature, both made by the SDK."""
    wallet = eth_account.Account.from_key(key)
    action = json.loads(json.dumps(request.action))  # the SDK adds fields to what it signs
    user_signer = USER_SIGNERS.get(action["type"])
    if user_signer is not None:
        signature = user_signer(wallet, action, mainnet)
    else:
        signature = sdk.sign_l1_action(
            wallet, action, request.vault, request.nonce, request.expires, mainnet
        )
    if request.drop_agent_name:
        del action["agentName"]
    return request._replace(action=_wire(action)), _wire(signature)


def _recover(request: Request, signature: object, network: Network = TESTNET) -> str | Rejected:
    return recover_signer(
        request.action, request.nonce, request.vault, request.expires, signature, network
    )


def _address(key: bytes) -> str:
    return str(eth_account.Account.from_key(key).address).lower()


@settings(deadline=None)
@given(keys, requests)
def test_recovers_the_sdk_signer(key: bytes, request: Request) -> None:
    posted, signature = _sign(key, request)
    assert _recover(posted, signature) == _address(key)


@settings(deadline=None)
@given(keys, requests)
def test_a_mainnet_signature_does_not_pass_on_testnet(key: bytes, request: Request) -> None:
    posted, signature = _sign(key, request, mainnet=True)
    recovered = _recover(posted, signature)
    if posted.action["type"] in USER_SIGNED_NONCE_FIELD:
        assert recovered == Rejected(WRONG_NETWORK)
        # Claiming Testnet in the action does not help: the signature covers "Mainnet".
        claimed = posted._replace(action={**posted.action, "hyperliquidChain": "Testnet"})
        assert _recover(claimed, signature) not in (_address(key), Rejected(WRONG_NETWORK))
    else:
        assert isinstance(recovered, str) and recovered != _address(key)
    assert _recover(posted, signature, MAINNET) == _address(key)


def _tampered(value: Any) -> tuple[Any, bool]:
    """`value` with its first signed leaf changed (and whether one was): ints + 1, bools
    flipped, an address's last digit changed, other strings extended."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("type", "signatureChainId", "hyperliquidChain"):
                continue
            changed, done = _tampered(item)
            if done:
                return {**value, key: changed}, True
        return value, False
    if isinstance(value, list):
        for index, item in enumerate(value):
            changed, done = _tampered(item)
            if done:
                return [*value[:index], changed, *value[index + 1 :]], True
        return value, False
    if isinstance(value, bool):
        return not value, True
    if isinstance(value, int):
        return (value + 1) % 2**64, True
    if isinstance(value, str) and len(value) == 42 and value.startswith("0x"):
        return value[:-1] + ("1" if value[-1] == "0" else "0"), True
    if isinstance(value, str):
        return value + "0", True
    return value, False


@settings(deadline=None)
@given(keys, requests)
def test_a_tampered_request_recovers_another_address(key: bytes, request: Request) -> None:
    posted, signature = _sign(key, request)
    action, done = _tampered(posted.action)
    assert done
    recovered = _recover(posted._replace(action=action), signature)
    assert isinstance(recovered, str) and recovered != _address(key)
    if posted.action["type"] not in USER_SIGNED_NONCE_FIELD:
        # The request's nonce is part of an L1 hash (a user-signed one carries it in the action).
        other = posted._replace(nonce=(posted.nonce + 1) % 2**64)
        recovered = _recover(other, signature)
        assert isinstance(recovered, str) and recovered != _address(key)


def _reversed_keys(value: dict[str, Any]) -> dict[str, Any]:
    return dict(reversed(value.items()))


@settings(deadline=None)
@given(keys, requests)
def test_reordered_keys_change_only_l1_hashes(key: bytes, request: Request) -> None:
    posted, signature = _sign(key, request)
    reordered = posted._replace(action=_reversed_keys(posted.action))
    if posted.action["type"] in USER_SIGNED_NONCE_FIELD:
        # EIP-712 reads the fields by name: the order of the JSON keys is not signed.
        assert _recover(reordered, signature) == _address(key)
    else:
        recovered = _recover(reordered, signature)
        assert isinstance(recovered, str) and recovered != _address(key)
        inner = dict(posted.action)
        first_key = next(k for k in inner if k != "type")
        if isinstance(inner[first_key], list) and isinstance(inner[first_key][0], dict):
            inner[first_key] = [_reversed_keys(inner[first_key][0]), *inner[first_key][1:]]
            recovered = _recover(posted._replace(action=inner), signature)
            assert isinstance(recovered, str) and recovered != _address(key)


@settings(deadline=None, max_examples=50)
@given(keys, requests)
def test_the_high_s_twin_recovers_the_same_signer(key: bytes, request: Request) -> None:
    posted, signature = _sign(key, request)
    twin = {
        "r": signature["r"],
        "s": hex(N - int(signature["s"], 16)),
        "v": 55 - signature["v"],  # 27 <-> 28
    }
    assert _recover(posted, twin) == _address(key)


# Garbage.

GOOD = {
    "r": "0x82b2ba28e76b3d761093aaded1b1cdad4960b3af30212b343fb2e6cdfa4e3d54",
    "s": "0x6b53878fc99d26047f4d7e8c90eb98955a109f44209163f52d8dc4278cbbd9f5",
    "v": 27,
}
MALFORMED = Rejected(ERR_DESERIALIZE, 422)
UNRECOVERED = Rejected(UNRECOVERABLE)
WITHDRAW_WITHOUT_TIME = {k: v for k, v in json.loads(TRANSFER % "withdraw3").items() if k != "time"}


@pytest.mark.parametrize(
    ("signature", "expected"),
    [
        ({"r": "0x0", "s": "0x0", "v": 27}, UNRECOVERED),
        ({**GOOD, "v": 29}, UNRECOVERED),
        ({**GOOD, "v": 0}, UNRECOVERED),
        ({**GOOD, "v": 1}, UNRECOVERED),
        ({**GOOD, "s": hex(N)}, UNRECOVERED),
        ({**GOOD, "r": hex(N + 5)}, UNRECOVERED),
        ({**GOOD, "s": "0x0"}, UNRECOVERED),
        ({**GOOD, "r": "0x" + "f" * 64}, UNRECOVERED),
        ({**GOOD, "r": "0x5"}, UNRECOVERED),  # no curve point has x = 5
        ({**GOOD, "r": "0x" + "1" * 65}, MALFORMED),
        ({**GOOD, "r": "82b2ba28"}, MALFORMED),
        ({**GOOD, "r": "0x"}, MALFORMED),
        ({**GOOD, "r": "0xzz"}, MALFORMED),
        ({**GOOD, "r": "0x-5"}, MALFORMED),
        ({**GOOD, "r": "0x_1"}, MALFORMED),
        ({**GOOD, "r": " 0x1"}, MALFORMED),
        ({**GOOD, "r": 12345}, MALFORMED),
        ({**GOOD, "v": "27"}, MALFORMED),
        ({**GOOD, "v": True}, MALFORMED),
        ({**GOOD, "v": 27.0}, MALFORMED),
        ({"r": GOOD["r"], "s": GOOD["s"]}, MALFORMED),
        ([GOOD["r"], GOOD["s"], 27], MALFORMED),
        (None, MALFORMED),
        ("0x" + "ab" * 65, MALFORMED),
    ],
)
def test_garbage_signatures_are_rejected(signature: object, expected: Rejected) -> None:
    assert recover_signer(json.loads(ORDER), 0, None, None, signature) == expected


def test_the_unmodified_garbage_baseline_recovers() -> None:
    assert recover_signer(json.loads(ORDER), 0, None, None, GOOD) == GOLDEN_ADDRESS


@pytest.mark.parametrize(
    ("action", "nonce", "vault", "expires"),
    [
        ([], 0, None, None),
        ({"orders": []}, 0, None, None),
        ({"type": 5}, 0, None, None),
        (json.loads(ORDER), -1, None, None),
        (json.loads(ORDER), 2**64, None, None),
        (json.loads(ORDER), True, None, None),
        (json.loads(ORDER), "0", None, None),
        (json.loads(ORDER), 0, VAULT[:-1], None),
        (json.loads(ORDER), 0, VAULT[2:] + "00", None),
        (json.loads(ORDER), 0, None, -5),
        (json.loads(ORDER), 0, None, 2**64),
        ({"type": "noop", "big": 2**64}, 0, None, None),
        ({"type": "noop", "small": -(2**63) - 1}, 0, None, None),
        ({"type": "noop", "text": "\ud800"}, 0, None, None),
        (json.loads(TRANSFER % "usdSend") | {"time": "1"}, 0, None, None),
        (json.loads(TRANSFER % "usdSend") | {"time": 2**64}, 0, None, None),
        (json.loads(TRANSFER % "usdSend") | {"amount": 1}, 0, None, None),
        (json.loads(TRANSFER % "usdSend") | {"amount": "\ud800"}, 0, None, None),
        (json.loads(TRANSFER % "usdSend") | {"signatureChainId": "66eee"}, 0, None, None),
        (json.loads(TRANSFER % "usdSend") | {"hyperliquidChain": None}, 0, None, None),
        (json.loads(TRANSFER % "usdClassTransfer") | {"toPerp": 1}, 0, None, None),
        (WITHDRAW_WITHOUT_TIME, 0, None, None),
        (
            {"type": "approveAgent", "agentAddress": "0x12", "nonce": 1}
            | {"signatureChainId": "0x66eee", "hyperliquidChain": "Testnet"},
            1,
            None,
            None,
        ),
        ({"type": "multiSig", "signatureChainId": 5}, 0, None, None),
    ],
)
def test_malformed_requests_are_rejected_before_recovery(
    action: object, nonce: object, vault: object, expires: object
) -> None:
    assert recover_signer(action, nonce, vault, expires, GOOD) == MALFORMED


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
hex_words = st.integers(0, 2**260).map(hex) | st.text(alphabet="0x123456789abcdefXg", max_size=70)


@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {"type": st.sampled_from([*USER_SIGNED_NONCE_FIELD, "multiSig", "order"])},
            optional={
                "hyperliquidChain": st.sampled_from(["Testnet", "Mainnet"]) | json_values,
                "signatureChainId": hex_words | json_values,
                "destination": addresses | json_values,
                "agentAddress": addresses | json_values,
                "amount": json_values,
                "time": nonces | json_values,
                "nonce": nonces | json_values,
                "toPerp": json_values,
            },
        ),
    ),
    nonces | json_values,
    st.none() | addresses | json_values,
    st.none() | nonces | json_values,
    st.fixed_dictionaries(
        {"r": hex_words | json_values, "s": hex_words | json_values, "v": st.integers(0, 30)}
    )
    | json_values,
)
def test_any_json_gives_an_address_or_a_rejection(
    action: object, nonce: object, vault: object, expires: object, signature: object
) -> None:
    result = recover_signer(action, nonce, vault, expires, signature)
    if isinstance(result, str):
        assert len(result) == 42 and result == result.lower() and result.startswith("0x")
        int(result, 16)
    else:
        assert result in (MALFORMED, UNRECOVERED, Rejected(WRONG_NETWORK))


# What JSON decodes to, with ints across msgpack's header boundaries and beyond its range.
decoded_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**65), max_value=2**65)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(st.text(max_size=40), inner),
    max_leaves=60,
)


@settings(deadline=None)
@given(decoded_json, st.integers(min_value=0, max_value=2**64 - 1))
def test_the_action_hash_is_the_sdks_msgpack_hash(value: Any, nonce: int) -> None:
    action = {"type": "order", "payload": value}
    try:
        expected = sdk.action_hash(action, None, nonce, None)
    except (OverflowError, ValueError):
        assert connection_id(action, nonce, None, None) == Rejected(ERR_DESERIALIZE, 422)
        return
    assert connection_id(action, nonce, None, None) == expected
