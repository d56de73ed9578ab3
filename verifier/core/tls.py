"""TLS as seen on the wire: record headers, hellos, certificates, and one direction of a stream.

Only cleartext is read: what a passive observer of the handshake can see. Text taken from the wire (SNI,
ALPN) is kept as *safe text*: printable ASCII as is, every other byte and the backslash itself as ``\\xNN``.
It prints safely and stays reversible, so the exact bytes can be recovered (JA4 needs them).

Parsers follow the core contract (see ``verifier.errors``): ``None`` when more bytes are needed, a result, or
``ParseError`` for bytes that are not what they claim to be.
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
from dataclasses import dataclass

from verifier.errors import ParseError

# record layer
CONTENT_CHANGE_CIPHER_SPEC = 20
CONTENT_ALERT = 21
CONTENT_HANDSHAKE = 22
CONTENT_APPLICATION_DATA = 23
CONTENT_HEARTBEAT = 24

_RECORD_HEADER_LENGTH = 5
# TLSCiphertext.length may exceed the 2^14 plaintext limit by at most 2048 (RFC 5246 6.2.3).
_MAX_RECORD_LENGTH = 2**14 + 2048

_HS_CLIENT_HELLO = 1
_HS_SERVER_HELLO = 2
_HS_CERTIFICATE = 11
# Handshake types a cleartext record can carry (TLS 1.0-1.3 and drafts); anything else is not TLS.
_HANDSHAKE_TYPES = frozenset(
    {0, 1, 2, 3, 4, 5, 6, 8, 11, 12, 13, 14, 15, 16, 20, 21, 22, 23, 24, 25, 26, 254}
)

_EXT_SERVER_NAME = 0x0000
_EXT_SUPPORTED_GROUPS = 0x000A
_EXT_SIGNATURE_ALGORITHMS = 0x000D
_EXT_ALPN = 0x0010
_EXT_SUPPORTED_VERSIONS = 0x002B
_EXT_ENCRYPTED_CLIENT_HELLO = 0xFE0D

_TLS13 = 0x0304
_SSL2 = 0x0002
_FACEBOOK_TLS13 = 0xFB1A
# Drafts before 22 used a ServerHello without session id and compression method.
_LAST_OLD_FORMAT_DRAFT = 0x7F15

# RFC 8446 4.1.3: a HelloRetryRequest is a ServerHello whose random is SHA-256("HelloRetryRequest").
_HELLO_RETRY_REQUEST_RANDOM = hashlib.sha256(b"HelloRetryRequest").digest()

# SSLv2 CLIENT-HELLO: type, version, three lengths (9 bytes), at least one 3-byte cipher kind and a
# 16-byte challenge.
_SSL2_MIN_CLIENT_HELLO = 9 + 3 + 16
_SSL2_CLIENT_HELLO = 1
_SSL2_SERVER_HELLO = 4
_SSL2_ERROR = 0


@dataclass(frozen=True, slots=True)
class RecordHeader:
    content_type: int
    version: int
    length: int

    # Written out: compiled, the generated one would run interpreted (tests/test_dataclasses.py).
    def __init__(self, content_type: int, version: int, length: int) -> None:
        object.__setattr__(self, "content_type", content_type)
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "length", length)


@dataclass(frozen=True, slots=True)
class ClientHello:
    legacy_version: int  # for SSLv2-format hellos: the version field
    random: bytes  # 32 bytes; SSLv2 format: the challenge as given
    session_id: bytes
    cipher_suites: tuple[int, ...]  # in order, GREASE included; SSLv2 cipher kinds are 3-byte values
    extension_types: tuple[int, ...]  # in order, GREASE included
    sni: str | None  # host_name of server_name, as safe text
    alpn: tuple[str, ...]  # offered protocols, as safe text
    supported_versions: tuple[int, ...]
    signature_algorithms: tuple[int, ...]
    supported_groups: tuple[int, ...]
    has_ech: bool
    sslv2_format: bool

    # Written out: compiled, the generated one would run interpreted (tests/test_dataclasses.py).
    def __init__(
        self,
        legacy_version: int,
        random: bytes,
        session_id: bytes,
        cipher_suites: tuple[int, ...],
        extension_types: tuple[int, ...],
        sni: str | None,
        alpn: tuple[str, ...],
        supported_versions: tuple[int, ...],
        signature_algorithms: tuple[int, ...],
        supported_groups: tuple[int, ...],
        has_ech: bool,
        sslv2_format: bool,
    ) -> None:
        object.__setattr__(self, "legacy_version", legacy_version)
        object.__setattr__(self, "random", random)
        object.__setattr__(self, "session_id", session_id)
        object.__setattr__(self, "cipher_suites", cipher_suites)
        object.__setattr__(self, "extension_types", extension_types)
        object.__setattr__(self, "sni", sni)
        object.__setattr__(self, "alpn", alpn)
        object.__setattr__(self, "supported_versions", supported_versions)
        object.__setattr__(self, "signature_algorithms", signature_algorithms)
        object.__setattr__(self, "supported_groups", supported_groups)
        object.__setattr__(self, "has_ech", has_ech)
        object.__setattr__(self, "sslv2_format", sslv2_format)


@dataclass(frozen=True, slots=True)
class ServerHello:
    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    extension_types: tuple[int, ...]
    selected_version: int | None  # from supported_versions, raw
    negotiated_version: int  # selected_version or legacy_version, drafts mapped to 0x0304
    is_hello_retry_request: bool
    alpn: str | None  # as safe text

    # Written out: compiled, the generated one would run interpreted (tests/test_dataclasses.py).
    def __init__(
        self,
        legacy_version: int,
        random: bytes,
        session_id: bytes,
        cipher_suite: int,
        extension_types: tuple[int, ...],
        selected_version: int | None,
        negotiated_version: int,
        is_hello_retry_request: bool,
        alpn: str | None,
    ) -> None:
        object.__setattr__(self, "legacy_version", legacy_version)
        object.__setattr__(self, "random", random)
        object.__setattr__(self, "session_id", session_id)
        object.__setattr__(self, "cipher_suite", cipher_suite)
        object.__setattr__(self, "extension_types", extension_types)
        object.__setattr__(self, "selected_version", selected_version)
        object.__setattr__(self, "negotiated_version", negotiated_version)
        object.__setattr__(self, "is_hello_retry_request", is_hello_retry_request)
        object.__setattr__(self, "alpn", alpn)


@dataclass(frozen=True, slots=True)
class TlsDirectionState:
    """What one direction of a connection has shown so far, in cleartext."""

    client_hellos: tuple[ClientHello, ...]  # more than one after a HelloRetryRequest
    server_hellos: tuple[ServerHello, ...]  # HelloRetryRequest first if any, then the real one
    certificates: tuple[bytes, ...]  # DER chain of the first cleartext Certificate message
    handshake_types: tuple[int, ...]  # cleartext handshake message types, in order
    change_cipher_spec: bool
    encrypted_records: int
    alerts: tuple[tuple[int, int], ...]  # cleartext alerts (level, description)
    record_versions: tuple[int, ...]  # distinct record-layer versions in order of first sight (SSLv2: 0x0002)
    bytes_parsed: int  # stream offset up to which complete records were consumed
    truncated_certificate: bool  # a Certificate message has started and is not complete yet

    # Written out: compiled, the generated one would run interpreted (tests/test_dataclasses.py).
    def __init__(
        self,
        client_hellos: tuple[ClientHello, ...],
        server_hellos: tuple[ServerHello, ...],
        certificates: tuple[bytes, ...],
        handshake_types: tuple[int, ...],
        change_cipher_spec: bool,
        encrypted_records: int,
        alerts: tuple[tuple[int, int], ...],
        record_versions: tuple[int, ...],
        bytes_parsed: int,
        truncated_certificate: bool,
    ) -> None:
        object.__setattr__(self, "client_hellos", client_hellos)
        object.__setattr__(self, "server_hellos", server_hellos)
        object.__setattr__(self, "certificates", certificates)
        object.__setattr__(self, "handshake_types", handshake_types)
        object.__setattr__(self, "change_cipher_spec", change_cipher_spec)
        object.__setattr__(self, "encrypted_records", encrypted_records)
        object.__setattr__(self, "alerts", alerts)
        object.__setattr__(self, "record_versions", record_versions)
        object.__setattr__(self, "bytes_parsed", bytes_parsed)
        object.__setattr__(self, "truncated_certificate", truncated_certificate)


# ---------------------------------------------------------------------------------------------------------
# Byte reading
#
# Hellos are read with offsets into the message, not through a reader object: one hello per direction of
# every TLS flow makes them the hot path. Each length is checked against the bytes there before the fields
# it covers are read, so short or overlong input is a ParseError, never an IndexError.


# A plain dict, not functools.lru_cache: compiled (mypyc), a call through lru_cache's wrapper cost more than
# the unpacking. Bounded: counts come from the wire.
_UINT16_LIST_STRUCTS: dict[int, struct.Struct] = {}


def _uint16s(data: bytes, start: int, end: int, what: str) -> tuple[int, ...]:
    """The 16-bit values in ``data[start:end]`` (``end`` within ``data``)."""
    if (end - start) % 2:
        raise ParseError(f"{what}: odd length {end - start} for a list of 16-bit values")
    count = (end - start) >> 1
    unpacker = _UINT16_LIST_STRUCTS.get(count)
    if unpacker is None:
        if len(_UINT16_LIST_STRUCTS) >= 256:
            _UINT16_LIST_STRUCTS.clear()
        unpacker = _UINT16_LIST_STRUCTS[count] = struct.Struct(f">{count}H")
    return unpacker.unpack_from(data, start)


# Bytes safe text keeps as they are: printable ASCII except the backslash.
_LITERAL_BYTES = bytes(b for b in range(0x20, 0x7F) if b != 0x5C)


def _safe_text(raw: bytes) -> str:
    if not raw.translate(None, _LITERAL_BYTES):  # the usual host name or protocol: nothing to escape
        return raw.decode("ascii")
    return "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in raw)


_ESCAPED_BYTE = re.compile(r"\\x([0-9a-f]{2})")


def _wire_bytes(text: str) -> bytes:
    """The bytes a safe text was made from."""
    parts = _ESCAPED_BYTE.split(text)  # literal, hex, literal, hex, ..., literal
    return b"".join(bytes.fromhex(part) if i % 2 else part.encode() for i, part in enumerate(parts))


# GREASE values of RFC 8701: 0x0a0a, 0x1a1a, ..., 0xfafa.
_GREASE = frozenset(range(0x0A0A, 0xFAFB, 0x1010))


def _normalized_version(version: int) -> int:
    if 0x7F00 <= version <= 0x7FFF or version == _FACEBOOK_TLS13:
        return _TLS13
    return version


# ---------------------------------------------------------------------------------------------------------
# Record layer


def parse_record_header(data: bytes | bytearray, offset: int = 0) -> RecordHeader | None:
    """The TLS record header at ``offset``; None if fewer than 5 bytes are there."""
    if len(data) - offset < _RECORD_HEADER_LENGTH:
        return None
    content_type = data[offset]
    major, minor = data[offset + 1], data[offset + 2]
    length = (data[offset + 3] << 8) | data[offset + 4]
    if not CONTENT_CHANGE_CIPHER_SPEC <= content_type <= CONTENT_HEARTBEAT:
        raise ParseError(f"record content type {content_type} is not TLS")
    if major != 3 or minor > 4:
        raise ParseError(f"record version 0x{major:02x}{minor:02x} is not SSLv3/TLS")
    if length > _MAX_RECORD_LENGTH:
        raise ParseError(f"record length {length} exceeds {_MAX_RECORD_LENGTH}")
    # RFC 5246 6.2.1 / RFC 8446 5.1: only application data may come in zero-length fragments.
    if length == 0 and content_type != CONTENT_APPLICATION_DATA:
        raise ParseError(f"empty record of content type {content_type}")
    return RecordHeader(content_type, (major << 8) | minor, length)


def _looks_like_record_start(data: bytes | bytearray, offset: int = 0) -> bool:
    """Content type, major and minor version bytes of a TLS record (needs 3 bytes)."""
    return (
        CONTENT_CHANGE_CIPHER_SPEC <= data[offset] <= CONTENT_HEARTBEAT
        and data[offset + 1] == 3
        and data[offset + 2] <= 4
    )


def _is_sslv2_hello_version(major: int, minor: int) -> bool:
    return (major, minor) == (0, 2) or (major == 3 and minor <= 4)


def looks_like_tls(data: bytes | bytearray) -> bool:
    """Cheap test on the first bytes of a stream: a plausible TLS record header or SSLv2-format ClientHello.

    Needs 3 bytes for a TLS record (the length is checked too once 5 are there) and 5 for an SSLv2 hello;
    with fewer it answers False.
    """
    if len(data) >= 3 and _looks_like_record_start(data):
        try:
            parse_record_header(data)
        except ParseError:
            return False
        return True
    return (
        len(data) >= 5
        and data[0] & 0x80 != 0
        and ((data[0] & 0x7F) << 8 | data[1]) >= _SSL2_MIN_CLIENT_HELLO
        and data[2] == _SSL2_CLIENT_HELLO
        and _is_sslv2_hello_version(data[3], data[4])
    )


# ---------------------------------------------------------------------------------------------------------
# Hellos and certificates


def _extensions(body: bytes, pos: int, wanted: frozenset[int], what: str) -> tuple[list[int], dict[int, int]]:
    """The extensions block that ends a hello at ``pos``: the type of each extension, in order, and where
    the data of the first one of each ``wanted`` type starts (its length is in the 2 bytes before). No block
    at all (SSLv3-style hellos) is no extensions."""
    size = len(body)
    types: list[int] = []
    first: dict[int, int] = {}
    if pos == size:
        return types, first
    if size - pos < 2 or pos + 2 + (body[pos] << 8 | body[pos + 1]) != size:
        raise ParseError(f"{what}: extensions block length does not match the {size - pos} bytes left")
    pos += 2
    while pos + 4 <= size:  # type, length: byte by byte, which compiled allocates nothing
        ext_type = body[pos] << 8 | body[pos + 1]
        types.append(ext_type)
        if ext_type in wanted and ext_type not in first:
            first[ext_type] = pos + 4
        pos += 4 + (body[pos + 2] << 8 | body[pos + 3])
    if pos != size:
        raise ParseError(f"{what}: an extension overruns the extensions block")
    return types, first


def _extension_data(body: bytes, start: int) -> bytes:
    return body[start : start + (body[start - 2] << 8 | body[start - 1])]


def _parse_server_name(data: bytes) -> str | None:
    if not data:
        return None
    size = len(data)
    if size < 2 or 2 + (data[0] << 8 | data[1]) != size:
        raise ParseError("server_name: list length does not match the extension length")
    host = None
    pos = 2
    while pos + 3 <= size:  # name type, name length
        name_end = pos + 3 + (data[pos + 1] << 8 | data[pos + 2])
        if data[pos] == 0 and host is None and name_end <= size:
            host = _safe_text(data[pos + 3 : name_end])
        pos = name_end
    if pos != size:
        raise ParseError("server_name: a name overruns the list")
    return host


def _parse_alpn(data: bytes) -> tuple[str, ...]:
    size = len(data)
    if size < 2 or 2 + (data[0] << 8 | data[1]) != size:
        raise ParseError("ALPN: protocol list length does not match the extension length")
    protocols = []
    pos = 2
    while pos < size:
        end = pos + 1 + data[pos]
        protocols.append(_safe_text(data[pos + 1 : end]))
        pos = end
    if pos != size:
        raise ParseError("ALPN: a protocol name overruns the list")
    return tuple(protocols)


def _uint16_extension(body: bytes, start: int | None, length_size: int, what: str) -> tuple[int, ...]:
    """The 16-bit values of the extension whose data starts at ``start``: one vector of them, its length in
    ``length_size`` bytes. () when the extension is absent (``start`` None)."""
    if start is None:
        return ()
    end = start + (body[start - 2] << 8 | body[start - 1])
    values_start = start + length_size
    if (
        values_start > end
        or values_start + (body[start] if length_size == 1 else body[start] << 8 | body[start + 1]) != end
    ):
        raise ParseError(f"{what}: list length does not match the extension length")
    return _uint16s(body, values_start, end, what)


# The extensions whose contents the hellos report.
_CLIENT_HELLO_EXTENSIONS = frozenset(
    {
        _EXT_SERVER_NAME,
        _EXT_ALPN,
        _EXT_SUPPORTED_VERSIONS,
        _EXT_SIGNATURE_ALGORITHMS,
        _EXT_SUPPORTED_GROUPS,
        _EXT_ENCRYPTED_CLIENT_HELLO,
    }
)
_SERVER_HELLO_EXTENSIONS = frozenset({_EXT_SUPPORTED_VERSIONS, _EXT_ALPN})


def parse_client_hello(body: bytes) -> ClientHello:
    """A ClientHello handshake message body (after the 4-byte handshake header)."""
    size = len(body)
    if size < 35:
        raise ParseError(f"ClientHello: {size} bytes cannot hold version, random and session id length")
    if body[34] > 32:
        raise ParseError(f"ClientHello: session id of {body[34]} bytes")
    suites_start = 35 + body[34] + 2
    if size < suites_start:
        raise ParseError("ClientHello: ends before its cipher suites")
    suites_end = suites_start + (body[suites_start - 2] << 8 | body[suites_start - 1])
    if size < suites_end + 1:
        raise ParseError("ClientHello: ends in its cipher suites")
    if suites_end == suites_start:
        raise ParseError("ClientHello: no cipher suites")
    cipher_suites = _uint16s(body, suites_start, suites_end, "ClientHello cipher suites")
    compression_end = suites_end + 1 + body[suites_end]
    if compression_end == suites_end + 1:
        raise ParseError("ClientHello: no compression methods")
    if size < compression_end:
        raise ParseError("ClientHello: ends in its compression methods")
    types, first = _extensions(body, compression_end, _CLIENT_HELLO_EXTENSIONS, "ClientHello")
    start = first.get(_EXT_SERVER_NAME)
    sni = None if start is None else _parse_server_name(_extension_data(body, start))
    start = first.get(_EXT_ALPN)
    alpn = () if start is None else _parse_alpn(_extension_data(body, start))
    return ClientHello(  # positional: a third faster than keywords for this many fields
        body[0] << 8 | body[1],  # legacy_version
        body[2:34],  # random
        body[35 : suites_start - 2],  # session_id
        cipher_suites,
        tuple(types),  # extension_types
        sni,
        alpn,
        _uint16_extension(body, first.get(_EXT_SUPPORTED_VERSIONS), 1, "supported_versions"),
        _uint16_extension(body, first.get(_EXT_SIGNATURE_ALGORITHMS), 2, "signature_algorithms"),
        _uint16_extension(body, first.get(_EXT_SUPPORTED_GROUPS), 2, "supported_groups"),
        _EXT_ENCRYPTED_CLIENT_HELLO in first,  # has_ech
        False,  # sslv2_format
    )


def parse_server_hello(body: bytes) -> ServerHello:
    """A ServerHello handshake message body (after the 4-byte handshake header)."""
    size = len(body)
    if size < 34:
        raise ParseError(f"ServerHello: {size} bytes cannot hold version and random")
    legacy_version = body[0] << 8 | body[1]
    if 0x7F00 <= legacy_version <= _LAST_OLD_FORMAT_DRAFT:  # no session id, no compression method
        session_id = b""
        suite_start = 34
        extensions_start = 36
    else:
        if size < 35:
            raise ParseError("ServerHello: ends before its session id")
        if body[34] > 32:
            raise ParseError(f"ServerHello: session id of {body[34]} bytes")
        suite_start = 35 + body[34]
        session_id = body[35:suite_start]
        extensions_start = suite_start + 3  # cipher suite, compression method
    if size < extensions_start:
        raise ParseError("ServerHello: ends before its extensions")
    types, first = _extensions(body, extensions_start, _SERVER_HELLO_EXTENSIONS, "ServerHello")
    selected_version = None
    start = first.get(_EXT_SUPPORTED_VERSIONS)
    if start is not None:
        raw = _extension_data(body, start)
        if len(raw) != 2:
            raise ParseError(f"ServerHello: supported_versions of {len(raw)} bytes, expected 2")
        selected_version = raw[0] << 8 | raw[1]
    start = first.get(_EXT_ALPN)
    alpn = () if start is None else _parse_alpn(_extension_data(body, start))
    random = body[2:34]
    return ServerHello(
        legacy_version,
        random,
        session_id,
        body[suite_start] << 8 | body[suite_start + 1],  # cipher_suite
        tuple(types),  # extension_types
        selected_version,
        _normalized_version(legacy_version if selected_version is None else selected_version),  # negotiated
        random == _HELLO_RETRY_REQUEST_RANDOM,  # is_hello_retry_request
        alpn[0] if alpn else None,  # alpn
    )


def parse_certificate(body: bytes, tls13: bool) -> tuple[bytes, ...]:
    """The DER certificates of a Certificate message body, in order.

    TLS 1.3 (RFC 8446 4.4.2) adds a request context before the list and extensions after each entry.
    """
    size = len(body)
    pos = 0
    if tls13:
        if not size:
            raise ParseError("Certificate: empty message")
        pos = 1 + body[0]  # after certificate_request_context
    if size - pos < 3 or pos + 3 + int.from_bytes(body[pos : pos + 3], "big") != size:
        raise ParseError("Certificate: list length does not match the message length")
    pos += 3
    certificates = []
    while pos < size:
        if size - pos < 3:
            raise ParseError("Certificate: entry length cut short")
        end = pos + 3 + int.from_bytes(body[pos : pos + 3], "big")
        if end == pos + 3:
            raise ParseError("Certificate: empty certificate entry")
        if end > size:
            raise ParseError("Certificate: an entry overruns the list")
        certificates.append(body[pos + 3 : end])
        pos = end
        if tls13:  # per-entry extensions
            if size - pos < 2:
                raise ParseError("Certificate: entry extensions length cut short")
            pos += 2 + (body[pos] << 8 | body[pos + 1])
    if pos != size:
        raise ParseError("Certificate: entry extensions overrun the list")
    return tuple(certificates)


def _sslv2_record_length(data: bytes | bytearray) -> int | None:
    """Body length of an SSLv2 record with a 2-byte header (high bit set) at the start of ``data``."""
    if not data:
        return None
    if not data[0] & 0x80:
        raise ParseError("not an SSLv2 record with a 2-byte header")
    if len(data) < 2:
        return None
    return (data[0] & 0x7F) << 8 | data[1]


def parse_sslv2_client_hello(data: bytes | bytearray) -> ClientHello | None:
    """The SSLv2-format CLIENT-HELLO record at the start of ``data`` (RFC 6101 E / RFC 5246 E.2)."""
    length = _sslv2_record_length(data)
    if length is None:
        return None
    if length < _SSL2_MIN_CLIENT_HELLO:
        raise ParseError(f"SSLv2 ClientHello of {length} bytes is too short")
    if len(data) >= 3 and data[2] != _SSL2_CLIENT_HELLO:
        raise ParseError(f"SSLv2 message type {data[2]} is not CLIENT-HELLO")
    if len(data) >= 5 and not _is_sslv2_hello_version(data[3], data[4]):
        raise ParseError(f"SSLv2 ClientHello version 0x{data[3]:02x}{data[4]:02x}")
    if len(data) < 2 + length:
        return None
    # After the message type: version, then the lengths of cipher specs, session id and challenge.
    body = bytes(data[3 : 2 + length])
    version, specs_length, session_id_length, challenge_length = struct.unpack_from(">4H", body)
    if specs_length == 0 or specs_length % 3:
        raise ParseError(f"SSLv2 ClientHello: cipher specs length {specs_length}")
    if session_id_length not in (0, 16):
        raise ParseError(f"SSLv2 ClientHello: session id length {session_id_length}")
    if not 16 <= challenge_length <= 32:
        raise ParseError(f"SSLv2 ClientHello: challenge length {challenge_length}")
    session_id_start = 8 + specs_length
    challenge_start = session_id_start + session_id_length
    if challenge_start + challenge_length != len(body):
        raise ParseError(f"SSLv2 ClientHello: fields do not add up to the {len(body)} bytes of the message")
    return ClientHello(
        legacy_version=version,
        random=body[challenge_start:],
        session_id=body[session_id_start:challenge_start],
        cipher_suites=tuple(int.from_bytes(body[i : i + 3], "big") for i in range(8, session_id_start, 3)),
        extension_types=(),
        sni=None,
        alpn=(),
        supported_versions=(),
        signature_algorithms=(),
        supported_groups=(),
        has_ech=False,
        sslv2_format=True,
    )


def _parse_sslv2_server_hello(body: bytes) -> bytes:
    """The certificate of an SSLv2 SERVER-HELLO body (after the message type byte)."""
    # session-id-hit, certificate type, server version (4 bytes), then the lengths of the certificate, the
    # cipher specs and the connection id
    if len(body) < 10:
        raise ParseError(f"SSLv2 ServerHello: {len(body)} bytes")
    certificate_length, specs_length, connection_id_length = struct.unpack_from(">3H", body, 4)
    if 10 + certificate_length + specs_length + connection_id_length != len(body):
        raise ParseError(f"SSLv2 ServerHello: fields do not add up to the {len(body)} bytes of the message")
    return body[10 : 10 + certificate_length]


# ---------------------------------------------------------------------------------------------------------
# JA4


_JA4_VERSIONS = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}
_JA4_EMPTY_HASH = "000000000000"


def _ja4_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def ja4(hello: ClientHello, transport: str = "t") -> str:
    """FoxIO's JA4 TLS client fingerprint (FoxIO-LLC/ja4, technical_details/JA4.md).

    ``transport`` is "t" (TLS over TCP), "q" (QUIC) or "d" (DTLS).
    """
    return _ja4(
        transport,
        hello.legacy_version,
        hello.supported_versions,
        hello.cipher_suites,
        hello.extension_types,
        hello.alpn[0] if hello.alpn else "",
        hello.signature_algorithms,
    )


# Clients repeat a few profiles over many connections, so fingerprints are memoized on exactly the fields
# they depend on (the random and session id, which differ per connection, are not among them).
@functools.lru_cache(maxsize=4096)
def _ja4(
    transport: str,
    legacy_version: int,
    supported_versions: tuple[int, ...],
    cipher_suites: tuple[int, ...],
    extension_types: tuple[int, ...],
    first_alpn: str,
    signature_algorithms: tuple[int, ...],
) -> str:
    offered = [v for v in supported_versions if v not in _GREASE]
    version = _JA4_VERSIONS.get(max(offered) if offered else legacy_version, "00")
    ciphers = [f"{c:04x}" for c in cipher_suites if c not in _GREASE]
    extensions = [e for e in extension_types if e not in _GREASE]
    destination = "d" if _EXT_SERVER_NAME in extensions else "i"
    alpn = _wire_bytes(first_alpn)
    if not alpn:
        alpn_code = "00"
    elif alpn[:1].isalnum() and alpn[-1:].isalnum():
        alpn_code = chr(alpn[0]) + chr(alpn[-1])
    else:
        alpn_code = alpn.hex()[0] + alpn.hex()[-1]
    counts = f"{min(len(ciphers), 99):02d}{min(len(extensions), 99):02d}"
    part_a = f"{transport}{version}{destination}{counts}{alpn_code}"

    part_b = _ja4_hash(",".join(sorted(ciphers))) if ciphers else _JA4_EMPTY_HASH
    hashed_extensions = sorted(f"{e:04x}" for e in extensions if e not in (_EXT_SERVER_NAME, _EXT_ALPN))
    if hashed_extensions:
        text = ",".join(hashed_extensions)
        algorithms = [f"{a:04x}" for a in signature_algorithms if a not in _GREASE]
        if algorithms:
            text += "_" + ",".join(algorithms)
        part_c = _ja4_hash(text)
    else:
        part_c = _JA4_EMPTY_HASH
    return f"{part_a}_{part_b}_{part_c}"


# ---------------------------------------------------------------------------------------------------------
# Names and classes


_VERSION_NAMES = {
    0x0304: "TLS1.3",
    0x0303: "TLS1.2",
    0x0302: "TLS1.1",
    0x0301: "TLS1.0",
    0x0300: "SSLv3",
    0x0002: "SSLv2",
}


def version_name(version: int) -> str:
    """Display name of a protocol version; draft TLS 1.3 versions are TLS1.3."""
    name = _VERSION_NAMES.get(_normalized_version(version))
    return name if name is not None else f"0x{version:04x}"  # formatted only when needed: a hot path


# IANA TLS Cipher Suites registry names, plus the pre-standard EXPORT1024 and ChaCha20 suites still seen in
# old hellos and the SSLv2 cipher kinds (3-byte values; RFC 6101 and the SSLv2 specification).
_CIPHER_SUITE_NAMES = {
    0x0000: "TLS_NULL_WITH_NULL_NULL",
    0x0001: "TLS_RSA_WITH_NULL_MD5",
    0x0002: "TLS_RSA_WITH_NULL_SHA",
    0x0003: "TLS_RSA_EXPORT_WITH_RC4_40_MD5",
    0x0004: "TLS_RSA_WITH_RC4_128_MD5",
    0x0005: "TLS_RSA_WITH_RC4_128_SHA",
    0x0006: "TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5",
    0x0007: "TLS_RSA_WITH_IDEA_CBC_SHA",
    0x0008: "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA",
    0x0009: "TLS_RSA_WITH_DES_CBC_SHA",
    0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    0x000B: "TLS_DH_DSS_EXPORT_WITH_DES40_CBC_SHA",
    0x000C: "TLS_DH_DSS_WITH_DES_CBC_SHA",
    0x000D: "TLS_DH_DSS_WITH_3DES_EDE_CBC_SHA",
    0x000E: "TLS_DH_RSA_EXPORT_WITH_DES40_CBC_SHA",
    0x000F: "TLS_DH_RSA_WITH_DES_CBC_SHA",
    0x0010: "TLS_DH_RSA_WITH_3DES_EDE_CBC_SHA",
    0x0011: "TLS_DHE_DSS_EXPORT_WITH_DES40_CBC_SHA",
    0x0012: "TLS_DHE_DSS_WITH_DES_CBC_SHA",
    0x0013: "TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA",
    0x0014: "TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA",
    0x0015: "TLS_DHE_RSA_WITH_DES_CBC_SHA",
    0x0016: "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA",
    0x0017: "TLS_DH_anon_EXPORT_WITH_RC4_40_MD5",
    0x0018: "TLS_DH_anon_WITH_RC4_128_MD5",
    0x0019: "TLS_DH_anon_EXPORT_WITH_DES40_CBC_SHA",
    0x001A: "TLS_DH_anon_WITH_DES_CBC_SHA",
    0x001B: "TLS_DH_anon_WITH_3DES_EDE_CBC_SHA",
    0x001E: "TLS_KRB5_WITH_DES_CBC_SHA",
    0x001F: "TLS_KRB5_WITH_3DES_EDE_CBC_SHA",
    0x0020: "TLS_KRB5_WITH_RC4_128_SHA",
    0x0021: "TLS_KRB5_WITH_IDEA_CBC_SHA",
    0x0022: "TLS_KRB5_WITH_DES_CBC_MD5",
    0x0023: "TLS_KRB5_WITH_3DES_EDE_CBC_MD5",
    0x0024: "TLS_KRB5_WITH_RC4_128_MD5",
    0x0025: "TLS_KRB5_WITH_IDEA_CBC_MD5",
    0x0026: "TLS_KRB5_EXPORT_WITH_DES_CBC_40_SHA",
    0x0027: "TLS_KRB5_EXPORT_WITH_RC2_CBC_40_SHA",
    0x0028: "TLS_KRB5_EXPORT_WITH_RC4_40_SHA",
    0x0029: "TLS_KRB5_EXPORT_WITH_DES_CBC_40_MD5",
    0x002A: "TLS_KRB5_EXPORT_WITH_RC2_CBC_40_MD5",
    0x002B: "TLS_KRB5_EXPORT_WITH_RC4_40_MD5",
    0x002C: "TLS_PSK_WITH_NULL_SHA",
    0x002D: "TLS_DHE_PSK_WITH_NULL_SHA",
    0x002E: "TLS_RSA_PSK_WITH_NULL_SHA",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0030: "TLS_DH_DSS_WITH_AES_128_CBC_SHA",
    0x0031: "TLS_DH_RSA_WITH_AES_128_CBC_SHA",
    0x0032: "TLS_DHE_DSS_WITH_AES_128_CBC_SHA",
    0x0033: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    0x0034: "TLS_DH_anon_WITH_AES_128_CBC_SHA",
    0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x0036: "TLS_DH_DSS_WITH_AES_256_CBC_SHA",
    0x0037: "TLS_DH_RSA_WITH_AES_256_CBC_SHA",
    0x0038: "TLS_DHE_DSS_WITH_AES_256_CBC_SHA",
    0x0039: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    0x003A: "TLS_DH_anon_WITH_AES_256_CBC_SHA",
    0x003B: "TLS_RSA_WITH_NULL_SHA256",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256",
    0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
    0x003E: "TLS_DH_DSS_WITH_AES_128_CBC_SHA256",
    0x003F: "TLS_DH_RSA_WITH_AES_128_CBC_SHA256",
    0x0040: "TLS_DHE_DSS_WITH_AES_128_CBC_SHA256",
    0x0041: "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA",
    0x0042: "TLS_DH_DSS_WITH_CAMELLIA_128_CBC_SHA",
    0x0043: "TLS_DH_RSA_WITH_CAMELLIA_128_CBC_SHA",
    0x0044: "TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA",
    0x0045: "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA",
    0x0046: "TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA",
    0x0060: "TLS_RSA_EXPORT1024_WITH_RC4_56_MD5",
    0x0061: "TLS_RSA_EXPORT1024_WITH_RC2_CBC_56_MD5",
    0x0062: "TLS_RSA_EXPORT1024_WITH_DES_CBC_SHA",
    0x0063: "TLS_DHE_DSS_EXPORT1024_WITH_DES_CBC_SHA",
    0x0064: "TLS_RSA_EXPORT1024_WITH_RC4_56_SHA",
    0x0065: "TLS_DHE_DSS_EXPORT1024_WITH_RC4_56_SHA",
    0x0066: "TLS_DHE_DSS_WITH_RC4_128_SHA",
    0x0067: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    0x0068: "TLS_DH_DSS_WITH_AES_256_CBC_SHA256",
    0x0069: "TLS_DH_RSA_WITH_AES_256_CBC_SHA256",
    0x006A: "TLS_DHE_DSS_WITH_AES_256_CBC_SHA256",
    0x006B: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    0x006C: "TLS_DH_anon_WITH_AES_128_CBC_SHA256",
    0x006D: "TLS_DH_anon_WITH_AES_256_CBC_SHA256",
    0x0084: "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA",
    0x0085: "TLS_DH_DSS_WITH_CAMELLIA_256_CBC_SHA",
    0x0086: "TLS_DH_RSA_WITH_CAMELLIA_256_CBC_SHA",
    0x0087: "TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA",
    0x0088: "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA",
    0x0089: "TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA",
    0x008A: "TLS_PSK_WITH_RC4_128_SHA",
    0x008B: "TLS_PSK_WITH_3DES_EDE_CBC_SHA",
    0x008C: "TLS_PSK_WITH_AES_128_CBC_SHA",
    0x008D: "TLS_PSK_WITH_AES_256_CBC_SHA",
    0x008E: "TLS_DHE_PSK_WITH_RC4_128_SHA",
    0x008F: "TLS_DHE_PSK_WITH_3DES_EDE_CBC_SHA",
    0x0090: "TLS_DHE_PSK_WITH_AES_128_CBC_SHA",
    0x0091: "TLS_DHE_PSK_WITH_AES_256_CBC_SHA",
    0x0092: "TLS_RSA_PSK_WITH_RC4_128_SHA",
    0x0093: "TLS_RSA_PSK_WITH_3DES_EDE_CBC_SHA",
    0x0094: "TLS_RSA_PSK_WITH_AES_128_CBC_SHA",
    0x0095: "TLS_RSA_PSK_WITH_AES_256_CBC_SHA",
    0x0096: "TLS_RSA_WITH_SEED_CBC_SHA",
    0x0097: "TLS_DH_DSS_WITH_SEED_CBC_SHA",
    0x0098: "TLS_DH_RSA_WITH_SEED_CBC_SHA",
    0x0099: "TLS_DHE_DSS_WITH_SEED_CBC_SHA",
    0x009A: "TLS_DHE_RSA_WITH_SEED_CBC_SHA",
    0x009B: "TLS_DH_anon_WITH_SEED_CBC_SHA",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256",
    0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    0x00A0: "TLS_DH_RSA_WITH_AES_128_GCM_SHA256",
    0x00A1: "TLS_DH_RSA_WITH_AES_256_GCM_SHA384",
    0x00A2: "TLS_DHE_DSS_WITH_AES_128_GCM_SHA256",
    0x00A3: "TLS_DHE_DSS_WITH_AES_256_GCM_SHA384",
    0x00A4: "TLS_DH_DSS_WITH_AES_128_GCM_SHA256",
    0x00A5: "TLS_DH_DSS_WITH_AES_256_GCM_SHA384",
    0x00A6: "TLS_DH_anon_WITH_AES_128_GCM_SHA256",
    0x00A7: "TLS_DH_anon_WITH_AES_256_GCM_SHA384",
    0x00A8: "TLS_PSK_WITH_AES_128_GCM_SHA256",
    0x00A9: "TLS_PSK_WITH_AES_256_GCM_SHA384",
    0x00AA: "TLS_DHE_PSK_WITH_AES_128_GCM_SHA256",
    0x00AB: "TLS_DHE_PSK_WITH_AES_256_GCM_SHA384",
    0x00AC: "TLS_RSA_PSK_WITH_AES_128_GCM_SHA256",
    0x00AD: "TLS_RSA_PSK_WITH_AES_256_GCM_SHA384",
    0x00AE: "TLS_PSK_WITH_AES_128_CBC_SHA256",
    0x00AF: "TLS_PSK_WITH_AES_256_CBC_SHA384",
    0x00B0: "TLS_PSK_WITH_NULL_SHA256",
    0x00B1: "TLS_PSK_WITH_NULL_SHA384",
    0x00B2: "TLS_DHE_PSK_WITH_AES_128_CBC_SHA256",
    0x00B3: "TLS_DHE_PSK_WITH_AES_256_CBC_SHA384",
    0x00B4: "TLS_DHE_PSK_WITH_NULL_SHA256",
    0x00B5: "TLS_DHE_PSK_WITH_NULL_SHA384",
    0x00B6: "TLS_RSA_PSK_WITH_AES_128_CBC_SHA256",
    0x00B7: "TLS_RSA_PSK_WITH_AES_256_CBC_SHA384",
    0x00B8: "TLS_RSA_PSK_WITH_NULL_SHA256",
    0x00B9: "TLS_RSA_PSK_WITH_NULL_SHA384",
    0x00BA: "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256",
    0x00BB: "TLS_DH_DSS_WITH_CAMELLIA_128_CBC_SHA256",
    0x00BC: "TLS_DH_RSA_WITH_CAMELLIA_128_CBC_SHA256",
    0x00BD: "TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA256",
    0x00BE: "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256",
    0x00BF: "TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA256",
    0x00C0: "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA256",
    0x00C1: "TLS_DH_DSS_WITH_CAMELLIA_256_CBC_SHA256",
    0x00C2: "TLS_DH_RSA_WITH_CAMELLIA_256_CBC_SHA256",
    0x00C3: "TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA256",
    0x00C4: "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256",
    0x00C5: "TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA256",
    0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0x1304: "TLS_AES_128_CCM_SHA256",
    0x1305: "TLS_AES_128_CCM_8_SHA256",
    0x5600: "TLS_FALLBACK_SCSV",
    0xC001: "TLS_ECDH_ECDSA_WITH_NULL_SHA",
    0xC002: "TLS_ECDH_ECDSA_WITH_RC4_128_SHA",
    0xC003: "TLS_ECDH_ECDSA_WITH_3DES_EDE_CBC_SHA",
    0xC004: "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA",
    0xC005: "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA",
    0xC006: "TLS_ECDHE_ECDSA_WITH_NULL_SHA",
    0xC007: "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    0xC008: "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC00B: "TLS_ECDH_RSA_WITH_NULL_SHA",
    0xC00C: "TLS_ECDH_RSA_WITH_RC4_128_SHA",
    0xC00D: "TLS_ECDH_RSA_WITH_3DES_EDE_CBC_SHA",
    0xC00E: "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA",
    0xC00F: "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA",
    0xC010: "TLS_ECDHE_RSA_WITH_NULL_SHA",
    0xC011: "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    0xC012: "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC015: "TLS_ECDH_anon_WITH_NULL_SHA",
    0xC016: "TLS_ECDH_anon_WITH_RC4_128_SHA",
    0xC017: "TLS_ECDH_anon_WITH_3DES_EDE_CBC_SHA",
    0xC018: "TLS_ECDH_anon_WITH_AES_128_CBC_SHA",
    0xC019: "TLS_ECDH_anon_WITH_AES_256_CBC_SHA",
    0xC01A: "TLS_SRP_SHA_WITH_3DES_EDE_CBC_SHA",
    0xC01B: "TLS_SRP_SHA_RSA_WITH_3DES_EDE_CBC_SHA",
    0xC01C: "TLS_SRP_SHA_DSS_WITH_3DES_EDE_CBC_SHA",
    0xC01D: "TLS_SRP_SHA_WITH_AES_128_CBC_SHA",
    0xC01E: "TLS_SRP_SHA_RSA_WITH_AES_128_CBC_SHA",
    0xC01F: "TLS_SRP_SHA_DSS_WITH_AES_128_CBC_SHA",
    0xC020: "TLS_SRP_SHA_WITH_AES_256_CBC_SHA",
    0xC021: "TLS_SRP_SHA_RSA_WITH_AES_256_CBC_SHA",
    0xC022: "TLS_SRP_SHA_DSS_WITH_AES_256_CBC_SHA",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC025: "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA256",
    0xC026: "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    0xC029: "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA256",
    0xC02A: "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA384",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02D: "TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02E: "TLS_ECDH_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xC031: "TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256",
    0xC032: "TLS_ECDH_RSA_WITH_AES_256_GCM_SHA384",
    0xC033: "TLS_ECDHE_PSK_WITH_RC4_128_SHA",
    0xC034: "TLS_ECDHE_PSK_WITH_3DES_EDE_CBC_SHA",
    0xC035: "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA",
    0xC036: "TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA",
    0xC037: "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256",
    0xC038: "TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA384",
    0xC039: "TLS_ECDHE_PSK_WITH_NULL_SHA",
    0xC03A: "TLS_ECDHE_PSK_WITH_NULL_SHA256",
    0xC03B: "TLS_ECDHE_PSK_WITH_NULL_SHA384",
    0xC03C: "TLS_RSA_WITH_ARIA_128_CBC_SHA256",
    0xC03D: "TLS_RSA_WITH_ARIA_256_CBC_SHA384",
    0xC03E: "TLS_DH_DSS_WITH_ARIA_128_CBC_SHA256",
    0xC03F: "TLS_DH_DSS_WITH_ARIA_256_CBC_SHA384",
    0xC040: "TLS_DH_RSA_WITH_ARIA_128_CBC_SHA256",
    0xC041: "TLS_DH_RSA_WITH_ARIA_256_CBC_SHA384",
    0xC042: "TLS_DHE_DSS_WITH_ARIA_128_CBC_SHA256",
    0xC043: "TLS_DHE_DSS_WITH_ARIA_256_CBC_SHA384",
    0xC044: "TLS_DHE_RSA_WITH_ARIA_128_CBC_SHA256",
    0xC045: "TLS_DHE_RSA_WITH_ARIA_256_CBC_SHA384",
    0xC046: "TLS_DH_anon_WITH_ARIA_128_CBC_SHA256",
    0xC047: "TLS_DH_anon_WITH_ARIA_256_CBC_SHA384",
    0xC048: "TLS_ECDHE_ECDSA_WITH_ARIA_128_CBC_SHA256",
    0xC049: "TLS_ECDHE_ECDSA_WITH_ARIA_256_CBC_SHA384",
    0xC04A: "TLS_ECDH_ECDSA_WITH_ARIA_128_CBC_SHA256",
    0xC04B: "TLS_ECDH_ECDSA_WITH_ARIA_256_CBC_SHA384",
    0xC04C: "TLS_ECDHE_RSA_WITH_ARIA_128_CBC_SHA256",
    0xC04D: "TLS_ECDHE_RSA_WITH_ARIA_256_CBC_SHA384",
    0xC04E: "TLS_ECDH_RSA_WITH_ARIA_128_CBC_SHA256",
    0xC04F: "TLS_ECDH_RSA_WITH_ARIA_256_CBC_SHA384",
    0xC050: "TLS_RSA_WITH_ARIA_128_GCM_SHA256",
    0xC051: "TLS_RSA_WITH_ARIA_256_GCM_SHA384",
    0xC052: "TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256",
    0xC053: "TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384",
    0xC054: "TLS_DH_RSA_WITH_ARIA_128_GCM_SHA256",
    0xC055: "TLS_DH_RSA_WITH_ARIA_256_GCM_SHA384",
    0xC056: "TLS_DHE_DSS_WITH_ARIA_128_GCM_SHA256",
    0xC057: "TLS_DHE_DSS_WITH_ARIA_256_GCM_SHA384",
    0xC058: "TLS_DH_DSS_WITH_ARIA_128_GCM_SHA256",
    0xC059: "TLS_DH_DSS_WITH_ARIA_256_GCM_SHA384",
    0xC05A: "TLS_DH_anon_WITH_ARIA_128_GCM_SHA256",
    0xC05B: "TLS_DH_anon_WITH_ARIA_256_GCM_SHA384",
    0xC05C: "TLS_ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256",
    0xC05D: "TLS_ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384",
    0xC05E: "TLS_ECDH_ECDSA_WITH_ARIA_128_GCM_SHA256",
    0xC05F: "TLS_ECDH_ECDSA_WITH_ARIA_256_GCM_SHA384",
    0xC060: "TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256",
    0xC061: "TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384",
    0xC062: "TLS_ECDH_RSA_WITH_ARIA_128_GCM_SHA256",
    0xC063: "TLS_ECDH_RSA_WITH_ARIA_256_GCM_SHA384",
    0xC064: "TLS_PSK_WITH_ARIA_128_CBC_SHA256",
    0xC065: "TLS_PSK_WITH_ARIA_256_CBC_SHA384",
    0xC066: "TLS_DHE_PSK_WITH_ARIA_128_CBC_SHA256",
    0xC067: "TLS_DHE_PSK_WITH_ARIA_256_CBC_SHA384",
    0xC068: "TLS_RSA_PSK_WITH_ARIA_128_CBC_SHA256",
    0xC069: "TLS_RSA_PSK_WITH_ARIA_256_CBC_SHA384",
    0xC06A: "TLS_PSK_WITH_ARIA_128_GCM_SHA256",
    0xC06B: "TLS_PSK_WITH_ARIA_256_GCM_SHA384",
    0xC06C: "TLS_DHE_PSK_WITH_ARIA_128_GCM_SHA256",
    0xC06D: "TLS_DHE_PSK_WITH_ARIA_256_GCM_SHA384",
    0xC06E: "TLS_RSA_PSK_WITH_ARIA_128_GCM_SHA256",
    0xC06F: "TLS_RSA_PSK_WITH_ARIA_256_GCM_SHA384",
    0xC070: "TLS_ECDHE_PSK_WITH_ARIA_128_CBC_SHA256",
    0xC071: "TLS_ECDHE_PSK_WITH_ARIA_256_CBC_SHA384",
    0xC072: "TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256",
    0xC073: "TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_CBC_SHA384",
    0xC074: "TLS_ECDH_ECDSA_WITH_CAMELLIA_128_CBC_SHA256",
    0xC075: "TLS_ECDH_ECDSA_WITH_CAMELLIA_256_CBC_SHA384",
    0xC076: "TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256",
    0xC077: "TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384",
    0xC078: "TLS_ECDH_RSA_WITH_CAMELLIA_128_CBC_SHA256",
    0xC079: "TLS_ECDH_RSA_WITH_CAMELLIA_256_CBC_SHA384",
    0xC07A: "TLS_RSA_WITH_CAMELLIA_128_GCM_SHA256",
    0xC07B: "TLS_RSA_WITH_CAMELLIA_256_GCM_SHA384",
    0xC07C: "TLS_DHE_RSA_WITH_CAMELLIA_128_GCM_SHA256",
    0xC07D: "TLS_DHE_RSA_WITH_CAMELLIA_256_GCM_SHA384",
    0xC07E: "TLS_DH_RSA_WITH_CAMELLIA_128_GCM_SHA256",
    0xC07F: "TLS_DH_RSA_WITH_CAMELLIA_256_GCM_SHA384",
    0xC080: "TLS_DHE_DSS_WITH_CAMELLIA_128_GCM_SHA256",
    0xC081: "TLS_DHE_DSS_WITH_CAMELLIA_256_GCM_SHA384",
    0xC082: "TLS_DH_DSS_WITH_CAMELLIA_128_GCM_SHA256",
    0xC083: "TLS_DH_DSS_WITH_CAMELLIA_256_GCM_SHA384",
    0xC084: "TLS_DH_anon_WITH_CAMELLIA_128_GCM_SHA256",
    0xC085: "TLS_DH_anon_WITH_CAMELLIA_256_GCM_SHA384",
    0xC086: "TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_GCM_SHA256",
    0xC087: "TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_GCM_SHA384",
    0xC088: "TLS_ECDH_ECDSA_WITH_CAMELLIA_128_GCM_SHA256",
    0xC089: "TLS_ECDH_ECDSA_WITH_CAMELLIA_256_GCM_SHA384",
    0xC08A: "TLS_ECDHE_RSA_WITH_CAMELLIA_128_GCM_SHA256",
    0xC08B: "TLS_ECDHE_RSA_WITH_CAMELLIA_256_GCM_SHA384",
    0xC08C: "TLS_ECDH_RSA_WITH_CAMELLIA_128_GCM_SHA256",
    0xC08D: "TLS_ECDH_RSA_WITH_CAMELLIA_256_GCM_SHA384",
    0xC08E: "TLS_PSK_WITH_CAMELLIA_128_GCM_SHA256",
    0xC08F: "TLS_PSK_WITH_CAMELLIA_256_GCM_SHA384",
    0xC090: "TLS_DHE_PSK_WITH_CAMELLIA_128_GCM_SHA256",
    0xC091: "TLS_DHE_PSK_WITH_CAMELLIA_256_GCM_SHA384",
    0xC092: "TLS_RSA_PSK_WITH_CAMELLIA_128_GCM_SHA256",
    0xC093: "TLS_RSA_PSK_WITH_CAMELLIA_256_GCM_SHA384",
    0xC094: "TLS_PSK_WITH_CAMELLIA_128_CBC_SHA256",
    0xC095: "TLS_PSK_WITH_CAMELLIA_256_CBC_SHA384",
    0xC096: "TLS_DHE_PSK_WITH_CAMELLIA_128_CBC_SHA256",
    0xC097: "TLS_DHE_PSK_WITH_CAMELLIA_256_CBC_SHA384",
    0xC098: "TLS_RSA_PSK_WITH_CAMELLIA_128_CBC_SHA256",
    0xC099: "TLS_RSA_PSK_WITH_CAMELLIA_256_CBC_SHA384",
    0xC09A: "TLS_ECDHE_PSK_WITH_CAMELLIA_128_CBC_SHA256",
    0xC09B: "TLS_ECDHE_PSK_WITH_CAMELLIA_256_CBC_SHA384",
    0xC09C: "TLS_RSA_WITH_AES_128_CCM",
    0xC09D: "TLS_RSA_WITH_AES_256_CCM",
    0xC09E: "TLS_DHE_RSA_WITH_AES_128_CCM",
    0xC09F: "TLS_DHE_RSA_WITH_AES_256_CCM",
    0xC0A0: "TLS_RSA_WITH_AES_128_CCM_8",
    0xC0A1: "TLS_RSA_WITH_AES_256_CCM_8",
    0xC0A2: "TLS_DHE_RSA_WITH_AES_128_CCM_8",
    0xC0A3: "TLS_DHE_RSA_WITH_AES_256_CCM_8",
    0xC0A4: "TLS_PSK_WITH_AES_128_CCM",
    0xC0A5: "TLS_PSK_WITH_AES_256_CCM",
    0xC0A6: "TLS_DHE_PSK_WITH_AES_128_CCM",
    0xC0A7: "TLS_DHE_PSK_WITH_AES_256_CCM",
    0xC0A8: "TLS_PSK_WITH_AES_128_CCM_8",
    0xC0A9: "TLS_PSK_WITH_AES_256_CCM_8",
    0xC0AA: "TLS_PSK_DHE_WITH_AES_128_CCM_8",
    0xC0AB: "TLS_PSK_DHE_WITH_AES_256_CCM_8",
    0xC0AC: "TLS_ECDHE_ECDSA_WITH_AES_128_CCM",
    0xC0AD: "TLS_ECDHE_ECDSA_WITH_AES_256_CCM",
    0xC0AE: "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
    0xC0AF: "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8",
    0xC0B4: "TLS_SHA256_SHA256",
    0xC0B5: "TLS_SHA384_SHA384",
    0xCC13: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256_OLD",
    0xCC14: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256_OLD",
    0xCC15: "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256_OLD",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAA: "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAB: "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAC: "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAD: "TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAE: "TLS_RSA_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xD001: "TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256",
    0xD002: "TLS_ECDHE_PSK_WITH_AES_256_GCM_SHA384",
    0xD003: "TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256",
    0xD005: "TLS_ECDHE_PSK_WITH_AES_128_CCM_SHA256",
    0x010080: "SSL_CK_RC4_128_WITH_MD5",
    0x020080: "SSL_CK_RC4_128_EXPORT40_WITH_MD5",
    0x030080: "SSL_CK_RC2_128_CBC_WITH_MD5",
    0x040080: "SSL_CK_RC2_128_CBC_EXPORT40_WITH_MD5",
    0x050080: "SSL_CK_IDEA_128_CBC_WITH_MD5",
    0x060040: "SSL_CK_DES_64_CBC_WITH_MD5",
    0x0700C0: "SSL_CK_DES_192_EDE3_CBC_WITH_MD5",
}


def _class_of(name: str) -> str:
    """Class of a suite from its registry name. Order matters: the failing properties win over the cipher
    mode (an anonymous AES-GCM suite is "anon"; an export RC4 suite is "export")."""
    if "_WITH_NULL" in name or name in ("TLS_SHA256_SHA256", "TLS_SHA384_SHA384"):
        return "null"  # no encryption (RFC 9150 integrity-only suites included)
    if "EXPORT" in name:
        return "export"
    if "_anon_" in name:
        return "anon"
    if "RC4" in name:
        return "rc4"
    if "3DES" in name or "EDE3" in name:
        return "3des"
    if "_DES_" in name:
        return "des"
    if "GCM" in name or "CCM" in name or "CHACHA20_POLY1305" in name:
        return "aead"
    if "CBC" in name:
        return "cbc"
    return "unknown"


_CIPHER_SUITE_CLASSES = {suite: _class_of(name) for suite, name in _CIPHER_SUITE_NAMES.items()}


def cipher_suite_name(suite: int) -> str:
    name = _CIPHER_SUITE_NAMES.get(suite)
    return name if name is not None else f"0x{suite:04x}"


def cipher_suite_class(suite: int) -> str:
    """One of "aead", "cbc", "rc4", "null", "export", "anon", "des", "3des", "unknown"."""
    return _CIPHER_SUITE_CLASSES.get(suite, "unknown")


# ---------------------------------------------------------------------------------------------------------
# One direction of a stream

# How the stream is framed so far.
_START_FRAMING = 1  # nothing read yet
_TLS_FRAMING = 2
_SSLV2_FRAMING = 3  # began with an SSLv2-format hello; TLS records may still follow (a TLS server answered)

# What to do with the body of the record being read.
_HANDSHAKE_BODY = 1  # cleartext handshake bytes: reassembled into messages
_ENCRYPTED_BODY = 2  # skipped, counted as an encrypted record
_OPAQUE_BODY = 3  # skipped, not counted: cleartext heartbeats, SSLv2 records after the hellos


def _offers_tls13(hello: ClientHello) -> bool:
    return any(_normalized_version(v) == _TLS13 for v in hello.supported_versions)


def _starts_client_hello(body_start: bytes | bytearray) -> bool:
    """The first 6 bytes of a handshake record hold a ClientHello header (type 1, length below 64 KiB) and
    the legacy version 0x0303 of every TLS 1.3 ClientHello: ciphertext matches by chance 1 in 2^32."""
    return body_start[0] == _HS_CLIENT_HELLO and body_start[1] == 0 and body_start[4:6] == b"\x03\x03"


# The state of a direction before its first byte, shared by all parsers.
_NOTHING_SEEN = TlsDirectionState(
    client_hellos=(),
    server_hellos=(),
    certificates=(),
    handshake_types=(),
    change_cipher_spec=False,
    encrypted_records=0,
    alerts=(),
    record_versions=(),
    bytes_parsed=0,
    truncated_certificate=False,
)


class TlsStreamParser:
    """Incremental parser of one direction, fed contiguous stream bytes (from the first TLS byte).

    Bodies of encrypted records are skipped as they arrive; between feeds only the start of an unfinished
    record (its header and a few body bytes, or an SSLv2 hello) and an unfinished cleartext handshake message
    are kept.
    """

    __slots__ = (
        "_alerts",
        "_body",
        "_body_left",
        "_buf",
        "_bytes_parsed",
        "_certificates",
        "_change_cipher_spec",
        "_client_hellos",
        "_encrypted",
        "_encrypted_records",
        "_failure",
        "_framing",
        "_handshake",
        "_handshake_types",
        "_is_server",
        "_record_end",
        "_record_versions",
        "_server_hellos",
        "_snapshot",
    )

    def __init__(self, *, is_server: bool) -> None:
        self._is_server = is_server
        self._failure: str | None = None
        self._framing = _START_FRAMING
        self._buf = bytearray()  # received bytes not yet consumed
        self._body_left = 0  # bytes of the current record's body still to come
        self._body = _OPAQUE_BODY
        self._record_end = 0  # stream offset where the current record ends
        self._handshake = bytearray()  # cleartext handshake bytes not yet forming a whole message
        # Handshake and alert records of this direction are ciphertext from now on.
        self._encrypted = False
        self._client_hellos: list[ClientHello] = []
        self._server_hellos: list[ServerHello] = []
        self._certificates: tuple[bytes, ...] | None = None
        self._handshake_types: list[int] = []
        self._change_cipher_spec = False
        self._encrypted_records = 0
        self._alerts: list[tuple[int, int]] = []
        self._record_versions: list[int] = []
        self._bytes_parsed = 0
        self._snapshot: TlsDirectionState | None = _NOTHING_SEEN

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the stream; raises ParseError (now and on every later feed) if not TLS."""
        if self._failure is not None:
            raise ParseError(f"stream already rejected: {self._failure}")
        if not data:
            return
        self._snapshot = None
        try:
            self._consume(data)
        except ParseError as exc:
            self._failure = str(exc)
            raise

    def state(self) -> TlsDirectionState:
        if self._snapshot is None:
            self._snapshot = TlsDirectionState(
                client_hellos=tuple(self._client_hellos),
                server_hellos=tuple(self._server_hellos),
                certificates=self._certificates or (),
                handshake_types=tuple(self._handshake_types),
                change_cipher_spec=self._change_cipher_spec,
                encrypted_records=self._encrypted_records,
                alerts=tuple(self._alerts),
                record_versions=tuple(self._record_versions),
                bytes_parsed=self._bytes_parsed,
                truncated_certificate=len(self._handshake) > 0 and self._handshake[0] == _HS_CERTIFICATE,
            )
        return self._snapshot

    # -- records ------------------------------------------------------------------------------------------

    def _consume(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        end = len(buf)
        pos = 0
        while pos < end:
            if self._body_left:
                pos = self._continue_body(buf, pos)
                continue
            next_pos = self._start_record(buf, pos)
            if next_pos is None:
                break
            pos = next_pos
        del buf[:pos]

    def _continue_body(self, buf: bytearray, pos: int) -> int:
        """Take what ``buf`` holds of the rest of the current record's body; return where that ends."""
        count = min(self._body_left, len(buf) - pos)
        self._body_left -= count
        if self._body == _HANDSHAKE_BODY:
            self._handshake += buf[pos : pos + count]
            self._read_handshake_messages()
        if not self._body_left:
            self._end_record()
        return pos + count

    def _end_record(self) -> None:
        if self._body == _ENCRYPTED_BODY:
            self._encrypted_records += 1
        self._bytes_parsed = self._record_end

    def _begin_body(self, body: int, header_length: int, length: int, buf: bytearray, pos: int) -> int:
        """Start the body of the record at ``pos``, all of it at once if ``buf`` holds it; return how far that
        got."""
        body_start = pos + header_length
        body_end = body_start + length
        self._body = body
        self._record_end = self._bytes_parsed + header_length + length
        if body_end > len(buf):  # the rest comes in later feeds
            self._body_left = length
            return body_start
        # The whole record is here (the usual case): no need to go through _continue_body.
        if body == _HANDSHAKE_BODY:
            self._handshake += buf[body_start:body_end]
            self._read_handshake_messages()
        elif body == _ENCRYPTED_BODY:
            self._encrypted_records += 1
        self._bytes_parsed = self._record_end
        return body_end

    def _start_record(self, buf: bytearray, pos: int) -> int | None:
        """Read the record starting at ``pos``; return how far that got, None if it needs more bytes first."""
        if self._framing == _START_FRAMING:
            if buf[pos] & 0x80:
                return self._read_sslv2_hello(buf)
            self._framing = _TLS_FRAMING
        elif self._framing == _SSLV2_FRAMING:
            if len(buf) - pos < 3:
                return None
            if not _looks_like_record_start(buf, pos):
                return self._start_sslv2_record(buf, pos)
            self._framing = _TLS_FRAMING

        if len(buf) - pos < _RECORD_HEADER_LENGTH:
            return None
        content_type = buf[pos]
        version = buf[pos + 1] << 8 | buf[pos + 2]
        length = buf[pos + 3] << 8 | buf[pos + 4]
        # The checks of parse_record_header, inline on this hot path; it says what is wrong.
        if not (
            CONTENT_CHANGE_CIPHER_SPEC <= content_type <= CONTENT_HEARTBEAT
            and 0x0300 <= version <= 0x0304
            and length <= _MAX_RECORD_LENGTH
            and (length or content_type == CONTENT_APPLICATION_DATA)
        ):
            parse_record_header(buf, pos)
        if version not in self._record_versions:
            self._record_versions.append(version)
        body_start = pos + _RECORD_HEADER_LENGTH

        if content_type == CONTENT_APPLICATION_DATA:
            # An empty record encrypts nothing (RFC 5246 allows it as traffic-analysis padding).
            return self._begin_body(
                _ENCRYPTED_BODY if length else _OPAQUE_BODY, _RECORD_HEADER_LENGTH, length, buf, pos
            )
        if content_type == CONTENT_HEARTBEAT:
            return self._begin_body(
                _ENCRYPTED_BODY if self._encrypted else _OPAQUE_BODY, _RECORD_HEADER_LENGTH, length, buf, pos
            )
        if content_type == CONTENT_CHANGE_CIPHER_SPEC:
            if length != 1:
                if not self._encrypted:
                    raise ParseError(f"ChangeCipherSpec record of {length} bytes")
                return self._begin_body(_ENCRYPTED_BODY, _RECORD_HEADER_LENGTH, length, buf, pos)
            if len(buf) < body_start + 1:
                return None
            self._change_cipher_spec_received(buf[body_start])
            self._bytes_parsed += _RECORD_HEADER_LENGTH + 1
            return body_start + 1
        if content_type == CONTENT_ALERT:
            # A cleartext alert is exactly level and description; anything longer carries a MAC or tag.
            if self._encrypted or length != 2:
                return self._begin_body(_ENCRYPTED_BODY, _RECORD_HEADER_LENGTH, length, buf, pos)
            if len(buf) < body_start + 2:
                return None
            self._alerts.append((buf[body_start], buf[body_start + 1]))
            self._bytes_parsed += _RECORD_HEADER_LENGTH + 2
            return body_start + 2
        # handshake
        if not self._encrypted:
            return self._begin_body(_HANDSHAKE_BODY, _RECORD_HEADER_LENGTH, length, buf, pos)
        if self._second_client_hello_possible():
            if self._handshake:  # the rest of a second ClientHello already recognised
                return self._begin_body(_HANDSHAKE_BODY, _RECORD_HEADER_LENGTH, length, buf, pos)
            if length >= 6:
                if len(buf) < body_start + 6:
                    return None
                if _starts_client_hello(buf[body_start : body_start + 6]):
                    return self._begin_body(_HANDSHAKE_BODY, _RECORD_HEADER_LENGTH, length, buf, pos)
        return self._begin_body(_ENCRYPTED_BODY, _RECORD_HEADER_LENGTH, length, buf, pos)

    def _second_client_hello_possible(self) -> bool:
        """A TLS 1.3 client may send its compatibility ChangeCipherSpec before the ClientHello that answers a
        HelloRetryRequest (RFC 8446 D.4), so a handshake record after it can still be cleartext. A TLS 1.2
        client's Finished after its ChangeCipherSpec is ciphertext: the two are told apart by content."""
        return not self._is_server and len(self._client_hellos) == 1 and _offers_tls13(self._client_hellos[0])

    def _change_cipher_spec_received(self, value: int) -> None:
        if value != 1:
            raise ParseError(f"ChangeCipherSpec value {value}")
        if self._handshake:
            raise ParseError("ChangeCipherSpec inside a fragmented handshake message")
        self._change_cipher_spec = True
        # After a HelloRetryRequest, a TLS 1.3 server's compatibility ChangeCipherSpec is followed by the real
        # ServerHello in cleartext (RFC 8446 D.4).
        if not (self._server_hellos and all(h.is_hello_retry_request for h in self._server_hellos)):
            self._encrypted = True

    # -- SSLv2 --------------------------------------------------------------------------------------------

    def _read_sslv2_hello(self, buf: bytearray) -> int | None:
        """The first record of a direction that begins in SSLv2 format (``buf`` holds the stream start)."""
        length = _sslv2_record_length(buf)
        if length is None:
            return None
        if self._is_server:
            if len(buf) < 2 + length:
                return None
            message_type = buf[2] if length else None
            if message_type == _SSL2_SERVER_HELLO:
                certificate = _parse_sslv2_server_hello(bytes(buf[3 : 2 + length]))
                self._certificates = (certificate,) if certificate else ()
            elif message_type != _SSL2_ERROR:
                raise ParseError(f"SSLv2 server message type {message_type} is not SERVER-HELLO or ERROR")
        else:
            hello = parse_sslv2_client_hello(buf)
            if hello is None:
                return None
            self._client_hellos.append(hello)
            self._handshake_types.append(_HS_CLIENT_HELLO)
        self._framing = _SSLV2_FRAMING
        self._record_versions.append(_SSL2)
        self._bytes_parsed = 2 + length
        return 2 + length

    def _start_sslv2_record(self, buf: bytearray, pos: int) -> int | None:
        """An SSLv2 record after the hellos: 2-byte header (high bit set) or 3-byte header with padding."""
        if buf[pos] & 0x80:
            header_length, length = 2, (buf[pos] & 0x7F) << 8 | buf[pos + 1]
        else:
            header_length, length = 3, (buf[pos] & 0x3F) << 8 | buf[pos + 1]
        if not length:
            raise ParseError("empty SSLv2 record")
        return self._begin_body(_OPAQUE_BODY, header_length, length, buf, pos)

    # -- handshake messages -------------------------------------------------------------------------------

    def _read_handshake_messages(self) -> None:
        data = self._handshake
        pos = 0
        while len(data) - pos >= 4:
            message_type = data[pos]
            if message_type not in _HANDSHAKE_TYPES:
                raise ParseError(f"handshake message type {message_type} is not TLS")
            end = pos + 4 + (data[pos + 1] << 16 | data[pos + 2] << 8 | data[pos + 3])
            if len(data) < end:
                break
            body = bytes(data[pos + 4 : end])
            pos = end
            self._handshake_message(message_type, body)
            if self._encrypted and (pos < len(data) or self._body_left):
                raise ParseError("cleartext handshake data after a TLS 1.3 ServerHello in the same record")
        del data[:pos]

    def _handshake_message(self, message_type: int, body: bytes) -> None:
        self._handshake_types.append(message_type)
        if message_type == _HS_CLIENT_HELLO and not self._is_server:
            self._client_hellos.append(parse_client_hello(body))
        elif message_type == _HS_SERVER_HELLO and self._is_server:
            hello = parse_server_hello(body)
            self._server_hellos.append(hello)
            # TLS 1.3 encrypts everything after the ServerHello.
            if not hello.is_hello_retry_request and hello.negotiated_version == _TLS13:
                self._encrypted = True
        elif message_type == _HS_CERTIFICATE:
            certificates = parse_certificate(body, tls13=False)
            if self._certificates is None:
                self._certificates = certificates
