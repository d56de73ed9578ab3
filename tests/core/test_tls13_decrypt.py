"""Tests of verifier.core.tls13_decrypt.

- RFC 8448 section 3 (Simple 1-RTT Handshake): the server's encrypted flight and the client's Finished,
  decrypted with the handshake traffic secrets the RFC gives.
- Flights encrypted here with the RFC's server handshake key and iv (so the key schedule is checked too):
  fragmentation, padding, CompressedCertificate, and every way a flight can go wrong.
- Real OpenSSL handshakes: Python's ssl over memory BIOs (default suite, HelloRetryRequest, mutual TLS), and
  the openssl command line through a recording relay for all five TLS 1.3 suites (CCM needs -ciphersuites).
- The corpus captures that come with a key log: the decrypted chains against tshark's.
- Hypothesis: arbitrary records, and mutations of real ciphertext.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import ipaddress
import json
import selectors
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import types
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import CORPUS, FIGURES
from tests.traffic import make_pki
from verifier.core.decode import decode_frame
from verifier.core.keylog import parse_keylog
from verifier.core.reassembly import DirectionReassembler
from verifier.core.tls import parse_client_hello, parse_record_header, parse_server_hello
from verifier.core.tls13_decrypt import WRONG_KEYS, DecryptedFlight, HandshakeDecryptor
from verifier.sources.capture_file import open_capture

FUZZ = settings(max_examples=150, deadline=None)

Record = tuple[int, int, bytes]  # content type, record version, body

EE, CERTIFICATE, CERTIFICATE_REQUEST, CERTIFICATE_VERIFY, FINISHED = 8, 11, 13, 15, 20
COMPRESSED_CERTIFICATE = 25
HANDSHAKE, APPLICATION_DATA, CHANGE_CIPHER_SPEC = 22, 23, 20


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def u24(value: int) -> bytes:
    return value.to_bytes(3, "big")


def handshake(message_type: int, body: bytes) -> bytes:
    return bytes([message_type]) + u24(len(body)) + body


def certificate_body(chain: tuple[bytes, ...], context: bytes = b"") -> bytes:
    """A TLS 1.3 Certificate message body: request context, then per entry DER and empty extensions."""
    entries = b"".join(u24(len(der)) + der + u16(0) for der in chain)
    return bytes([len(context)]) + context + u24(len(entries)) + entries


def expected_chain() -> tuple[bytes, ...]:
    """The DER chain every test server is configured with: leaf, then intermediate."""
    return tuple(c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(make_pki().chain_pem))


def decrypt(cipher_suite: int, secret: bytes, records: list[Record]) -> DecryptedFlight:
    decryptor = HandshakeDecryptor(cipher_suite=cipher_suite, traffic_secret=secret)
    for record in records:
        decryptor.feed_record(*record)
    return decryptor.result()


def split_records(stream: bytes) -> list[Record]:
    """The whole TLS records at the start of a direction's stream."""
    records, pos = [], 0
    while (header := parse_record_header(stream, pos)) is not None and pos + 5 + header.length <= len(stream):
        records.append((header.content_type, header.version, stream[pos + 5 : pos + 5 + header.length]))
        pos += 5 + header.length
    return records


# ---------------------------------------------------------------------------------------------------------
# RFC 8448 section 3, "Simple 1-RTT Handshake"

# {server} derive secret "tls13 s hs traffic" / {client} derive secret "tls13 c hs traffic"
RFC8448_SERVER_HS_SECRET = bytes.fromhex("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
RFC8448_CLIENT_HS_SECRET = bytes.fromhex("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21")
# {server} derive write traffic keys for handshake data: key and iv
RFC8448_SERVER_HS_KEY = bytes.fromhex("3fce516009c21727d0f2e4e86ee403bc")
RFC8448_SERVER_HS_IV = bytes.fromhex("5d313eb2671276ee13000b30")

# {server} send handshake record: complete record (679 octets) holding EncryptedExtensions, Certificate,
# CertificateVerify and Finished. Header: application data, TLS 1.2, 674 bytes (658 of plaintext + 16 of tag).
RFC8448_SERVER_FLIGHT = bytes.fromhex(
    "17 03 03 02 a2"
    " d1 ff 33 4a 56 f5 bf f6 59 4a 07 cc 87 b5 80 23 3f 50 0f 45 e4 89 e7 f3 3a f3 5e df 78 69 fc f4 0a a4"
    " 0a a2 b8 ea 73 f8 48 a7 ca 07 61 2e f9 f9 45 cb 96 0b 40 68 90 51 23 ea 78 b1 11 b4 29 ba 91 91 cd 05"
    " d2 a3 89 28 0f 52 61 34 aa dc 7f c7 8c 4b 72 9d f8 28 b5 ec f7 b1 3b d9 ae fb 0e 57 f2 71 58 5b 8e a9"
    " bb 35 5c 7c 79 02 07 16 cf b9 b1 18 3e f3 ab 20 e3 7d 57 a6 b9 d7 47 76 09 ae e6 e1 22 a4 cf 51 42 73"
    " 25 25 0c 7d 0e 50 92 89 44 4c 9b 3a 64 8f 1d 71 03 5d 2e d6 5b 0e 3c dd 0c ba e8 bf 2d 0b 22 78 12 cb"
    " b3 60 98 72 55 cc 74 41 10 c4 53 ba a4 fc d6 10 92 8d 80 98 10 e4 b7 ed 1a 8f d9 91 f0 6a a6 24 82 04"
    " 79 7e 36 a6 a7 3b 70 a2 55 9c 09 ea d6 86 94 5b a2 46 ab 66 e5 ed d8 04 4b 4c 6d e3 fc f2 a8 94 41 ac"
    " 66 27 2f d8 fb 33 0e f8 19 05 79 b3 68 45 96 c9 60 bd 59 6e ea 52 0a 56 a8 d6 50 f5 63 aa d2 74 09 96"
    " 0d ca 63 d3 e6 88 61 1e a5 e2 2f 44 15 cf 95 38 d5 1a 20 0c 27 03 42 72 96 8a 26 4e d6 54 0c 84 83 8d"
    " 89 f7 2c 24 46 1a ad 6d 26 f5 9e ca ba 9a cb bb 31 7b 66 d9 02 f4 f2 92 a3 6a c1 b6 39 c6 37 ce 34 31"
    " 17 b6 59 62 22 45 31 7b 49 ee da 0c 62 58 f1 00 d7 d9 61 ff b1 38 64 7e 92 ea 33 0f ae ea 6d fa 31 c7"
    " a8 4d c3 bd 7e 1b 7a 6c 71 78 af 36 87 90 18 e3 f2 52 10 7f 24 3d 24 3d c7 33 9d 56 84 c8 b0 37 8b f3"
    " 02 44 da 8c 87 c8 43 f5 e5 6e b4 c5 e8 28 0a 2b 48 05 2c f9 3b 16 49 9a 66 db 7c ca 71 e4 59 94 26 f7"
    " d4 61 e6 6f 99 88 2b d8 9f c5 08 00 be cc a6 2d 6c 74 11 6d bd 29 72 fd a1 fa 80 f8 5d f8 81 ed be 5a"
    " 37 66 89 36 b3 35 58 3b 59 91 86 dc 5c 69 18 a3 96 fa 48 a1 81 d6 b6 fa 4f 9d 62 d5 13 af bb 99 2f 2b"
    " 99 2f 67 f8 af e6 7f 76 91 3f a3 88 cb 56 30 c8 ca 01 e0 c6 5d 11 c6 6a 1e 2a c4 c8 59 77 b7 c7 a6 99"
    " 9b bf 10 dc 35 ae 69 f5 51 56 14 63 6c 0b 9b 68 c1 9e d2 e3 1c 0b 3b 66 76 30 38 eb ba 42 f3 b3 8e dc"
    " 03 99 f3 a9 f2 3f aa 63 97 8c 31 7f c9 fa 66 a7 3f 60 f0 50 4d e9 3b 5b 84 5e 27 55 92 c1 23 35 ee 34"
    " 0b bc 4f dd d5 02 78 40 16 e4 b3 be 7e f0 4d da 49 f4 b4 40 a3 0c b5 d2 af 93 98 28 fd 4a e3 79 4e 44"
    " f9 4d f5 a6 31 ed e4 2c 17 19 bf da bf 02 53 fe 51 75 be 89 8e 75 0e dc 53 37 0d 2b"
)
# {client} send handshake record: complete record (58 octets) holding the client's Finished.
RFC8448_CLIENT_FINISHED = bytes.fromhex(
    "17 03 03 00 35"
    " 75 ec 4d c2 38 cc e6 0b 29 80 44 a7 1e 21 9c 56 cc 77 b0 51 7f e9 b9 3c 7a 4b fc 44 d8 7f 38 f8 03 38"
    " ac 98 fc 46 de b3 84 bd 1c ae ac ab 68 67 d7 26 c4 05 46"
)
# The first bytes of the DER certificate in the RFC's Certificate message (432 bytes, CN=rsa).
RFC8448_CERTIFICATE_START = bytes.fromhex(
    "308201ac30820115a003020102020102300d06092a864886f70d01010b0500300e"
)


def test_rfc8448_server_flight() -> None:
    flight = decrypt(0x1301, RFC8448_SERVER_HS_SECRET, split_records(RFC8448_SERVER_FLIGHT))
    assert flight.error is None
    assert flight.handshake_types == (EE, CERTIFICATE, CERTIFICATE_VERIFY, FINISHED)
    (certificate,) = flight.certificates
    assert len(certificate) == 432
    assert certificate.startswith(RFC8448_CERTIFICATE_START)
    name = x509.load_der_x509_certificate(certificate).subject
    assert name.rfc4514_string() == "CN=rsa"


def test_rfc8448_client_finished() -> None:
    flight = decrypt(0x1301, RFC8448_CLIENT_HS_SECRET, split_records(RFC8448_CLIENT_FINISHED))
    assert flight.handshake_types == (FINISHED,)
    assert flight.certificates == ()
    assert flight.error is not None and flight.error.startswith("no Certificate message before Finished")


def test_rfc8448_with_the_other_directions_secret() -> None:
    flight = decrypt(0x1301, RFC8448_CLIENT_HS_SECRET, split_records(RFC8448_SERVER_FLIGHT))
    assert flight == DecryptedFlight((), (), WRONG_KEYS)


@pytest.mark.parametrize("cipher_suite", [0x1302, 0x1303])
def test_rfc8448_with_the_wrong_suite(cipher_suite: int) -> None:
    # A SHA-384 suite cannot take a 32-byte secret; ChaCha20 derives another key: the tag fails.
    flight = decrypt(cipher_suite, RFC8448_SERVER_HS_SECRET, split_records(RFC8448_SERVER_FLIGHT))
    assert flight.certificates == ()
    assert flight.error == (
        "key log secret of 32 bytes does not fit cipher suite 0x1302 (48-byte hash)"
        if cipher_suite == 0x1302
        else WRONG_KEYS
    )


def test_rfc8448_every_flipped_bit_of_the_record_is_an_error() -> None:
    content_type, version, body = split_records(RFC8448_SERVER_FLIGHT)[0]
    for index in range(len(body)):
        for bit in (0x01, 0x80):
            damaged = body[:index] + bytes([body[index] ^ bit]) + body[index + 1 :]
            assert decrypt(0x1301, RFC8448_SERVER_HS_SECRET, [(content_type, version, damaged)]) == (
                DecryptedFlight((), (), WRONG_KEYS)
            )
    # The header is authenticated too (additional data), the version included.
    flight = decrypt(0x1301, RFC8448_SERVER_HS_SECRET, [(content_type, 0x0301, body)])
    assert flight.error == WRONG_KEYS
    truncated = decrypt(0x1301, RFC8448_SERVER_HS_SECRET, [(content_type, version, body[:-1])])
    assert truncated.error == WRONG_KEYS


@pytest.mark.parametrize("cipher_suite", [0x0000, 0x1306, 0xC02F, -1, 1 << 20])
def test_suites_that_are_not_tls13(cipher_suite: int) -> None:
    flight = decrypt(cipher_suite, RFC8448_SERVER_HS_SECRET, split_records(RFC8448_SERVER_FLIGHT))
    assert flight.certificates == ()
    assert flight.error is not None and "is not a TLS 1.3 suite" in flight.error


# ---------------------------------------------------------------------------------------------------------
# Flights encrypted here with the RFC 8448 server handshake key and iv (TLS_AES_128_GCM_SHA256)

CHAIN = expected_chain()
FINISHED_MESSAGE = handshake(FINISHED, bytes(32))
EE_MESSAGE = handshake(EE, u16(0))  # no extensions
CV_MESSAGE = handshake(CERTIFICATE_VERIFY, u16(0x0403) + u16(4) + b"sig!")


def seal(inner_plaintexts: list[bytes], *, first_sequence: int = 0) -> list[Record]:
    """Records of the RFC's server handshake key: each TLSInnerPlaintext (content, type, padding) is
    encrypted under nonce = iv XOR sequence number with the record header as additional data."""
    records = []
    for sequence, inner in enumerate(inner_plaintexts, start=first_sequence):
        nonce = (int.from_bytes(RFC8448_SERVER_HS_IV, "big") ^ sequence).to_bytes(12, "big")
        header = bytes([APPLICATION_DATA]) + u16(0x0303) + u16(len(inner) + 16)
        records.append(
            (APPLICATION_DATA, 0x0303, AESGCM(RFC8448_SERVER_HS_KEY).encrypt(nonce, inner, header))
        )
    return records


def inner(content: bytes, content_type: int = HANDSHAKE, padding: int = 0) -> bytes:
    return content + bytes([content_type]) + bytes(padding)


def decrypt_sealed(inner_plaintexts: list[bytes]) -> DecryptedFlight:
    return decrypt(0x1301, RFC8448_SERVER_HS_SECRET, seal(inner_plaintexts))


def test_one_message_a_record() -> None:
    messages = [EE_MESSAGE, handshake(CERTIFICATE, certificate_body(CHAIN)), CV_MESSAGE, FINISHED_MESSAGE]
    flight = decrypt_sealed([inner(m) for m in messages])
    assert flight == DecryptedFlight((EE, CERTIFICATE, CERTIFICATE_VERIFY, FINISHED), CHAIN, None)


def test_messages_split_across_records_with_padding() -> None:
    """EE and the start of Certificate in one record, the Certificate cut mid-header and mid-DER, padding of
    various sizes, CertificateVerify and Finished together in the last record."""
    flight_bytes = EE_MESSAGE + handshake(CERTIFICATE, certificate_body(CHAIN))
    cuts = [len(EE_MESSAGE) + 2, len(EE_MESSAGE) + 300, len(flight_bytes) - 1]
    pieces = [flight_bytes[a:b] for a, b in zip([0, *cuts], [*cuts, len(flight_bytes)], strict=True)]
    pieces.append(CV_MESSAGE + FINISHED_MESSAGE)
    flight = decrypt_sealed(
        [inner(p, padding=pad) for p, pad in zip(pieces, [0, 1, 200, 0, 16], strict=True)]
    )
    assert flight == DecryptedFlight((EE, CERTIFICATE, CERTIFICATE_VERIFY, FINISHED), CHAIN, None)


def test_cleartext_records_between_ciphertext_are_skipped() -> None:
    """A compatibility ChangeCipherSpec, or a cleartext ServerHello when fed from before it, is not part of
    the encrypted flight and does not take a sequence number."""
    sealed = seal([inner(EE_MESSAGE), inner(handshake(CERTIFICATE, certificate_body(CHAIN)))])
    records = [(HANDSHAKE, 0x0303, handshake(2, bytes(40))), (CHANGE_CIPHER_SPEC, 0x0303, b"\x01"), *sealed]
    records.insert(3, (CHANGE_CIPHER_SPEC, 0x0303, b"\x01"))
    assert decrypt(0x1301, RFC8448_SERVER_HS_SECRET, records) == DecryptedFlight(
        (EE, CERTIFICATE), CHAIN, None
    )


def test_certificate_request_and_request_context() -> None:
    request = handshake(CERTIFICATE_REQUEST, b"\x00" + u16(0))
    certificate = handshake(CERTIFICATE, certificate_body(CHAIN[:1], context=b"ctx"))
    flight = decrypt_sealed([inner(EE_MESSAGE + request + certificate + CV_MESSAGE + FINISHED_MESSAGE)])
    assert flight == DecryptedFlight((EE, CERTIFICATE_REQUEST, CERTIFICATE, 15, FINISHED), CHAIN[:1], None)


def test_records_after_finished_are_not_decrypted() -> None:
    """Application data follows Finished under other keys: with the handshake key it would fail."""
    records = seal([inner(EE_MESSAGE + handshake(CERTIFICATE, certificate_body(CHAIN)) + FINISHED_MESSAGE)])
    records.append((APPLICATION_DATA, 0x0303, b"application data under the application traffic key"))
    assert decrypt(0x1301, RFC8448_SERVER_HS_SECRET, records) == DecryptedFlight(
        (EE, CERTIFICATE, FINISHED), CHAIN, None
    )


def test_chain_without_finished_yet() -> None:
    """A capture cut after the Certificate message: the chain is authenticated by the AEAD already."""
    flight = decrypt_sealed([inner(EE_MESSAGE), inner(handshake(CERTIFICATE, certificate_body(CHAIN)))])
    assert flight == DecryptedFlight((EE, CERTIFICATE), CHAIN, None)


def compressed_certificate(algorithm: int, compressed: bytes, uncompressed_length: int) -> bytes:
    """RFC 8879 4: algorithm, uncompressed length, compressed Certificate message body."""
    body = u16(algorithm) + u24(uncompressed_length) + u24(len(compressed)) + compressed
    return handshake(COMPRESSED_CERTIFICATE, body)


def test_zlib_compressed_certificate() -> None:
    body = certificate_body(CHAIN)
    message = compressed_certificate(1, zlib.compress(body), len(body))
    flight = decrypt_sealed([inner(EE_MESSAGE + message + CV_MESSAGE + FINISHED_MESSAGE)])
    assert flight == DecryptedFlight((EE, COMPRESSED_CERTIFICATE, CERTIFICATE_VERIFY, FINISHED), CHAIN, None)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (
            compressed_certificate(1, zlib.compress(certificate_body(CHAIN)), 100),
            "CompressedCertificate: zlib stream does not end with the message",
        ),
        (
            compressed_certificate(
                1, zlib.compress(certificate_body(CHAIN)), len(certificate_body(CHAIN)) + 1
            ),
            f"CompressedCertificate: {len(certificate_body(CHAIN))} bytes decompressed, "
            f"{len(certificate_body(CHAIN)) + 1} announced",
        ),
        (
            compressed_certificate(
                1, zlib.compress(certificate_body(CHAIN)) + b"x", len(certificate_body(CHAIN))
            ),
            "CompressedCertificate: zlib stream does not end with the message",
        ),
        (compressed_certificate(1, b"not zlib", 10), "CompressedCertificate: zlib: Error -3"),
        (compressed_certificate(7, b"data", 10), "CompressedCertificate: unknown compression algorithm 7"),
        (handshake(COMPRESSED_CERTIFICATE, b"\x00\x01\x00\x00"), "CompressedCertificate of 4 bytes"),
        (
            handshake(COMPRESSED_CERTIFICATE, u16(1) + u24(10) + u24(5) + b"abc"),
            "CompressedCertificate: compressed length does not match the message length",
        ),
    ],
)
def test_bad_compressed_certificate(message: bytes, error: str) -> None:
    flight = decrypt_sealed([inner(EE_MESSAGE + message)])
    assert flight.certificates == ()
    assert flight.error is not None and flight.error.startswith(error)


@pytest.mark.parametrize(("algorithm", "module", "name"), [(2, "brotli", "brotli"), (3, "zstandard", "zstd")])
def test_compressed_certificate_without_its_decompressor(
    algorithm: int, module: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # None in sys.modules: the import fails
    flight = decrypt_sealed([inner(EE_MESSAGE + compressed_certificate(algorithm, b"data", 10))])
    assert flight == DecryptedFlight(
        (EE, COMPRESSED_CERTIFICATE),
        (),
        f"certificate compressed with {name} (algorithm {algorithm}): the {module} module is not installed",
    )


class _FakeZstdDecompressor:
    def decompress(self, data: bytes, max_output_size: int) -> bytes:
        return zlib.decompress(data)[:max_output_size]


@pytest.mark.parametrize("algorithm", [2, 3])
def test_compressed_certificate_with_an_installed_decompressor(
    algorithm: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """brotli and zstandard are not installed here: stand-ins that inflate zlib check the plumbing."""
    brotli = types.ModuleType("brotli")
    brotli.decompress = zlib.decompress  # type: ignore[attr-defined]
    zstandard = types.ModuleType("zstandard")
    zstandard.ZstdDecompressor = _FakeZstdDecompressor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "brotli", brotli)
    monkeypatch.setitem(sys.modules, "zstandard", zstandard)
    body = certificate_body(CHAIN)
    flight = decrypt_sealed(
        [inner(EE_MESSAGE + compressed_certificate(algorithm, zlib.compress(body), len(body)))]
    )
    assert flight == DecryptedFlight((EE, COMPRESSED_CERTIFICATE), CHAIN, None)
    broken = decrypt_sealed([inner(EE_MESSAGE + compressed_certificate(algorithm, b"not zlib", len(body)))])
    assert broken.error is not None and broken.error.startswith("CompressedCertificate: ")


@pytest.mark.parametrize(
    ("inner_plaintexts", "types_seen", "error"),
    [
        ([], (), "no encrypted handshake record seen"),
        ([inner(EE_MESSAGE)], (EE,), "truncated: no Certificate message in the 1 records decrypted"),
        (
            [inner(EE_MESSAGE + FINISHED_MESSAGE[:10])],
            (EE,),
            "truncated: no Certificate message in the 1 records",
        ),
        (
            [inner(EE_MESSAGE + FINISHED_MESSAGE)],
            (EE, FINISHED),
            "no Certificate message before Finished (resumed session, or no client certificate asked)",
        ),
        (
            [inner(EE_MESSAGE + handshake(CERTIFICATE, certificate_body(())))],
            (EE, CERTIFICATE),
            "empty Certificate message: no certificate sent",
        ),
        (
            [inner(EE_MESSAGE + handshake(CERTIFICATE, certificate_body(CHAIN)[:-1]))],
            (EE, CERTIFICATE),
            "Certificate: list length does not match the message length",
        ),
        ([bytes(30)], (), "encrypted record 1 has no content type"),
        (
            [inner(EE_MESSAGE), inner(b"\x02\x28", 21)],
            (EE,),
            "alert (description 40) before the handshake flight",
        ),
        ([inner(b"\x02", 21)], (), "alert (1 bytes) before the handshake flight ended"),
        ([inner(b"GET / HTTP/1.1\r\n", 23)], (), "encrypted record of content type 23 before Finished"),
        ([inner(b"", HANDSHAKE, 3)], (), "empty handshake fragment"),
        (
            [inner(FINISHED_MESSAGE + EE_MESSAGE)],
            (FINISHED,),
            "handshake data after Finished in the same record",
        ),
    ],
)
def test_flights_without_a_chain(
    inner_plaintexts: list[bytes], types_seen: tuple[int, ...], error: str
) -> None:
    flight = decrypt_sealed(inner_plaintexts)
    assert flight.handshake_types == types_seen
    assert flight.certificates == ()
    assert flight.error is not None and flight.error.startswith(error)


def test_damaged_record_after_the_first() -> None:
    """The keys are right (the first record decrypted), so a later failure is the capture's."""
    records = seal([inner(EE_MESSAGE), inner(handshake(CERTIFICATE, certificate_body(CHAIN)))])
    content_type, version, body = records[1]
    records[1] = (content_type, version, body[:-1] + bytes([body[-1] ^ 1]))
    flight = decrypt(0x1301, RFC8448_SERVER_HS_SECRET, records)
    assert flight == DecryptedFlight(
        (EE,), (), "decryption failed at encrypted record 2: record damaged or missing?"
    )


def test_missing_record_shifts_the_nonce() -> None:
    records = seal([inner(EE_MESSAGE), inner(handshake(CERTIFICATE, certificate_body(CHAIN)))])
    assert decrypt(0x1301, RFC8448_SERVER_HS_SECRET, records[1:]).error == WRONG_KEYS


def test_nothing_happens_after_an_error() -> None:
    records = seal([inner(EE_MESSAGE), inner(handshake(CERTIFICATE, certificate_body(CHAIN)))])
    flight = decrypt(0x1301, RFC8448_SERVER_HS_SECRET, [(APPLICATION_DATA, 0x0303, b"x" * 40), *records])
    assert flight == DecryptedFlight((), (), WRONG_KEYS)


@pytest.mark.parametrize(("version", "length"), [(-1, 40), (0x10000, 40), (0x0303, 0x10000)])
def test_records_that_no_header_can_describe(version: int, length: int) -> None:
    flight = decrypt(0x1301, RFC8448_SERVER_HS_SECRET, [(APPLICATION_DATA, version, bytes(length))])
    assert flight.error == f"record version {version} or length {length} does not fit a record header"


# ---------------------------------------------------------------------------------------------------------
# Real handshakes


@dataclass(frozen=True)
class Capture:
    client: bytes  # the client's stream
    server: bytes  # the server's stream
    keylog: bytes


@dataclass(frozen=True)
class Flights:
    """What the analyser will hand the decryptors for one connection."""

    cipher_suite: int  # of the final ServerHello
    hello_retry_request: bool
    client_secret: bytes  # the key log's entries for the ClientHello's random
    server_secret: bytes
    client_records: list[Record]  # after the client's ChangeCipherSpec
    server_records: list[Record]  # after the final ServerHello


def flights(capture: Capture) -> Flights:
    client_records, server_records = split_records(capture.client), split_records(capture.server)
    first = client_records[0][2]
    client_hello = parse_client_hello(first[4 : 4 + int.from_bytes(first[1:4], "big")])
    server_hellos = [
        (index, parse_server_hello(body[4 : 4 + int.from_bytes(body[1:4], "big")]))
        for index, (content_type, _, body) in enumerate(server_records)
        if content_type == HANDSHAKE and body[0] == 2
    ]
    index, server_hello = next((i, h) for i, h in server_hellos if not h.is_hello_retry_request)
    secrets = parse_keylog(capture.keylog).handshake_secrets(client_hello.random)
    assert secrets is not None, "no key log entry for the client random"
    client_start = next(i for i, (t, _, _) in enumerate(client_records) if t == CHANGE_CIPHER_SPEC) + 1
    return Flights(
        cipher_suite=server_hello.cipher_suite,
        hello_retry_request=server_hellos[0][1].is_hello_retry_request,
        client_secret=secrets[0],
        server_secret=secrets[1],
        client_records=client_records[client_start:],
        server_records=server_records[index + 1 :],
    )


@dataclass(frozen=True)
class Decrypted:
    cipher_suite: int
    hello_retry_request: bool
    server: DecryptedFlight
    client: DecryptedFlight


def decrypt_capture(capture: Capture) -> Decrypted:
    found = flights(capture)
    return Decrypted(
        cipher_suite=found.cipher_suite,
        hello_retry_request=found.hello_retry_request,
        server=decrypt(found.cipher_suite, found.server_secret, found.server_records),
        client=decrypt(found.cipher_suite, found.client_secret, found.client_records),
    )


def write_pki(directory: Path) -> None:
    pki = make_pki()
    leaf, intermediate = x509.load_pem_x509_certificates(pki.chain_pem)
    (directory / "chain.pem").write_bytes(pki.chain_pem)
    (directory / "leaf.pem").write_bytes(leaf.public_bytes(Encoding.PEM))
    (directory / "intermediate.pem").write_bytes(intermediate.public_bytes(Encoding.PEM))
    (directory / "key.pem").write_bytes(pki.key_pem)
    (directory / "root.pem").write_bytes(pki.root_pem)


def python_handshake(
    directory: Path, *, hello_retry: bool = False, client_certificate: bool = False
) -> Capture:
    """OpenSSL through Python's ssl over memory BIOs; the client writes the key log."""
    write_pki(directory)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(directory / "chain.pem", directory / "key.pem")
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if hello_retry:
        # The server accepts only P-384 while the client's key share is X25519: a HelloRetryRequest.
        server_ctx.set_ecdh_curve("secp384r1")
    if client_certificate:
        server_ctx.verify_mode = ssl.CERT_REQUIRED
        server_ctx.load_verify_locations(directory / "root.pem")
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(directory / "root.pem")
    client_ctx.keylog_filename = str(directory / "keylog.txt")
    if client_certificate:
        client_ctx.load_cert_chain(directory / "chain.pem", directory / "key.pem")
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="api.internal.example")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    streams = {True: b"", False: b""}
    for _ in range(10):
        for side in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        moved = False
        for out, into, from_client in ((c_out, s_in, True), (s_out, c_in, False)):
            data = out.read()
            streams[from_client] += data
            into.write(data)
            moved = moved or bool(data)
        if client.version() and server.version() and not moved:
            break
    assert client.version() == server.version() == "TLSv1.3"
    return Capture(streams[True], streams[False], (directory / "keylog.txt").read_bytes())


def test_python_handshake(tmp_path: Path) -> None:
    result = decrypt_capture(python_handshake(tmp_path))
    assert result.server == DecryptedFlight((EE, CERTIFICATE, CERTIFICATE_VERIFY, FINISHED), CHAIN, None)
    assert result.client.handshake_types == (FINISHED,)
    assert not result.hello_retry_request


def test_python_handshake_with_hello_retry_request(tmp_path: Path) -> None:
    result = decrypt_capture(python_handshake(tmp_path, hello_retry=True))
    assert result.hello_retry_request
    assert result.server == DecryptedFlight((EE, CERTIFICATE, CERTIFICATE_VERIFY, FINISHED), CHAIN, None)


def test_python_handshake_with_client_certificate(tmp_path: Path) -> None:
    result = decrypt_capture(python_handshake(tmp_path, client_certificate=True))
    assert result.server == DecryptedFlight(
        (EE, CERTIFICATE_REQUEST, CERTIFICATE, CERTIFICATE_VERIFY, FINISHED), CHAIN, None
    )
    assert result.client == DecryptedFlight((CERTIFICATE, CERTIFICATE_VERIFY, FINISHED), CHAIN, None)


def test_server_secret_on_the_client_flight(tmp_path: Path) -> None:
    capture = python_handshake(tmp_path)
    keylog = capture.keylog.replace(b"SERVER_HANDSHAKE", b"SWAP").replace(
        b"CLIENT_HANDSHAKE", b"SERVER_HANDSHAKE"
    )
    swapped = Capture(capture.client, capture.server, keylog.replace(b"SWAP", b"CLIENT_HANDSHAKE"))
    result = decrypt_capture(swapped)
    assert result.server == result.client == DecryptedFlight((), (), WRONG_KEYS)


# The openssl command line: client and server talk through a relay here that records both directions.

OPENSSL = shutil.which("openssl")
SUITE_NAMES = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0x1304: "TLS_AES_128_CCM_SHA256",
    0x1305: "TLS_AES_128_CCM_8_SHA256",
}


def relay(listener: socket.socket, server_port: int) -> tuple[bytes, bytes]:
    """Accept the client, connect to the server, pass bytes both ways until both sides close."""
    streams = {True: b"", False: b""}
    with (
        listener.accept()[0] as client,
        socket.create_connection(("127.0.0.1", server_port)) as server,
        selectors.DefaultSelector() as selector,
    ):
        selector.register(client, selectors.EVENT_READ, (server, True))
        selector.register(server, selectors.EVENT_READ, (client, False))
        deadline = time.monotonic() + 10
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.5):
                peer, from_client = key.data
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                data = sock.recv(65536)
                if data:
                    streams[from_client] += data
                    with contextlib.suppress(OSError):
                        peer.sendall(data)
                else:
                    selector.unregister(sock)
                    with contextlib.suppress(OSError):
                        peer.shutdown(socket.SHUT_WR)
    return streams[True], streams[False]


def openssl_handshake(directory: Path, suite: str, server_options: tuple[str, ...] = ()) -> Capture:
    assert OPENSSL is not None
    write_pki(directory)
    files = {name: str(directory / f"{name}.pem") for name in ("leaf", "intermediate", "key", "root")}
    server_command = [
        *(OPENSSL, "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-tls1_3", "-ciphersuites", suite),
        *(
            "-cert",
            files["leaf"],
            "-cert_chain",
            files["intermediate"],
            "-key",
            files["key"],
            *server_options,
        ),
    ]
    client_command = [
        *(OPENSSL, "s_client", "-tls1_3", "-ciphersuites", suite, "-CAfile", files["root"]),
        *("-servername", "api.internal.example", "-keylogfile", str(directory / "keylog.txt"), "-connect"),
    ]
    with (
        subprocess.Popen(
            server_command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        ) as server,
        socket.create_server(("127.0.0.1", 0)) as listener,
    ):
        assert server.stdout is not None
        line = server.stdout.readline()
        while line and not line.startswith(b"ACCEPT"):
            line = server.stdout.readline()
        server_port = int(line.rsplit(b":", 1)[1])
        listener.settimeout(10)
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        quiet = subprocess.DEVNULL
        with subprocess.Popen([*client_command, address], stdin=quiet, stdout=quiet, stderr=quiet) as client:
            client_stream, server_stream = relay(listener, server_port)
            client.wait(10)
        server.kill()
    return Capture(client_stream, server_stream, (directory / "keylog.txt").read_bytes())


@pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")
@pytest.mark.parametrize("cipher_suite", sorted(SUITE_NAMES))
def test_openssl_every_tls13_suite(cipher_suite: int, tmp_path: Path) -> None:
    result = decrypt_capture(openssl_handshake(tmp_path, SUITE_NAMES[cipher_suite]))
    assert result.cipher_suite == cipher_suite
    assert result.server == DecryptedFlight((EE, CERTIFICATE, CERTIFICATE_VERIFY, FINISHED), CHAIN, None)


@pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")
def test_openssl_hello_retry_request_and_client_certificate_with_ccm8(tmp_path: Path) -> None:
    options = ("-groups", "P-384", "-Verify", "1", "-CAfile", str(tmp_path / "root.pem"))
    capture = openssl_handshake(tmp_path, SUITE_NAMES[0x1305], options)
    result = decrypt_capture(capture)
    assert result.hello_retry_request
    assert result.server == DecryptedFlight(
        (EE, CERTIFICATE_REQUEST, CERTIFICATE, CERTIFICATE_VERIFY, FINISHED), CHAIN, None
    )
    # s_client was given no certificate: it answers the request with an empty Certificate.
    assert result.client == DecryptedFlight(
        (CERTIFICATE, FINISHED), (), "empty Certificate message: no certificate sent"
    )


# ---------------------------------------------------------------------------------------------------------
# Corpus: captures with a key log, against tshark's decrypted chains

TRUTH = sorted((CORPUS / "truth").glob("*.json")) if CORPUS.is_dir() else []


def endpoint(address: bytes, port: int) -> str:
    ip = ipaddress.ip_address(address)
    return f"{ip}:{port}" if ip.version == 4 else f"[{ip}]:{port}"


def tcp_streams(path: Path) -> dict[tuple[str, str], bytes]:
    """Each direction's reassembled payload, by (source, destination)."""
    reassemblers: dict[tuple[str, str], DirectionReassembler] = {}
    streams: dict[tuple[str, str], bytes] = {}
    with open_capture(path) as reader:
        for _, linktype, frame, _ in reader.frames():
            segment = decode_frame(linktype, frame)
            if isinstance(segment, str):
                continue
            key = (endpoint(segment.src, segment.sport), endpoint(segment.dst, segment.dport))
            reassembler = reassemblers.setdefault(key, DirectionReassembler(max_pending=1 << 24))
            if segment.flags & 0x02:  # SYN
                reassembler.syn(segment.seq)
            if segment.payload:
                streams[key] = streams.get(key, b"") + reassembler.add(segment.seq, segment.payload)
    for key, reassembler in reassemblers.items():
        streams[key] = streams.get(key, b"") + reassembler.flush()
    return streams


@pytest.mark.corpus
def test_corpus_chains_match_tshark() -> None:
    if not TRUTH:
        pytest.skip(f"corpus not found at {CORPUS}")
    compared, matched, client_chains = 0, 0, 0
    for truth_path in TRUTH:
        truth = json.loads(truth_path.read_text())
        if not truth.get("keylog_file"):
            continue
        keylog = (CORPUS / "keys" / truth["keylog_file"]).read_bytes()
        streams = tcp_streams(CORPUS / "files" / truth["file"])
        for stream in truth["tcp_streams_with_keylog"]:
            if stream["category"] != "TLS1.3":
                continue
            capture = Capture(
                streams[(stream["client"], stream["server"])],
                streams[(stream["server"], stream["client"])],
                keylog,
            )
            result = decrypt_capture(capture)
            compared += 1
            ours = [hashlib.sha256(der).hexdigest() for der in result.server.certificates]
            assert ours == [c["sha256"] for c in stream["server_cert_chain"]], (
                truth["file"],
                result.server.error,
            )
            matched += 1
            if stream["client_cert_count"]:
                assert len(result.client.certificates) == stream["client_cert_count"], truth["file"]
                client_chains += 1
    assert compared == 5  # AES-128-GCM, AES-256-GCM, ChaCha20, mutual TLS (snet), Illustrated TLS 1.3
    FIGURES.append(
        f"corpus: TLS 1.3 server chains decrypted with the key log: {matched}/{compared} equal to tshark's; "
        f"client chains (mutual TLS): {client_chains}"
    )


# ---------------------------------------------------------------------------------------------------------
# Hypothesis


RECORDS = st.lists(
    st.tuples(
        st.sampled_from([APPLICATION_DATA, APPLICATION_DATA, HANDSHAKE, CHANGE_CIPHER_SPEC, 21, 0, 255]),
        st.sampled_from([0x0303, 0x0301, 0x0304, 0]),
        st.binary(max_size=120),
    ),
    max_size=6,
)


@given(st.sampled_from([0x1301, 0x1302, 0x1303, 0x1304, 0x1305, 0x00FF]), st.binary(max_size=64), RECORDS)
@FUZZ
def test_arbitrary_records(cipher_suite: int, secret: bytes, records: list[Record]) -> None:
    flight = decrypt(cipher_suite, secret, records)
    assert flight.certificates == ()
    assert flight.error is not None


@functools.cache
def real_flight() -> Flights:
    with tempfile.TemporaryDirectory() as directory:
        return flights(python_handshake(Path(directory)))


@given(st.data())
@FUZZ
def test_mutated_real_ciphertext(data: st.DataObject) -> None:
    found = real_flight()
    cipher_suite, secret, records = found.cipher_suite, found.server_secret, found.server_records
    assert decrypt(cipher_suite, secret, records).certificates == CHAIN
    encrypted = [i for i, (t, _, _) in enumerate(records) if t == APPLICATION_DATA]
    # The records up to Finished: after it nothing is decrypted, so a change there cannot show.
    flight_end = next(
        i
        for i in encrypted
        if decrypt(cipher_suite, secret, records[: i + 1]).handshake_types[-1:] == (FINISHED,)
    )
    index = data.draw(st.sampled_from([i for i in encrypted if i <= flight_end]))
    content_type, version, body = records[index]
    position = data.draw(st.integers(0, len(body) - 1))
    flip = data.draw(st.integers(1, 255))
    mutated = list(records)
    mutated[index] = (
        content_type,
        version,
        body[:position] + bytes([body[position] ^ flip]) + body[position + 1 :],
    )
    flight = decrypt(cipher_suite, secret, mutated)
    assert flight.certificates == ()
    assert flight.error is not None and flight.error.startswith("decryption failed")
