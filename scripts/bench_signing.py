"""Signature recovery benchmark: `node.api.signing.recover_signer` against eth-account's generic
path, as the SDK's own recovery functions take it (`encode_typed_data` +
`Account.recover_message`, the server-side recipe of sdk-api.md 5.3), in the same process, on
the same requests (signed with the SDK).

Workload (seeded): requests signed by 16 random keys, half L1 `order` actions (1 to 3 orders,
some with a vault or an expiry), half user-signed `usdSend`, taken through JSON text and back
as the API would receive them. Both verifiers first recover every request and must agree with
the signing key; then each is timed over the whole set, best of `--repeat` runs. eth-account
recovers through eth-keys, which uses coincurve when it is installed, as here: so both share the
secp256k1 recovery, whose rate alone (on digests computed beforehand) is printed as the floor,
and the difference between them is the typed-data encoding.

    .venv/bin/python scripts/bench_signing.py [--requests N] [--repeat R] [--seed S] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import coincurve
from eth_account import Account
from hyperliquid.utils.signing import (
    USD_SEND_SIGN_TYPES,
    recover_agent_or_user_from_l1_action,
    recover_user_from_user_signed_action,
    sign_l1_action,
    sign_usd_transfer_action,
)

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from node.api.signing import (  # noqa: E402
    TESTNET,
    USER_SIGNED_NONCE_FIELD,
    action_digest,
    recover_signer,
)

T0 = 1_700_000_000_000
USD_SEND = "HyperliquidTransaction:UsdSend"

Request = dict[str, Any]  # the /exchange body: action, nonce, signature, vaultAddress, ...


def eth_account_recover(body: Request) -> str:
    """The generic path, the SDK's own recovery: the typed data as a dict, encoded and
    recovered by eth-account."""
    action, signature = body["action"], body["signature"]
    if action["type"] == "usdSend":
        address = recover_user_from_user_signed_action(
            action, signature, USD_SEND_SIGN_TYPES, USD_SEND, False
        )
    else:
        address = recover_agent_or_user_from_l1_action(
            action, signature, body["vaultAddress"], body["nonce"], body["expiresAfter"], False
        )
    return str(address).lower()


def devnet_recover(body: Request) -> str:
    result = recover_signer(
        body["action"],
        body["nonce"],
        body.get("vaultAddress"),
        body.get("expiresAfter"),
        body["signature"],
        TESTNET,
    )
    if not isinstance(result, str):
        raise SystemExit(f"rejected: {result}")
    return result


def secp256k1_floor(bodies: list[Request], repeat: int) -> float:
    """Recoveries per second of coincurve alone, the digests and signatures prepared."""
    prepared: list[tuple[bytes, bytes]] = []
    for body in bodies:
        digest = action_digest(
            body["action"], body["nonce"], body["vaultAddress"], body["expiresAfter"], TESTNET
        )
        if not isinstance(digest, bytes):
            raise SystemExit(f"rejected: {digest}")
        sig = body["signature"]
        r, s = int(sig["r"], 16), int(sig["s"], 16)
        recoverable = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes((sig["v"] - 27,))
        prepared.append((recoverable, digest))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for signature, digest in prepared:
            coincurve.PublicKey.from_signature_and_message(signature, digest, hasher=None)
        best = min(best, time.perf_counter() - start)
    return len(bodies) / best


def make_requests(count: int, seed: int) -> tuple[list[Request], list[str]]:
    """`count` signed request bodies, as JSON parsed them, and each one's signer."""
    rng = random.Random(seed)
    keys = [rng.randbytes(32) for _ in range(16)]
    bodies: list[Request] = []
    signers: list[str] = []
    for i in range(count):
        key = rng.choice(keys)
        nonce = T0 + i
        body: Request
        if i % 2:
            action = {
                "destination": "0x" + rng.randbytes(20).hex(),
                "amount": str(rng.randint(1, 10**6)),
                "time": nonce,
                "type": "usdSend",
                "signatureChainId": "0x66eee",
                "hyperliquidChain": TESTNET.chain,
            }
            body = {"action": action, "nonce": nonce, "vaultAddress": None, "expiresAfter": None}
        else:
            orders = [
                {
                    "a": rng.randrange(8),
                    "b": rng.random() < 0.5,
                    "p": f"{rng.randint(1, 99_999)}",
                    "s": f"0.{rng.randint(1, 9999):04d}",
                    "r": False,
                    "t": {"limit": {"tif": "Gtc"}},
                }
                for _ in range(rng.randint(1, 3))
            ]
            body = {
                "action": {"type": "order", "orders": orders, "grouping": "na"},
                "nonce": nonce,
                "vaultAddress": "0x" + rng.randbytes(20).hex() if rng.random() < 0.2 else None,
                "expiresAfter": nonce + 60_000 if rng.random() < 0.2 else None,
            }
        wallet = Account.from_key(key)
        if i % 2:
            body["signature"] = sign_usd_transfer_action(wallet, body["action"], False)
        else:
            body["signature"] = sign_l1_action(
                wallet, body["action"], body["vaultAddress"], nonce, body["expiresAfter"], False
            )
        bodies.append(json.loads(json.dumps(body)))
        signers.append(str(Account.from_key(key).address).lower())
    return bodies, signers


def rate(recover: Callable[[Request], str], bodies: list[Request], repeat: int) -> float:
    """Recoveries per second, best of `repeat` passes over all the bodies."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for body in bodies:
            recover(body)
        best = min(best, time.perf_counter() - start)
    return len(bodies) / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)

    bodies, signers = make_requests(args.requests, args.seed)
    for body, signer in zip(bodies, signers, strict=True):
        if devnet_recover(body) != signer or eth_account_recover(body) != signer:
            raise SystemExit(f"the verifiers disagree on {body}")
    results = {}
    for kind, subset in (
        ("all", bodies),
        ("l1", [b for b in bodies if b["action"]["type"] not in USER_SIGNED_NONCE_FIELD]),
        ("user_signed", [b for b in bodies if b["action"]["type"] in USER_SIGNED_NONCE_FIELD]),
    ):
        devnet = rate(devnet_recover, subset, args.repeat)
        generic = rate(eth_account_recover, subset, args.repeat)
        results[kind] = {
            "requests": len(subset),
            "devnet_per_s": round(devnet),
            "eth_account_per_s": round(generic),
            "ratio": round(devnet / generic, 1),
            "secp256k1_floor_per_s": round(secp256k1_floor(subset, args.repeat)),
        }
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for kind, r in results.items():
            print(
                f"{kind:12} {r['requests']:6} requests: devnet {r['devnet_per_s']:8,}/s, "
                f"eth-account {r['eth_account_per_s']:7,}/s, x{r['ratio']} "
                f"(secp256k1 recovery alone {r['secp256k1_floor_per_s']:,}/s)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
