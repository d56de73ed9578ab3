"""TCP reassembly of one direction: order, retransmission, overlap, loss, wraparound, tracking."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from verifier.core.reassembly import DirectionReassembler

ISN = 1_000


def _stream(max_pending: int = 1 << 20, isn: int = ISN) -> DirectionReassembler:
    stream = DirectionReassembler(max_pending)
    stream.syn(isn)
    return stream


def test_in_order_segments_come_straight_through() -> None:
    stream = _stream()
    assert stream.add(ISN + 1, b"hello ") == b"hello "
    assert stream.add(ISN + 7, b"world") == b"world"
    assert (stream.retransmissions, stream.out_of_order, stream.gaps) == (0, 0, 0)


def test_out_of_order_segment_waits_for_the_hole() -> None:
    stream = _stream()
    assert stream.add(ISN + 7, b"world") == b""
    assert stream.add(ISN + 1, b"hello ") == b"hello world"
    assert stream.out_of_order == 1 and stream.gaps == 0


def test_retransmission_and_overlap() -> None:
    stream = _stream()
    stream.add(ISN + 1, b"abcdef")
    assert stream.add(ISN + 1, b"abcdef") == b""  # exact duplicate
    assert stream.add(ISN + 4, b"defGHI") == b"GHI"  # old "def" kept, new "GHI" delivered
    assert stream.retransmissions == 2


def test_lost_segment_becomes_a_gap_when_waiting_costs_too_much() -> None:
    stream = _stream(max_pending=8)
    stream.add(ISN + 1, b"abc")
    assert stream.add(ISN + 10, b"0123") == b""  # bytes 4..9 missing; 4 bytes wait
    assert stream.add(ISN + 14, b"456789") == b"0123456789"  # 10 bytes waiting > 8: give up on the hole
    assert stream.last_gap == 6
    assert (stream.gaps, stream.gap_bytes) == (1, 6)


def test_flush_declares_the_remaining_hole() -> None:
    stream = _stream()
    stream.add(ISN + 1, b"abc")
    stream.add(ISN + 20, b"xyz")
    assert stream.flush() == b"xyz"
    assert stream.last_gap == 16 and stream.gap_bytes == 16


def test_sequence_numbers_wrap_around() -> None:
    stream = _stream(isn=(1 << 32) - 3)
    assert stream.add((1 << 32) - 2, b"ab") == b"ab"
    assert stream.add(0, b"cd") == b"cd"  # the 32-bit sequence number wrapped
    assert stream.delivered == 4


def test_midstream_direction_starts_at_first_byte_seen() -> None:
    stream = DirectionReassembler(1 << 20)
    assert stream.add(123456, b"data") == b"data"
    assert stream.add(123460, b"more") == b"more"


def test_truncated_segment_tail_is_a_gap() -> None:
    stream = _stream()
    stream.add(ISN + 1, b"head")
    stream.skip(96)  # the frame claimed 100 payload bytes, the capture kept 4
    assert stream.add(ISN + 101, b"next") == b"next"
    assert (stream.gaps, stream.gap_bytes) == (1, 96)


def test_tracking_after_the_verdict_tells_reordering_from_loss() -> None:
    stream = _stream()
    stream.add(ISN + 1, b"x" * 10)
    stream.stop_buffering()
    assert stream.add(ISN + 21, b"y" * 10) == b""  # hole 11..20
    assert stream.add(ISN + 11, b"z" * 10) == b""  # fills it: reordered, not lost
    assert stream.add(ISN + 41, b"w" * 10) == b""  # hole 31..40, never filled
    assert stream.add(ISN + 41, b"w" * 10) == b""  # a duplicate
    stream.finish()
    assert (stream.out_of_order, stream.retransmissions) == (1, 1)
    assert (stream.gaps, stream.gap_bytes) == (1, 10)
    assert not stream.pending  # nothing was kept while only tracking


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=400),
    cuts=st.lists(st.integers(1, 399), max_size=20),
    swaps=st.lists(st.integers(0, 30), max_size=10),
    duplicates=st.lists(st.integers(0, 30), max_size=5),
    isn=st.integers(0, (1 << 32) - 1),
)
def test_any_segmentation_order_and_duplication_reassembles_exactly(
    data: bytes, cuts: list[int], swaps: list[int], duplicates: list[int], isn: int
) -> None:
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    segments = [(isn + 1 + a, data[a:b]) for a, b in itertools.pairwise(bounds)]
    for index in swaps:
        if index + 1 < len(segments):
            segments[index], segments[index + 1] = segments[index + 1], segments[index]
    for index in duplicates:
        if index < len(segments):
            segments.append(segments[index])
    stream = _stream(isn=isn)
    out = b"".join(stream.add(seq % (1 << 32), payload) for seq, payload in segments)
    assert out + stream.flush() == data
    assert stream.gaps == 0
