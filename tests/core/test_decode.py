"""Frame decapsulation: every supported layout, tunnels, truncation, and arbitrary bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import GRE, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether, Loopback
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet

from verifier.core import decode
from verifier.core.decode import NO_VNI, TcpSegment, decode_frame

PAYLOAD = b"\x16\x03\x01\x00\x05hello"
INNER_TCP = TCP(sport=40000, dport=443, flags="PA", seq=1000, ack=2000) / PAYLOAD
INNER_V4 = IP(src="10.1.0.5", dst="10.1.0.9") / INNER_TCP
SRC_V4, DST_V4 = bytes([10, 1, 0, 5]), bytes([10, 1, 0, 9])


def _vxlan(inner: Packet, vni: int = 4242, **vxlan_fields: int) -> Packet:
    # What a VPC Traffic Mirroring target receives: outer Ethernet/IPv4/UDP 4789, VXLAN, the whole frame.
    return (
        Ether()
        / IP(src="172.31.0.10", dst="172.31.0.99")
        / UDP(sport=51000, dport=4789)
        / VXLAN(vni=vni, flags=0x08, **vxlan_fields)
        / Ether()
        / inner
    )


def _assert_inner(segment: TcpSegment | str, vni: int = NO_VNI) -> None:
    assert isinstance(segment, TcpSegment), segment
    assert (segment.src, segment.dst, segment.sport, segment.dport) == (SRC_V4, DST_V4, 40000, 443)
    assert segment.vni == vni
    assert segment.seq == 1000 and segment.ack == 2000
    assert segment.flags == 0x18
    assert segment.payload == PAYLOAD and segment.payload_length == len(PAYLOAD)


@pytest.mark.parametrize(
    ("linktype", "frame"),
    [
        (decode.LINKTYPE_ETHERNET, bytes(Ether() / INNER_V4)),
        (decode.LINKTYPE_ETHERNET, bytes(Ether() / Dot1Q(vlan=7) / INNER_V4)),
        (decode.LINKTYPE_ETHERNET, bytes(Ether() / Dot1AD(vlan=3) / Dot1Q(vlan=7) / INNER_V4)),
        (decode.LINKTYPE_RAW, bytes(INNER_V4)),
        (decode.LINKTYPE_IPV4, bytes(INNER_V4)),
        # Linux cooked v1: packet type, ARPHRD, address length, 8 address bytes, then the protocol.
        (decode.LINKTYPE_LINUX_SLL, bytes.fromhex("0000 0001 0006 001122334455 0000 0800") + bytes(INNER_V4)),
        # Linux cooked v2: protocol first, then reserved, ifindex, ARPHRD, type, address length, address.
        (
            decode.LINKTYPE_LINUX_SLL2,
            bytes.fromhex("0800 0000 00000002 0001 00 06 0011223344550000") + bytes(INNER_V4),
        ),
        (decode.LINKTYPE_NULL, (2).to_bytes(4, "little") + bytes(INNER_V4)),
        (decode.LINKTYPE_LOOP, bytes(Loopback(type=2) / INNER_V4)),
        (decode.LINKTYPE_ETHERNET, bytes(Ether() / IP(dst="192.0.2.1") / INNER_V4)),
        (decode.LINKTYPE_ETHERNET, bytes(Ether() / IP(dst="192.0.2.1") / GRE(proto=0x0800) / INNER_V4)),
        (
            decode.LINKTYPE_ETHERNET,
            bytes(Ether() / IP() / GRE(proto=0x6558, key_present=1, key=9) / Ether() / INNER_V4),
        ),
    ],
    ids=["ether", "vlan", "qinq", "raw", "ipv4", "sll", "sll2", "null", "loop", "ipip", "gre", "gre-teb-key"],
)
def test_link_layers_and_plain_tunnels(linktype: int, frame: bytes) -> None:
    _assert_inner(decode_frame(linktype, frame))


def test_vxlan_keeps_vni_and_accepts_reserved_bits() -> None:
    # RFC 7348 says receivers ignore the reserved fields; real senders (and the corpus) set them.
    frame = bytes(_vxlan(INNER_V4, vni=0xABCDE, reserved1=0x123456, reserved2=0x7F))
    _assert_inner(decode_frame(decode.LINKTYPE_ETHERNET, frame), vni=0xABCDE)


def test_geneve_and_nested_tunnels_keep_outermost_vni() -> None:
    geneve = Ether() / IP() / UDP(sport=6081, dport=6081) / GENEVE(vni=77, proto=0x6558) / Ether() / INNER_V4
    _assert_inner(decode_frame(decode.LINKTYPE_ETHERNET, bytes(geneve)), vni=77)
    # VXLAN inside VXLAN: the outer one is the mirror session, so it names the flow.
    nested = _vxlan(
        IP(src="192.0.2.1", dst="192.0.2.2") / UDP(dport=4789) / VXLAN(vni=9) / Ether() / INNER_V4, vni=5
    )
    _assert_inner(decode_frame(decode.LINKTYPE_ETHERNET, bytes(nested)), vni=5)


def test_ipv6_with_extension_headers() -> None:
    inner = IPv6(src="fd00::5", dst="fd00::9") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / INNER_TCP
    segment = decode_frame(decode.LINKTYPE_ETHERNET, bytes(Ether() / inner))
    assert isinstance(segment, TcpSegment)
    assert segment.src == bytes.fromhex("fd00" + "00" * 13 + "05") and segment.dport == 443
    assert segment.payload == PAYLOAD
    # An atomic fragment (offset 0, no more fragments) still carries the whole segment.
    atomic = IPv6(src="fd00::5", dst="fd00::9") / IPv6ExtHdrFragment(offset=0, m=0) / INNER_TCP
    assert isinstance(decode_frame(decode.LINKTYPE_RAW, bytes(atomic)), TcpSegment)


def test_fragments_are_counted_not_decoded() -> None:
    first_v4 = IP(src="10.1.0.5", dst="10.1.0.9", flags="MF") / INNER_TCP
    assert decode_frame(decode.LINKTYPE_RAW, bytes(first_v4)) == decode.FRAGMENT
    later_v6 = IPv6() / IPv6ExtHdrFragment(offset=10, m=1) / (b"x" * 16)
    assert decode_frame(decode.LINKTYPE_RAW, bytes(later_v6)) == decode.FRAGMENT


def test_non_tcp_outcomes() -> None:
    assert decode_frame(decode.LINKTYPE_ETHERNET, bytes(Ether(type=0x0806) / (b"\x00" * 28))) == decode.NOT_IP
    assert decode_frame(decode.LINKTYPE_ETHERNET, bytes(Ether() / IP() / UDP(dport=53) / b"q")) == decode.UDP
    assert decode_frame(decode.LINKTYPE_ETHERNET, bytes(Ether() / IP(proto=1) / b"icmp")) == decode.OTHER_IP
    assert decode_frame(999, b"\x00" * 60) == decode.NOT_IP


def test_ethernet_padding_is_not_payload() -> None:
    # A 60-byte minimum Ethernet frame pads a bare ACK: the IP total length bounds the payload.
    frame = bytes(Ether() / IP(src="10.1.0.5", dst="10.1.0.9") / TCP(flags="A")) + b"\x00" * 6
    segment = decode_frame(decode.LINKTYPE_ETHERNET, frame)
    assert isinstance(segment, TcpSegment) and segment.payload == b""


def test_truncated_frames_are_marked_at_every_length() -> None:
    """Byte at a time: every prefix of a mirrored frame decodes to a segment or a reason, never an error."""
    frame = bytes(_vxlan(INNER_V4))
    payload_start = len(frame) - len(PAYLOAD)
    for cut in range(len(frame) + 1):
        outcome = decode_frame(decode.LINKTYPE_ETHERNET, frame[:cut])
        if cut >= payload_start:
            assert isinstance(outcome, TcpSegment)
            assert outcome.payload == PAYLOAD[: cut - payload_start]
            assert outcome.payload_length == len(PAYLOAD)
        else:
            assert outcome in (decode.TRUNCATED, decode.MALFORMED, decode.NOT_IP), (cut, outcome)


@settings(max_examples=300, deadline=None)
@given(
    linktype=st.sampled_from(
        [decode.LINKTYPE_ETHERNET, decode.LINKTYPE_RAW, decode.LINKTYPE_LINUX_SLL, decode.LINKTYPE_LINUX_SLL2,
         decode.LINKTYPE_NULL, decode.LINKTYPE_LOOP]
    ),
    data=st.binary(max_size=200),
)  # fmt: skip
def test_arbitrary_bytes_never_raise(linktype: int, data: bytes) -> None:
    outcome = decode_frame(linktype, data)
    assert isinstance(outcome, TcpSegment | str)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_mutated_tunnel_frames_never_raise(data: st.DataObject) -> None:
    frame = bytearray(_vxlan(INNER_V4).build())
    for _ in range(data.draw(st.integers(1, 6))):
        frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    outcome = decode_frame(decode.LINKTYPE_ETHERNET, bytes(frame))
    assert isinstance(outcome, TcpSegment | str)
