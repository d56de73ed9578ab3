"""Live collector: receive VPC Traffic Mirroring's VXLAN datagrams on a UDP socket and write them as a pcap.

AWS sends each mirrored frame as VXLAN in UDP to port 4789. A plain UDP socket (no root, no raw capture)
gets the VXLAN header and inner frame as the datagram payload; the outer Ethernet/IP/UDP headers are rebuilt
from the sender's and the listen address, so that tshark and ``verifier analyze`` decode the file exactly
like a capture taken on the collector's interface.

Linux extras, each optional (the stats say which ones the kernel granted): a forced large receive buffer,
kernel arrival timestamps in nanoseconds (SO_TIMESTAMPNS) and the socket's drop counter (SO_RXQ_OVFL). On a
wildcard listen address (0.0.0.0, ::) each datagram's real destination comes from PKTINFO, and IPv4 senders
of a dual-stack socket are written as IPv4, not as IPv4-mapped IPv6.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from verifier.core.decode import LINKTYPE_ETHERNET
from verifier.core.model import CollectorCoverage

# Linux socket option numbers (asm-generic/socket.h); Python's socket module does not export them.
_SO_RCVBUFFORCE = 33  # exceeds net.core.rmem_max, needs CAP_NET_ADMIN
_SO_TIMESTAMP = 29  # struct timeval per datagram
_SO_TIMESTAMPNS = 35  # struct timespec per datagram
_SO_RXQ_OVFL = 40  # u32: datagrams this socket dropped so far, on each datagram received after a drop
_IP_PKTINFO = 8  # struct in_pktinfo: ifindex, local address, destination address (4 bytes at offset 8)
_IS_LINUX = sys.platform.startswith("linux")

_TIMEOUT = 0.2  # seconds a receive may block before the stop conditions are checked again
_RECV_SIZE = 65535  # the largest UDP payload
# A timespec, the drop counter and the destination address (in6_pktinfo, the larger pktinfo).
_ANC_SIZE = socket.CMSG_SPACE(16) + socket.CMSG_SPACE(4) + socket.CMSG_SPACE(20)
_SNAPLEN = 262144

# Fixed locally administered MACs: the real ones of the outer hop are not visible to a UDP socket.
_MAC_COLLECTOR = bytes.fromhex("020000000002")
_MAC_SENDER = bytes.fromhex("020000000001")
_TTL = 64
_IPPROTO_UDP = 17
_ETHERNET_IPV4 = _MAC_COLLECTOR + _MAC_SENDER + b"\x08\x00"
_ETHERNET_IPV6 = _MAC_COLLECTOR + _MAC_SENDER + b"\x86\xdd"
_V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"

_PCAP_HEADER = struct.pack(
    # magic (nanosecond timestamps), version 2.4, thiszone, sigfigs, snaplen, link type
    "<IHHiIII",
    0xA1B23C4D,
    2,
    4,
    0,
    0,
    _SNAPLEN,
    LINKTYPE_ETHERNET,
)
_RECORD = struct.Struct("<IIII")  # seconds, nanoseconds, captured length, original length
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_UDP = struct.Struct("!HHHH")
_TIMESPEC = struct.Struct("@qq")  # time_t and long on 64-bit Linux
_U32 = struct.Struct("@I")

FrameCallback = Callable[[float, int, bytes, int], None]


@dataclass(frozen=True, slots=True)
class CollectorLimits:
    """When a run stops on its own; None means no limit of that kind."""

    duration: float | None  # seconds
    packets: int | None  # datagrams
    max_bytes: int | None  # datagram payload bytes


@dataclass(frozen=True, slots=True)
class CollectorStats:
    datagrams: int
    bytes: int  # datagram payload bytes (VXLAN header and inner frame)
    kernel_drops: int  # the socket's drop counter as last reported (0 if unsupported, see drops_counted)
    files: tuple[str, ...]
    started: float  # seconds since the epoch
    ended: float
    stop_reason: str  # "duration", "packets", "bytes" or "stopped"
    receive_buffer: int  # SO_RCVBUF as granted by the kernel (Linux reports twice the bytes asked)
    timestamps: str  # "kernel-ns", "kernel-us" or "user" (read after recvmsg returned)
    drops_counted: bool  # False: the kernel cannot report drops on this platform, kernel_drops means nothing

    def coverage(self) -> CollectorCoverage:
        """What the report's coverage section says of the collector."""
        return CollectorCoverage(
            datagrams=self.datagrams,
            bytes=self.bytes,
            kernel_drops=self.kernel_drops if self.drops_counted else None,
            started=self.started,
            ended=self.ended,
            stop_reason=self.stop_reason,
        )


def ones_complement_sum(data: bytes) -> int:
    """The Internet checksum's 16-bit one's-complement sum of ``data`` (RFC 1071), odd length zero-padded."""
    if len(data) % 2:
        data += b"\0"
    # 2**16 is 1 modulo 0xFFFF, so the number's remainder is the end-around-carry sum of its 16-bit words.
    total = int.from_bytes(data, "big") % 0xFFFF
    return 0xFFFF if total == 0 and any(data) else total


def _checksum(total: int) -> int:
    return ~total & 0xFFFF


class _PcapWriter:
    """A pcap file written whole records at a time, rotated by size into name-0001.pcap, name-0002.pcap..."""

    def __init__(self, out: Path, rotate_bytes: int | None) -> None:
        self._out = out
        self._rotate_bytes = rotate_bytes
        self.files: list[str] = []
        self._file = self._open_next()
        self._size = len(_PCAP_HEADER)

    def _open_next(self) -> BinaryIO:
        if self._rotate_bytes is None:
            path = self._out
        else:
            path = self._out.with_name(f"{self._out.stem}-{len(self.files) + 1:04d}{self._out.suffix}")
        # Mirrored traffic may carry plaintext secrets: readable by the owner only, even when overwriting.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        file = os.fdopen(fd, "wb", buffering=1024 * 1024)
        file.write(_PCAP_HEADER)
        self.files.append(str(path))
        return file

    def write(self, timestamp_ns: int, frame: bytes) -> None:
        seconds, nanoseconds = divmod(timestamp_ns, 1_000_000_000)
        record = _RECORD.pack(seconds, nanoseconds, len(frame), len(frame)) + frame
        if (
            self._rotate_bytes is not None
            and self._size > len(_PCAP_HEADER)
            and self._size + len(record) > self._rotate_bytes
        ):
            self._file.close()
            self._file = self._open_next()
            self._size = len(_PCAP_HEADER)
        # One write call per record: a stop between two calls never leaves half a record behind.
        self._file.write(record)
        self._size += len(record)

    def close(self) -> None:
        self._file.close()


def _packed_address(ip: str) -> bytes:
    """4 bytes for IPv4, also when a dual-stack socket reports it IPv4-mapped (::ffff:a.b.c.d), else 16."""
    if ":" not in ip:
        return socket.inet_pton(socket.AF_INET, ip)
    # A link-local IPv6 address comes as "fe80::1%eth0": the zone is not part of the address.
    return _unmapped(socket.inet_pton(socket.AF_INET6, ip.partition("%")[0]))


def _unmapped(packed: bytes) -> bytes:
    return packed[12:] if packed[:12] == _V4_MAPPED_PREFIX else packed


class _Framer:
    """Rebuilds the outer Ethernet/IP/UDP headers of the datagrams received on one listen address."""

    def __init__(self, listen_ip: str, listen_port: int) -> None:
        self._listen = _packed_address(listen_ip)
        self._dport = listen_port
        self._packed_src: dict[str, bytes] = {}

    def frame(self, payload: bytes, sender_ip: str, sender_port: int, dst: bytes | None) -> bytes:
        """The frame as seen on the wire; ``dst`` is the datagram's destination when the kernel told it."""
        src = self._packed_src.get(sender_ip)
        if src is None:
            if len(self._packed_src) > 4096:  # bounded: senders are a handful of mirror sources
                self._packed_src.clear()
            src = self._packed_src[sender_ip] = _packed_address(sender_ip)
        if dst is None:
            dst = self._listen
        if len(dst) != len(src):  # an IPv4 sender on a dual-stack socket whose destination is unknown
            dst = bytes(len(src))
        udp_length = 8 + len(payload)
        if len(src) == 4:
            # Version 4, IHL 5; DSCP 0; total length; id 0; DF; TTL; UDP; checksum; addresses.
            header = _IPV4.pack(0x45, 0, 20 + udp_length, 0, 0x4000, _TTL, _IPPROTO_UDP, 0, src, dst)
            header = header[:10] + _checksum(ones_complement_sum(header)).to_bytes(2, "big") + header[12:]
            # A zero UDP checksum over IPv4 means "not computed" (RFC 768), as many senders leave it.
            udp = _UDP.pack(sender_port, self._dport, udp_length, 0)
            return _ETHERNET_IPV4 + header + udp + payload
        # Version 6, traffic class 0, flow label 0; payload length; next header UDP; hop limit.
        header = _IPV6.pack(6 << 28, udp_length, _IPPROTO_UDP, _TTL, src, dst)
        # IPv6 makes the UDP checksum mandatory (RFC 8200 8.1): pseudo-header, UDP header, payload.
        pseudo = src + dst + struct.pack("!II", udp_length, _IPPROTO_UDP)
        partial = _UDP.pack(sender_port, self._dport, udp_length, 0)
        total = ones_complement_sum(pseudo + partial + payload)
        # A computed 0 is sent as all ones: 0 means "no checksum", which IPv6 forbids (RFC 768, RFC 8200).
        udp = _UDP.pack(sender_port, self._dport, udp_length, _checksum(total) or 0xFFFF)
        return _ETHERNET_IPV6 + header + udp + payload


class Collector:
    """Receive mirrored VXLAN datagrams on ``listen`` and write them as a pcap and/or hand them to on_frame.

    The socket is bound at construction (``address`` tells the port when 0 was asked); ``run`` is called once.
    ``listen`` may also be a UDP socket bound already (one opened in another network namespace); the
    collector owns it from then on. With ``out=None`` nothing is written to disk. With ``rotate_bytes``,
    ``out``'s name gets -0001, -0002...
    """

    def __init__(
        self,
        listen: tuple[str, int] | socket.socket,
        *,
        out: Path | None,
        rotate_bytes: int | None = None,
        receive_buffer: int = 32 * 1024 * 1024,
        on_frame: FrameCallback | None = None,
    ) -> None:
        self._out = out
        self._rotate_bytes = rotate_bytes
        self._on_frame = on_frame
        if isinstance(listen, socket.socket):
            self._sock = listen
            family = listen.family
        else:
            family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
            self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._receive_buffer = self._grow_receive_buffer(receive_buffer)
            self._timestamps = self._enable_timestamps()
            self._drops_counted = self._enable(_SO_RXQ_OVFL)
            if not isinstance(listen, socket.socket):
                self._sock.bind(listen)
            self._sock.settimeout(_TIMEOUT)
        except BaseException:
            self._sock.close()
            raise
        bound = self._sock.getsockname()
        self.address: tuple[str, int] = (bound[0], bound[1])
        if not any(_packed_address(bound[0])):
            self._enable_destination_addresses(family)
        self._framer = _Framer(bound[0], bound[1])

    def _grow_receive_buffer(self, wanted: int) -> int:
        """Ask for ``wanted`` bytes, beyond net.core.rmem_max where privileged; return what was granted."""
        try:
            if not _IS_LINUX:
                raise OSError
            self._sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, wanted)
        except OSError:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wanted)  # capped at rmem_max
        return self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    def _enable(self, option: int) -> bool:
        if not _IS_LINUX:
            return False
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, option, 1)
        except OSError:
            return False
        return True

    def _enable_destination_addresses(self, family: int) -> None:
        """Listening on every address, learn each datagram's destination from the kernel (PKTINFO)."""
        if not _IS_LINUX:
            return  # the rebuilt destination stays the unspecified listen address
        if family == socket.AF_INET6:
            self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        # On a dual-stack IPv6 socket, IPv4 datagrams report their destination through the IPv4 option.
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)

    def _enable_timestamps(self) -> str:
        if self._enable(_SO_TIMESTAMPNS):
            return "kernel-ns"
        if self._enable(_SO_TIMESTAMP):
            return "kernel-us"
        return "user"

    def close(self) -> None:
        """Release the socket; only needed when ``run`` is never called."""
        self._sock.close()

    def run(self, limits: CollectorLimits, stop: threading.Event | None = None) -> CollectorStats:
        """Receive until a limit is reached or ``stop`` is set; the pcap is complete and closed on return."""
        writer = _PcapWriter(self._out, self._rotate_bytes) if self._out is not None else None
        started = time.time()
        deadline = time.monotonic() + limits.duration if limits.duration is not None else None
        datagrams = 0
        received_bytes = 0
        kernel_drops = 0
        recvmsg = self._sock.recvmsg
        frame = self._framer.frame
        on_frame = self._on_frame
        try:
            while True:
                if stop is not None and stop.is_set():
                    stop_reason = "stopped"
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    stop_reason = "duration"
                    break
                if limits.packets is not None and datagrams >= limits.packets:
                    stop_reason = "packets"
                    break
                if limits.max_bytes is not None and received_bytes >= limits.max_bytes:
                    stop_reason = "bytes"
                    break
                try:
                    payload, ancillary, _flags, sender = recvmsg(_RECV_SIZE, _ANC_SIZE)
                except TimeoutError:
                    continue
                timestamp_ns = 0
                dst = None
                for level, kind, data in ancillary:
                    if level != socket.SOL_SOCKET:
                        if level == socket.IPPROTO_IP and kind == _IP_PKTINFO and len(data) >= 12:
                            dst = data[8:12]
                        elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 16:
                            dst = _unmapped(data[:16])
                    elif kind == _SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
                        seconds, nanoseconds = _TIMESPEC.unpack_from(data)
                        timestamp_ns = seconds * 1_000_000_000 + nanoseconds
                    elif kind == _SO_TIMESTAMP and len(data) >= _TIMESPEC.size:
                        seconds, microseconds = _TIMESPEC.unpack_from(data)
                        timestamp_ns = seconds * 1_000_000_000 + microseconds * 1000
                    elif kind == _SO_RXQ_OVFL and len(data) >= _U32.size:
                        kernel_drops = _U32.unpack_from(data)[0]
                if not timestamp_ns:
                    timestamp_ns = time.time_ns()
                datagrams += 1
                received_bytes += len(payload)
                packet = frame(payload, sender[0], sender[1], dst)
                if writer is not None:
                    writer.write(timestamp_ns, packet)
                if on_frame is not None:
                    on_frame(timestamp_ns / 1e9, LINKTYPE_ETHERNET, packet, len(packet))
        finally:
            self._sock.close()
            if writer is not None:
                writer.close()
        return CollectorStats(
            datagrams=datagrams,
            bytes=received_bytes,
            kernel_drops=kernel_drops,
            files=tuple(writer.files) if writer is not None else (),
            started=started,
            ended=time.time(),
            stop_reason=stop_reason,
            receive_buffer=self._receive_buffer,
            timestamps=self._timestamps,
            drops_counted=self._drops_counted,
        )
