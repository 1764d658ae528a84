"""The mark price: median of oracle + EMA150(mid - oracle), the book median and its EMA30.

Prices are bare integers at some perp's price scale (the mark does not depend on which).
Hand computations use d150 = e^(-3/150) = 0.98019867 and d30 = e^(-3/30) = 0.90483742 for
3 s steps; after two 3 s samples s1 then s2, an EMA reads (s1 * d + s2) / (d + 1).
"""

from __future__ import annotations

import math
from statistics import median

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.fixed import WAD
from protocol.mark import Ema, MarkSnapshot, MarkState

Step = tuple[int, int | None, int | None, int | None, int]  # oracle, bid, ask, last, dt_ms


def run(steps: list[Step]) -> tuple[list[int], MarkState]:
    state = MarkState()
    marks = []
    for step in steps:
        marks.append(state.update(*step))
        state._check()
    return marks, state


def ema_value(num: int, den: int) -> float:
    return num / den / WAD


def test_constant_book_around_the_oracle() -> None:
    """Bid 99, ask 101, oracle 100: every input is 100, so the mark is 100 at every step."""
    marks, _ = run([(100, 99, 101, None, 3_000)] * 10)
    assert marks == [100] * 10


def test_mid_above_oracle_pulls_the_mark_up_at_the_ema30_pace() -> None:
    """Oracle 100000, book mid 100000 then 110000: a = 100000 + 10000 / (1 + d150) = 105050.0,
    b = 110000, c = 100000 + 10000 / (1 + d30) = 105249.79; the median is c -> 105250."""
    steps: list[Step] = [
        (100_000, 99_900, 100_100, None, 3_000),
        (100_000, 109_900, 110_100, None, 3_000),
    ]
    marks, state = run(steps)
    assert marks == [100_000, 105_250]
    assert ema_value(state.ema150.num, state.ema150.den) == pytest.approx(5049.99833, abs=1e-5)
    assert ema_value(state.ema30.num, state.ema30.den) == pytest.approx(105249.79187, abs=1e-5)
    # The pull continues towards 110000 and never overshoots it.
    more, _ = run(steps + [(100_000, 109_900, 110_100, None, 3_000)] * 100)
    assert more[2:] == sorted(more[2:])
    assert 109_000 < more[-1] <= 110_000


def test_oracle_ema_term_is_the_median() -> None:
    """Oracle 100000 -> 95000, book 100000 -> 90000: a = 95000 - 5000 / (1 + d150) = 92475.0,
    b = 90000, c = 100000 - 10000 / (1 + d30) = 94750.2; the median is a -> 92475."""
    marks, _ = run(
        [
            (100_000, 99_900, 100_100, 100_000, 3_000),
            (95_000, 89_900, 90_100, 90_000, 3_000),
        ]
    )
    assert marks == [100_000, 92_475]


def test_book_median_is_the_median() -> None:
    """Oracle 100000 -> 80000 with the book still at 100000 and a trade at 99000:
    a = 80000 + 20000 / (1 + d150) = 90100.0, b = median(99900, 100100, 99000) = 99900,
    c = 100000 - 100 / (1 + d30) = 99947.5; the median is b -> 99900."""
    marks, _ = run(
        [
            (100_000, 99_900, 100_100, 100_000, 3_000),
            (80_000, 99_900, 100_100, 99_000, 3_000),
        ]
    )
    assert marks == [100_000, 99_900]


def test_median_of_two_is_their_mean_rounded_half_up() -> None:
    """Bid 100 and a last trade at 101, no ask: b = c = 100.5 and a = oracle 100 (no mid), so
    the mark is 100.5 rounded half up: 101. Bid 99, last 100: 99.5 -> 100."""
    assert run([(100, 100, None, 101, 3_000)])[0] == [101]
    assert run([(100, 99, None, 100, 3_000)])[0] == [100]
    assert run([(100, None, 205, 200, 3_000)])[0] == [203]  # b = c = 202.5, a = 100


def test_no_book_and_no_trade_gives_the_oracle() -> None:
    """Without any sample ever the mark is the oracle, and follows it."""
    marks, state = run([(100, None, None, None, 3_000), (250, None, None, None, 0)])
    assert marks == [100, 250]
    assert state.ema150.den == 0
    assert state.ema30.den == 0


def test_empty_book_keeps_the_ema150_value() -> None:
    """After one sample of mid - oracle = +10, an empty book leaves a = oracle + 10 while the
    EMA150 ages: 3 s, then 150 s later, the mark is still the new oracle + 10."""
    marks, state = run(
        [
            (100, 109, 111, None, 3_000),
            (200, None, None, None, 3_000),
            (300, None, None, None, 150_000),
        ]
    )
    assert marks == [110, 210, 310]
    # The weight decayed (3000 ms * e^-0.02 * e^-1), the value did not.
    assert state.ema150.den == pytest.approx(3_000 * math.exp(-0.02 - 1) * WAD, rel=1e-15)
    assert ema_value(state.ema150.num, state.ema150.den) == pytest.approx(10, rel=1e-15)


def test_aged_ema_gives_way_to_the_next_sample() -> None:
    """A premium of +10 aged 150 s (weight 3000 / e), then a 3 s sample of 0: the EMA150 reads
    10 * e^-1 / (e^-1 + 1) = 2.6894, not the 10 * 1 / 2 it would without the aging."""
    _, state = run(
        [
            (100, 109, 111, None, 3_000),
            (100, None, None, None, 150_000 - 3_000),
            (100, 99, 101, None, 3_000),
        ]
    )
    assert ema_value(state.ema150.num, state.ema150.den) == pytest.approx(2.689414, abs=1e-6)


def test_ema_forgotten_after_long_silence() -> None:
    """After 2000 s (13 tau) without a mid or a book price, both EMAs are empty: weight < 1 ms."""
    marks, state = run(
        [
            (100, 109, 111, 110, 3_000),
            (100, None, None, None, 1_000_000),  # 6.7 tau150: the EMA150 still holds 10
            (100, None, None, None, 1_000_000),
        ]
    )
    assert marks == [110, 110, 100]
    assert state.ema150.den == state.ema150.num == 0
    assert state.ema30.den == state.ema30.num == 0


def test_first_update_without_elapsed_time_reads_the_samples() -> None:
    """dt = 0 adds no weight; an empty EMA reads its current sample, so a = mid, c = b."""
    marks, state = run([(100, 109, 111, None, 0)])
    assert marks == [110]
    assert state.ema150.den == 0


def test_mark_never_below_one() -> None:
    """An oracle crash below the premium history cannot take the mark below 1."""
    marks, _ = run([(1_000, 1_000, 2_000, None, 3_000), (1, None, None, None, 3_000)])
    assert marks == [1_500, 501]  # a = 1 + 500
    marks, _ = run([(1_000, 100, 102, None, 3_000), (1, None, None, None, 3_000)])
    assert marks == [101, 1]  # a = 1 - 899, floored at 1


def test_refuses_bad_inputs() -> None:
    """Oracle and book prices must be >= 1 and elapsed time >= 0."""
    state = MarkState()
    with pytest.raises(ValueError, match="oracle price"):
        state.update(0, 99, 101, None, 3_000)
    with pytest.raises(ValueError, match="elapsed"):
        state.update(100, 99, 101, None, -1)
    with pytest.raises(ValueError, match="book prices"):
        state.update(100, 0, 101, None, 3_000)
    assert state.mark is None


def test_snapshot_encodes_and_restores() -> None:
    """A snapshot encodes in msgpack and a restored state continues identically."""
    _, state = run([(100_000, 99_900, 100_100, 100_000, 3_000), (95_000, 89_900, 90_100, 90, 3)])
    data = msgspec.msgpack.Encoder(order="deterministic").encode(state.snapshot())
    restored = MarkState.restore(msgspec.msgpack.decode(data, type=MarkSnapshot))
    assert restored.snapshot() == state.snapshot()
    step: Step = (96_000, 95_000, 97_000, 96_500, 3_000)
    assert restored.update(*step) == state.update(*step)
    assert restored.snapshot() == state.snapshot()


# A float model of the same rules, as a reference (floats only here, in the tests).


def model_marks(steps: list[Step]) -> list[int]:
    num150 = den150 = num30 = den30 = 0.0
    marks = []
    for oracle, bid, ask, last, dt in steps:
        premium = (bid + ask) / 2 - oracle if bid is not None and ask is not None else None
        book = [px for px in (bid, ask, last) if px is not None]
        b = float(median(book)) if book else None
        if dt > 0:
            f150, f30 = math.exp(-dt / 150_000), math.exp(-dt / 30_000)
            num150, den150, num30, den30 = num150 * f150, den150 * f150, num30 * f30, den30 * f30
            if den150 < 1:
                num150 = den150 = 0.0
            if den30 < 1:
                num30 = den30 = 0.0
        if premium is not None:
            num150, den150 = num150 + premium * dt, den150 + dt
        if b is not None:
            num30, den30 = num30 + b * dt, den30 + dt
        ema150 = num150 / den150 if den150 else (premium if premium is not None else 0.0)
        a = oracle + ema150
        if b is None:
            fine = a
        else:
            c = num30 / den30 if den30 else b
            fine = median([a, b, c])
        marks.append(max(1, math.floor(fine + 0.5)))
    return marks


prices = st.integers(min_value=1, max_value=10**6)
maybe_price = st.none() | prices
steps_strategy = st.lists(
    st.tuples(prices, maybe_price, maybe_price, maybe_price, st.integers(0, 20_000)),
    min_size=1,
    max_size=25,
)


@given(steps_strategy)
def test_matches_float_model(steps: list[Step]) -> None:
    """Every mark is within one price unit of a float evaluation of the same rules."""
    marks, _ = run(steps)
    for got, want in zip(marks, model_marks(steps), strict=True):
        assert abs(got - want) <= 1, (got, want)


@given(
    prices,
    st.lists(
        st.tuples(maybe_price, maybe_price, maybe_price, st.integers(0, 60_000)),
        min_size=1,
        max_size=25,
    ),
)
def test_mark_stays_within_the_prices_seen(
    oracle: int, books: list[tuple[int | None, int | None, int | None, int]]
) -> None:
    """With a fixed oracle, every mark lies between the lowest and highest price seen so far."""
    state = MarkState()
    seen = [oracle]
    for bid, ask, last, dt in books:
        seen += [px for px in (bid, ask, last) if px is not None]
        mark = state.update(oracle, bid, ask, last, dt)
        state._check()
        assert min(seen) <= mark <= max(seen)


def test_check_catches_broken_state() -> None:
    """_check refuses a kept weight below 1 ms, a non-empty numerator with no weight, and a
    non-positive EMA30 of prices."""
    for ema150, ema30 in [
        (Ema(5, WAD - 1), Ema(0, 0)),
        (Ema(5, 0), Ema(0, 0)),
        (Ema(0, 0), Ema(0, WAD)),
    ]:
        state = MarkState()
        state.ema150, state.ema30 = ema150, ema30
        with pytest.raises(AssertionError):
            state._check()
