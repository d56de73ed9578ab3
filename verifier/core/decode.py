"""Frame decapsulation: link layer -> (tunnels) -> inner IPv4/IPv6 -> TCP segment.

Pure and allocation-light: this runs for every packet of a capture. The analyser has an inlined fast path for
the two layouts that dominate real input (Ethernet/IPv4/UDP 4789/VXLAN/Ethernet/IPv4/TCP, as VPC Traffic
Mirroring delivers, and plain Ethernet/IPv4/TCP); everything else comes here. Both must agree, and a test
checks that they do.
"""

from __future__ import annotations

from typing import NamedTuple

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
# Some libpcap builds write DLT_RAW as 12 or 14 instead of LINKTYPE_RAW.
_RAW_LINKTYPES = frozenset({LINKTYPE_RAW, 12, 14, LINKTYPE_IPV4, LINKTYPE_IPV6})

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_TEB = 0x6558  # transparent Ethernet bridging (GENEVE, GRE carrying whole frames)
_VLAN_ETHERTYPES = frozenset({0x8100, 0x88A8, 0x9100})

VXLAN_PORT = 4789
GENEVE_PORT = 6081

# BSD loopback address families: AF_INET is 2 everywhere, AF_INET6 differs by OS.
_NULL_AF_INET6 = frozenset({10, 24, 28, 30})

_IPV6_EXTENSION_HEADERS = frozenset({0, 43, 60, 135, 139, 140})
_IPV6_FRAGMENT = 44
_IP_PROTO_IPIP = 4
_IP_PROTO_TCP = 6
_IP_PROTO_UDP = 17
_IP_PROTO_IPV6 = 41
_IP_PROTO_GRE = 47
_IP_PROTO_AH = 51

# Bound on tunnel nesting: a crafted packet must not make us loop.
_MAX_LAYERS = 8

NO_VNI = -1


class TcpSegment(NamedTuple):
    """One TCP segment of the innermost IP packet."""

    vni: int  # outermost VXLAN/GENEVE VNI (the mirror session), NO_VNI when not tunnelled
    src: bytes  # 4 or 16 address bytes
    dst: bytes
    sport: int
    dport: int
    flags: int
    seq: int
    ack: int
    payload: bytes  # the captured payload bytes
    payload_length: int  # the payload length the IP header claims; more than len(payload) when truncated


# Outcomes for frames that carry no analysable TCP segment; the analyser counts them for coverage.
NOT_IP = "not IP"
FRAGMENT = "IP fragment"
UDP = "UDP (not a tunnel)"
OTHER_IP = "other IP protocol"
TRUNCATED = "truncated before TCP payload"
MALFORMED = "malformed"


def decode_frame(linktype: int, frame: bytes) -> TcpSegment | str:
    """Decode one captured frame down to its innermost TCP segment, or say why there is none."""
    n = len(frame)
    if linktype == LINKTYPE_ETHERNET:
        kind, off = _ethertype_after_ethernet(frame, 0)
    elif linktype in _RAW_LINKTYPES:
        if n < 1:
            return MALFORMED
        version = frame[0] >> 4
        kind, off = (ETHERTYPE_IPV4 if version == 4 else ETHERTYPE_IPV6 if version == 6 else -1), 0
    elif linktype == LINKTYPE_LINUX_SLL:
        kind, off = (int.from_bytes(frame[14:16]), 16) if n >= 16 else (-2, 0)
    elif linktype == LINKTYPE_LINUX_SLL2:
        kind, off = (int.from_bytes(frame[0:2]), 20) if n >= 20 else (-2, 0)
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if n < 4:
            return TRUNCATED
        # NULL stores the family in the writer's byte order; LOOP always big-endian. Accept either.
        family = int.from_bytes(frame[0:4], "little")
        if family > 0xFFFF:
            family = int.from_bytes(frame[0:4], "big")
        kind = ETHERTYPE_IPV4 if family == 2 else ETHERTYPE_IPV6 if family in _NULL_AF_INET6 else -1
        off = 4
    else:
        return NOT_IP
    if kind == -2:
        return TRUNCATED
    return _decode_network(frame, kind, off, NO_VNI)


def _ethertype_after_ethernet(frame: bytes, off: int) -> tuple[int, int]:
    """Skip an Ethernet header and any 802.1Q/802.1ad tags; (-2, off) when cut short."""
    if len(frame) < off + 14:
        return -2, off
    ethertype = int.from_bytes(frame[off + 12 : off + 14])
    off += 14
    while ethertype in _VLAN_ETHERTYPES:
        if len(frame) < off + 4:
            return -2, off
        ethertype = int.from_bytes(frame[off + 2 : off + 4])
        off += 4
    return ethertype, off


def _decode_network(frame: bytes, kind: int, off: int, vni: int) -> TcpSegment | str:
    for _ in range(_MAX_LAYERS):
        if kind == ETHERTYPE_TEB:
            kind, off = _ethertype_after_ethernet(frame, off)
            if kind == -2:
                return TRUNCATED
            continue
        if kind == ETHERTYPE_IPV4:
            parsed = _ipv4(frame, off)
        elif kind == ETHERTYPE_IPV6:
            parsed = _ipv6(frame, off)
        else:
            return NOT_IP
        if isinstance(parsed, str):
            return parsed
        proto, src, dst, l4, end = parsed
        if proto == _IP_PROTO_TCP:
            return _tcp(frame, l4, end, vni, src, dst)
        if proto == _IP_PROTO_UDP:
            tunnel = _udp_tunnel(frame, l4, end)
            if isinstance(tunnel, str):
                return tunnel
            inner_kind, inner_off, inner_vni = tunnel
            kind, off = inner_kind, inner_off
            if vni == NO_VNI:
                vni = inner_vni
            continue
        if proto == _IP_PROTO_IPIP:
            kind, off = ETHERTYPE_IPV4, l4
            continue
        if proto == _IP_PROTO_IPV6:
            kind, off = ETHERTYPE_IPV6, l4
            continue
        if proto == _IP_PROTO_GRE:
            gre = _gre(frame, l4)
            if isinstance(gre, str):
                return gre
            kind, off = gre
            continue
        return OTHER_IP
    return MALFORMED


def _ipv4(frame: bytes, off: int) -> tuple[int, bytes, bytes, int, int] | str:
    n = len(frame)
    if n < off + 20:
        return TRUNCATED
    vihl = frame[off]
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20:
        return MALFORMED
    total = int.from_bytes(frame[off + 2 : off + 4])
    if total < ihl:
        # TSO/GSO captures write 0 here; fall back to what was captured.
        if total != 0:
            return MALFORMED
        total = n - off
    if int.from_bytes(frame[off + 6 : off + 8]) & 0x3FFF:
        return FRAGMENT
    if n < off + ihl:
        return TRUNCATED
    return frame[off + 9], frame[off + 12 : off + 16], frame[off + 16 : off + 20], off + ihl, off + total


def _ipv6(frame: bytes, off: int) -> tuple[int, bytes, bytes, int, int] | str:
    if len(frame) < off + 40:
        return TRUNCATED
    if frame[off] >> 4 != 6:
        return MALFORMED
    payload_len = int.from_bytes(frame[off + 4 : off + 6])
    end = off + 40 + payload_len if payload_len else len(frame)  # 0: jumbogram or TSO
    nxt = frame[off + 6]
    src, dst = frame[off + 8 : off + 24], frame[off + 24 : off + 40]
    pos = off + 40
    for _ in range(_MAX_LAYERS):
        if nxt in _IPV6_EXTENSION_HEADERS:
            if len(frame) < pos + 2:
                return TRUNCATED
            nxt, pos = frame[pos], pos + (frame[pos + 1] + 1) * 8
        elif nxt == _IP_PROTO_AH:
            if len(frame) < pos + 2:
                return TRUNCATED
            nxt, pos = frame[pos], pos + (frame[pos + 1] + 2) * 4
        elif nxt == _IPV6_FRAGMENT:
            if len(frame) < pos + 8:
                return TRUNCATED
            if int.from_bytes(frame[pos + 2 : pos + 4]) & 0xFFF9:
                return FRAGMENT  # offset != 0 or more fragments follow
            nxt, pos = frame[pos], pos + 8
        else:
            return nxt, src, dst, pos, end
    return MALFORMED


def _udp_tunnel(frame: bytes, off: int, end: int) -> tuple[int, int, int] | str:
    """Return (inner kind, inner offset, vni) for VXLAN or GENEVE, else the reason to stop."""
    if len(frame) < off + 8:
        return TRUNCATED
    sport = int.from_bytes(frame[off : off + 2])
    dport = int.from_bytes(frame[off + 2 : off + 4])
    body = off + 8
    if VXLAN_PORT in (dport, sport):
        if len(frame) < body + 8:
            return TRUNCATED
        # Only the I flag matters; RFC 7348 says ignore reserved bits, and real senders set them.
        if not frame[body] & 0x08:
            return MALFORMED
        return ETHERTYPE_TEB, body + 8, int.from_bytes(frame[body + 4 : body + 7])
    if GENEVE_PORT in (dport, sport):
        if len(frame) < body + 8:
            return TRUNCATED
        options_len = (frame[body] & 0x3F) * 4
        protocol = int.from_bytes(frame[body + 2 : body + 4])
        return protocol, body + 8 + options_len, int.from_bytes(frame[body + 4 : body + 7])
    return UDP


def _gre(frame: bytes, off: int) -> tuple[int, int] | str:
    if len(frame) < off + 4:
        return TRUNCATED
    flags = frame[off]
    protocol = int.from_bytes(frame[off + 2 : off + 4])
    # Optional checksum(+reserved), key and sequence fields, 4 bytes each.
    off += 4 + 4 * (bool(flags & 0x80) + bool(flags & 0x20) + bool(flags & 0x10))
    if protocol == 0x88BE:  # ERSPAN type II: 8-byte header, then the mirrored Ethernet frame
        return ETHERTYPE_TEB, off + 8
    return protocol, off


def _tcp(frame: bytes, off: int, end: int, vni: int, src: bytes, dst: bytes) -> TcpSegment | str:
    n = len(frame)
    if n < off + 20:
        return TRUNCATED
    data_off = (frame[off + 12] >> 4) * 4
    if data_off < 20 or end < off + data_off:
        return MALFORMED
    if n < off + data_off:
        return TRUNCATED
    return TcpSegment(
        vni,
        src,
        dst,
        int.from_bytes(frame[off : off + 2]),
        int.from_bytes(frame[off + 2 : off + 4]),
        frame[off + 13],
        int.from_bytes(frame[off + 4 : off + 8]),
        int.from_bytes(frame[off + 8 : off + 12]),
        frame[off + data_off : end],
        end - off - data_off,
    )
