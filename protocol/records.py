"""What the block log records: the genesis, then every block's proposed actions and the state
hash it ended with. Replaying the records through `Chain.apply_block` must give the same
hashes.

Invariants:
- The first record is the genesis (the config text and the genesis time); every later record is
  a block, heights consecutive from 1.
- A block record holds the actions as proposed (signer and action, in proposal order), so a
  replay orders and executes them exactly as the block did.
- A block record also holds the digest of each part of the state it ended with (`digests`:
  the `StateDigest.parts` bytes, one `PART_DIGEST_SIZE` digest per part in `PARTS` order), so
  a replay that ends a block with another state can name the parts that differ. The part names
  are fixed by the code (`PARTS`), so they are not stored: `parts` pairs them with the
  digests. Logs written before the field existed decode with no digests (an older record's
  `parts` field of (name, digest) pairs is ignored: its digests are of another layout), and
  replay by their state hashes alone.
- Records follow msgspec's schema-evolution rules: new fields get defaults, so old logs replay.
"""

from __future__ import annotations

import msgspec

from protocol.chain import Action
from protocol.state_hash import PartDigests, named_parts


class ProposedAction(msgspec.Struct, frozen=True):
    user: str
    action: Action


class GenesisRecord(msgspec.Struct, frozen=True, tag="genesis"):
    config: str  # the TOML text the chain was started with
    time: int  # genesis time, ms


class BlockRecord(msgspec.Struct, frozen=True, tag="block"):
    height: int
    time: int
    actions: tuple[ProposedAction, ...]
    state_hash: bytes
    digests: bytes = b""

    @property
    def parts(self) -> PartDigests:
        """The part digests by name; empty when the record has none in this code's layout."""
        return named_parts(self.digests)


LogRecord = GenesisRecord | BlockRecord

_encoder = msgspec.msgpack.Encoder(order="deterministic")
_decoder: msgspec.msgpack.Decoder[LogRecord] = msgspec.msgpack.Decoder(LogRecord)


def encode_record(record: LogRecord) -> bytes:
    return _encoder.encode(record)


def decode_record(payload: bytes) -> LogRecord:
    """Raises msgspec.DecodeError / ValidationError for a payload that is not a record."""
    return _decoder.decode(payload)
