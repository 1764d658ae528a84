"""The block log: durable appends, torn-tail repair, corruption detection, snapshots."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest
import structlog

from node.blocklog import (
    HEADER,
    LOG_NAME,
    BlockLog,
    BlockLogClosedError,
    CorruptLogError,
    prune_snapshots,
    snapshot_path,
    snapshots,
    write_snapshot,
)

ENCODER = msgspec.msgpack.Encoder(order="deterministic")


class Block(msgspec.Struct, frozen=True):
    height: int
    time: int
    actions: list[dict[str, int]]


def block(height: int) -> bytes:
    return ENCODER.encode(
        Block(height=height, time=1_700_000_000_000 + height * 1000, actions=[{"a": height}])
    )


def write_blocks(data_dir: Path, heights: range) -> list[bytes]:
    payloads = [block(h) for h in heights]
    log, _ = BlockLog.open(data_dir)
    with log:
        for payload in payloads:
            log.append(payload)
    return payloads


def record_offsets(payloads: list[bytes]) -> list[int]:
    offsets = [0]
    for payload in payloads:
        offsets.append(offsets[-1] + HEADER.size + len(payload))
    return offsets


def test_round_trip_many_records(tmp_path: Path) -> None:
    """Many records, including an empty and a large one, come back byte for byte and in order."""
    payloads = [block(h) for h in range(1, 500)] + [b"", b"\x00" * 100_000]
    log, records = BlockLog.open(tmp_path / "data")
    assert records == []
    with log:
        for payload in payloads:
            log.append(payload)
    _, records = BlockLog.open(tmp_path / "data")
    assert records == payloads
    decoded = msgspec.msgpack.decode(records[0], type=Block)
    assert decoded.height == 1


def test_reopen_and_append_more(tmp_path: Path) -> None:
    """A reopened log keeps its records and appends after them."""
    first = write_blocks(tmp_path, range(1, 11))
    second = write_blocks(tmp_path, range(11, 21))
    log, records = BlockLog.open(tmp_path)
    log.close()
    assert records == first + second


def test_torn_tail_truncated_at_every_offset(tmp_path: Path) -> None:
    """A final record cut at any byte is dropped with a warning; the log stays appendable."""
    payloads = write_blocks(tmp_path, range(1, 6))
    path = tmp_path / LOG_NAME
    full = path.read_bytes()
    offsets = record_offsets(payloads)
    last_start = offsets[-2]
    assert offsets[-1] == len(full)
    for cut in range(last_start + 1, len(full)):
        path.write_bytes(full[:cut])
        with structlog.testing.capture_logs() as logs:
            log, records = BlockLog.open(tmp_path)
        assert records == payloads[:-1], cut
        assert path.stat().st_size == last_start
        warnings = [entry for entry in logs if entry["log_level"] == "warning"]
        assert len(warnings) == 1
        assert warnings[0]["offset"] == last_start
        assert warnings[0]["dropped_bytes"] == cut - last_start
        with log:
            log.append(b"after")
        _, records = BlockLog.open(tmp_path)
        assert records == [*payloads[:-1], b"after"]


def test_bad_crc_on_last_record_is_torn(tmp_path: Path) -> None:
    """A crc mismatch on the record ending the file is a torn write: truncated with a warning."""
    payloads = write_blocks(tmp_path, range(1, 4))
    path = tmp_path / LOG_NAME
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with structlog.testing.capture_logs() as logs:
        log, records = BlockLog.open(tmp_path)
    log.close()
    assert records == payloads[:-1]
    assert [entry["offset"] for entry in logs] == [record_offsets(payloads)[-2]]


def test_clean_log_opens_without_warning(tmp_path: Path) -> None:
    """An intact log is read without any warning and without being rewritten."""
    write_blocks(tmp_path, range(1, 4))
    with structlog.testing.capture_logs() as logs:
        log, _ = BlockLog.open(tmp_path)
    log.close()
    assert logs == []


def test_flipped_byte_in_middle_record_raises(tmp_path: Path) -> None:
    """Any flipped byte of a middle record raises CorruptLogError naming it; the file is kept."""
    payloads = write_blocks(tmp_path, range(1, 6))
    path = tmp_path / LOG_NAME
    original = path.read_bytes()
    offsets = record_offsets(payloads)
    index = 2
    for position in range(offsets[index], offsets[index + 1]):
        damaged = bytearray(original)
        damaged[position] ^= 0x5A
        path.write_bytes(bytes(damaged))
        with pytest.raises(CorruptLogError) as caught:
            BlockLog.open(tmp_path)
        assert caught.value.index == index, position
        assert caught.value.offset == offsets[index]
        assert f"#{index}" in str(caught.value)
        assert str(offsets[index]) in str(caught.value)
        assert path.read_bytes() == bytes(damaged)


def test_append_fsyncs_before_returning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every append fsyncs the log file; creating the log fsyncs its directory too."""
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    log, _ = BlockLog.open(tmp_path)
    created = len(calls)
    assert created >= 1  # the directory, for the new file
    with log:
        for height in range(1, 4):
            log.append(block(height))
            assert len(calls) == created + height
    calls.clear()
    log, _ = BlockLog.open(tmp_path)
    log.close()
    assert calls == []  # reopening an intact log writes nothing


def test_failed_fsync_refuses_later_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an fsync error the log refuses appends instead of retrying."""
    log, _ = BlockLog.open(tmp_path)

    def failing_fsync(fd: int) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk gone"):
        log.append(b"x")
    monkeypatch.undo()
    with pytest.raises(BlockLogClosedError):
        log.append(b"y")
    log.close()


def test_snapshot_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot goes through a fsynced temp file renamed into place; no temp file remains."""
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def recording_replace(src: str | Path, dst: str | Path) -> None:
        assert Path(src).read_bytes()  # complete before the rename
        assert not Path(dst).exists()
        renames.append((Path(src).name, Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    path = write_snapshot(tmp_path, 7, b"state-7")
    assert path == snapshot_path(tmp_path, 7)
    assert renames == [(".snapshot-7.bin.tmp", "snapshot-7.bin")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot-7.bin"]
    assert list(snapshots(tmp_path)) == [(7, b"state-7")]


def test_snapshots_newest_first(tmp_path: Path) -> None:
    """Snapshots come highest first, whatever the order of writing; `at_most` leaves out the
    higher ones."""
    assert list(snapshots(tmp_path)) == []
    assert list(snapshots(tmp_path / "missing")) == []
    log, _ = BlockLog.open(tmp_path)
    with log:
        log.write_snapshot(100, b"s100")
        log.write_snapshot(20, b"s20")
        log.write_snapshot(9, b"s9")
    assert list(snapshots(tmp_path)) == [(100, b"s100"), (20, b"s20"), (9, b"s9")]
    assert list(snapshots(tmp_path, at_most=99)) == [(20, b"s20"), (9, b"s9")]
    assert list(snapshots(tmp_path, at_most=20)) == [(20, b"s20"), (9, b"s9")]


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    """Pruning deletes all but the `keep` highest snapshot files, and nothing else."""
    for height in (3, 1000, 2000, 10):
        write_snapshot(tmp_path, height, b"x")
    (tmp_path / LOG_NAME).write_bytes(b"")
    prune_snapshots(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        LOG_NAME,
        "snapshot-1000.bin",
        "snapshot-2000.bin",
    ]


def test_corrupt_newest_snapshot_falls_back(tmp_path: Path) -> None:
    """A damaged newest snapshot is skipped with a warning and the previous one returned."""
    write_snapshot(tmp_path, 10, b"ten")
    newest = write_snapshot(tmp_path, 20, b"twenty")
    data = bytearray(newest.read_bytes())
    data[-1] ^= 0x01
    newest.write_bytes(bytes(data))
    with structlog.testing.capture_logs() as logs:
        assert next(snapshots(tmp_path)) == (10, b"ten")
    assert len(logs) == 1
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["height"] == 20
    assert logs[0]["reason"] == "crc mismatch"
