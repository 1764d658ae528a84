"""Replay protection: Hyperliquid's nonce rule (hyperliquid-core.md 5.3, sdk-api.md 9.10).

Per signer (the address whose key signed: the user's own, or its API wallet's, so one agent
signing for several accounts has one nonce set) the 100 highest nonces accepted are kept. At
block time T (ms) a nonce n is accepted when
- n is not among them,
- n is larger than the smallest of them, when 100 are kept, and
- T - 2 days < n < T + 1 day.
Accepting n records it, and when that makes 101 the smallest is forgotten. A refused nonce
changes nothing.

Invariants (checked by `_check`):
- Every signer kept has 1 to 100 nonces, ascending and distinct; a signer without any is not
  kept at all.
- The kept nonces of a signer are the 100 highest it ever had accepted, so the state depends
  only on the sequence of accepted (signer, nonce) pairs.

Error strings: Hyperliquid's, as the real exchange words them (its docs give none):
`Invalid nonce: duplicate nonce N`, `Invalid nonce: nonce too low N < B` and
`Invalid nonce: nonce too high N > B`.

Choices:
- The checks run in that order, so a nonce still kept is a duplicate even if it has since left
  the time window.
- B is the nearest bound: nonces below the low B are too low, B being T - 2 days + 1, or the
  smallest nonce kept when 100 are, whichever is higher; nonces above the high B, T + 1 day - 1,
  are too high. (The real exchange's bounds sit about two minutes inside the documented window;
  the devnet keeps the documented one exactly.)
- 100 nonces for every signer. Hyperliquid's docs also describe 20 plus one per 1M USDC of
  volume, up to 100; the devnet keeps the maximum, which refuses no nonce the smaller set
  would accept.
"""

from __future__ import annotations

import bisect
import itertools

import msgspec

from protocol.actions import ErrorResponse

CAPACITY = 100
PAST_WINDOW_MS = 2 * 86_400_000
FUTURE_WINDOW_MS = 86_400_000


class SignerNonces(msgspec.Struct, frozen=True):
    signer: str
    nonces: tuple[int, ...]  # ascending


class NoncesSnapshot(msgspec.Struct, frozen=True):
    signers: tuple[SignerNonces, ...]  # by signer


class NonceState:
    """The nonces every signer has used, as far as the rule remembers them."""

    def __init__(self) -> None:
        self._kept: dict[str, list[int]] = {}  # signer -> ascending, at most CAPACITY

    def check_and_record(self, signer: str, nonce: int, block_time: int) -> ErrorResponse | None:
        """Accept and record `nonce` for `signer` at `block_time`, or say why not."""
        kept = self._kept.get(signer)
        at = 0
        if kept is not None:
            at = bisect.bisect_left(kept, nonce)
            if at < len(kept) and kept[at] == nonce:
                return ErrorResponse(f"Invalid nonce: duplicate nonce {nonce}")
        low = block_time - PAST_WINDOW_MS + 1
        if kept is not None and len(kept) == CAPACITY:
            low = max(low, kept[0])
        if nonce < low:
            return ErrorResponse(f"Invalid nonce: nonce too low {nonce} < {low}")
        high = block_time + FUTURE_WINDOW_MS - 1
        if nonce > high:
            return ErrorResponse(f"Invalid nonce: nonce too high {nonce} > {high}")
        if kept is None:
            self._kept[signer] = [nonce]
            return None
        kept.insert(at, nonce)
        if len(kept) > CAPACITY:
            del kept[0]
        return None

    def snapshot(self) -> NoncesSnapshot:
        return NoncesSnapshot(
            tuple(SignerNonces(signer, tuple(self._kept[signer])) for signer in sorted(self._kept))
        )

    def _check(self) -> None:
        for signer, kept in self._kept.items():
            assert 1 <= len(kept) <= CAPACITY, f"{signer}: {len(kept)} nonces kept"
            assert all(a < b for a, b in itertools.pairwise(kept)), f"{signer}: not ascending"
