"""The durable, append-only block log of the node, and its optional snapshots.

The log is one file, `blocks.log`, in the node's data directory: a sequence of records

    magic (4 bytes, b"HLB1") | length (u32 big-endian) | crc32 (u32 big-endian) | payload

where `crc32` is `zlib.crc32` of the payload and `payload` is `length` bytes the caller produced
(msgpack from `msgspec.msgpack.Encoder(order="deterministic")`). The log never interprets the
payload: it stores and returns bytes.

Invariants:
- Durability: `BlockLog.append` returns only once the record is on disk (write, flush,
  `os.fsync` of the file; the directory is fsynced too when the file is created). A caller may
  therefore report a block's results as soon as `append` returns, and must not report them
  before. If writing or fsyncing fails, the log refuses every later append (after an fsync
  error the state of the page cache is unknown, so retrying is not safe): restart and reopen.
- Recovery (`BlockLog.open`): every record is checked. A torn final record (short header,
  short payload, or a bad crc on a record that ends exactly at the end of the file, with no
  valid record anywhere after its start) is the trace of a crash in the middle of an append:
  it was never acknowledged, so it is truncated from the file, always with a warning naming the
  offset and the number of bytes dropped. Any other defect (bad magic, or a bad crc followed by
  more data) is corruption of acknowledged data: `CorruptLogError` is raised, naming the offset
  and the record index, and nothing on disk is changed.
- Snapshots (`write_snapshot`, `snapshots`, `prune_snapshots`) are separate files
  `snapshot-<height>.bin`, each written atomically (temp file, fsync, rename, directory fsync)
  and crc-checked on read; a damaged one is skipped with a warning in favour of the next older
  one. Their payload is opaque here too.

`BlockLog.open` reads the whole log into memory, which is fine at devnet sizes.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final, Self

import structlog

LOG_NAME: Final = "blocks.log"
MAGIC: Final = b"HLB1"
HEADER: Final = struct.Struct(">4sII")  # magic, payload length, crc32 of the payload
MAX_PAYLOAD: Final = 0xFFFF_FFFF

SNAPSHOT_MAGIC: Final = b"HLS1"
SNAPSHOT_HEADER: Final = struct.Struct(">4sQII")  # magic, height, payload length, crc32
_SNAPSHOT_NAME: Final = re.compile(r"snapshot-(\d+)\.bin")

log = structlog.get_logger(__name__)


class CorruptLogError(Exception):
    """A record in the middle of the block log is damaged; the file was left untouched."""

    def __init__(self, path: Path, offset: int, index: int, reason: str) -> None:
        super().__init__(
            f"{path}: corrupt record #{index} at byte offset {offset}: {reason}; "
            "the log was not modified"
        )
        self.path = path
        self.offset = offset
        self.index = index
        self.reason = reason


class BlockLogClosedError(Exception):
    """`append` on a log that was closed, or that refused appends after a failed write."""


def _fsync_dir(directory: Path) -> None:
    """Make a directory's entries (a created or renamed file) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def encode_record(payload: bytes) -> bytes:
    """One log record holding `payload`."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a record")
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def _valid_record_at(data: bytes, offset: int) -> bool:
    """Whether a complete record with a good magic and crc starts at `offset`."""
    if offset + HEADER.size > len(data):
        return False
    magic, length, crc = HEADER.unpack_from(data, offset)
    start = offset + HEADER.size
    if magic != MAGIC or start + length > len(data):
        return False
    return bool(zlib.crc32(data[start : start + length]) == crc)


def _valid_record_after(data: bytes, offset: int) -> bool:
    """Whether a valid record starts anywhere after `offset`: if one does, the damage at
    `offset` is not a torn tail."""
    position = data.find(MAGIC, offset + 1)
    while position != -1:
        if _valid_record_at(data, position):
            return True
        position = data.find(MAGIC, position + 1)
    return False


def _scan(path: Path, data: bytes) -> tuple[list[bytes], int, str | None]:
    """The valid records of `data`, the offset where they end, and, if a torn tail follows
    them, why it is torn. Raises `CorruptLogError` for damage that is not a torn tail."""
    records: list[bytes] = []
    offset = 0
    while offset < len(data):
        index = len(records)
        if offset + HEADER.size > len(data):
            torn = f"short header ({len(data) - offset} of {HEADER.size} bytes)"
        else:
            magic, length, crc = HEADER.unpack_from(data, offset)
            start = offset + HEADER.size
            end = start + length
            if magic != MAGIC:
                raise CorruptLogError(path, offset, index, f"bad magic {magic!r}")
            if end > len(data):
                torn = f"short payload ({len(data) - start} of {length} bytes)"
            else:
                payload = data[start:end]
                if zlib.crc32(payload) == crc:
                    records.append(payload)
                    offset = end
                    continue
                if end < len(data):
                    raise CorruptLogError(path, offset, index, "crc mismatch")
                torn = "crc mismatch on the final record"
        if _valid_record_after(data, offset):
            raise CorruptLogError(path, offset, index, f"{torn}, followed by valid records")
        return records, offset, torn
    return records, offset, None


class BlockLog:
    """An append-only log of opaque payloads. Open an existing log with `BlockLog.open`, which
    verifies and repairs it; the constructor alone appends to the file as it is."""

    def __init__(self, path: Path) -> None:
        """Open `path` for appending, creating it (and fsyncing its directory) if missing."""
        self.path = Path(path)
        created = not self.path.exists()
        self._file: BinaryIO | None = open(self.path, "ab")  # noqa: SIM115 (closed by close)
        self._failed = False
        if created:
            _fsync_dir(self.path.parent)

    @classmethod
    def open(cls, data_dir: Path) -> tuple[Self, list[bytes]]:
        """The log of `data_dir` (created if missing) and every record in it, in order. A torn
        final record is truncated with a warning; other damage raises `CorruptLogError` and
        leaves the file as it was."""
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            data_dir.mkdir(parents=True)
            _fsync_dir(data_dir.parent)
        path = data_dir / LOG_NAME
        records: list[bytes] = []
        if path.exists():
            data = path.read_bytes()
            records, end, torn = _scan(path, data)
            if torn is not None:
                log.warning(
                    "blocklog torn tail truncated",
                    path=str(path),
                    offset=end,
                    dropped_bytes=len(data) - end,
                    records_kept=len(records),
                    reason=torn,
                )
                with open(path, "r+b") as file:
                    file.truncate(end)
                    file.flush()
                    os.fsync(file.fileno())
        return cls(path), records

    @property
    def data_dir(self) -> Path:
        return self.path.parent

    def append(self, payload: bytes) -> None:
        """Append one record and return only once it is durable on disk (flush + fsync).
        Results that depend on the record may be reported after this returns, never before."""
        if self._file is None or self._failed:
            raise BlockLogClosedError(f"{self.path} is closed or failed; reopen it")
        record = encode_record(payload)
        try:
            self._file.write(record)
            self._file.flush()
            os.fsync(self._file.fileno())
        except BaseException:
            self._failed = True
            raise

    def write_snapshot(self, height: int, payload: bytes) -> Path:
        """Write `snapshot-<height>.bin` next to the log; see `write_snapshot`."""
        return write_snapshot(self.data_dir, height, payload)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_records(data_dir: Path) -> list[bytes]:
    """Every record of the log in `data_dir`, as `BlockLog.open` finds them; the log is closed
    again (for readers: replay, export)."""
    block_log, payloads = BlockLog.open(data_dir)
    block_log.close()
    return payloads


def snapshot_path(data_dir: Path, height: int) -> Path:
    return Path(data_dir) / f"snapshot-{height}.bin"


def write_snapshot(data_dir: Path, height: int, payload: bytes) -> Path:
    """Write the snapshot of `height` atomically: a temp file is written and fsynced, renamed
    over `snapshot-<height>.bin`, and the directory fsynced. Returns the snapshot's path."""
    if height < 0:
        raise ValueError(f"snapshot height must be non-negative, got {height}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"snapshot payload of {len(payload)} bytes is too large")
    data_dir = Path(data_dir)
    final = snapshot_path(data_dir, height)
    temp = data_dir / f".{final.name}.tmp"
    header = SNAPSHOT_HEADER.pack(
        SNAPSHOT_MAGIC, height, len(payload), _snapshot_crc(height, payload)
    )
    with open(temp, "wb") as file:
        file.write(header + payload)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp, final)
    _fsync_dir(data_dir)
    return final


def _snapshot_crc(height: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(height.to_bytes(8, "big")))


def _read_snapshot(path: Path, height: int) -> bytes:
    """The payload of the snapshot file at `path`; ValueError if it is damaged."""
    data = path.read_bytes()
    if len(data) < SNAPSHOT_HEADER.size:
        raise ValueError(f"short header ({len(data)} bytes)")
    magic, stored_height, length, crc = SNAPSHOT_HEADER.unpack_from(data)
    if magic != SNAPSHOT_MAGIC:
        raise ValueError(f"bad magic {magic!r}")
    if stored_height != height:
        raise ValueError(f"header height {stored_height} does not match the file name")
    payload = data[SNAPSHOT_HEADER.size :]
    if len(payload) != length:
        raise ValueError(f"payload is {len(payload)} bytes, header says {length}")
    if _snapshot_crc(height, payload) != crc:
        raise ValueError("crc mismatch")
    return payload


def _snapshot_files(data_dir: Path) -> list[tuple[int, Path]]:
    """The snapshot files of `data_dir` as (height, path), newest first."""
    if not data_dir.is_dir():
        return []
    found: list[tuple[int, Path]] = []
    for entry in data_dir.iterdir():
        match = _SNAPSHOT_NAME.fullmatch(entry.name)
        if match is not None and entry.is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found, reverse=True)


def snapshots(data_dir: Path, at_most: int | None = None) -> Iterator[tuple[int, bytes]]:
    """The valid snapshots in `data_dir` as (height, payload), newest first, those above
    `at_most` left out. Damaged ones are skipped, each with a warning. A caller that cannot use
    a snapshot's payload takes the next one."""
    for height, path in _snapshot_files(Path(data_dir)):
        if at_most is not None and height > at_most:
            continue
        try:
            payload = _read_snapshot(path, height)
        except (OSError, ValueError) as error:
            log.warning(
                "blocklog snapshot skipped", path=str(path), height=height, reason=str(error)
            )
            continue
        yield height, payload


def prune_snapshots(data_dir: Path, keep: int) -> None:
    """Delete all but the `keep` newest snapshot files of `data_dir` (valid or not)."""
    for _, path in _snapshot_files(Path(data_dir))[keep:]:
        path.unlink(missing_ok=True)
