"""Tests of verifier.core.tls on real handshake bytes (RFC 8448 vectors, OpenSSL through ssl.MemoryBIO) and
hand-annotated messages, plus hypothesis fuzzing of every parser."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import example, given, settings
from hypothesis import strategies as st

from verifier.core.tls import (
    CONTENT_ALERT,
    CONTENT_APPLICATION_DATA,
    CONTENT_CHANGE_CIPHER_SPEC,
    CONTENT_HANDSHAKE,
    CONTENT_HEARTBEAT,
    ClientHello,
    RecordHeader,
    TlsDirectionState,
    TlsStreamParser,
    _ja4,  # the memoized part of ja4
    cipher_suite_class,
    cipher_suite_name,
    ja4,
    looks_like_tls,
    parse_certificate,
    parse_client_hello,
    parse_record_header,
    parse_server_hello,
    parse_sslv2_client_hello,
    version_name,
)
from verifier.errors import ParseError

FUZZ = settings(max_examples=150, deadline=None)

# ---------------------------------------------------------------------------------------------------------
# Byte builders for hand-annotated messages


def u8(value: int) -> bytes:
    return value.to_bytes(1, "big")


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def u24(value: int) -> bytes:
    return value.to_bytes(3, "big")


def vec(length_size: int, data: bytes) -> bytes:
    return len(data).to_bytes(length_size, "big") + data


def u16s(*values: int) -> bytes:
    return b"".join(u16(v) for v in values)


def ext(ext_type: int, data: bytes) -> bytes:
    return u16(ext_type) + vec(2, data)


def handshake(message_type: int, body: bytes) -> bytes:
    return u8(message_type) + u24(len(body)) + body


def record(content_type: int, fragment: bytes, version: int = 0x0303) -> bytes:
    return u8(content_type) + u16(version) + vec(2, fragment)


def server_hello_body(
    *, version: int = 0x0303, random: bytes = bytes(range(32)), suite: int = 0x1301, extensions: bytes = b""
) -> bytes:
    return u16(version) + random + vec(1, b"") + u16(suite) + u8(0) + vec(2, extensions)


def tls13_server_hello_record(selected: int = 0x0304) -> bytes:
    body = server_hello_body(extensions=ext(0x002B, u16(selected)))
    return record(CONTENT_HANDSHAKE, handshake(2, body))


def tls12_server_hello_record(suite: int = 0xC02F) -> bytes:
    return record(CONTENT_HANDSHAKE, handshake(2, server_hello_body(suite=suite)))


def feed_all(data: bytes, *, is_server: bool, chunks: list[int] | None = None) -> TlsDirectionState:
    parser = TlsStreamParser(is_server=is_server)
    if chunks is None:
        parser.feed(data)
    else:
        start = 0
        for end in [*chunks, len(data)]:
            parser.feed(data[start:end])
            start = end
    return parser.state()


def records_of(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(content type, fragment) of each TLS record of a stream, to check fixtures against."""
    pos = 0
    while pos < len(data):
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        yield data[pos], data[pos + 5 : pos + 5 + length]
        pos += 5 + length


# ---------------------------------------------------------------------------------------------------------
# RFC 8448 section 3 "Simple 1-RTT Handshake": handshake messages (with their 4-byte headers)

RFC8448_CLIENT_HELLO = bytes.fromhex(
    "01 00 00 c0"  # ClientHello, 192 bytes
    " 03 03"  # legacy_version TLS 1.2
    # random
    " cb 34 ec b1 e7 81 63 ba 1c 38 c6 da cb 19 6a 6d ff a2 1a 8d 99 12 ec 18 a2 ef 62 83 02 4d ec e7"
    " 00"  # empty session id
    " 00 06 13 01 13 03 13 02"  # cipher suites AES128-GCM, CHACHA20, AES256-GCM
    " 01 00"  # compression: null
    " 00 91"  # extensions, 145 bytes
    " 00 00 00 0b 00 09 00 00 06 73 65 72 76 65 72"  # server_name "server"
    " ff 01 00 01 00"  # renegotiation_info
    " 00 0a 00 14 00 12 00 1d 00 17 00 18 00 19 01 00 01 01 01 02 01 03 01 04"  # supported_groups
    " 00 23 00 00"  # session_ticket
    " 00 33 00 26 00 24 00 1d 00 20 99 38 1d e5 60 e4 bd 43 d2 3d 8e 43 5a 7d ba fe b3 c0 6e 51 c1 3c ae"
    " 4d 54 13 69 1e 52 9a af 2c"  # key_share x25519
    " 00 2b 00 03 02 03 04"  # supported_versions TLS 1.3
    " 00 0d 00 20 00 1e 04 03 05 03 06 03 02 03 08 04 08 05 08 06 04 01 05 01 06 01 02 01 04 02 05 02"
    " 06 02 02 02"  # signature_algorithms
    " 00 2d 00 02 01 01"  # psk_key_exchange_modes
    " 00 1c 00 02 40 01"  # record_size_limit
)
RFC8448_SERVER_HELLO = bytes.fromhex(
    "02 00 00 56"  # ServerHello, 86 bytes
    " 03 03"  # legacy_version
    # random
    " a6 af 06 a4 12 18 60 dc 5e 6e 60 24 9c d3 4c 95 93 0c 8a c5 cb 14 34 da c1 55 77 2e d3 e2 69 28"
    " 00"  # empty session id echo
    " 13 01"  # TLS_AES_128_GCM_SHA256
    " 00"  # compression
    " 00 2e"  # extensions, 46 bytes
    " 00 33 00 24 00 1d 00 20 c9 82 88 76 11 20 95 fe 66 76 2b db f7 c6 72 e1 56 d6 cc 25 3b 83 3d f1 dd"
    " 69 b1 b0 4e 75 1f 0f"  # key_share x25519
    " 00 2b 00 02 03 04"  # supported_versions: TLS 1.3
)
# The server's Certificate (TLS 1.3 form: empty request context, one entry with no extensions); in the RFC it
# travels encrypted, its plaintext is given there.
RFC8448_CERTIFICATE = bytes.fromhex(
    "0b 00 01 b9"  # Certificate, 441 bytes
    " 00"  # certificate_request_context
    " 00 01 b5"  # certificate_list, 437 bytes
    " 00 01 b0"  # cert_data, 432 bytes (DER, CN=rsa)
    " 30 82 01 ac 30 82 01 15 a0 03 02 01 02 02 01 02 30 0d 06 09 2a 86 48 86 f7 0d 01 01 0b 05 00 30 0e"
    " 31 0c 30 0a 06 03 55 04 03 13 03 72 73 61 30 1e 17 0d 31 36 30 37 33 30 30 31 32 33 35 39 5a 17 0d"
    " 32 36 30 37 33 30 30 31 32 33 35 39 5a 30 0e 31 0c 30 0a 06 03 55 04 03 13 03 72 73 61 30 81 9f 30"
    " 0d 06 09 2a 86 48 86 f7 0d 01 01 01 05 00 03 81 8d 00 30 81 89 02 81 81 00 b4 bb 49 8f 82 79 30 3d"
    " 98 08 36 39 9b 36 c6 98 8c 0c 68 de 55 e1 bd b8 26 d3 90 1a 24 61 ea fd 2d e4 9a 91 d0 15 ab bc 9a"
    " 95 13 7a ce 6c 1a f1 9e aa 6a f9 8c 7c ed 43 12 09 98 e1 87 a8 0e e0 cc b0 52 4b 1b 01 8c 3e 0b 63"
    " 26 4d 44 9a 6d 38 e2 2a 5f da 43 08 46 74 80 30 53 0e f0 46 1c 8c a9 d9 ef bf ae 8e a6 d1 d0 3e 2b"
    " d1 93 ef f0 ab 9a 80 02 c4 74 28 a6 d3 5a 8d 88 d7 9f 7f 1e 3f 02 03 01 00 01 a3 1a 30 18 30 09 06"
    " 03 55 1d 13 04 02 30 00 30 0b 06 03 55 1d 0f 04 04 03 02 05 a0 30 0d 06 09 2a 86 48 86 f7 0d 01 01"
    " 0b 05 00 03 81 81 00 85 aa d2 a0 e5 b9 27 6b 90 8c 65 f7 3a 72 67 17 06 18 a5 4c 5f 8a 7b 33 7d 2d"
    " f7 a5 94 36 54 17 f2 ea e8 f8 a5 8c 8f 81 72 f9 31 9c f3 6b 7f d6 c5 5b 80 f2 1a 03 01 51 56 72 60"
    " 96 fd 33 5e 5e 67 f2 db f1 02 70 2e 60 8c ca e6 be c1 fc 63 a4 2a 99 be 5c 3e b7 10 7c 3c 54 e9 b9"
    " eb 2b d5 20 3b 1c 3b 84 e0 a8 b2 f7 59 40 9b a3 ea c9 d9 1d 40 2d cc 0c c8 f8 96 12 29 ac 91 87 b4"
    " 2b 4d e1"
    " 00 00"  # entry extensions: none
)

# RFC 8446 4.1.3: the random of a HelloRetryRequest, SHA-256("HelloRetryRequest"), as printed in the RFC.
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")

# An SSLv2-format CLIENT-HELLO (2-byte header), as an SSLv2-only client sends it.
SSLV2_CHALLENGE = bytes(range(0xA0, 0xB0))
SSLV2_CLIENT_HELLO = (
    bytes.fromhex(
        "80 2e"  # 2-byte header (high bit set), record length 46
        " 01"  # CLIENT-HELLO
        " 00 02"  # version SSL 2.0
        " 00 15"  # cipher specs length: 7 kinds of 3 bytes
        " 00 00"  # session id length
        " 00 10"  # challenge length
        " 07 00 c0"  # SSL_CK_DES_192_EDE3_CBC_WITH_MD5
        " 05 00 80"  # SSL_CK_IDEA_128_CBC_WITH_MD5
        " 03 00 80"  # SSL_CK_RC2_128_CBC_WITH_MD5
        " 01 00 80"  # SSL_CK_RC4_128_WITH_MD5
        " 06 00 40"  # SSL_CK_DES_64_CBC_WITH_MD5
        " 04 00 80"  # SSL_CK_RC2_128_CBC_EXPORT40_WITH_MD5
        " 02 00 80"  # SSL_CK_RC4_128_EXPORT40_WITH_MD5
    )
    + SSLV2_CHALLENGE
)
# The same client format from a TLS client (version 0x0301, TLS suites as 0x00XXXX), RFC 5246 E.2.
SSLV2_COMPAT_CLIENT_HELLO = (
    bytes.fromhex(
        "80 22"  # record length 34
        " 01"  # CLIENT-HELLO
        " 03 01"  # version TLS 1.0
        " 00 09"  # 3 cipher specs
        " 00 00"  # session id length
        " 00 10"  # challenge length
        " 00 00 2f"  # TLS_RSA_WITH_AES_128_CBC_SHA
        " 00 00 35"  # TLS_RSA_WITH_AES_256_CBC_SHA
        " 00 00 ff"  # TLS_EMPTY_RENEGOTIATION_INFO_SCSV
    )
    + SSLV2_CHALLENGE
)


# ---------------------------------------------------------------------------------------------------------
# Real handshakes made with OpenSSL (Python's ssl module over memory BIOs)


@dataclass(frozen=True)
class Handshake:
    client: bytes  # client-to-server stream
    server: bytes
    chain: tuple[bytes, ...]  # DER certificates the server sends, leaf first


def _certificate(
    subject: str,
    issuer: str,
    key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    sans: int,
) -> x509.Certificate:
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=sans == 0, path_length=None), critical=True)
    )
    if sans:
        names = [x509.DNSName(f"host{i}.server.test") for i in range(sans)]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _run_handshake(
    chain_pem: Path, key_pem: Path, *, max_version: ssl.TLSVersion, server_curve: str | None = None
) -> tuple[bytes, bytes]:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(chain_pem, key_pem)
    server_ctx.set_alpn_protocols(["h2"])
    if server_curve:  # a group the client offers but has no key share for: HelloRetryRequest
        server_ctx.set_ecdh_curve(server_curve)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    client_ctx.maximum_version = max_version
    client_ctx.set_alpn_protocols(["h2", "http/1.1"])
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="server.test")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    to_server, to_client = bytearray(), bytearray()

    def pump() -> None:
        sent = c_out.read()
        to_server.extend(sent)
        s_in.write(sent)
        received = s_out.read()
        to_client.extend(received)
        c_in.write(received)

    done = {client: False, server: False}
    for _ in range(10):
        for side in (client, server):
            if not done[side]:
                try:
                    side.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
        pump()
        if all(done.values()):
            break
    assert all(done.values())
    client.write(b"GET / HTTP/1.1\r\n\r\n")
    pump()
    assert server.read(100) == b"GET / HTTP/1.1\r\n\r\n"
    server.write(b"x" * 20000)  # two application data records
    pump()
    assert len(client.read(20000)) + len(client.read(20000)) == 20000
    with pytest.raises(ssl.SSLWantReadError):
        client.unwrap()  # sends close_notify, an encrypted alert
    pump()
    return bytes(to_server), bytes(to_client)


@pytest.fixture(scope="session")
def handshakes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Handshake]:
    root_key, inter_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _certificate("Test Root", "Test Root", root_key, root_key, 0)
    inter = _certificate("Test Intermediate", "Test Root", inter_key, root_key, 0)
    # ~20 KB of names: the leaf alone is larger than a record, so the Certificate message spans records.
    leaf = _certificate("server.test", "Test Intermediate", leaf_key, inter_key, 900)
    directory = tmp_path_factory.mktemp("tls")
    chain_pem, key_pem = directory / "chain.pem", directory / "key.pem"
    chain_pem.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, inter, root)))
    key_pem.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    chain = tuple(c.public_bytes(serialization.Encoding.DER) for c in (leaf, inter, root))
    made = {
        "tls13": _run_handshake(chain_pem, key_pem, max_version=ssl.TLSVersion.TLSv1_3),
        "tls12": _run_handshake(chain_pem, key_pem, max_version=ssl.TLSVersion.TLSv1_2),
        "hrr": _run_handshake(
            chain_pem, key_pem, max_version=ssl.TLSVersion.TLSv1_3, server_curve="secp384r1"
        ),
    }
    return {name: Handshake(client, server, chain) for name, (client, server) in made.items()}


STREAMS = [(name, side) for name in ("tls13", "tls12", "hrr") for side in ("client", "server")]


def stream_of(handshakes: dict[str, Handshake], name: str, side: str) -> bytes:
    made = handshakes[name]
    return made.client if side == "client" else made.server


# ---------------------------------------------------------------------------------------------------------
# Record layer


def test_record_header_byte_at_a_time() -> None:
    data = record(CONTENT_HANDSHAKE, RFC8448_CLIENT_HELLO, version=0x0301)
    for end in range(5):
        assert parse_record_header(data[:end]) is None
    assert parse_record_header(data[:5]) == RecordHeader(CONTENT_HANDSHAKE, 0x0301, len(RFC8448_CLIENT_HELLO))
    assert parse_record_header(b"junk" + data, offset=4) == parse_record_header(data)


@pytest.mark.parametrize("version", [0x0300, 0x0301, 0x0302, 0x0303, 0x0304])
def test_record_header_accepts_ssl3_to_tls13(version: int) -> None:
    assert parse_record_header(u8(CONTENT_APPLICATION_DATA) + u16(version) + u16(10)) == RecordHeader(
        CONTENT_APPLICATION_DATA, version, 10
    )


@pytest.mark.parametrize(
    "header",
    [
        bytes.fromhex("19 03 03 00 10"),  # content type 25
        bytes.fromhex("13 03 03 00 10"),  # content type 19
        bytes.fromhex("17 03 05 00 10"),  # version 0x0305
        bytes.fromhex("17 02 00 00 10"),  # version 0x0200
        bytes.fromhex("17 03 03 48 01"),  # length 2^14 + 2049
        bytes.fromhex("16 03 01 00 00"),  # empty handshake record
        bytes.fromhex("15 03 03 00 00"),  # empty alert record
        bytes.fromhex("14 03 03 00 00"),  # empty ChangeCipherSpec record
    ],
)
def test_record_header_rejects(header: bytes) -> None:
    with pytest.raises(ParseError):
        parse_record_header(header)


def test_record_header_limits() -> None:
    assert parse_record_header(bytes.fromhex("17 03 03 48 00")) == RecordHeader(23, 0x0303, 2**14 + 2048)
    # RFC 5246 6.2.1: zero-length application data fragments are allowed.
    assert parse_record_header(bytes.fromhex("17 03 03 00 00")) == RecordHeader(23, 0x0303, 0)


@given(st.binary(max_size=12), st.integers(0, 8))
@FUZZ
def test_record_header_fuzz(data: bytes, offset: int) -> None:
    try:
        header = parse_record_header(data, offset)
    except ParseError:
        return
    assert header is None or 20 <= header.content_type <= 24


# ---------------------------------------------------------------------------------------------------------
# looks_like_tls


def test_looks_like_tls_on_real_streams(handshakes: dict[str, Handshake]) -> None:
    for name, side in STREAMS:
        assert looks_like_tls(stream_of(handshakes, name, side)[:5]), (name, side)
    assert looks_like_tls(SSLV2_CLIENT_HELLO)
    assert looks_like_tls(SSLV2_COMPAT_CLIENT_HELLO[:5])


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        bytes.fromhex("00 00 00 08 04 d2 16 2f"),  # PostgreSQL SSLRequest
        bytes.fromhex("00 00 00 26 00 03 00 00") + b"user\0postgres\0",  # PostgreSQL startup, protocol 3.0
        b"*1\r\n$4\r\nPING\r\n",  # RESP
        bytes.fromhex("4a 00 00 00 0a") + b"8.0.36\0",  # MySQL server greeting
        b"220 mx.example.com ESMTP\r\n",
        b"",
        bytes.fromhex("16 03"),  # too short to tell
        bytes.fromhex("16 03 01 00 00"),  # empty handshake record
        bytes.fromhex("16 03 01 48 01"),  # record longer than TLS allows
        bytes.fromhex("80 2e 02 00 02"),  # SSLv2 header, but not a CLIENT-HELLO
        bytes.fromhex("80 2e 01 02 00"),  # SSLv2 CLIENT-HELLO with version 0x0200
        bytes.fromhex("80 05 01 00 02"),  # SSLv2 CLIENT-HELLO too short to hold a challenge
    ],
)
def test_looks_like_tls_rejects(data: bytes) -> None:
    assert not looks_like_tls(data)


@given(st.binary(max_size=16))
@FUZZ
def test_looks_like_tls_fuzz(data: bytes) -> None:
    assert looks_like_tls(data) in (True, False)


# ---------------------------------------------------------------------------------------------------------
# ClientHello / ServerHello / Certificate


def test_rfc8448_client_hello() -> None:
    sigalgs = bytes.fromhex("0403 0503 0603 0203 0804 0805 0806 0401 0501 0601 0201 0402 0502 0602 0202")
    hello = parse_client_hello(RFC8448_CLIENT_HELLO[4:])
    assert hello == ClientHello(
        legacy_version=0x0303,
        random=RFC8448_CLIENT_HELLO[6:38],
        session_id=b"",
        cipher_suites=(0x1301, 0x1303, 0x1302),
        extension_types=(0x0000, 0xFF01, 0x000A, 0x0023, 0x0033, 0x002B, 0x000D, 0x002D, 0x001C),
        sni="server",
        alpn=(),
        supported_versions=(0x0304,),
        signature_algorithms=tuple(int.from_bytes(sigalgs[i : i + 2], "big") for i in range(0, 30, 2)),
        supported_groups=(0x001D, 0x0017, 0x0018, 0x0019, 0x0100, 0x0101, 0x0102, 0x0103, 0x0104),
        has_ech=False,
        sslv2_format=False,
    )
    assert hello.random.hex().startswith("cb34ecb1")


def test_rfc8448_server_hello() -> None:
    hello = parse_server_hello(RFC8448_SERVER_HELLO[4:])
    assert hello.legacy_version == 0x0303
    assert hello.random == bytes.fromhex("a6af06a4121860dc5e6e60249cd34c95930c8ac5cb1434dac155772ed3e26928")
    assert hello.session_id == b""
    assert hello.cipher_suite == 0x1301
    assert hello.extension_types == (0x0033, 0x002B)
    assert hello.selected_version == 0x0304
    assert hello.negotiated_version == 0x0304
    assert not hello.is_hello_retry_request
    assert hello.alpn is None


def test_rfc8448_certificate_tls13_form() -> None:
    (certificate,) = parse_certificate(RFC8448_CERTIFICATE[4:], tls13=True)
    assert len(certificate) == 432
    subject = x509.load_der_x509_certificate(certificate).subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "rsa"


def test_certificate_tls12_form() -> None:
    body = vec(3, vec(3, b"\x30\x03\x02\x01\x01") + vec(3, b"\x30\x03\x02\x01\x02"))  # two entries
    assert parse_certificate(body, tls13=False) == (b"\x30\x03\x02\x01\x01", b"\x30\x03\x02\x01\x02")
    assert parse_certificate(vec(3, b""), tls13=False) == ()  # a client with no certificate
    with pytest.raises(ParseError):
        parse_certificate(vec(3, vec(3, b"")), tls13=False)  # empty entry
    with pytest.raises(ParseError):
        parse_certificate(body + b"\x00", tls13=False)  # trailing byte


def test_client_hello_without_extensions() -> None:
    # An SSLv3-style ClientHello ends after the compression methods.
    body = u16(0x0300) + bytes(32) + vec(1, b"") + vec(2, u16s(0x000A, 0x0005)) + vec(1, b"\x00")
    hello = parse_client_hello(body)
    assert (hello.legacy_version, hello.cipher_suites) == (0x0300, (0x000A, 0x0005))
    assert hello.extension_types == hello.supported_versions == ()
    assert hello.sni is None


HELLO_START = u16(0x0303) + bytes(32)  # legacy version, random


@pytest.mark.parametrize(
    "body",
    [
        HELLO_START + vec(1, bytes(33)) + vec(2, u16(0x1301)) + vec(1, b"\0"),  # 33-byte session id
        HELLO_START + vec(1, b"") + vec(2, b"\x13\x01\x13") + vec(1, b"\0"),  # odd cipher list
        HELLO_START + vec(1, b"") + vec(2, b"") + vec(1, b"\0"),  # no cipher suites
        HELLO_START + vec(1, b"") + vec(2, u16(0x1301)) + vec(1, b""),  # no compression
        HELLO_START + vec(1, b"") + vec(2, u16(0x1301)) + vec(1, b"\0") + b"\x00",  # half a length
        RFC8448_CLIENT_HELLO[4:] + b"\x00",  # trailing byte
        RFC8448_CLIENT_HELLO[4:-1],  # truncated
    ],
)
def test_client_hello_malformed(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse_client_hello(body)


def client_hello_body(extensions: bytes, suites: tuple[int, ...] = (0x1301,)) -> bytes:
    return HELLO_START + vec(1, b"") + vec(2, u16s(*suites)) + vec(1, b"\x00") + vec(2, extensions)


def test_client_hello_text_is_safe_and_never_crashes() -> None:
    sni = ext(0x0000, vec(2, u8(0) + vec(2, b"xn--bcher-kva.example\\\xff\x00")))
    alpn = ext(0x0010, vec(2, vec(1, b"h2") + vec(1, b"\xab\xcd")))
    hello = parse_client_hello(client_hello_body(sni + alpn))
    assert hello.sni == "xn--bcher-kva.example\\x5c\\xff\\x00"
    assert hello.alpn == ("h2", "\\xab\\xcd")


def escaped(raw: bytes) -> str:
    """Safe text by its definition: printable ASCII but the backslash as is, every other byte as \\xNN."""
    return "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in raw)


wire_text = st.binary(max_size=40) | st.text(
    st.characters(min_codepoint=0x1F, max_codepoint=0x80), max_size=40
).map(lambda text: text.encode("latin-1"))  # arbitrary bytes, and text around the edges of printable ASCII


@given(wire_text, wire_text)
@example(b"back\\slash.test", b"del\x7f")
@FUZZ
def test_client_hello_text_is_escaped_byte_by_byte(host: bytes, protocol: bytes) -> None:
    sni = ext(0x0000, vec(2, u8(0) + vec(2, host)))
    alpn = ext(0x0010, vec(2, vec(1, protocol) + vec(1, b"h2")))
    hello = parse_client_hello(client_hello_body(sni + alpn))
    assert (hello.sni, hello.alpn) == (escaped(host), (escaped(protocol), "h2"))


def test_client_hello_first_extension_of_a_type_counts() -> None:
    extensions = (
        ext(0x0000, vec(2, u8(0) + vec(2, b"first.test")))
        + ext(0x002B, vec(1, u16s(0x0304)))
        + ext(0x0000, vec(2, u8(0) + vec(2, b"second.test")))
        + ext(0x002B, b"\x03")  # malformed, but only the first supported_versions is read
    )
    hello = parse_client_hello(client_hello_body(extensions))
    assert (hello.sni, hello.supported_versions) == ("first.test", (0x0304,))
    assert hello.extension_types == (0x0000, 0x002B, 0x0000, 0x002B)


def test_client_hello_server_name_list() -> None:
    names = b"".join(
        [
            u8(1) + vec(2, b"other type"),  # not a host_name
            u8(0) + vec(2, b""),  # the first host_name, empty: the one reported
            u8(0) + vec(2, b"later.test"),
            u8(2) + vec(2, b""),  # an empty last entry
        ]
    )
    assert parse_client_hello(client_hello_body(ext(0x0000, vec(2, names)))).sni == ""
    with pytest.raises(ParseError):  # every entry is checked, also after the host name
        parse_client_hello(client_hello_body(ext(0x0000, vec(2, u8(0) + vec(2, b"a.test") + u8(0)))))


def test_client_hello_ech_and_empty_server_name() -> None:
    hello = parse_client_hello(client_hello_body(ext(0xFE0D, b"\x00\x01") + ext(0x0000, b"")))
    assert hello.has_ech
    assert hello.sni is None
    assert hello.extension_types == (0xFE0D, 0x0000)


@pytest.mark.parametrize(
    "extension",
    [
        ext(0x0000, vec(2, u8(0) + u16(10) + b"abc")),  # host name overruns its list
        ext(0x0010, vec(2, vec(1, b"h2")) + b"x"),  # trailing byte after the ALPN list
        ext(0x002B, vec(1, b"\x03\x04\x03")),  # odd supported_versions
        ext(0x000D, vec(2, b"\x04")),  # odd signature_algorithms
        ext(0x000A, b"\x00"),  # supported_groups without its length
        u16(0x0000) + u16(40) + b"short",  # extension longer than the block
    ],
)
def test_client_hello_malformed_extension(extension: bytes) -> None:
    with pytest.raises(ParseError):
        parse_client_hello(client_hello_body(extension))


def test_hello_retry_request() -> None:
    assert hashlib.sha256(b"HelloRetryRequest").digest() == HRR_RANDOM
    body = server_hello_body(
        random=HRR_RANDOM,
        suite=0x1302,
        extensions=ext(0x002B, u16(0x0304)) + ext(0x0033, u16(0x0017)),  # key_share: select secp256r1
    )
    hello = parse_server_hello(body)
    assert hello.is_hello_retry_request
    assert hello.negotiated_version == 0x0304
    plain = parse_server_hello(server_hello_body(extensions=ext(0x002B, u16(0x0304))))
    assert not plain.is_hello_retry_request


@pytest.mark.parametrize("draft", [0x7F12, 0x7F17, 0x7F1C, 0x7FFF, 0xFB1A])
def test_draft_versions_map_to_tls13(draft: int) -> None:
    hello = parse_server_hello(server_hello_body(extensions=ext(0x002B, u16(draft))))
    assert (hello.selected_version, hello.negotiated_version) == (draft, 0x0304)
    assert version_name(draft) == "TLS1.3"


def test_old_draft_server_hello_format() -> None:
    # Drafts before 22: version carries the draft, no session id, no compression method.
    body = u16(0x7F12) + bytes(32) + u16(0x1301) + vec(2, ext(0x0033, u16(0x001D) + vec(2, bytes(32))))
    hello = parse_server_hello(body)
    assert (hello.legacy_version, hello.cipher_suite, hello.extension_types) == (0x7F12, 0x1301, (0x0033,))
    assert hello.selected_version is None
    assert hello.negotiated_version == 0x0304


def test_server_hello_tls12_and_alpn() -> None:
    alpn = ext(0x0010, vec(2, vec(1, b"h2")))
    hello = parse_server_hello(server_hello_body(version=0x0303, suite=0xC02F, extensions=alpn))
    assert (hello.negotiated_version, hello.selected_version, hello.alpn) == (0x0303, None, "h2")
    with pytest.raises(ParseError):
        parse_server_hello(server_hello_body(extensions=ext(0x002B, b"\x03\x04\x03\x03")))  # not one version


def mutations(message: bytes) -> st.SearchStrategy[bytes]:
    """A valid message with one byte changed, or cut short, or extended."""
    changed = st.tuples(st.integers(0, len(message) - 1), st.integers(0, 255)).map(
        lambda change: message[: change[0]] + bytes([change[1]]) + message[change[0] + 1 :]
    )
    cut = st.integers(0, len(message)).map(lambda end: message[:end])
    extended = st.binary(min_size=1, max_size=8).map(lambda tail: message + tail)
    return st.one_of(changed, cut, extended, st.binary(max_size=300))


@given(mutations(RFC8448_CLIENT_HELLO[4:]))
@FUZZ
def test_client_hello_fuzz(body: bytes) -> None:
    try:
        hello = parse_client_hello(body)
    except ParseError:
        return
    assert len(hello.random) == 32
    ja4(hello)  # any parsed hello can be fingerprinted


@given(mutations(RFC8448_SERVER_HELLO[4:]))
@FUZZ
def test_server_hello_fuzz(body: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_server_hello(body)


@given(mutations(RFC8448_CERTIFICATE[4:]), st.booleans())
@FUZZ
def test_certificate_fuzz(body: bytes, tls13: bool) -> None:
    try:
        certificates = parse_certificate(body, tls13)
    except ParseError:
        return
    assert all(certificates)


# ---------------------------------------------------------------------------------------------------------
# SSLv2


def test_sslv2_client_hello_byte_at_a_time() -> None:
    for end in range(len(SSLV2_CLIENT_HELLO)):
        assert parse_sslv2_client_hello(SSLV2_CLIENT_HELLO[:end]) is None
    hello = parse_sslv2_client_hello(SSLV2_CLIENT_HELLO + b"next record")
    assert hello is not None
    assert hello.sslv2_format
    assert hello.legacy_version == 0x0002
    assert hello.random == SSLV2_CHALLENGE
    assert hello.cipher_suites == (0x0700C0, 0x050080, 0x030080, 0x010080, 0x060040, 0x040080, 0x020080)
    assert hello.extension_types == () and hello.sni is None
    assert version_name(hello.legacy_version) == "SSLv2"
    assert [cipher_suite_class(s) for s in hello.cipher_suites] == [
        "3des", "cbc", "cbc", "rc4", "des", "export", "export",
    ]  # fmt: skip


def test_sslv2_compat_client_hello() -> None:
    hello = parse_sslv2_client_hello(SSLV2_COMPAT_CLIENT_HELLO)
    assert hello is not None
    assert hello.legacy_version == 0x0301
    # TLS suites in 3-byte form keep their 2-byte values.
    assert [cipher_suite_name(s) for s in hello.cipher_suites] == [
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA",
        "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"\x16\x03\x01",  # a TLS record, not SSLv2
        b"\x80\x2e\x04",  # SERVER-HELLO, not CLIENT-HELLO
        b"\x80\x2e\x01\x03\x05",  # version 0x0305
        b"\x80\x08",  # too short for any ClientHello
        SSLV2_CLIENT_HELLO[:5] + b"\x00\x14" + SSLV2_CLIENT_HELLO[7:],  # cipher specs of 20 bytes
        SSLV2_CLIENT_HELLO[:7] + b"\x00\x08" + SSLV2_CLIENT_HELLO[9:],  # session id of 8 bytes
        SSLV2_CLIENT_HELLO[:9] + b"\x00\x08" + SSLV2_CLIENT_HELLO[11:],  # challenge of 8 bytes
    ],
)
def test_sslv2_client_hello_malformed(data: bytes) -> None:
    with pytest.raises(ParseError):
        parse_sslv2_client_hello(data)


@given(mutations(SSLV2_CLIENT_HELLO))
@FUZZ
def test_sslv2_client_hello_fuzz(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_sslv2_client_hello(data)


def test_sslv2_streams() -> None:
    client_master_key = bytes.fromhex("80 0a 02 01 00 80 00 00 00 00 00 00")  # an SSLv2 record (opaque)
    padded_record = bytes.fromhex("00 05 03") + bytes(5)  # 3-byte header with 3 bytes of padding
    client = SSLV2_CLIENT_HELLO + client_master_key + padded_record
    state = feed_all(client, is_server=False)
    assert state.client_hellos == (parse_sslv2_client_hello(SSLV2_CLIENT_HELLO),)
    assert state.handshake_types == (1,)
    assert state.record_versions == (0x0002,)
    assert state.bytes_parsed == len(client)
    assert state.encrypted_records == 0  # SSLv2 records after the hellos are not interpreted

    certificate = b"\x30\x82\x00\x04" + bytes(4)
    server_hello = (
        bytes.fromhex(
            "04"  # SERVER-HELLO
            " 00"  # session id hit
            " 01"  # certificate type X.509
            " 00 02"  # version SSL 2.0
            " 00 08"  # certificate length
            " 00 03"  # cipher specs length
            " 00 10"  # connection id length
        )
        + certificate
        + bytes.fromhex("01 00 80")
        + bytes(16)
    )
    server = u16(0x8000 | len(server_hello)) + server_hello
    state = feed_all(server, is_server=True)
    assert state.certificates == (certificate,)
    assert state.record_versions == (0x0002,)
    assert state.bytes_parsed == len(server)


def test_sslv2_compat_hello_then_tls_records() -> None:
    client = (
        SSLV2_COMPAT_CLIENT_HELLO
        + record(CONTENT_HANDSHAKE, handshake(16, vec(2, bytes(64))), version=0x0301)  # ClientKeyExchange
        + record(CONTENT_CHANGE_CIPHER_SPEC, b"\x01", version=0x0301)
        + record(CONTENT_HANDSHAKE, bytes(48), version=0x0301)  # encrypted Finished
    )
    state = feed_all(client, is_server=False)
    assert state.client_hellos[0].sslv2_format
    assert state.handshake_types == (1, 16)
    assert state.record_versions == (0x0002, 0x0301)
    assert state.change_cipher_spec
    assert state.encrypted_records == 1


# ---------------------------------------------------------------------------------------------------------
# TlsStreamParser on real OpenSSL handshakes


def test_fixture_certificate_spans_records(handshakes: dict[str, Handshake]) -> None:
    # The TLS 1.2 server flight carries the 3-certificate chain in more than one handshake record.
    handshake_records = [f for t, f in records_of(handshakes["tls12"].server) if t == CONTENT_HANDSHAKE]
    assert sum(len(f) for f in handshake_records[:-1]) > 2**14
    assert len(handshake_records) >= 3


def test_tls13_handshake(handshakes: dict[str, Handshake]) -> None:
    made = handshakes["tls13"]
    client = feed_all(made.client, is_server=False)
    (hello,) = client.client_hellos
    assert hello.sni == "server.test"
    assert hello.alpn == ("h2", "http/1.1")
    assert 0x0304 in hello.supported_versions
    assert client.handshake_types == (1,)
    assert client.change_cipher_spec  # middlebox compatibility mode
    assert client.encrypted_records == 3  # Finished, request, close_notify
    assert client.record_versions == (0x0301, 0x0303)
    assert client.bytes_parsed == len(made.client)
    assert client.alerts == ()
    assert not client.truncated_certificate

    server = feed_all(made.server, is_server=True)
    (server_hello,) = server.server_hellos
    assert server_hello.negotiated_version == 0x0304
    assert server_hello.selected_version == 0x0304
    assert server_hello.legacy_version == 0x0303
    assert server.handshake_types == (2,)  # everything after the ServerHello is encrypted
    assert server.certificates == ()
    expected = sum(1 for t, _ in records_of(made.server) if t == CONTENT_APPLICATION_DATA)
    assert server.encrypted_records == expected >= 4
    assert server.bytes_parsed == len(made.server)


def test_tls12_handshake(handshakes: dict[str, Handshake]) -> None:
    made = handshakes["tls12"]
    client = feed_all(made.client, is_server=False)
    assert client.client_hellos[0].sni == "server.test"
    assert client.handshake_types == (1, 16)  # ClientHello, ClientKeyExchange
    assert client.change_cipher_spec
    assert client.encrypted_records == 3  # Finished, request, encrypted close_notify alert
    assert client.alerts == ()

    server = feed_all(made.server, is_server=True)
    (server_hello,) = server.server_hellos
    assert server_hello.negotiated_version == 0x0303
    assert server_hello.alpn == "h2"
    assert cipher_suite_class(server_hello.cipher_suite) == "aead"
    assert server.certificates == made.chain  # leaf, intermediate, root, in order
    assert server.handshake_types[:4] == (2, 11, 12, 14)  # ServerHello, Certificate, ServerKeyExchange, Done
    assert server.change_cipher_spec
    assert server.encrypted_records == 3  # Finished and two application data records
    assert server.bytes_parsed == len(made.server)
    assert not server.truncated_certificate


def test_hello_retry_request_handshake(handshakes: dict[str, Handshake]) -> None:
    made = handshakes["hrr"]
    client = feed_all(made.client, is_server=False)
    # OpenSSL sends its compatibility ChangeCipherSpec before the second ClientHello (RFC 8446 D.4).
    assert [t for t, _ in records_of(made.client)][:3] == [
        CONTENT_HANDSHAKE, CONTENT_CHANGE_CIPHER_SPEC, CONTENT_HANDSHAKE,
    ]  # fmt: skip
    assert len(client.client_hellos) == 2
    assert client.handshake_types == (1, 1)
    assert client.client_hellos[0].random == client.client_hellos[1].random
    assert client.encrypted_records == 3

    server = feed_all(made.server, is_server=True)
    first, second = server.server_hellos
    assert first.is_hello_retry_request and not second.is_hello_retry_request
    assert second.negotiated_version == 0x0304
    assert server.handshake_types == (2, 2)
    assert server.bytes_parsed == len(made.server)


@pytest.mark.parametrize(("name", "side"), STREAMS)
def test_stream_byte_at_a_time(handshakes: dict[str, Handshake], name: str, side: str) -> None:
    data = stream_of(handshakes, name, side)
    whole = feed_all(data, is_server=side == "server")
    parser = TlsStreamParser(is_server=side == "server")
    first_message_end = 9 + int.from_bytes(data[6:9], "big")  # record and handshake headers, hello body
    previous = parser.state()
    for i in range(len(data)):
        parser.feed(data[i : i + 1])
        state = parser.state()
        assert state.bytes_parsed >= previous.bytes_parsed
        assert len(state.handshake_types) >= len(previous.handshake_types)
        # The stream starts with a hello: it is known exactly when its last byte has arrived.
        hellos = state.client_hellos if side == "client" else state.server_hellos
        assert bool(hellos) == (i + 1 >= first_message_end)
        previous = state
    assert parser.state() == whole


@given(st.sampled_from(STREAMS), st.lists(st.integers(0, 100_000), max_size=30))
@settings(max_examples=60, deadline=None)
def test_stream_random_chunking(
    handshakes: dict[str, Handshake], stream: tuple[str, str], cuts: list[int]
) -> None:
    name, side = stream
    data = stream_of(handshakes, name, side)
    chunks = sorted({cut % (len(data) + 1) for cut in cuts})
    is_server = side == "server"
    assert feed_all(data, is_server=is_server, chunks=chunks) == feed_all(data, is_server=is_server)


def test_truncated_certificate(handshakes: dict[str, Handshake]) -> None:
    data = handshakes["tls12"].server
    parser = TlsStreamParser(is_server=True)
    parser.feed(data[:12_000])  # inside the Certificate message
    state = parser.state()
    assert state.truncated_certificate
    assert state.certificates == ()
    assert state.handshake_types == (2,)
    parser.feed(data[12_000:])
    assert not parser.state().truncated_certificate


# ---------------------------------------------------------------------------------------------------------
# TlsStreamParser semantics on hand-made streams


def test_server_after_tls13_server_hello_everything_is_encrypted() -> None:
    data = (
        tls13_server_hello_record()
        + record(CONTENT_CHANGE_CIPHER_SPEC, b"\x01")  # compatibility ChangeCipherSpec: still cleartext
        + record(CONTENT_HANDSHAKE, bytes(40))  # a handshake record now is ciphertext
        + record(CONTENT_ALERT, bytes(2))  # and so is an alert, even of cleartext size
        + record(CONTENT_APPLICATION_DATA, bytes(100))
    )
    state = feed_all(data, is_server=True)
    assert state.handshake_types == (2,)
    assert state.change_cipher_spec
    assert state.encrypted_records == 3
    assert state.alerts == ()


def test_draft_server_hello_encrypts_what_follows() -> None:
    data = tls13_server_hello_record(selected=0x7F17) + record(CONTENT_HANDSHAKE, bytes(40))
    state = feed_all(data, is_server=True)
    assert state.server_hellos[0].negotiated_version == 0x0304
    assert state.encrypted_records == 1


def test_tls13_server_hello_sharing_its_record_is_rejected() -> None:
    body = server_hello_body(extensions=ext(0x002B, u16(0x0304)))
    data = record(CONTENT_HANDSHAKE, handshake(2, body) + handshake(8, vec(2, b"")))
    with pytest.raises(ParseError):
        feed_all(data, is_server=True)


def test_cleartext_alerts_and_heartbeats() -> None:
    data = (
        tls12_server_hello_record()
        + record(CONTENT_HEARTBEAT, bytes(19))  # cleartext heartbeat: skipped, not counted
        + record(CONTENT_ALERT, bytes([2, 40]))  # fatal handshake_failure
    )
    state = feed_all(data, is_server=True)
    assert state.alerts == ((2, 40),)
    assert state.encrypted_records == 0
    assert state.bytes_parsed == len(data)


def test_after_change_cipher_spec_records_are_encrypted() -> None:
    data = (
        tls12_server_hello_record()
        + record(CONTENT_CHANGE_CIPHER_SPEC, b"\x01")
        + record(CONTENT_HANDSHAKE, bytes(40))  # Finished
        + record(CONTENT_ALERT, bytes(26))  # encrypted alert
        + record(CONTENT_HEARTBEAT, bytes(40))
        + record(CONTENT_APPLICATION_DATA, b"")  # empty: nothing was encrypted
    )
    state = feed_all(data, is_server=True)
    assert state.handshake_types == (2,)
    assert state.encrypted_records == 3
    assert state.bytes_parsed == len(data)


def test_midstream_application_data() -> None:
    data = record(CONTENT_APPLICATION_DATA, bytes(300)) + record(CONTENT_ALERT, bytes(26))
    state = feed_all(data, is_server=False)
    assert state.encrypted_records == 2
    assert state.handshake_types == ()


def test_tls12_client_finished_is_not_taken_for_a_second_client_hello() -> None:
    offers_tls13 = client_hello_body(ext(0x002B, vec(1, u16s(0x0304, 0x0303))))
    # A TLS 1.2 Finished whose ciphertext happens to start with 01: not a ClientHello (its legacy version
    # bytes are not 03 03), so it stays encrypted.
    finished = bytes([1, 0, 0, 36, 0x9A, 0x03]) + bytes(34)
    data = (
        record(CONTENT_HANDSHAKE, handshake(1, offers_tls13), version=0x0301)
        + record(CONTENT_HANDSHAKE, handshake(16, vec(1, bytes(32))))
        + record(CONTENT_CHANGE_CIPHER_SPEC, b"\x01")
        + record(CONTENT_HANDSHAKE, finished)
    )
    state = feed_all(data, is_server=False)
    assert len(state.client_hellos) == 1
    assert state.handshake_types == (1, 16)
    assert state.encrypted_records == 1


def test_large_certificate_message_over_many_records() -> None:
    chain = tuple(bytes([0x30]) + bytes([i]) * 33_000 for i in range(3))  # ~100 KB Certificate message
    message = handshake(11, vec(3, b"".join(vec(3, c) for c in chain)))
    data = tls12_server_hello_record() + b"".join(
        record(CONTENT_HANDSHAKE, message[i : i + 2**14]) for i in range(0, len(message), 2**14)
    )
    assert feed_all(data, is_server=True).certificates == chain
    chunked = feed_all(data, is_server=True, chunks=list(range(1000, len(data), 1000)))
    assert chunked.certificates == chain


def test_multi_megabyte_stream_in_small_feeds() -> None:
    data = tls12_server_hello_record() + record(CONTENT_CHANGE_CIPHER_SPEC, b"\x01")
    data += record(CONTENT_APPLICATION_DATA, bytes(2**14)) * 256  # 4 MiB
    state = feed_all(data, is_server=True, chunks=list(range(1448, len(data), 1448)))
    assert state.encrypted_records == 256
    assert state.bytes_parsed == len(data)


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        record(CONTENT_CHANGE_CIPHER_SPEC, b"\x02"),  # ChangeCipherSpec value must be 1
        record(CONTENT_CHANGE_CIPHER_SPEC, b"\x01\x01"),  # cleartext ChangeCipherSpec of two bytes
        record(CONTENT_HANDSHAKE, bytes([99, 0, 0, 0])),  # handshake type 99
        record(CONTENT_HANDSHAKE, handshake(1, b"\x03\x03")),  # truncated ClientHello
        tls12_server_hello_record() + b"\x19\x03\x03\x00\x01\x00",  # content type 25 after a valid record
    ],
)
def test_stream_rejects_non_tls(data: bytes) -> None:
    parser = TlsStreamParser(is_server=False)
    with pytest.raises(ParseError):
        parser.feed(data)
    with pytest.raises(ParseError):  # unusable afterwards
        parser.feed(record(CONTENT_APPLICATION_DATA, b"x"))


def test_change_cipher_spec_inside_a_fragmented_message_is_rejected() -> None:
    message = handshake(11, vec(3, vec(3, bytes(100))))
    data = record(CONTENT_HANDSHAKE, message[:50]) + record(CONTENT_CHANGE_CIPHER_SPEC, b"\x01")
    with pytest.raises(ParseError):
        feed_all(data, is_server=True)


@given(
    st.integers(0, 0x7F) | st.integers(19, 25),
    st.integers(0, 4),
    st.integers(0, 6),
    st.sampled_from([0, 1, 2, 0x47FF, 0x4800, 0x4801, 0xFFFF]),
    st.booleans(),
)
@FUZZ
def test_stream_checks_record_headers_as_parse_record_header(
    content_type: int, major: int, minor: int, length: int, is_server: bool
) -> None:
    header = bytes([content_type, major, minor]) + u16(length)
    parser = TlsStreamParser(is_server=is_server)
    try:
        parse_record_header(header)
    except ParseError:
        with pytest.raises(ParseError):
            parser.feed(header)
        return
    if content_type != CONTENT_CHANGE_CIPHER_SPEC or length == 1:  # a cleartext ChangeCipherSpec is 1 byte
        parser.feed(header)
        assert parser.state().record_versions == (major << 8 | minor,)


@given(st.binary(max_size=200), st.booleans())
@FUZZ
def test_stream_fuzz(data: bytes, is_server: bool) -> None:
    parser = TlsStreamParser(is_server=is_server)
    try:
        parser.feed(data)
    except ParseError:
        return
    assert parser.state().bytes_parsed <= len(data)


@given(st.sampled_from(STREAMS), st.integers(0, 100_000), st.integers(0, 255))
@settings(max_examples=100, deadline=None)
def test_stream_fuzz_mutated_handshake(
    handshakes: dict[str, Handshake], stream: tuple[str, str], position: int, value: int
) -> None:
    name, side = stream
    data = bytearray(stream_of(handshakes, name, side)[:3000])
    data[position % len(data)] = value
    parser = TlsStreamParser(is_server=side == "server")
    try:
        parser.feed(bytes(data))
    except ParseError:
        return
    parser.state()


# ---------------------------------------------------------------------------------------------------------
# JA4

# The example of FoxIO-LLC/ja4, technical_details/JA4.md: 15 ciphers and 16 extensions (GREASE added here,
# to be ignored), SNI, ALPN h2 first, and the documented signature algorithms; the document gives
# JA4 = t13d1516h2_8daaf6152771_e5627efa2ab1.
JA4_CIPHERS = (0x0A0A, 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013, 0xC014,
               0x009C, 0x009D, 0x002F, 0x0035)  # fmt: skip
JA4_EXTENSION_ORDER = (0x1A1A, 0x001B, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002D, 0x000D, 0x0005, 0x0023,
                       0x0012, 0x002B, 0xFF01, 0x000B, 0x000A, 0x0015)  # fmt: skip
JA4_SIGNATURE_ALGORITHMS = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)


def ja4_example_hello(signature_algorithms: tuple[int, ...] = JA4_SIGNATURE_ALGORITHMS) -> bytes:
    data = {
        0x0000: vec(2, u8(0) + vec(2, b"example.com")),
        0x0010: vec(2, vec(1, b"h2") + vec(1, b"http/1.1")),
        0x000D: vec(2, u16s(*signature_algorithms)),
        0x002B: vec(1, u16s(0x2A2A, 0x0304, 0x0303)),
        0x000A: vec(2, u16s(0x3A3A, 0x001D, 0x0017)),
    }
    extensions = b"".join(ext(t, data.get(t, b"")) for t in JA4_EXTENSION_ORDER)
    return client_hello_body(extensions, suites=JA4_CIPHERS)


def test_ja4_documented_example() -> None:
    hello = parse_client_hello(ja4_example_hello())
    assert ja4(hello) == "t13d1516h2_8daaf6152771_e5627efa2ab1"
    # Same document: without signature algorithms the extension list alone hashes to 6d807ffa2a79.
    assert ja4(parse_client_hello(ja4_example_hello(()))).endswith("_6d807ffa2a79")
    assert ja4(hello, "q").startswith("q13d")


@pytest.mark.parametrize(
    ("alpn", "code"),
    [  # the ALPN examples of the same document
        (b"h2", "h2"),
        (b"http/1.1", "h1"),
        (b"\xab", "ab"),
        (b"\xab\xcd", "ad"),
        (b"\x30\xab", "3b"),
        (b"\x30\x31\xab\xcd", "3d"),
        (b"\x30\xab\xcd\x31", "01"),
        (b"x", "xx"),
    ],
)
def test_ja4_alpn(alpn: bytes, code: str) -> None:
    hello = parse_client_hello(client_hello_body(ext(0x0010, vec(2, vec(1, alpn)))))
    assert ja4(hello)[8:10] == code


def test_ja4_edge_cases() -> None:
    bare = parse_client_hello(client_hello_body(b""))
    assert ja4(bare) == "t12i010000_" + hashlib.sha256(b"1301").hexdigest()[:12] + "_000000000000"
    sslv2 = parse_sslv2_client_hello(SSLV2_CLIENT_HELLO)
    assert sslv2 is not None
    assert ja4(sslv2).startswith("ts2i070000_")
    no_ciphers = ClientHello(0x0303, bytes(32), b"", (0x0A0A,), (), None, (), (), (), (), False, False)
    assert ja4(no_ciphers) == "t12i000000_000000000000_000000000000"
    draft_only = ClientHello(
        0x0303, bytes(32), b"", (0x1301,), (0x002B,), None, (), (0x7F17,), (), (), False, False
    )
    assert ja4(draft_only).startswith("t00i")  # the highest offered version is not one JA4 names


ja4_client_hellos = st.builds(
    ClientHello,
    legacy_version=st.sampled_from([0x0301, 0x0303]),
    random=st.binary(min_size=32, max_size=32),
    session_id=st.binary(max_size=32),
    cipher_suites=st.lists(st.sampled_from([0x0A0A, 0x1301, 0x1302, 0xC02F, 0x002F])).map(tuple),
    extension_types=st.lists(st.sampled_from([0x0000, 0x0010, 0x000D, 0x002B, 0x1A1A])).map(tuple),
    sni=st.none() | st.just("example.com"),
    alpn=st.lists(st.sampled_from(["h2", "http/1.1", "\\xab", ""])).map(tuple),
    supported_versions=st.lists(st.sampled_from([0x2A2A, 0x0304, 0x0303])).map(tuple),
    signature_algorithms=st.lists(st.sampled_from([0x0403, 0x0804, 0x0A0A])).map(tuple),
    supported_groups=st.lists(st.sampled_from([0x001D, 0x0017])).map(tuple),
    has_ech=st.booleans(),
    sslv2_format=st.just(False),
)


@given(ja4_client_hellos, ja4_client_hellos, st.sampled_from("tqd"))
@FUZZ
def test_ja4_memoized_equals_computed(hello: ClientHello, other: ClientHello, transport: str) -> None:
    # The hello, then the hello with one field at a time taken from the other: a memo keyed on too few fields
    # answers for one of them what it computed for the first.
    fields = [field.name for field in dataclasses.fields(ClientHello)]
    variants = [hello] + [dataclasses.replace(hello, **{name: getattr(other, name)}) for name in fields]
    computed = []
    for variant in variants:
        _ja4.cache_clear()
        computed.append(ja4(variant, transport))
    assert [ja4(variant, transport) for variant in variants] == computed
    # Fields that differ per connection, or that JA4 does not read, leave it unchanged.
    for name, fingerprint in zip(fields, computed[1:], strict=True):
        if name in ("random", "session_id", "sni", "supported_groups", "has_ech", "sslv2_format"):
            assert fingerprint == computed[0], name


# ---------------------------------------------------------------------------------------------------------
# Names and classes


@pytest.mark.parametrize(
    ("version", "name"),
    [
        (0x0304, "TLS1.3"),
        (0x0303, "TLS1.2"),
        (0x0302, "TLS1.1"),
        (0x0301, "TLS1.0"),
        (0x0300, "SSLv3"),
        (0x0002, "SSLv2"),
        (0x7F17, "TLS1.3"),
        (0x7F00, "TLS1.3"),
        (0xFB1A, "TLS1.3"),
        (0xFB17, "0xfb17"),
        (0x0305, "0x0305"),
    ],
)
def test_version_name(version: int, name: str) -> None:
    assert version_name(version) == name


@pytest.mark.parametrize(
    ("suite", "name", "cls"),
    [
        (0x1301, "TLS_AES_128_GCM_SHA256", "aead"),
        (0x1302, "TLS_AES_256_GCM_SHA384", "aead"),
        (0x1303, "TLS_CHACHA20_POLY1305_SHA256", "aead"),
        (0x1304, "TLS_AES_128_CCM_SHA256", "aead"),
        (0x1305, "TLS_AES_128_CCM_8_SHA256", "aead"),
        (0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "aead"),
        (0xCCA9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "aead"),
        (0xC0AC, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM", "aead"),
        (0x009F, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "aead"),
        (0xC013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "cbc"),
        (0x003D, "TLS_RSA_WITH_AES_256_CBC_SHA256", "cbc"),
        (0x0004, "TLS_RSA_WITH_RC4_128_MD5", "rc4"),
        (0x0005, "TLS_RSA_WITH_RC4_128_SHA", "rc4"),
        (0xC011, "TLS_ECDHE_RSA_WITH_RC4_128_SHA", "rc4"),
        (0x0000, "TLS_NULL_WITH_NULL_NULL", "null"),
        (0x0001, "TLS_RSA_WITH_NULL_MD5", "null"),
        (0x0002, "TLS_RSA_WITH_NULL_SHA", "null"),
        (0x003B, "TLS_RSA_WITH_NULL_SHA256", "null"),
        (0xC010, "TLS_ECDHE_RSA_WITH_NULL_SHA", "null"),
        (0x00B0, "TLS_PSK_WITH_NULL_SHA256", "null"),
        (0xC015, "TLS_ECDH_anon_WITH_NULL_SHA", "null"),
        (0xC0B4, "TLS_SHA256_SHA256", "null"),  # RFC 9150 integrity-only
        (0x0003, "TLS_RSA_EXPORT_WITH_RC4_40_MD5", "export"),
        (0x0006, "TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5", "export"),
        (0x0008, "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA", "export"),
        (0x0014, "TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA", "export"),
        (0x0017, "TLS_DH_anon_EXPORT_WITH_RC4_40_MD5", "export"),
        (0x0062, "TLS_RSA_EXPORT1024_WITH_DES_CBC_SHA", "export"),
        (0x0064, "TLS_RSA_EXPORT1024_WITH_RC4_56_SHA", "export"),
        (0x0018, "TLS_DH_anon_WITH_RC4_128_MD5", "anon"),
        (0x0034, "TLS_DH_anon_WITH_AES_128_CBC_SHA", "anon"),
        (0x00A6, "TLS_DH_anon_WITH_AES_128_GCM_SHA256", "anon"),
        (0xC018, "TLS_ECDH_anon_WITH_AES_128_CBC_SHA", "anon"),
        (0xC05A, "TLS_DH_anon_WITH_ARIA_128_GCM_SHA256", "anon"),
        (0xC084, "TLS_DH_anon_WITH_CAMELLIA_128_GCM_SHA256", "anon"),
        (0x0009, "TLS_RSA_WITH_DES_CBC_SHA", "des"),
        (0x0015, "TLS_DHE_RSA_WITH_DES_CBC_SHA", "des"),
        (0x000A, "TLS_RSA_WITH_3DES_EDE_CBC_SHA", "3des"),
        (0xC012, "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "3des"),
        (0x00FF, "TLS_EMPTY_RENEGOTIATION_INFO_SCSV", "unknown"),
        (0x5600, "TLS_FALLBACK_SCSV", "unknown"),
    ],
)
def test_cipher_suites(suite: int, name: str, cls: str) -> None:
    assert cipher_suite_name(suite) == name
    assert cipher_suite_class(suite) == cls


def test_unknown_cipher_suite() -> None:
    assert cipher_suite_name(0x0A0A) == "0x0a0a"
    assert cipher_suite_class(0x0A0A) == "unknown"
    assert cipher_suite_name(0xFFFF) == "0xffff"
