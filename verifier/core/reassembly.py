"""TCP reassembly of one direction of a connection.

Two regimes. While the flow's classification is open, the direction *buffers*: out-of-order segments wait
(up to a bound) for the missing bytes, and contiguous bytes are handed to the classifier. Once the verdict is
final the direction only *tracks* sequence numbers, so that gaps, retransmissions and reordering are still
counted for the coverage report without keeping any payload.

Mirrored traffic loses packets (production traffic has priority at the mirror source), so a missing segment
may never come: when waiting costs more than ``max_pending`` bytes, or the flow ends, the hole is declared a
gap and recorded, and the stream continues after it.
"""

from __future__ import annotations

_SEQ_MOD = 1 << 32
_HALF = 1 << 31
# Holes remembered while only tracking: enough to tell reordering from loss without growing per flow.
_MAX_TRACKED_HOLES = 16


class DirectionReassembler:
    """Sequence state and bounded reassembly for one direction of a TCP connection."""

    __slots__ = (
        "buffering",
        "delivered",
        "expect32",
        "gap_bytes",
        "gaps",
        "holes",
        "last_gap",
        "max_pending",
        "next_seq",
        "out_of_order",
        "pending",
        "pending_bytes",
        "retransmissions",
    )

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self.buffering = True
        self.next_seq: int | None = None  # unwrapped (64-bit) next expected sequence number
        self.expect32 = -1  # next_seq modulo 2**32 while tracking: lets the caller skip in-order segments
        self.delivered = 0  # contiguous payload bytes handed out while buffering
        # Both made on first use: most directions never need them, and long-lived flows are many.
        self.pending: dict[int, bytes] | None = None  # out-of-order segments by unwrapped start
        self.pending_bytes = 0
        self.holes: list[list[int]] | None = None  # [start, end) unwrapped, only while tracking
        self.gaps = 0
        self.gap_bytes = 0
        self.last_gap = 0  # bytes skipped just before the data returned by the last add()
        self.retransmissions = 0
        self.out_of_order = 0

    def syn(self, seq: int) -> None:
        """A SYN (or SYN-ACK) fixes the initial sequence number, unless data already flowed."""
        if self.delivered == 0 and not self.pending:
            self.next_seq = (seq + 1) % _SEQ_MOD

    def add(self, seq: int, payload: bytes) -> bytes:
        """Take one segment; return the new contiguous bytes it makes available (maybe empty).

        After the call, ``last_gap`` says how many bytes were declared lost just before the returned data.
        """
        self.last_gap = 0
        length = len(payload)
        if self.next_seq is None:
            self.next_seq = seq  # mid-stream: the first byte we see is our origin
        delta = ((seq - self.next_seq + _HALF) % _SEQ_MOD) - _HALF
        if not self.buffering:
            self.track(seq, length)
            return b""
        if delta == 0:
            self.next_seq += length
            self.delivered += length
            return self._drain(payload) if self.pending else payload
        if delta < 0:
            if delta + length <= 0:
                self.retransmissions += 1
                return b""
            # Overlap: part old, part new. The first copy wins (as most stacks do).
            self.retransmissions += 1
            fresh = payload[-delta:]
            self.next_seq += len(fresh)
            self.delivered += len(fresh)
            return self._drain(fresh) if self.pending else fresh
        start = self.next_seq + delta
        pending = self.pending
        if pending is None:
            pending = self.pending = {}
        if start not in pending or len(pending[start]) < length:
            self.pending_bytes += length - len(pending.get(start, b""))
            pending[start] = payload
        self.out_of_order += 1
        if self.pending_bytes > self.max_pending:
            return self._skip_to_pending()
        return b""

    def skip(self, missing: int) -> None:
        """The last segment was cut short (snaplen, mirror truncation): its missing tail is a gap."""
        if self.next_seq is not None and missing > 0:
            self.next_seq += missing
            self.gaps += 1
            self.gap_bytes += missing
            if not self.buffering:
                self.expect32 = self.next_seq % _SEQ_MOD

    def flush(self) -> bytes:
        """The flow ended: whatever still waits behind a hole is delivered after a declared gap."""
        self.last_gap = 0
        if not self.pending:
            return b""
        return self._skip_to_pending()

    def stop_buffering(self) -> None:
        """The verdict is final: drop buffered bytes and only track sequence numbers from now on."""
        if self.pending:
            self.flush()
        self.buffering = False
        if self.next_seq is not None:
            self.expect32 = self.next_seq % _SEQ_MOD

    def finish(self) -> None:
        """Count holes never filled as gaps."""
        for start, end in self.holes or ():
            self.gaps += 1
            self.gap_bytes += end - start
        self.holes = None

    def _drain(self, data: bytes) -> bytes:
        chunks = [data]
        assert self.next_seq is not None
        pending = self.pending
        while pending:
            # Segments that are now wholly or partly behind next_seq.
            start = min(pending)
            if start > self.next_seq:
                break
            segment = pending.pop(start)
            self.pending_bytes -= len(segment)
            fresh = segment[self.next_seq - start :]
            if fresh:
                chunks.append(fresh)
                self.next_seq += len(fresh)
                self.delivered += len(fresh)
        return b"".join(chunks)

    def _skip_to_pending(self) -> bytes:
        pending = self.pending
        assert self.next_seq is not None and pending  # callers check that something waits
        start = min(pending)
        skipped = start - self.next_seq
        self.gaps += 1
        self.gap_bytes += skipped
        self.next_seq = start
        segment = pending.pop(start)
        self.pending_bytes -= len(segment)
        self.next_seq += len(segment)
        self.delivered += len(segment)
        data = self._drain(segment) if pending else segment
        self.last_gap = skipped
        return data

    def track(self, seq: int, length: int) -> None:
        """Account for a segment without keeping its bytes (after the verdict).

        Callers may skip the call for an in-order segment (``seq == expect32``) by advancing ``next_seq`` and
        ``expect32`` themselves: that is the common case, and the one that must cost nothing.
        """
        if self.next_seq is None:
            self.next_seq = seq
        start = self.next_seq + ((seq - self.next_seq + _HALF) % _SEQ_MOD) - _HALF
        self._track(start, length)
        self.expect32 = self.next_seq % _SEQ_MOD

    def _track(self, start: int, length: int) -> None:
        assert self.next_seq is not None
        end = start + length
        holes = self.holes
        if start >= self.next_seq:
            if start > self.next_seq:
                if holes is None:
                    holes = self.holes = []
                holes.append([self.next_seq, start])
                if len(holes) > _MAX_TRACKED_HOLES:
                    lost_start, lost_end = holes.pop(0)
                    self.gaps += 1
                    self.gap_bytes += lost_end - lost_start
            self.next_seq = max(self.next_seq, end)
            return
        if length == 0:
            return
        for index, (hole_start, hole_end) in enumerate(holes or ()):
            if start < hole_end and end > hole_start:
                # A late segment filling (part of) a hole: reordering, not loss.
                self.out_of_order += 1
                pieces = [[hole_start, start]] if start > hole_start else []
                if end < hole_end:
                    pieces.append([end, hole_end])
                assert holes is not None  # the loop ran over them
                holes[index : index + 1] = pieces
                return
        self.retransmissions += 1
