"""Test traffic: real TLS bytes from OpenSSL (Python's ssl over memory BIOs) cut into TCP segments.

A conversation is a list of (from_client, bytes) messages; ``tcp_frames`` turns it into the frames a capture
would hold (handshake, data segments with their ACKs, FIN), optionally wrapped in VXLAN as a Traffic Mirroring
target receives them, with knobs to lose, reorder or cut packets.
"""

from __future__ import annotations

import contextlib
import datetime
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Frame = tuple[float, int, bytes, int]
Message = tuple[bool, bytes]

_ETHER_IPV4 = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _ipv4(src: str, dst: str, proto: int, body: bytes) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0x4000, 64, proto, 0,
        bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))),
    )  # fmt: skip
    return header[:10] + _checksum(header).to_bytes(2) + header[12:] + body


def _tcp(sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes) -> bytes:
    return (
        struct.pack("!HHIIBBHHH", sport, dport, seq % (1 << 32), ack % (1 << 32), 5 << 4, flags, 65535, 0, 0)
        + payload
    )


@dataclass
class Endpoints:
    client: tuple[str, int] = ("10.1.0.5", 40000)
    server: tuple[str, int] = ("10.1.0.9", 443)
    vni: int | None = None  # wrap every frame in VXLAN with this VNI (as a mirror target receives it)


def ethernet_frame(src: str, dst: str, tcp_segment: bytes, vni: int | None) -> bytes:
    inner = _ETHER_IPV4 + _ipv4(src, dst, 6, tcp_segment)
    if vni is None:
        return inner
    vxlan = b"\x08\x00\x00\x00" + vni.to_bytes(3) + b"\x00"
    udp = struct.pack("!HHHH", 49152, 4789, 8 + len(vxlan) + len(inner), 0) + vxlan + inner
    return _ETHER_IPV4 + _ipv4("172.31.0.10", "172.31.0.99", 17, udp)


def tcp_frames(
    messages: list[Message],
    endpoints: Endpoints | None = None,
    *,
    handshake: bool = True,
    close: bool = True,
    mss: int = 1448,
    start: float = 1_700_000_000.0,
    keep: Callable[[int, bool, bytes], bool] | None = None,
    snaplen: int | None = None,
) -> list[Frame]:
    """Frames of one TCP connection carrying ``messages``.

    keep(index, from_client, payload) -> False drops that data segment (mirror loss); snaplen cuts frames.
    """
    ends = endpoints or Endpoints()
    seq = {True: 1000, False: 5000}
    frames: list[Frame] = []
    clock = [start]

    def emit(from_client: bool, flags: int, payload: bytes = b"") -> None:
        src, dst = (ends.client, ends.server) if from_client else (ends.server, ends.client)
        segment = _tcp(src[1], dst[1], seq[from_client], seq[not from_client], flags, payload)
        frame = ethernet_frame(src[0], dst[0], segment, ends.vni)
        clock[0] += 0.001
        frames.append((clock[0], 1, frame[:snaplen] if snaplen else frame, len(frame)))

    if handshake:
        emit(True, 0x02)
        seq[True] += 1
        emit(False, 0x12)
        seq[False] += 1
        emit(True, 0x10)
    index = 0
    for from_client, data in messages:
        for offset in range(0, len(data), mss):
            chunk = data[offset : offset + mss]
            if keep is None or keep(index, from_client, chunk):
                emit(from_client, 0x18, chunk)
            seq[from_client] += len(chunk)
            index += 1
        emit(not from_client, 0x10)
    if close:
        emit(True, 0x11)
        seq[True] += 1
        emit(False, 0x11)
        seq[False] += 1
        emit(True, 0x10)
    return frames


# -- real TLS --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    root_pem: bytes
    chain_pem: bytes  # leaf then intermediate
    key_pem: bytes


@cache
def make_pki(common_name: str = "api.internal.example") -> Pki:
    """Root -> intermediate -> leaf, ECDSA P-256, SAN = common_name."""
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

    def make(subject: str, issuer_name: x509.Name | None, issuer_key: ec.EllipticCurvePrivateKey | None,
             ca: bool, san: str | None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:  # fmt: skip
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer_name or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=not ca, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
        )  # fmt: skip
        if not ca:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        # Key identifiers: RFC 5280 path validation (and cryptography's verifier) expects them.
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        signer = issuer_key or key
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
        return builder.sign(signer, hashes.SHA256()), key

    root, root_key = make("Test Root CA", None, None, True, None)
    intermediate, intermediate_key = make("Test Intermediate CA", root.subject, root_key, True, None)
    leaf, leaf_key = make(common_name, intermediate.subject, intermediate_key, False, common_name)
    pem = serialization.Encoding.PEM
    return Pki(
        root_pem=root.public_bytes(pem),
        chain_pem=leaf.public_bytes(pem) + intermediate.public_bytes(pem),
        key_pem=leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def tls_conversation(
    tmp_path: Path,
    *,
    keylog: Path | None = None,
    version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
    sni: str = "api.internal.example",
    alpn: list[str] | None = None,
    request: bytes = b"GET / HTTP/1.1\r\nHost: api\r\n\r\n",
    response: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
) -> list[Message]:
    """A real OpenSSL TLS connection (handshake, one request, one response) as directional messages."""
    pki = make_pki()
    chain_file, key_file = tmp_path / "chain.pem", tmp_path / "key.pem"
    chain_file.write_bytes(pki.chain_pem)
    key_file.write_bytes(pki.key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(chain_file, key_file)
    server_ctx.minimum_version = server_ctx.maximum_version = version
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cadata=pki.root_pem.decode())
    client_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if keylog is not None:
        client_ctx.keylog_filename = str(keylog)  # NSS key log, as SSLKEYLOGFILE writes it
    if alpn:
        client_ctx.set_alpn_protocols(alpn)
        server_ctx.set_alpn_protocols(alpn)
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=sni)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    messages: list[Message] = []

    def pump() -> None:
        for out, into, from_client in ((c_out, s_in, True), (s_out, c_in, False)):
            data = out.read()
            if data:
                messages.append((from_client, data))
                into.write(data)

    for _ in range(10):
        for side in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        pump()
        if client.version() and server.version() and not c_out.pending and not s_out.pending:
            break
    client.write(request)
    pump()
    server.read(len(request))
    server.write(response)
    pump()
    client.read(len(response))
    pump()
    return messages


def write_pcap(path: Path, frames: list[Frame], linktype: int = 1) -> Path:
    """A classic little-endian microsecond pcap of ``frames``."""
    # Global header: magic, version 2.4, thiszone, sigfigs, snaplen, link type.
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)]
    for ts, _, frame, original_length in frames:
        seconds = int(ts)
        out.append(struct.pack("<IIII", seconds, round((ts - seconds) * 1e6), len(frame), original_length))
        out.append(frame)
    path.write_bytes(b"".join(out))
    return path


def write_pcapng(path: Path, frames: list[Frame], tls_key_log: bytes = b"") -> Path:
    """A little-endian pcapng: section header, one Ethernet interface, a Decryption Secrets Block with
    ``tls_key_log`` (if any) ahead of the packets, then one Enhanced Packet Block per frame (µs)."""

    def block(block_type: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        length = 12 + len(body)
        return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)

    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]  # SHB: magic, v1.0, length unknown
    out.append(block(0x00000001, struct.pack("<HHI", 1, 0, 262144)))  # IDB: Ethernet, snaplen
    if tls_key_log:
        # DSB: secrets type 0x544c534b ("TLSK", NSS key log), length, data.
        out.append(block(0x0000000A, struct.pack("<II", 0x544C534B, len(tls_key_log)) + tls_key_log))
    for ts, _, frame, original_length in frames:
        ticks = round(ts * 1e6)
        header = struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), original_length)
        out.append(block(0x00000006, header + frame))
    path.write_bytes(b"".join(out))
    return path
