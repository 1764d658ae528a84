"""The nonce rule: hand-computed cases, and a property against a model that keeps every nonce
ever accepted."""

from __future__ import annotations

from typing import NamedTuple

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from protocol.actions import ErrorResponse
from protocol.nonces import CAPACITY, NoncesSnapshot, NonceState, SignerNonces

T = 1_700_000_000_000
DAY = 86_400_000
A, B = "0xaaaa", "0xbbbb"


def kept(state: NonceState, signer: str) -> tuple[int, ...]:
    for entry in state.snapshot().signers:
        if entry.signer == signer:
            return entry.nonces
    return ()


def test_a_nonce_is_accepted_once() -> None:
    state = NonceState()
    assert state.check_and_record(A, T, T) is None
    assert state.check_and_record(A, T, T) == ErrorResponse(
        "Invalid nonce: duplicate nonce 1700000000000"
    )
    assert kept(state, A) == (T,)


def test_nonces_are_per_signer() -> None:
    state = NonceState()
    assert state.check_and_record(A, T, T) is None
    assert state.check_and_record(B, T, T) is None
    assert kept(state, A) == kept(state, B) == (T,)


def test_the_window_is_two_days_back_and_one_day_ahead_both_open() -> None:
    state = NonceState()
    # T - 2 days = 1_699_827_200_000 and T + 1 day = 1_700_086_400_000 are both outside.
    assert state.check_and_record(A, T - 2 * DAY, T) == ErrorResponse(
        "Invalid nonce: nonce too low 1699827200000 < 1699827200001"
    )
    assert state.check_and_record(A, T + DAY, T) == ErrorResponse(
        "Invalid nonce: nonce too high 1700086400000 > 1700086399999"
    )
    assert state.check_and_record(A, 0, T) == ErrorResponse(
        "Invalid nonce: nonce too low 0 < 1699827200001"
    )
    assert kept(state, A) == ()
    assert state.check_and_record(A, T - 2 * DAY + 1, T) is None
    assert state.check_and_record(A, T + DAY - 1, T) is None
    assert kept(state, A) == (T - 2 * DAY + 1, T + DAY - 1)


def test_out_of_order_nonces_are_fine_below_capacity() -> None:
    state = NonceState()
    for nonce in (T + 5, T + 1, T + 3, T - DAY):
        assert state.check_and_record(A, nonce, T) is None
    assert kept(state, A) == (T - DAY, T + 1, T + 3, T + 5)


def test_a_full_set_refuses_nonces_below_its_smallest_and_forgets_it() -> None:
    state = NonceState()
    for nonce in range(T + 1, T + 101):  # exactly 100: T+1 .. T+100
        assert state.check_and_record(A, nonce, T) is None
    assert kept(state, A) == tuple(range(T + 1, T + 101))
    assert state.check_and_record(A, T, T) == ErrorResponse(
        "Invalid nonce: nonce too low 1700000000000 < 1700000000001"
    )
    assert state.check_and_record(A, T + 50, T) == ErrorResponse(
        "Invalid nonce: duplicate nonce 1700000000050"
    )
    # The smallest is a duplicate, not too low: it is still kept.
    assert state.check_and_record(A, T + 1, T) == ErrorResponse(
        "Invalid nonce: duplicate nonce 1700000000001"
    )
    assert state.check_and_record(A, T + 101, T) is None
    assert kept(state, A) == tuple(range(T + 2, T + 102))
    assert state.check_and_record(A, T + 1, T) == ErrorResponse(
        "Invalid nonce: nonce too low 1700000000001 < 1700000000002"
    )
    # Another signer's set is not full.
    assert state.check_and_record(B, T, T) is None


def test_a_gap_above_the_smallest_is_still_usable() -> None:
    state = NonceState()
    for nonce in range(T + 2, T + 202, 2):  # 100 even offsets: T+2 .. T+200
        assert state.check_and_record(A, nonce, T) is None
    assert state.check_and_record(A, T + 3, T) is None  # evicts T+2
    assert kept(state, A)[:3] == (T + 3, T + 4, T + 6)
    assert len(kept(state, A)) == CAPACITY
    assert state.check_and_record(A, T + 2, T) == ErrorResponse(
        "Invalid nonce: nonce too low 1700000000002 < 1700000000003"
    )


def test_the_window_bound_wins_when_it_is_higher_than_the_smallest_kept() -> None:
    state = NonceState()
    for nonce in range(T + 1, T + 101):
        assert state.check_and_record(A, nonce, T) is None
    later = T + 3 * DAY  # the window now starts after every kept nonce
    assert state.check_and_record(A, T + 200, later) == ErrorResponse(
        "Invalid nonce: nonce too low 1700000000200 < 1700086400001"
    )
    # A kept nonce is a duplicate first, even outside the window.
    assert state.check_and_record(A, T + 7, later) == ErrorResponse(
        "Invalid nonce: duplicate nonce 1700000000007"
    )


def test_a_refused_nonce_changes_nothing() -> None:
    state = NonceState()
    for nonce in range(T + 1, T + 101):
        state.check_and_record(A, nonce, T)
    before = state.snapshot()
    for nonce, time in ((T, T), (T + 5, T), (T + 10 * DAY, T), (T + 200, T + 3 * DAY)):
        assert state.check_and_record(A, nonce, time) is not None
    assert state.snapshot() == before


def test_the_snapshot_is_sorted_and_independent_of_insertion_order() -> None:
    one, two = NonceState(), NonceState()
    for signer, nonce in ((B, T + 2), (A, T + 1), (B, T + 1)):
        one.check_and_record(signer, nonce, T)
    for signer, nonce in ((A, T + 1), (B, T + 1), (B, T + 2)):
        two.check_and_record(signer, nonce, T)
    expected = NoncesSnapshot((SignerNonces(A, (T + 1,)), SignerNonces(B, (T + 1, T + 2))))
    assert one.snapshot() == two.snapshot() == expected
    assert msgspec.msgpack.encode(one.snapshot()) == msgspec.msgpack.encode(two.snapshot())


# The model keeps every accepted nonce; the rule looks at the 100 highest.


class Model:
    def __init__(self) -> None:
        self.accepted: dict[str, set[int]] = {}

    def top(self, signer: str) -> list[int]:
        return sorted(self.accepted.get(signer, set()))[-CAPACITY:]

    def apply(self, signer: str, nonce: int, time: int) -> ErrorResponse | None:
        top = self.top(signer)
        full = len(top) == CAPACITY
        if nonce in top:
            return ErrorResponse(f"Invalid nonce: duplicate nonce {nonce}")
        if nonce <= time - 2 * DAY or (full and nonce < top[0]):
            low = max(time - 2 * DAY + 1, top[0] if full else time - 2 * DAY + 1)
            return ErrorResponse(f"Invalid nonce: nonce too low {nonce} < {low}")
        if nonce >= time + DAY:
            return ErrorResponse(f"Invalid nonce: nonce too high {nonce} > {time + DAY - 1}")
        self.accepted.setdefault(signer, set()).add(nonce)
        return None


class Burst(NamedTuple):
    signer: str
    start: int  # offset from the block time, ms
    length: int
    stride: int  # may be negative: a burst sent in reverse
    advance: int  # block time added before the burst, ms


bursts = st.builds(
    Burst,
    st.sampled_from([A, B, "0xcccc"]),
    st.integers(-3 * DAY, 2 * DAY) | st.integers(-300, 300),
    st.integers(1, 120),
    st.sampled_from([1, 2, 3, -1, -2, 7]),
    st.sampled_from([0, 0, 0, 1, 70, 1000, DAY, 3 * DAY]),
)


@given(st.lists(bursts, max_size=12))
def test_matches_the_model(plan: list[Burst]) -> None:
    state, model = NonceState(), Model()
    time = T
    for burst in plan:
        time += burst.advance
        for i in range(burst.length):
            nonce = time + burst.start + i * burst.stride
            assert state.check_and_record(burst.signer, nonce, time) == model.apply(
                burst.signer, nonce, time
            )
        state._check()
    expected = NoncesSnapshot(
        tuple(SignerNonces(s, tuple(model.top(s))) for s in sorted(model.accepted))
    )
    assert state.snapshot() == expected
