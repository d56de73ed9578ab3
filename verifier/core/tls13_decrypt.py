"""Decryption of one direction's TLS 1.3 handshake flight with a logged handshake traffic secret.

TLS 1.3 encrypts everything after the ServerHello, the certificates included. Given the direction's
handshake traffic secret from a key log, the records up to and including Finished are decrypted (RFC 8446
5.2, 7.1, 7.3) and the Certificate message read. Records after Finished, application data, are never
decrypted. Bad input of any kind ends up in ``DecryptedFlight.error``; nothing is raised.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from verifier.core.tls import CONTENT_ALERT, CONTENT_APPLICATION_DATA, CONTENT_HANDSHAKE, parse_certificate
from verifier.errors import ParseError

_HS_CERTIFICATE = 11
_HS_FINISHED = 20
_HS_COMPRESSED_CERTIFICATE = 25

WRONG_KEYS = "decryption failed: wrong key log entry?"

_IV_LENGTH = 12


class _Aead(Protocol):
    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


@dataclass(frozen=True, slots=True)
class _Suite:
    hash: Callable[[], hashes.HashAlgorithm]
    key_length: int
    aead: Callable[[bytes], _Aead]


# RFC 8446 B.4
_SUITES = {
    0x1301: _Suite(hashes.SHA256, 16, AESGCM),  # TLS_AES_128_GCM_SHA256
    0x1302: _Suite(hashes.SHA384, 32, AESGCM),  # TLS_AES_256_GCM_SHA384
    0x1303: _Suite(hashes.SHA256, 32, ChaCha20Poly1305),  # TLS_CHACHA20_POLY1305_SHA256
    0x1304: _Suite(hashes.SHA256, 16, AESCCM),  # TLS_AES_128_CCM_SHA256
    0x1305: _Suite(hashes.SHA256, 16, lambda key: AESCCM(key, tag_length=8)),  # TLS_AES_128_CCM_8_SHA256
}

# RFC 8879 3: certificate compression algorithms; zlib is in the stdlib, brotli and zstd need a module.
_ZLIB, _BROTLI, _ZSTD = 1, 2, 3


@dataclass(frozen=True, slots=True)
class DecryptedFlight:
    """What one direction's encrypted flight showed. ``error`` is None exactly when ``certificates`` holds a
    chain; after any failure no chain is given, even one decrypted before it."""

    # Decrypted handshake messages in order: 8 EncryptedExtensions, 11 Certificate, 25 CompressedCertificate,
    # 13 CertificateRequest, 15 CertificateVerify, 20 Finished.
    handshake_types: tuple[int, ...]
    certificates: tuple[bytes, ...]  # DER chain from the Certificate message, leaf first
    error: str | None  # why the chain could not be recovered


def _expand_label(suite: _Suite, secret: bytes, label: bytes, length: int) -> bytes:
    """HKDF-Expand-Label(secret, label, "", length) of RFC 8446 7.1."""
    full_label = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full_label)]) + full_label + b"\x00"  # empty context
    return HKDFExpand(suite.hash(), length, info).derive(secret)


class HandshakeDecryptor:
    """Incremental: decrypts one direction's encrypted handshake records after the ServerHello (or after the
    client's ChangeCipherSpec for the client direction) until Finished; application data is never decrypted.

    Records that are not ciphertext (ChangeCipherSpec, a cleartext ServerHello or ClientHello after a
    HelloRetryRequest) may be fed too: they are skipped. The first failure ends decryption.
    """

    __slots__ = ("_aead", "_certificates", "_error", "_finished", "_handshake", "_iv", "_sequence", "_types")

    def __init__(self, *, cipher_suite: int, traffic_secret: bytes) -> None:
        self._aead: _Aead | None = None
        self._iv = 0
        self._sequence = 0  # records decrypted so far: the sequence number of the next one
        self._handshake = bytearray()  # decrypted handshake bytes not yet forming a whole message
        self._types: list[int] = []
        self._certificates: tuple[bytes, ...] | None = None
        self._finished = False
        self._error: str | None = None
        suite = _SUITES.get(cipher_suite)
        if suite is None:
            self._error = f"cipher suite 0x{cipher_suite:04x} is not a TLS 1.3 suite this tool decrypts"
        elif len(traffic_secret) != suite.hash().digest_size:
            self._error = (
                f"key log secret of {len(traffic_secret)} bytes does not fit cipher suite"
                f" 0x{cipher_suite:04x} ({suite.hash().digest_size}-byte hash)"
            )
        else:
            self._aead = suite.aead(_expand_label(suite, traffic_secret, b"key", suite.key_length))
            self._iv = int.from_bytes(_expand_label(suite, traffic_secret, b"iv", _IV_LENGTH), "big")

    def feed_record(self, content_type: int, version: int, body: bytes) -> None:
        """One TLSCiphertext record: its header's content type and version, and its body."""
        if self._aead is None or self._error is not None or self._finished:
            return
        if content_type != CONTENT_APPLICATION_DATA:  # TLS 1.3 ciphertext always claims application data
            return
        try:
            self._decrypt(self._aead, version, body)
        except ParseError as exc:
            self._error = str(exc)

    @property
    def done(self) -> bool:
        """Nothing more to learn from this direction: a chain, Finished, or a failure."""
        return self._error is not None or self._finished or bool(self._certificates)

    def result(self) -> DecryptedFlight:
        types = tuple(self._types)
        if self._error is not None:
            return DecryptedFlight(types, (), self._error)
        if self._certificates:
            return DecryptedFlight(types, self._certificates, None)
        if self._certificates is not None:
            error = "empty Certificate message: no certificate sent"
        elif self._finished:
            error = "no Certificate message before Finished (resumed session, or no client certificate asked)"
        elif not self._sequence:
            error = "no encrypted handshake record seen"
        else:
            error = f"truncated: no Certificate message in the {self._sequence} records decrypted"
        return DecryptedFlight(types, (), error)

    def _decrypt(self, aead: _Aead, version: int, body: bytes) -> None:
        if not 0 <= version <= 0xFFFF or len(body) > 0xFFFF:
            raise ParseError(f"record version {version} or length {len(body)} does not fit a record header")
        header = bytes([CONTENT_APPLICATION_DATA]) + version.to_bytes(2, "big") + len(body).to_bytes(2, "big")
        nonce = (self._iv ^ self._sequence).to_bytes(_IV_LENGTH, "big")  # RFC 8446 5.3
        try:
            plaintext = aead.decrypt(nonce, body, header)
        except InvalidTag:
            # The first record failing means the keys are wrong; a later one, that the capture is damaged.
            if not self._sequence:
                raise ParseError(WRONG_KEYS) from None
            raise ParseError(
                f"decryption failed at encrypted record {self._sequence + 1}: record damaged or missing?"
            ) from None
        self._sequence += 1
        # TLSInnerPlaintext: content, the real content type, then zero padding.
        content = plaintext.rstrip(b"\x00")
        if not content:
            raise ParseError(f"encrypted record {self._sequence} has no content type")
        inner_type, data = content[-1], content[:-1]
        if inner_type == CONTENT_ALERT:
            detail = f"description {data[1]}" if len(data) == 2 else f"{len(data)} bytes"
            raise ParseError(f"alert ({detail}) before the handshake flight ended")
        if inner_type != CONTENT_HANDSHAKE:
            raise ParseError(f"encrypted record of content type {inner_type} before Finished")
        if not data:
            raise ParseError("empty handshake fragment")  # RFC 8446 5.1 forbids them
        self._handshake += data
        self._read_messages()

    def _read_messages(self) -> None:
        buffer = self._handshake
        while len(buffer) >= 4:
            end = 4 + int.from_bytes(buffer[1:4], "big")
            if len(buffer) < end:
                return
            message_type = buffer[0]
            body = bytes(buffer[4:end])
            del buffer[:end]
            self._types.append(message_type)
            if message_type == _HS_CERTIFICATE:
                self._certificate(body)
            elif message_type == _HS_COMPRESSED_CERTIFICATE:
                self._certificate(_decompress_certificate(body))
            elif message_type == _HS_FINISHED:
                self._finished = True
                # Keys change after Finished, so it must end its record (RFC 8446 5.1).
                if buffer:
                    raise ParseError("handshake data after Finished in the same record")
                return

    def _certificate(self, body: bytes) -> None:
        if self._certificates is None:  # one per flight; a second one would be a protocol error, not ours
            self._certificates = parse_certificate(body, tls13=True)


def _decompress_certificate(body: bytes) -> bytes:
    """The Certificate message body inside a CompressedCertificate body (RFC 8879 4)."""
    if len(body) < 8:
        raise ParseError(f"CompressedCertificate of {len(body)} bytes")
    algorithm = int.from_bytes(body[0:2], "big")
    uncompressed_length = int.from_bytes(body[2:5], "big")
    compressed = body[8:]
    if not compressed or int.from_bytes(body[5:8], "big") != len(compressed):
        raise ParseError("CompressedCertificate: compressed length does not match the message length")
    if algorithm == _ZLIB:
        decompressor = zlib.decompressobj()
        try:
            # At most one byte more than announced: enough to tell a lying length without inflating a bomb.
            plain = decompressor.decompress(compressed, uncompressed_length + 1)
        except zlib.error as exc:
            raise ParseError(f"CompressedCertificate: zlib: {exc}") from None
        if not decompressor.eof or decompressor.unused_data:
            raise ParseError("CompressedCertificate: zlib stream does not end with the message")
    elif algorithm == _BROTLI:
        brotli = _module(algorithm, "brotli", "brotli")
        try:
            plain = bytes(brotli.decompress(compressed))
        except Exception as exc:  # the module's own error type (brotli.error)
            raise ParseError(f"CompressedCertificate: brotli: {exc}") from None
    elif algorithm == _ZSTD:
        zstandard = _module(algorithm, "zstd", "zstandard")
        try:
            plain = bytes(
                zstandard.ZstdDecompressor().decompress(compressed, max_output_size=uncompressed_length)
            )
        except Exception as exc:  # the module's own error type (zstandard.ZstdError)
            raise ParseError(f"CompressedCertificate: zstd: {exc}") from None
    else:
        raise ParseError(f"CompressedCertificate: unknown compression algorithm {algorithm}")
    if len(plain) != uncompressed_length:
        raise ParseError(
            f"CompressedCertificate: {len(plain)} bytes decompressed, {uncompressed_length} announced"
        )
    return plain


def _module(algorithm: int, name: str, module: str) -> ModuleType:
    """An optional decompression module, imported when a certificate needs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ParseError(
            f"certificate compressed with {name} (algorithm {algorithm}):"
            f" the {module} module is not installed"
        ) from None
