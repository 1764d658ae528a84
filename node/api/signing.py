"""Who signed an `/exchange` request (sdk-api.md 3.1, 5.1, 5.2 and 5.4).

Three schemes, picked by the action's `type`:
- User-signed actions (the keys of `USER_SIGNED_NONCE_FIELD`): EIP-712 typed data in the
  `HyperliquidSignTransaction` domain, chainId taken from the action's `signatureChainId`, the
  message being the action's own fields listed for its type.
- `multiSig`: its outer signer signs the user-signed `SendMultiSig` message, whose
  `multiSigActionHash` hashes the action without its `type` as an L1 action is hashed.
- Every other type (L1): msgpack(action) + nonce + vault flag + expiry marker, through keccak,
  is the connectionId, signed as the EIP-712 `Agent {source, connectionId}` of the `Exchange`
  domain (chainId 1337).

Invariants:
- L1 actions are hashed exactly as received: msgpack of the parsed JSON object, key order,
  ints and nulls kept. Re-ordering keys or changing a value's type changes the hash, hence the
  recovered address: the client signed those bytes, not a canonical form of them.
- The EIP-712 digests are built from the standard's definition, with their constant parts
  (domain separators, type hashes, keccak of the phantom agent's source) computed once. They
  are the digests eth-account's `encode_typed_data` gives for the same typed data; the tests
  hold them to the SDK's own signing.
- The request is untrusted: any value of the wrong shape or out of range gives a `Rejected`,
  never an exception. A well-formed signature that does not recover is rejected with
  `Unable to recover signer.` (what Hyperliquid answers for an all-zero signature). One that
  recovers always names *some* address: whether that address may act is the caller's check.
- A recovered address is lowercase: `0x` and 40 hex digits.

Choices (Hyperliquid does not document them):
- Shape errors (a missing field, a string where an int belongs, bad hex, an int that does not
  fit in 64 bits, a string msgpack cannot encode) are answered as the real API answers a body
  it cannot deserialize: HTTP 422 with `Failed to deserialize the JSON body into the target
  type`. They are found before any signature check.
- `r` and `s` are `0x` and 1 to 64 hex digits (the SDK does not zero-pad them); outside
  [1, n - 1], or with `v` not 27 or 28, the signature does not recover. A high `s` is accepted
  as eth-account's recovery accepts it: its twin signature carries the same nonce, so it
  cannot replay the action.
- A user-signed action whose `hyperliquidChain` is not the devnet's network is refused before
  recovery with `Mainnet and testnet require different signature.`.
- L1 actions are hashed as received, as sdk-api.md 5.1 asks. Hyperliquid itself was seen
  recovering the same signer from a re-ordered or re-padded order, so it hashes a typed form of
  the action; the SDK always sends the form it signed, so both agree for it.
- `approveAgent` without `agentName` is verified with `agentName: ""`, as the SDK signs it
  before it drops the key; a `null` name is a shape error.
- Left to the caller: that a user-signed action's `time`/`nonce` field equals the request's
  nonce (`USER_SIGNED_NONCE_FIELD` names it), `expiresAfter` on user-signed actions, and the
  inner signatures of a multi-sig action.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final, NamedTuple, TypeGuard

import coincurve
import msgspec
from sha3 import keccak_256  # type: ignore[import-untyped]  # safe-pysha3

from protocol.orders import ERR_DESERIALIZE

UNRECOVERABLE: Final = "Unable to recover signer."
WRONG_NETWORK: Final = "Mainnet and testnet require different signature."

MULTI_SIG: Final = "multiSig"

_SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_U64_END: Final = 2**64


class Network(msgspec.Struct, frozen=True):
    """What a signature commits to about the chain it is meant for."""

    source: str  # the phantom agent's source of L1 actions
    chain: str  # the `hyperliquidChain` of user-signed actions


MAINNET: Final = Network("a", "Mainnet")
TESTNET: Final = Network("b", "Testnet")  # what the SDK signs for any URL but mainnet's


class Rejected(msgspec.Struct, frozen=True):
    """A request refused before it reaches the chain: `error` is Hyperliquid's message, sent
    with `http_status` (200 with `{"status":"err"}`, or 422 with the text for a bad shape)."""

    error: str
    http_status: int = 200


_MALFORMED: Final = Rejected(ERR_DESERIALIZE, 422)
_UNRECOVERED: Final = Rejected(UNRECOVERABLE)
_WRONG_NETWORK: Final = Rejected(WRONG_NETWORK)


# The SDK hashes `msgpack.packb(action)`; for what JSON decodes to (dicts in key order, lists,
# str, int, float, bool, None) msgspec writes the same bytes (the smallest int and str headers,
# float64), about 2.5x faster. tests/node/api/test_signing.py checks the two agree.
_MSGPACK: Final = msgspec.msgpack.Encoder()


def keccak256(data: bytes) -> bytes:
    # safe-pysha3 (eth-hash's C backend): 0.7 us for a 32-64 byte input where pycryptodome's
    # keccak, which eth-account installs, takes 4.3 us; a request hashes four times.
    result: bytes = keccak_256(data).digest()
    return result


# Field encoders: a JSON value to its 32-byte EIP-712 word, or None when it has the wrong shape.

_ADDRESS: Final = re.compile(r"0x[0-9a-fA-F]{40}")
_HEX_WORD: Final = re.compile(r"0x[0-9a-fA-F]{1,64}")
_FALSE_WORD: Final = bytes(32)
_TRUE_WORD: Final = bytes(31) + b"\x01"


def _is_u64(value: object) -> TypeGuard[int]:
    return type(value) is int and 0 <= value < _U64_END  # a bool is an int, not a uint64


def _hex_word(value: object) -> int | None:
    if isinstance(value, str) and _HEX_WORD.fullmatch(value):
        return int(value[2:], 16)
    return None


def _string_word(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return keccak256(value.encode())
    except UnicodeEncodeError:  # a lone surrogate, which `json` lets through from \\ud800
        return None


def _uint64_word(value: object) -> bytes | None:
    return value.to_bytes(32, "big") if _is_u64(value) else None


def _bool_word(value: object) -> bytes | None:
    if type(value) is not bool:
        return None
    return _TRUE_WORD if value else _FALSE_WORD


def _address_word(value: object) -> bytes | None:
    if isinstance(value, str) and _ADDRESS.fullmatch(value):
        return bytes(12) + bytes.fromhex(value[2:])
    return None


_ENCODERS: Final[Mapping[str, Callable[[object], bytes | None]]] = {
    "string": _string_word,
    "uint64": _uint64_word,
    "bool": _bool_word,
    "address": _address_word,
}


def _type_hash(primary_type: str, fields: tuple[tuple[str, str], ...]) -> bytes:
    members = ",".join(f"{kind} {name}" for name, kind in fields)
    return keccak256(f"{primary_type}({members})".encode())


_DOMAIN_TYPE_HASH: Final = _type_hash(
    "EIP712Domain",
    (
        ("name", "string"),
        ("version", "string"),
        ("chainId", "uint256"),
        ("verifyingContract", "address"),
    ),
)


def _domain_separator(name: str, chain_id: int) -> bytes:
    # verifyingContract is the zero address in both of Hyperliquid's domains.
    return keccak256(
        _DOMAIN_TYPE_HASH
        + keccak256(name.encode())
        + keccak256(b"1")
        + chain_id.to_bytes(32, "big")
        + bytes(32)
    )


_EXCHANGE_DOMAIN: Final = _domain_separator("Exchange", 1337)


@functools.lru_cache(maxsize=64)  # clients use one or two chain ids; the bound keeps it small
def _transaction_domain(chain_id: int) -> bytes:
    return _domain_separator("HyperliquidSignTransaction", chain_id)


def _digest(domain: bytes, struct_hash: bytes) -> bytes:
    return keccak256(b"\x19\x01" + domain + struct_hash)


# L1 actions.

_AGENT_TYPE_HASH: Final = _type_hash("Agent", (("source", "string"), ("connectionId", "bytes32")))


@functools.cache  # called only with a Network's constants, never a client's string
def _network_string_hash(text: str) -> bytes:
    return keccak256(text.encode())


def _action_hash(
    action: object, nonce: int, vault_address: str | None, expires_after: int | None
) -> bytes | None:
    """keccak(msgpack(action) + nonce + vault flag [+ 0x00 marker + expiresAfter]); None when
    msgpack cannot encode the action (an int beyond 64 bits, a lone surrogate, deep nesting)."""
    try:
        data = _MSGPACK.encode(action)
    except (TypeError, ValueError, OverflowError, RecursionError):
        return None
    data += nonce.to_bytes(8, "big")
    if vault_address is None:
        data += b"\x00"
    else:
        data += b"\x01" + bytes.fromhex(vault_address[2:])
    if expires_after is not None:
        data += b"\x00" + expires_after.to_bytes(8, "big")
    return keccak256(data)


def connection_id(
    action: object, nonce: object, vault_address: object, expires_after: object
) -> bytes | Rejected:
    """The connectionId an L1 action's phantom agent carries."""
    if not _is_u64(nonce) or not _is_vault(vault_address) or not _is_expiry(expires_after):
        return _MALFORMED
    hashed = _action_hash(action, nonce, vault_address, expires_after)
    return _MALFORMED if hashed is None else hashed


def _is_vault(value: object) -> TypeGuard[str | None]:
    return value is None or (isinstance(value, str) and _ADDRESS.fullmatch(value) is not None)


def _is_expiry(value: object) -> TypeGuard[int | None]:
    return value is None or _is_u64(value)


# User-signed actions.


class _Scheme(NamedTuple):
    type_hash: bytes
    fields: tuple[tuple[str, Callable[[object], bytes | None]], ...]  # after hyperliquidChain
    defaults: Mapping[str, object]  # values of fields a client may leave out


def _scheme(name: str, spec: str, defaults: Mapping[str, object] | None = None) -> _Scheme:
    """`spec` lists the fields after `hyperliquidChain`, as `name:type` separated by spaces."""
    fields = tuple((f[0], f[1]) for f in (item.split(":") for item in spec.split()))
    return _Scheme(
        _type_hash(f"HyperliquidTransaction:{name}", (("hyperliquidChain", "string"), *fields)),
        tuple((field, _ENCODERS[kind]) for field, kind in fields),
        MappingProxyType(dict(defaults or {})),
    )


_USER_SIGNED: Final[Mapping[str, _Scheme]] = {
    "usdSend": _scheme("UsdSend", "destination:string amount:string time:uint64"),
    "spotSend": _scheme("SpotSend", "destination:string token:string amount:string time:uint64"),
    "withdraw3": _scheme("Withdraw", "destination:string amount:string time:uint64"),
    "usdClassTransfer": _scheme("UsdClassTransfer", "amount:string toPerp:bool nonce:uint64"),
    "sendAsset": _scheme(
        "SendAsset",
        "destination:string sourceDex:string destinationDex:string token:string amount:string"
        " fromSubAccount:string nonce:uint64",
    ),
    "approveAgent": _scheme(
        "ApproveAgent",
        "agentAddress:address agentName:string nonce:uint64",
        {"agentName": ""},
    ),
    "approveBuilderFee": _scheme(
        "ApproveBuilderFee", "maxFeeRate:string builder:address nonce:uint64"
    ),
    "tokenDelegate": _scheme(
        "TokenDelegate", "validator:address wei:uint64 isUndelegate:bool nonce:uint64"
    ),
    "convertToMultiSigUser": _scheme("ConvertToMultiSigUser", "signers:string nonce:uint64"),
    "userDexAbstraction": _scheme("UserDexAbstraction", "user:address enabled:bool nonce:uint64"),
    "userSetAbstraction": _scheme(
        "UserSetAbstraction", "user:address abstraction:string nonce:uint64"
    ),
}

USER_SIGNED_NONCE_FIELD: Final[Mapping[str, str]] = MappingProxyType(
    {kind: ("time" if "time" in dict(s.fields) else "nonce") for kind, s in _USER_SIGNED.items()}
)
"""The user-signed action types, each with the field of the action that carries its nonce
(it must equal the request's nonce)."""

_MULTI_SIG_TYPE_HASH: Final = _type_hash(
    "HyperliquidTransaction:SendMultiSig",
    (("hyperliquidChain", "string"), ("multiSigActionHash", "bytes32"), ("nonce", "uint64")),
)

_MISSING: Final = object()


def _chain_domain(action: Mapping[str, object]) -> bytes | None:
    chain_id = _hex_word(action.get("signatureChainId"))
    return None if chain_id is None else _transaction_domain(chain_id)


def _user_signed_digest(
    action: Mapping[str, object], scheme: _Scheme, network: Network
) -> bytes | Rejected:
    chain = action.get("hyperliquidChain")
    domain = _chain_domain(action)
    if not isinstance(chain, str) or domain is None:
        return _MALFORMED
    words = [scheme.type_hash, _network_string_hash(network.chain)]
    for name, encode in scheme.fields:
        word = encode(action.get(name, scheme.defaults.get(name, _MISSING)))
        if word is None:
            return _MALFORMED
        words.append(word)
    if chain != network.chain:  # so the hyperliquidChain word above is the action's own
        return _WRONG_NETWORK
    return _digest(domain, keccak256(b"".join(words)))


def _multi_sig_digest(
    action: Mapping[str, object],
    nonce: int,
    vault_address: str | None,
    expires_after: int | None,
    network: Network,
) -> bytes | Rejected:
    domain = _chain_domain(action)
    untagged = {key: value for key, value in action.items() if key != "type"}
    action_hash = _action_hash(untagged, nonce, vault_address, expires_after)
    if domain is None or action_hash is None:
        return _MALFORMED
    struct = _MULTI_SIG_TYPE_HASH + _network_string_hash(network.chain) + action_hash
    return _digest(domain, keccak256(struct + nonce.to_bytes(32, "big")))


def _l1_digest(
    action: object,
    nonce: int,
    vault_address: str | None,
    expires_after: int | None,
    network: Network,
) -> bytes | Rejected:
    hashed = _action_hash(action, nonce, vault_address, expires_after)
    if hashed is None:
        return _MALFORMED
    struct = keccak256(_AGENT_TYPE_HASH + _network_string_hash(network.source) + hashed)
    return _digest(_EXCHANGE_DOMAIN, struct)


# Recovery.


def _signature(signature: object) -> tuple[int, int, int] | None:
    """(r, s, v) of a well-shaped `{r, s, v}`; v is checked later, with the ranges."""
    if not isinstance(signature, dict):
        return None
    r = _hex_word(signature.get("r"))
    s = _hex_word(signature.get("s"))
    v = signature.get("v")
    if r is None or s is None or not isinstance(v, int) or isinstance(v, bool):
        return None
    return r, s, v


def action_digest(
    action: object,
    nonce: object,
    vault_address: object,
    expires_after: object,
    network: Network = TESTNET,
) -> bytes | Rejected:
    """The 32-byte EIP-712 digest the request's signature must sign."""
    if not isinstance(action, dict) or not isinstance(action.get("type"), str):
        return _MALFORMED
    if not _is_u64(nonce) or not _is_vault(vault_address) or not _is_expiry(expires_after):
        return _MALFORMED
    kind = action["type"]
    scheme = _USER_SIGNED.get(kind)
    if scheme is not None:
        return _user_signed_digest(action, scheme, network)
    if kind == MULTI_SIG:
        return _multi_sig_digest(action, nonce, vault_address, expires_after, network)
    return _l1_digest(action, nonce, vault_address, expires_after, network)


def recover_signer(
    action: object,
    nonce: object,
    vault_address: object,
    expires_after: object,
    signature: object,
    network: Network = TESTNET,
) -> str | Rejected:
    """The lowercase address that signed an `/exchange` request, from its fields as `json`
    parsed them (`vault_address` and `expires_after` None when absent or null)."""
    rsv = _signature(signature)
    digest = action_digest(action, nonce, vault_address, expires_after, network)
    if isinstance(digest, Rejected):
        return digest
    if rsv is None:
        return _MALFORMED
    r, s, v = rsv
    if not (0 < r < _SECP256K1_N and 0 < s < _SECP256K1_N) or v not in (27, 28):
        return _UNRECOVERED
    recoverable = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes((v - 27,))
    try:
        key = coincurve.PublicKey.from_signature_and_message(recoverable, digest, hasher=None)
    except ValueError:  # r is no point's x, or the point recovered is at infinity
        return _UNRECOVERED
    return "0x" + keccak256(key.format(compressed=False)[1:])[12:].hex()
