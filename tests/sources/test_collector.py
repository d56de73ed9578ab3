"""The live collector on loopback: VXLAN datagrams in, a pcap with rebuilt outer headers out."""

from __future__ import annotations

import errno
import os
import random
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from verifier.analysis import analyze_files
from verifier.core.decode import LINKTYPE_ETHERNET
from verifier.sources.capture_file import open_capture
from verifier.sources.collector import (
    Collector,
    CollectorLimits,
    CollectorStats,
    ones_complement_sum,
)

VNI = 0x1234AB
CLIENT = ("10.0.1.5", 40001)
SERVER = ("10.0.2.9", 80)
NO_LIMITS = CollectorLimits(duration=None, packets=None, max_bytes=None)
# A run that goes wrong must still end: every test's run stops by itself within this many seconds.
SAFETY = 10.0


def vxlan(vni: int, inner: bytes) -> bytes:
    # Flags 0x08 (VNI valid), 24 reserved bits, 24-bit VNI, 8 reserved bits (RFC 7348), then the inner frame.
    return struct.pack("!B3xI", 0x08, vni << 8) + inner


def http_conversation() -> list[bytes]:
    """Inner frames of one plaintext HTTP exchange: handshake, request, response, as a mirror sees them."""
    client_mac, server_mac = "02:aa:00:00:00:01", "02:aa:00:00:00:02"

    def c2s(flags: str, seq: int, ack: int, data: bytes = b"") -> bytes:
        ip = IP(src=CLIENT[0], dst=SERVER[0])
        return bytes(
            Ether(src=client_mac, dst=server_mac)
            / ip
            / TCP(sport=CLIENT[1], dport=SERVER[1], flags=flags, seq=seq, ack=ack)
            / Raw(data)
        )

    def s2c(flags: str, seq: int, ack: int, data: bytes = b"") -> bytes:
        ip = IP(src=SERVER[0], dst=CLIENT[0])
        return bytes(
            Ether(src=server_mac, dst=client_mac)
            / ip
            / TCP(sport=SERVER[1], dport=CLIENT[1], flags=flags, seq=seq, ack=ack)
            / Raw(data)
        )

    request = b"GET /index.html HTTP/1.1\r\nHost: example.internal\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    return [
        c2s("S", 1000, 0),
        s2c("SA", 5000, 1001),
        c2s("A", 1001, 5001),
        c2s("PA", 1001, 5001, request),
        s2c("PA", 5001, 1001 + len(request), response),
        c2s("FA", 1001 + len(request), 5001 + len(response)),
        s2c("FA", 5001 + len(response), 1002 + len(request)),
        c2s("A", 1002 + len(request), 5002 + len(response)),
    ]


def collector_on_vxlan_port(host: str, out: Path) -> Collector:
    """A collector on UDP 4789, the port the analyser decapsulates VXLAN on (a test may not choose another).

    IPv4 tries a few random loopback addresses (all of 127/8 is local) so that a busy 127.0.0.1:4789 is no
    obstacle; IPv6 has only ::1.
    """
    hosts = (
        [host]
        if host == "::1"
        else [f"127.{random.randrange(1, 255)}.{random.randrange(1, 255)}.1" for _ in range(5)]
    )
    for candidate in hosts:
        try:
            return Collector((candidate, 4789), out=out)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    pytest.skip(f"UDP port 4789 is in use on {hosts}")


def run_with_sender(
    collector: Collector, limits: CollectorLimits, datagrams: list[bytes], stop: threading.Event | None = None
) -> tuple[CollectorStats, tuple[str, int]]:
    """Run the collector while a thread sends ``datagrams``; return its stats and the sender's address."""
    family = socket.AF_INET6 if ":" in collector.address[0] else socket.AF_INET
    sender = socket.socket(family, socket.SOCK_DGRAM)
    sender.bind((collector.address[0], 0))
    sender_address = sender.getsockname()

    def send() -> None:
        with sender:
            for datagram in datagrams:
                sender.sendto(datagram, collector.address)
                time.sleep(0.0005)  # well below what the loopback buffer holds: no drops expected

    thread = threading.Thread(target=send)
    thread.start()
    try:
        stats = collector.run(limits, stop)
    finally:
        thread.join(SAFETY)
    return stats, (sender_address[0], sender_address[1])


def read_frames(paths: tuple[str, ...]) -> list[tuple[float, int, bytes, int]]:
    frames: list[tuple[float, int, bytes, int]] = []
    for path in paths:
        with open_capture(Path(path)) as reader:
            frames.extend(reader.frames())
    return frames


def test_pcap_holds_every_datagram_behind_rebuilt_headers(tmp_path: Path) -> None:
    datagrams = [vxlan(VNI, frame) for frame in http_conversation()]
    out = tmp_path / "mirror.pcap"
    collector = collector_on_vxlan_port("127.0.0.1", out)
    before = time.time()
    stats, sender = run_with_sender(collector, CollectorLimits(SAFETY, len(datagrams), None), datagrams)
    after = time.time()

    assert stats.stop_reason == "packets"
    assert stats.datagrams == len(datagrams)
    assert stats.bytes == sum(map(len, datagrams))
    assert stats.files == (str(out),)
    assert stats.kernel_drops == 0
    assert stats.timestamps == "kernel-ns"
    assert os.stat(out).st_mode & 0o777 == 0o600
    frames = read_frames(stats.files)
    assert len(frames) == len(datagrams)
    timestamps = [frame[0] for frame in frames]
    assert timestamps == sorted(timestamps)
    assert before - 1 <= timestamps[0] and timestamps[-1] <= after + 1
    for (_ts, linktype, data, original_length), datagram in zip(frames, datagrams, strict=True):
        assert linktype == LINKTYPE_ETHERNET
        assert original_length == len(data)
        packet = Ether(data)
        assert packet[IP].src == sender[0] and packet[IP].dst == collector.address[0]
        assert packet[IP].ttl == 64 and packet[IP].len == 20 + 8 + len(datagram)
        # scapy recomputes the checksum of a copy without it: equal means the stored one is right.
        ip = packet[IP].copy()
        del ip.chksum
        assert IP(bytes(ip)).chksum == packet[IP].chksum
        assert packet[UDP].sport == sender[1] and packet[UDP].dport == collector.address[1]
        assert packet[UDP].len == 8 + len(datagram) and packet[UDP].chksum == 0
        assert data[14 + 20 + 8 :] == datagram

    report = analyze_files([out])
    assert len(report.flows) == 1
    flow = report.flows[0]
    assert (flow.client, flow.server, flow.vni) == ("10.0.1.5:40001", "10.0.2.9:80", VNI)
    assert flow.category == "plaintext(http)"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_tshark_decodes_the_vni(tmp_path: Path, host: str) -> None:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed")
    datagrams = [vxlan(VNI, frame) for frame in http_conversation()]
    collector = collector_on_vxlan_port(host, tmp_path / "mirror.pcap")
    stats, _sender = run_with_sender(collector, CollectorLimits(SAFETY, len(datagrams), None), datagrams)
    # Checksums validated: the outer IPv4 header's, and the outer UDP one over IPv6 (over IPv4 it is 0).
    checks = ["-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"]
    fields = [
        "-e",
        "vxlan.vni",
        "-e",
        "http.request.method",
        "-e",
        "ip.checksum.status",
        "-e",
        "udp.checksum.status",
    ]
    result = subprocess.run(
        [tshark, "-r", stats.files[0], *checks, "-T", "fields", *fields],
        capture_output=True,
        text=True,
        timeout=SAFETY,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(rows) == len(datagrams)
    assert all(row[0] == str(VNI) for row in rows)
    assert [row[1] for row in rows].count("GET") == 1
    # Status 1 is "good" (0 bad, 2 unverified); the inner headers scapy built are checked too.
    for _vni, _method, ip_status, udp_status in rows:
        assert set(ip_status.split(",")) == {"1"}
        if host == "::1":
            assert udp_status == "1"


def test_ipv6_listen_address(tmp_path: Path) -> None:
    datagrams = [vxlan(VNI, frame) for frame in http_conversation()]
    out = tmp_path / "mirror6.pcap"
    collector = collector_on_vxlan_port("::1", out)
    stats, sender = run_with_sender(collector, CollectorLimits(SAFETY, len(datagrams), None), datagrams)

    assert stats.datagrams == len(datagrams)
    frames = read_frames(stats.files)
    assert len(frames) == len(datagrams)
    for (_ts, _linktype, data, _length), datagram in zip(frames, datagrams, strict=True):
        packet = Ether(data)
        assert packet.type == 0x86DD
        assert packet[IPv6].src == "::1" == packet[IPv6].dst
        assert packet[IPv6].plen == 8 + len(datagram) and packet[IPv6].hlim == 64
        assert packet[UDP].sport == sender[1] and packet[UDP].dport == collector.address[1]
        # IPv6 requires the UDP checksum: scapy's, computed on a copy without it, must equal the stored one.
        ip = packet[IPv6].copy()
        del ip[UDP].chksum
        assert packet[UDP].chksum != 0 and IPv6(bytes(ip))[UDP].chksum == packet[UDP].chksum
        assert data[14 + 40 + 8 :] == datagram
    report = analyze_files([out])
    assert [(flow.vni, flow.category) for flow in report.flows] == [(VNI, "plaintext(http)")]


def send_from(source: tuple[str, int], destination: tuple[str, int], datagram: bytes) -> tuple[str, int]:
    family = socket.AF_INET6 if ":" in source[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sender:
        sender.bind(source)
        sender.sendto(datagram, destination)
        address = sender.getsockname()
    return address[0], address[1]


def test_wildcard_listen_address_records_each_datagrams_destination() -> None:
    seen: list[bytes] = []
    collector = Collector(("0.0.0.0", 0), out=None, on_frame=lambda _ts, _lt, frame, _len: seen.append(frame))
    port = collector.address[1]
    # Two loopback destinations on one socket: each frame carries its own, not 0.0.0.0.
    first = send_from(("127.0.0.1", 0), ("127.0.0.7", port), vxlan(VNI, b"first"))
    second = send_from(("127.0.0.1", 0), ("127.0.0.8", port), vxlan(VNI, b"second"))
    stats = collector.run(CollectorLimits(SAFETY, 2, None))
    assert stats.datagrams == 2
    packets = [Ether(frame) for frame in seen]
    assert [(p[IP].src, p[UDP].sport, p[IP].dst, p[UDP].dport) for p in packets] == [
        (*first, "127.0.0.7", port),
        (*second, "127.0.0.8", port),
    ]


def test_dual_stack_listen_address_writes_ipv4_senders_as_ipv4() -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
        if probe.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY):
            pytest.skip("net.ipv6.bindv6only is set: an IPv6 socket on :: receives no IPv4")
    seen: list[bytes] = []
    collector = Collector(("::", 0), out=None, on_frame=lambda _ts, _lt, frame, _len: seen.append(frame))
    port = collector.address[1]
    ipv4 = send_from(("127.0.0.1", 0), ("127.0.0.1", port), vxlan(VNI, b"over IPv4"))
    ipv6 = send_from(("::1", 0), ("::1", port), vxlan(VNI, b"over IPv6"))
    collector.run(CollectorLimits(SAFETY, 2, None))
    first, second = (Ether(frame) for frame in seen)
    # Not ::ffff:127.0.0.1 in an IPv6 header: the datagram came over IPv4, and tools expect it so.
    assert (first[IP].src, first[UDP].sport, first[IP].dst) == (*ipv4, "127.0.0.1")
    assert (second[IPv6].src, second[UDP].sport, second[IPv6].dst) == (*ipv6, "::1")


@pytest.mark.parametrize(
    ("limits", "reason"),
    [
        (CollectorLimits(duration=SAFETY, packets=5, max_bytes=None), "packets"),
        # Each datagram is 100 bytes: the run stops after the datagram that reaches 450 bytes, the fifth.
        (CollectorLimits(duration=SAFETY, packets=None, max_bytes=450), "bytes"),
    ],
)
def test_count_limits_stop_the_run(limits: CollectorLimits, reason: str) -> None:
    datagrams = [vxlan(VNI, bytes(92))] * 20
    stats, _sender = run_with_sender(Collector(("127.0.0.1", 0), out=None), limits, datagrams)
    assert stats.stop_reason == reason
    assert stats.datagrams == 5
    assert stats.bytes == 500


def test_duration_stops_the_run() -> None:
    collector = Collector(("127.0.0.1", 0), out=None)
    stats = collector.run(CollectorLimits(duration=0.5, packets=None, max_bytes=None))
    assert stats.stop_reason == "duration"
    assert stats.datagrams == 0
    assert 0.5 <= stats.ended - stats.started < 0.5 + 1.0


def test_stop_event_stops_the_run() -> None:
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    collector = Collector(("127.0.0.1", 0), out=None)
    started = time.monotonic()
    stats = collector.run(CollectorLimits(duration=SAFETY, packets=None, max_bytes=None), stop)
    timer.join()
    assert stats.stop_reason == "stopped"
    assert time.monotonic() - started < 0.3 + 1.0


def test_rotation_writes_several_complete_files(tmp_path: Path) -> None:
    datagrams = [vxlan(VNI, struct.pack("!I", n) + bytes(400)) for n in range(30)]
    # Each record is 16 + 14 + 20 + 8 + 412 = 470 bytes: four records per 2000-byte file.
    collector = Collector(("127.0.0.1", 0), out=tmp_path / "cap.pcap", rotate_bytes=2000)
    stats, _sender = run_with_sender(collector, CollectorLimits(SAFETY, len(datagrams), None), datagrams)

    assert stats.files == tuple(str(tmp_path / f"cap-{n:04d}.pcap") for n in range(1, 9))
    assert not (tmp_path / "cap.pcap").exists()
    for path in stats.files:
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert os.stat(path).st_size <= 2000
    received = [data[14 + 20 + 8 :] for _ts, _linktype, data, _length in read_frames(stats.files)]
    assert received == datagrams


def test_without_out_nothing_is_written_but_every_frame_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    seen: list[tuple[float, int, bytes, int]] = []
    on_frame: Callable[[float, int, bytes, int], None] = lambda *frame: seen.append(frame)  # noqa: E731
    datagrams = [vxlan(VNI, frame) for frame in http_conversation()]
    collector = Collector(("127.0.0.1", 0), out=None, on_frame=on_frame)
    stats, _sender = run_with_sender(collector, CollectorLimits(SAFETY, len(datagrams), None), datagrams)

    assert stats.files == ()
    assert list(tmp_path.iterdir()) == []
    assert [frame[2][14 + 20 + 8 :] for frame in seen] == datagrams
    assert all(linktype == LINKTYPE_ETHERNET and length == len(data) for _ts, linktype, data, length in seen)


def test_a_socket_bound_elsewhere_is_used_as_it_is() -> None:
    # As a socket opened in another network namespace arrives: bound, and owned by the collector from then on.
    bound = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bound.bind(("127.0.0.1", 0))
    seen: list[bytes] = []
    collector = Collector(bound, out=None, on_frame=lambda _ts, _link, frame, _length: seen.append(frame))
    assert collector.address == bound.getsockname()
    datagrams = [vxlan(VNI, frame) for frame in http_conversation()]
    stats, _sender = run_with_sender(collector, CollectorLimits(SAFETY, len(datagrams), None), datagrams)
    assert stats.datagrams == len(datagrams)
    assert [frame[14 + 20 + 8 :] for frame in seen] == datagrams
    assert bound.fileno() == -1  # closed by the run


def test_on_frame_sees_what_the_file_holds(tmp_path: Path) -> None:
    seen: list[tuple[float, int, bytes, int]] = []
    datagrams = [vxlan(VNI, frame) for frame in http_conversation()]
    collector = Collector(
        ("127.0.0.1", 0), out=tmp_path / "m.pcap", on_frame=lambda *frame: seen.append(frame)
    )
    stats, _sender = run_with_sender(collector, CollectorLimits(SAFETY, len(datagrams), None), datagrams)
    written = read_frames(stats.files)
    assert [frame[1:] for frame in seen] == [frame[1:] for frame in written]
    assert all(abs(a[0] - b[0]) < 1e-6 for a, b in zip(seen, written, strict=True))


def test_interrupted_run_leaves_a_complete_pcap(tmp_path: Path) -> None:
    """Ctrl-C without the stop event: KeyboardInterrupt mid-run, the file still holds whole records only."""
    calls = 0

    def interrupt_on_third(_ts: float, _linktype: int, _frame: bytes, _length: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt

    datagrams = [vxlan(VNI, bytes([n]) * 300) for n in range(10)]
    out = tmp_path / "interrupted.pcap"
    collector = Collector(("127.0.0.1", 0), out=out, on_frame=interrupt_on_third)
    with pytest.raises(KeyboardInterrupt):
        run_with_sender(collector, CollectorLimits(SAFETY, len(datagrams), None), datagrams)
    # The third record was written before on_frame saw it; reading raises on any partial record.
    received = [data[14 + 20 + 8 :] for _ts, _linktype, data, _length in read_frames((str(out),))]
    assert received == datagrams[:3]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # RFC 1071 section 3's example: words 0001 f203 f4f5 f6f7 sum to ddf2 after the end-around carry.
        (bytes.fromhex("0001f203f4f5f6f7"), 0xDDF2),
        (bytes.fromhex("ff"), 0xFF00),  # an odd byte is the high half of a zero-padded word
        (bytes.fromhex("ffffffff"), 0xFFFF),  # a sum of all-ones words is all ones, not zero
        (bytes(6), 0),
    ],
)
def test_ones_complement_sum(data: bytes, expected: int) -> None:
    assert ones_complement_sum(data) == expected
