"""The analyser: frames in, one FlowRecord per TCP connection out, with coverage figures.

Flows are keyed by the raw bytes of the inner 5-tuple plus the VNI, once per direction, so a packet costs
one slice and one dict lookup. A flow buffers payload only until its classification is final; after that a
packet only updates counters and sequence tracking. Flows end on RST, on FIN from both sides (after a short
linger that absorbs the last ACKs) or after an idle timeout, all in capture time, and are evicted: memory
follows the number of open flows, not the length of the capture.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass

from verifier.core.chains import Check
from verifier.core.classify import Classification, FlowClassifier
from verifier.core.decode import FRAGMENT, NO_VNI, TcpSegment, decode_frame
from verifier.core.keylog import KeyLog
from verifier.core.model import Coverage, FlowRecord, Verdict, VniCoverage
from verifier.core.policy import judge
from verifier.core.reassembly import DirectionReassembler
from verifier.core.tls import cipher_suite_name, version_name

_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10
_CONTROL = _FIN | _SYN | _RST

# Ports whose owner is the server when a connection's SYN was not seen.
_SERVICE_PORTS = frozenset(
    {21, 22, 23, 25, 53, 80, 110, 143, 389, 443, 465, 587, 636, 993, 995, 1433, 1521, 2049, 2375, 2376,
     3306, 3389, 4222, 5432, 5671, 5672, 6379, 6380, 6443, 7000, 7001, 8000, 8080, 8443, 8888, 9000,
     9042, 9092, 9093, 9200, 9300, 10250, 11211, 15672, 27017}
)  # fmt: skip


DEFAULT_MAX_BUFFER = 256 * 1024
DEFAULT_IDLE_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class AnalyzerConfig:
    max_buffer: int = DEFAULT_MAX_BUFFER  # bytes per direction kept for classification (then "truncated")
    max_pending: int = DEFAULT_MAX_BUFFER  # out-of-order bytes waited for before a hole is declared a gap
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT  # seconds of capture time without a packet: the flow ends
    closed_linger: float = 2.0  # seconds a finished connection stays to absorb its last ACKs
    sweep_interval: float = 1.0  # seconds of capture time between eviction passes


@dataclass(frozen=True, slots=True)
class _Conclusion:
    """The classification-derived part of a FlowRecord (same field names)."""

    handshake_seen: bool
    category: str
    protocol: str | None
    upgrade_from: str | None
    tls_version: str | None
    cipher_suite: int | None
    cipher_suite_name: str | None
    sni: str | None
    alpn: str | None
    alpn_offered: tuple[str, ...]
    ja4: str | None
    hello_retry_request: bool
    server_certificates: tuple[str, ...]
    client_certificates: tuple[str, ...]
    chain_source: str | None
    chain_note: str | None
    alerts: tuple[str, ...]
    evidence: str
    evidence_truncated: bool
    identity: Verdict | None
    identity_checks: tuple[Check, ...]
    verdict: Verdict
    reason: str

    # Written out: compiled, the generated one would run interpreted (tests/test_dataclasses.py).
    def __init__(
        self,
        handshake_seen: bool,
        category: str,
        protocol: str | None,
        upgrade_from: str | None,
        tls_version: str | None,
        cipher_suite: int | None,
        cipher_suite_name: str | None,
        sni: str | None,
        alpn: str | None,
        alpn_offered: tuple[str, ...],
        ja4: str | None,
        hello_retry_request: bool,
        server_certificates: tuple[str, ...],
        client_certificates: tuple[str, ...],
        chain_source: str | None,
        chain_note: str | None,
        alerts: tuple[str, ...],
        evidence: str,
        evidence_truncated: bool,
        identity: Verdict | None,
        identity_checks: tuple[Check, ...],
        verdict: Verdict,
        reason: str,
    ) -> None:
        object.__setattr__(self, "handshake_seen", handshake_seen)
        object.__setattr__(self, "category", category)
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "upgrade_from", upgrade_from)
        object.__setattr__(self, "tls_version", tls_version)
        object.__setattr__(self, "cipher_suite", cipher_suite)
        object.__setattr__(self, "cipher_suite_name", cipher_suite_name)
        object.__setattr__(self, "sni", sni)
        object.__setattr__(self, "alpn", alpn)
        object.__setattr__(self, "alpn_offered", alpn_offered)
        object.__setattr__(self, "ja4", ja4)
        object.__setattr__(self, "hello_retry_request", hello_retry_request)
        object.__setattr__(self, "server_certificates", server_certificates)
        object.__setattr__(self, "client_certificates", client_certificates)
        object.__setattr__(self, "chain_source", chain_source)
        object.__setattr__(self, "chain_note", chain_note)
        object.__setattr__(self, "alerts", alerts)
        object.__setattr__(self, "evidence", evidence)
        object.__setattr__(self, "evidence_truncated", evidence_truncated)
        object.__setattr__(self, "identity", identity)
        object.__setattr__(self, "identity_checks", identity_checks)
        object.__setattr__(self, "verdict", verdict)
        object.__setattr__(self, "reason", reason)


class _Half(DirectionReassembler):
    """One direction of a flow: its reassembly state plus counters.

    It holds no reference to its flow: the table maps a key to (flow, half), so an evicted flow is freed by
    reference counting alone, with no cycle left for the garbage collector to find.
    """

    __slots__ = ("fin", "is_a", "packets", "payload_bytes")

    def __init__(self, is_a: bool, max_pending: int) -> None:
        super().__init__(max_pending)
        self.is_a = is_a  # "a" is the direction of the first packet seen
        self.packets = 0
        self.payload_bytes = 0
        self.fin = False


class _Flow:
    __slots__ = (
        "a",
        "b",
        "classifier",
        "client_is_a",
        "closed",
        "conclusion",
        "first_ts",
        "key_a",
        "key_b",
        "last_ts",
        "midstream",
        "role_rule",
        "truncated_frames",
    )

    def __init__(self, key_a: bytes, key_b: bytes, ts: float, config: AnalyzerConfig) -> None:
        self.key_a = key_a
        self.key_b = key_b
        self.first_ts = ts
        self.last_ts = ts
        self.a = _Half(True, config.max_pending)
        self.b = _Half(False, config.max_pending)
        self.client_is_a = True
        self.role_rule = "first packet"
        self.midstream = True
        self.closed = False
        self.truncated_frames = 0
        self.classifier: FlowClassifier | None = None  # while the category is open
        self.conclusion: _Conclusion | None = None  # once it is final: small, so long-lived flows stay cheap


class Analyzer:
    """Feed frames (in capture order), then ``finish``; collect records with ``drain``."""

    def __init__(self, config: AnalyzerConfig | None = None, keylog: KeyLog | None = None) -> None:
        self.config = config or AnalyzerConfig()
        self.keylog = keylog  # TLS secrets: flows that start after it is set can show TLS 1.3 chains
        self._flows: dict[bytes, tuple[_Flow, _Half]] = {}  # both directions' keys
        self._open: dict[bytes, _Flow] = {}  # by key_a, one entry per flow
        self._closed: list[_Flow] = []  # finished connections waiting out their linger
        self._finished: list[FlowRecord] = []
        self._next_sweep = -math.inf
        self._next_idle_scan = -math.inf
        self.certificates: dict[str, bytes] = {}
        # coverage counters
        self.frames = 0
        self.truncated_frames = 0
        self.not_analysed: dict[str, int] = {}
        self._vni_flows: dict[int | None, list[int]] = {}
        self._totals = [0] * len(_VNI_FIELDS)
        self._evidence_truncated = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None

    # -- input -----------------------------------------------------------------------------------------

    def feed(self, frames: Iterable[tuple[float, int, bytes, int]]) -> None:
        """Analyse frames: (timestamp, link type, captured bytes, original length)."""
        flows = self._flows
        next_sweep = self._next_sweep
        count = 0
        ts = batch_first = 0.0  # placeholders, read only once a frame has come (count)
        try:
            for ts, linktype, frame, _length in frames:
                if not count:
                    batch_first = ts
                count += 1
                if ts >= next_sweep:
                    self._sweep(ts)
                    next_sweep = self._next_sweep
                # Fast path: Ethernet/IPv4 carrying VXLAN(Ethernet/IPv4/TCP) or TCP directly, unfragmented,
                # 20-byte IP headers. Anything else goes to decode_frame, which handles every layout.
                # Single bytes are compared, not slices: compiled (mypyc), a slice is an allocation.
                base = 0
                captured = len(frame)
                if (
                    linktype == 1
                    and captured >= 54
                    and frame[12] == 0x08  # ethertype IPv4
                    and frame[13] == 0x00
                    and frame[14] == 0x45  # version 4, 20-byte header
                    and not frame[20] & 0xBF  # no fragment: flags DF at most, offset 0
                    and not frame[21]
                ):
                    if (
                        frame[23] == 17
                        and (frame[16] or frame[17] >= 20 or not frame[17])  # total length >= 20, or 0 (TSO)
                        and frame[36] == 0x12  # UDP port 4789
                        and frame[37] == 0xB5
                        and captured >= 104
                        and frame[62] == 0x08
                        and frame[63] == 0x00
                        and frame[64] == 0x45
                        and frame[73] == 6
                        and frame[42] & 0x08
                        and not frame[70] & 0xBF
                        and not frame[71]
                    ):
                        key = frame[46:49] + frame[76:88]
                        base = 84
                        end = 64 + (frame[66] << 8 | frame[67])
                    elif frame[23] == 6:
                        key = frame[26:38]
                        base = 34
                        end = 14 + (frame[16] << 8 | frame[17])
                if base:
                    start = base + ((frame[base + 12] >> 4) << 2)
                    flags = frame[base + 13]
                    entry = flows.get(key)
                    if start < base + 20 or end < start or captured < start:
                        pass  # malformed or cut inside the headers: decode_frame says which
                    elif entry is not None and not flags & _CONTROL and end <= captured:
                        # The hot path: a known flow, no control flags, nothing cut.
                        flow, half = entry
                        half.packets += 1
                        flow.last_ts = ts
                        length = end - start
                        if length:
                            half.payload_bytes += length
                            seq = _uint32_at(frame, base + 4)
                            if half.buffering:
                                data = half.add(seq, frame[start:end])
                                if data or half.last_gap:
                                    self._deliver(flow, half, data, half.last_gap)
                            elif seq == half.expect32:
                                half.next_seq += length  # type: ignore[operator]  # set once tracking
                                half.expect32 = (seq + length) & 0xFFFFFFFF
                            else:
                                half.track(seq, length)
                        continue
                    else:
                        payload = frame[start:end]
                        seq = _uint32_at(frame, base + 4)
                        self._segment(ts, key, flags, seq, payload, end - start - len(payload))
                        continue
                segment = decode_frame(linktype, frame)
                if not isinstance(segment, TcpSegment):
                    self.not_analysed[segment] = self.not_analysed.get(segment, 0) + 1
                    continue
                payload = segment.payload
                missing = segment.payload_length - len(payload)
                self._segment(ts, _key(segment), segment.flags, segment.seq, payload, missing)
        finally:
            self.frames += count
            self._next_sweep = next_sweep
            if count:
                # Min and max over batch ends, not the first and last frame: files given out of time order,
                # or a capture that steps back, still get a time range that starts before it ends.
                first, last = self.first_ts, self.last_ts
                self.first_ts = batch_first if first is None else min(first, batch_first)
                self.last_ts = ts if last is None else max(last, ts)

    def finish(self) -> None:
        """End of input: every open flow is finished."""
        for flow in list(self._open.values()):
            self._evict(flow)
        self._closed.clear()

    def drain(self) -> list[FlowRecord]:
        """Records of the flows finished since the last call."""
        finished, self._finished = self._finished, []
        return finished

    @property
    def open_flows(self) -> int:
        return len(self._open)

    # -- flow life -------------------------------------------------------------------------------------

    def _segment(self, ts: float, key: bytes, flags: int, seq: int, payload: bytes, missing: int) -> None:
        """The slow path: a new flow, control flags or a truncated segment."""
        entry = self._flows.get(key)
        if entry is not None and flags & _SYN and not flags & _ACK:
            flow, half = entry
            if flow.closed or half.delivered or half.payload_bytes:
                self._evict(flow)  # port reuse: a new connection on the same 5-tuple
                entry = None
        flow, half = self._new_flow(ts, key, flags) if entry is None else entry
        flow.last_ts = ts
        half.packets += 1
        if flags & _SYN:
            half.syn(seq)
            flow.midstream = False
        if missing:
            flow.truncated_frames += 1
            self.truncated_frames += 1
        if payload or missing:
            half.payload_bytes += len(payload)
            if half.buffering:
                data = half.add(seq, payload)
                if data or half.last_gap:
                    self._deliver(flow, half, data, half.last_gap)
                if missing:
                    half.skip(missing)
                    self._deliver(flow, half, b"", missing)
            else:
                half.track(seq, len(payload))
                half.skip(missing)
        if not flow.closed and (flags & _RST or (flags & _FIN and _fin_both(flow, half))):
            flow.closed = True
            self._closed.append(flow)

    def _new_flow(self, ts: float, key: bytes, flags: int) -> tuple[_Flow, _Half]:
        key_b = _reverse_key(key)
        flow = _Flow(key, key_b, ts, self.config)
        if flags & _SYN:
            flow.midstream = False
            flow.client_is_a = not flags & _ACK
            flow.role_rule = "SYN-ACK" if flags & _ACK else "SYN"
        else:
            server_is_b = _server_port_side(int.from_bytes(key[-4:-2]), int.from_bytes(key[-2:]))
            if server_is_b is not None:
                flow.client_is_a = server_is_b
                flow.role_rule = "port"
        flow.classifier = FlowClassifier(
            max_bytes=self.config.max_buffer, roles_known=bool(flags & _SYN), keylog=self.keylog
        )
        entry = (flow, flow.a)
        self._flows[key] = entry
        self._flows[key_b] = (flow, flow.b)
        self._open[key] = flow
        return entry

    def _deliver(self, flow: _Flow, half: _Half, data: bytes, gap: int) -> None:
        classifier = flow.classifier
        if classifier is None:
            return  # the category is final
        classifier.feed(half.is_a == flow.client_is_a, data, gap)
        _take_roles(flow, classifier)
        if classifier.result is not None:
            flow.a.stop_buffering()
            flow.b.stop_buffering()
            flow.conclusion = self._conclude(classifier.result)
            flow.classifier = None

    def _sweep(self, now: float) -> None:
        """Evict finished connections after their linger, and (less often) idle ones."""
        config = self.config
        if self.first_ts is None:
            self.first_ts = now
        self._next_sweep = now + config.sweep_interval
        if self._closed:
            lingering = []
            for flow in self._closed:
                if now - flow.last_ts > config.closed_linger:
                    self._evict(flow)
                elif self._open.get(flow.key_a) is flow:
                    lingering.append(flow)
            self._closed = lingering
        if now >= self._next_idle_scan:
            # Idle flows need not leave to the second: scan all open flows a few times per timeout.
            self._next_idle_scan = now + config.idle_timeout / 8
            for flow in [f for f in self._open.values() if now - f.last_ts > config.idle_timeout]:
                self._evict(flow)

    def _evict(self, flow: _Flow) -> None:
        if self._open.get(flow.key_a) is not flow:
            return  # already evicted (a closed flow replaced by port reuse, say)
        del self._open[flow.key_a]
        for key in (flow.key_a, flow.key_b):
            entry = self._flows.get(key)
            if entry is not None and entry[0] is flow:
                del self._flows[key]
        for half in (flow.a, flow.b):
            if half.buffering:
                data = half.flush()
                if data or half.last_gap:
                    self._deliver(flow, half, data, half.last_gap)
            half.finish()
        if flow.classifier is not None:
            flow.conclusion = self._conclude(flow.classifier.finish())
            _take_roles(flow, flow.classifier)
            flow.classifier = None
        assert flow.conclusion is not None
        record = self._record(flow, flow.conclusion)
        self._finished.append(record)
        self._count(record)

    # -- output ----------------------------------------------------------------------------------------

    def _conclude(self, found: Classification) -> _Conclusion:
        hello, server_hello = found.client_hello, found.server_hello
        cipher = server_hello.cipher_suite if server_hello is not None else None
        version = server_hello.negotiated_version if server_hello is not None else None
        verdict, reason = judge(found.category, cipher, found.evidence)
        return _Conclusion(
            handshake_seen=found.handshake_seen,
            category=found.category,
            protocol=found.protocol,
            upgrade_from=found.upgrade_from,
            tls_version=version_name(version) if version is not None else None,
            cipher_suite=cipher,
            cipher_suite_name=cipher_suite_name(cipher) if cipher is not None else None,
            sni=hello.sni if hello is not None else None,
            alpn=server_hello.alpn if server_hello is not None else None,
            alpn_offered=hello.alpn if hello is not None else (),
            ja4=found.ja4,
            hello_retry_request=found.hello_retry_request,
            server_certificates=self._register(found.server_certificates),
            client_certificates=self._register(found.client_certificates),
            chain_source=found.chain_source,
            chain_note=found.chain_note,
            alerts=found.alerts,
            evidence=found.evidence,
            evidence_truncated=found.evidence_truncated,
            identity=None,
            identity_checks=(),
            verdict=verdict,
            reason=reason,
        )

    def _record(self, flow: _Flow, found: _Conclusion) -> FlowRecord:
        client, server = (flow.a, flow.b) if flow.client_is_a else (flow.b, flow.a)
        vni, client_address, server_address = _endpoints(flow.key_a if flow.client_is_a else flow.key_b)
        return FlowRecord(
            client=client_address,
            server=server_address,
            vni=vni,
            first_seen=flow.first_ts,
            last_seen=flow.last_ts,
            role_rule=flow.role_rule,
            midstream=flow.midstream,
            handshake_seen=found.handshake_seen,
            category=found.category,
            protocol=found.protocol,
            upgrade_from=found.upgrade_from,
            tls_version=found.tls_version,
            cipher_suite=found.cipher_suite,
            cipher_suite_name=found.cipher_suite_name,
            sni=found.sni,
            alpn=found.alpn,
            alpn_offered=found.alpn_offered,
            ja4=found.ja4,
            hello_retry_request=found.hello_retry_request,
            server_certificates=found.server_certificates,
            client_certificates=found.client_certificates,
            chain_source=found.chain_source,
            chain_note=found.chain_note,
            alerts=found.alerts,
            evidence=found.evidence,
            evidence_truncated=found.evidence_truncated,
            identity=found.identity,
            identity_checks=found.identity_checks,
            packets_client=client.packets,
            packets_server=server.packets,
            bytes_client=client.payload_bytes,
            bytes_server=server.payload_bytes,
            retransmissions=client.retransmissions + server.retransmissions,
            out_of_order=client.out_of_order + server.out_of_order,
            gaps=client.gaps + server.gaps,
            gap_bytes=client.gap_bytes + server.gap_bytes,
            truncated_frames=flow.truncated_frames,
            verdict=found.verdict,
            reason=found.reason,
        )

    def _register(self, chain: tuple[bytes, ...]) -> tuple[str, ...]:
        digests = []
        for der in chain:
            digest = hashlib.sha256(der).hexdigest()
            self.certificates.setdefault(digest, der)
            digests.append(digest)
        return tuple(digests)

    def _count(self, record: FlowRecord) -> None:
        counters = self._vni_flows.setdefault(record.vni, [0] * len(_VNI_FIELDS))
        values = (
            record.packets_client + record.packets_server,
            1,
            record.handshake_seen,
            record.midstream,
            record.gaps,
            record.gap_bytes,
            record.retransmissions,
            record.out_of_order,
            record.truncated_frames,
        )
        for index, value in enumerate(values):
            counters[index] += value
            self._totals[index] += value
        self._evidence_truncated += record.evidence_truncated

    def coverage(self) -> Coverage:
        totals = dict(zip(_VNI_FIELDS, self._totals, strict=True))
        per_vni = []
        for vni in sorted(self._vni_flows, key=lambda v: -1 if v is None else v):
            counts = dict(zip(_VNI_FIELDS, self._vni_flows[vni], strict=True))
            per_vni.append(VniCoverage(vni=vni, **counts))
        not_analysed = dict(self.not_analysed)
        return Coverage(
            frames=self.frames,
            tcp_segments=totals["frames"],
            not_analysed=not_analysed,
            truncated_frames=self.truncated_frames,
            ip_fragments=not_analysed.get(FRAGMENT, 0),
            flows=totals["flows"],
            flows_with_handshake=totals["flows_with_handshake"],
            flows_without_handshake=totals["flows"] - totals["flows_with_handshake"],
            midstream_flows=totals["midstream_flows"],
            gaps=totals["gaps"],
            gap_bytes=totals["gap_bytes"],
            retransmissions=totals["retransmissions"],
            out_of_order=totals["out_of_order"],
            evidence_truncated_flows=self._evidence_truncated,
            per_vni=tuple(per_vni),
            first_timestamp=self.first_ts,
            last_timestamp=self.last_ts,
        )


_VNI_FIELDS = (
    "frames",
    "flows",
    "flows_with_handshake",
    "midstream_flows",
    "gaps",
    "gap_bytes",
    "retransmissions",
    "out_of_order",
    "truncated_frames",
)


def _uint32_at(frame: bytes, offset: int) -> int:
    # Byte by byte: compiled, a slice for int.from_bytes would be an allocation per packet.
    return frame[offset] << 24 | frame[offset + 1] << 16 | frame[offset + 2] << 8 | frame[offset + 3]


def _key(segment: TcpSegment) -> bytes:
    vni = segment.vni.to_bytes(3) if segment.vni != NO_VNI else b""
    return vni + segment.src + segment.dst + segment.sport.to_bytes(2) + segment.dport.to_bytes(2)


def _split_key(key: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """(vni, src, dst, sport, dport) bytes of a key; keys are 12/36 bytes, or 15/39 with a VNI."""
    vni_length = 3 if len(key) in (15, 39) else 0
    address_length = (len(key) - vni_length - 4) // 2
    src_end = vni_length + address_length
    return (
        key[:vni_length],
        key[vni_length:src_end],
        key[src_end : src_end + address_length],
        key[-4:-2],
        key[-2:],
    )


def _reverse_key(key: bytes) -> bytes:
    vni, src, dst, sport, dport = _split_key(key)
    return vni + dst + src + dport + sport


def _endpoints(client_key: bytes) -> tuple[int | None, str, str]:
    vni, src, dst, sport, dport = _split_key(client_key)
    return (
        int.from_bytes(vni) if vni else None,
        _endpoint(src, int.from_bytes(sport)),
        _endpoint(dst, int.from_bytes(dport)),
    )


def _endpoint(address: bytes, port: int) -> str:
    if len(address) == 16:
        return f"[{ipaddress.IPv6Address(address)}]:{port}"
    return f"{address[0]}.{address[1]}.{address[2]}.{address[3]}:{port}"


def _take_roles(flow: _Flow, classifier: FlowClassifier) -> None:
    """Adopt the classifier's finding of who the client really is."""
    if classifier.swapped:
        classifier.swapped = False
        flow.client_is_a = not flow.client_is_a
        flow.role_rule = classifier.swap_rule


def _fin_both(flow: _Flow, half: _Half) -> bool:
    half.fin = True
    return flow.a.fin and flow.b.fin


def _server_port_side(sport: int, dport: int) -> bool | None:
    """True if the destination port looks like the server's, False if the source's, None if unclear."""
    if (dport in _SERVICE_PORTS) != (sport in _SERVICE_PORTS):
        return dport in _SERVICE_PORTS
    if sport != dport:
        return dport < sport  # the lower port, as tshark guesses too
    return None
