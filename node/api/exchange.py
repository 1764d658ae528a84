"""POST /exchange: from a request body to a verified `SignedAction`, and from the chain's answer
to Hyperliquid's response JSON. No rule is decided here: whether the signer may act, its nonce
and its vault are the chain's to judge when the block runs (protocol/chain.py).

Invariants:
- A body that is not a JSON object with an `action` object, an integer `nonce` and a
  `signature` is answered with HTTP 422 and Hyperliquid's plain text, like the real API; every
  other refusal is HTTP 200 with `{"status": "err", "response": ...}`.
- Bodies are parsed by `decode_body`, as strictly as the real API's parser, so no value that
  parser refuses (a lone surrogate, NaN, a number out of range) reaches the chain or its log.
- The signature is checked over the action exactly as received (node/api/signing.py); the
  action is decoded only after, so a request that fails either changes nothing.
- A user-signed action carries its nonce inside (`time` or `nonce`): it must equal the
  envelope's (`Nonce mismatch.` otherwise), so the nonce the chain records is the one signed.
"""

from __future__ import annotations

from typing import Any

import msgspec

from node.api.signing import TESTNET, USER_SIGNED_NONCE_FIELD, Network, Rejected, recover_signer
from node.api.wire import average_price, decimal
from protocol.actions import (
    ActionResponse,
    BatchModifyAction,
    CancelResponse,
    CreateSubAccountResponse,
    DefaultResponse,
    ErrorResponse,
    OrderAction,
    OrderResponse,
    SignedAction,
    UserAction,
)
from protocol.markets import Markets
from protocol.orders import ERR_DESERIALIZE, Filled, OrderError, OrderStatus, Resting

Json = Any


# Tagged and array-like: a verify worker sends them down a pipe (node/api/verify_worker.py).
class Verified(msgspec.Struct, frozen=True, tag=True, array_like=True):
    signer: str
    action: SignedAction


class Refused(msgspec.Struct, frozen=True, tag=True, array_like=True):
    """An answer without a block: `status` 422 with plain text, or 200 with an err envelope."""

    status: int
    body: Json


def err(message: str) -> Refused:
    return Refused(200, {"status": "err", "response": message})


def decode_body(body: bytes) -> Json:
    """The JSON value of a request body; ValueError where Hyperliquid's parser (Rust's
    serde_json) refuses it too: bytes that are not UTF-8 JSON, NaN and Infinity, a number beyond
    a float's range, a lone UTF-16 surrogate escape, deep nesting. Python's `json` accepts the
    middle three, and a lone surrogate is a str no UTF-8 encoder takes: msgspec, the block
    log's encoder, raises on it mid-block."""
    try:
        return msgspec.json.decode(body)
    except RecursionError as exc:  # the decoder's own depth guard, raised before any state
        raise ValueError("nested too deeply") from exc


class _Envelope(msgspec.Struct):
    """A request body's fields; `action` stays JSON text until the signature over it holds, and
    is then decoded straight to its type (faster than converting the parsed value)."""

    action: msgspec.Raw = msgspec.Raw(b"")
    nonce: Any = None
    signature: Any = msgspec.UNSET
    vaultAddress: Any = None  # noqa: N815 (the wire's name)
    expiresAfter: Any = None  # noqa: N815


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_USER_ACTION = msgspec.json.Decoder(UserAction)


def verify_request(body: bytes, network: Network = TESTNET) -> Verified | Refused:
    """Parse, check the signature, decode the action."""
    try:
        request = _ENVELOPE.decode(body)
        action = decode_body(request.action) if request.action else None
    except (ValueError, RecursionError, msgspec.ValidationError):  # RecursionError: see above
        return Refused(422, ERR_DESERIALIZE)
    nonce = request.nonce
    if not isinstance(action, dict) or type(nonce) is not int or request.signature is msgspec.UNSET:
        return Refused(422, ERR_DESERIALIZE)
    vault, expires = request.vaultAddress, request.expiresAfter
    signer = recover_signer(action, nonce, vault, expires, request.signature, network)
    if isinstance(signer, Rejected):
        return Refused(422, signer.error) if signer.http_status == 422 else err(signer.error)
    nonce_field = USER_SIGNED_NONCE_FIELD.get(action.get("type", ""))
    if nonce_field is not None and action.get(nonce_field) != nonce:
        return err("Nonce mismatch.")
    try:
        decoded = _USER_ACTION.decode(request.action)
    except msgspec.ValidationError:
        return Refused(422, ERR_DESERIALIZE)
    return Verified(signer, SignedAction(decoded, nonce, vault, expires))


def response_json(action: UserAction, response: ActionResponse, markets: Markets) -> Json:
    """Hyperliquid's answer to an executed action."""
    if isinstance(response, ErrorResponse):
        return {"status": "err", "response": response.error}
    if isinstance(response, OrderResponse):
        assets = _order_assets(action)
        statuses = [
            _order_status(status, assets[i] if i < len(assets) else None, markets)
            for i, status in enumerate(response.statuses)
        ]
        data: Json = {"statuses": statuses}
        return {"status": "ok", "response": {"type": "order", "data": data}}
    if isinstance(response, CancelResponse):
        cancels = [s if isinstance(s, str) else {"error": s.error} for s in response.statuses]
        return {"status": "ok", "response": {"type": "cancel", "data": {"statuses": cancels}}}
    if isinstance(response, CreateSubAccountResponse):
        return {"status": "ok", "response": {"type": "createSubAccount", "data": response.address}}
    assert isinstance(response, DefaultResponse)
    return {"status": "ok", "response": {"type": "default"}}


def _order_assets(action: UserAction) -> list[int]:
    if isinstance(action, OrderAction):
        return [o.a for o in action.orders]
    if isinstance(action, BatchModifyAction):
        return [m.order.a for m in action.modifies]
    return []


def _order_status(status: OrderStatus, asset: int | None, markets: Markets) -> Json:
    if type(status) is Resting:  # the common case first
        resting: Json = {"oid": status.oid}
        if status.cloid is not None:
            resting["cloid"] = status.cloid
        return {"resting": resting}
    if isinstance(status, str):
        return status
    if isinstance(status, OrderError):
        return {"error": status.error}
    assert isinstance(status, Filled) and asset is not None
    market = markets.by_asset[asset]
    # The notional is at px_decimals + sz_decimals: the average price is ntl / (sz x 10^pxd).
    filled: Json = {
        "totalSz": decimal(status.total_sz, market.sz_decimals),
        "avgPx": average_price(status.total_ntl, status.total_sz, market),
        "oid": status.oid,
    }
    if status.cloid is not None:
        filled["cloid"] = status.cloid
    return {"filled": filled}
