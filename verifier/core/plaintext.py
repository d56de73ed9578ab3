"""Identify cleartext application protocols, SSH, and STARTTLS-style upgrades from the first bytes of a flow.

``identify(client, server, more_coming=...)`` looks at the first bytes of both directions of one TCP
connection and answers ``None`` (more bytes could change the answer), ``Identified`` or ``Unidentified``.

How the answer is reached:

- Each direction goes through its own signature checks (client: requests; server: greetings and replies).
  A check says "this protocol" only on complete, self-consistent structure (a whole request line, a whole
  startup packet, a header with exact magic numbers and sane lengths), "not this protocol", or "wait".
  Checks are monotone: appending bytes never turns a "not this protocol" into a match or a match into
  anything else, so an answer given on a prefix (``more_coming=True``) is the answer for the whole flow.
- The client's bytes decide. The server's bytes count when the client's match no protocol (or are absent
  and the flow is over); while the client's bytes could still match one, a server-side match waits.
- SSH counts only when every side that sent bytes sent an SSH identification line (RFC 4253 4.2) followed
  by a KEXINIT packet: any cleartext protocol in the other direction wins, since calling a flow that carried
  cleartext "encrypted" is the one mistake this tool must not make. For the same reason SSH is not called
  encrypted when the KEXINITs negotiate the "none" cipher, or one side offers it and the other's is unseen.
- A protocol that can switch to TLS is followed until the server accepts or refuses the switch, or the client
  goes on in cleartext. ``Upgrade`` says where TLS must begin; the caller checks that it does. When only one
  direction was captured, a client that sends a TLS handshake record right after its request (or a server
  that does so right after its acceptance) counts as the switch.
- Generic text, when no protocol matched: a direction is text when at least 95% of the characters of its
  first 512 bytes (decoded as UTF-8; tab, CR and LF count as printable) are printable and it has at least
  16 bytes. Random or encrypted bytes are about 38% printable ASCII, and 16 of them all come out printable
  with a probability of about 2e-7; 95% still tolerates a few control bytes in a line protocol, while
  length-prefixed binary records (e.g. one NUL in every 8 bytes) stay "unidentified". 512 bytes is enough to
  see past a binary header and cheap to decode.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Final, Literal, TypeAlias


@dataclass(frozen=True, slots=True)
class Upgrade:
    """A cleartext protocol negotiated a switch to TLS; TLS (should) begin at these stream offsets."""

    protocol: str  # "pgsql", "mysql", "smtp", "imap", "pop3", "http" (a CONNECT tunnel)
    client_offset: int  # offset in the client stream where the client's TLS bytes begin
    server_offset: int  # offset in the server stream where the server's TLS bytes begin


@dataclass(frozen=True, slots=True)
class Identified:
    protocol: str  # "http", "h2c", "pgsql", "mysql", "resp", "mongodb", "smtp", "imap", "pop3", "ssh", "text"
    encrypted: bool  # True only for "ssh", and not when its cipher is (or may be) "none"
    evidence: str  # short human text; bytes shown are escaped (they are attacker-controlled)
    upgrade: Upgrade | None  # set only when the switch to TLS was accepted (or, for MySQL, requested)

    # Written out: compiled, the generated one would run interpreted (tests/test_dataclasses.py).
    def __init__(self, protocol: str, encrypted: bool, evidence: str, upgrade: Upgrade | None) -> None:
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "encrypted", encrypted)
        object.__setattr__(self, "evidence", evidence)
        object.__setattr__(self, "upgrade", upgrade)


@dataclass(frozen=True, slots=True)
class Unidentified:
    reason: str

    # Written out: compiled, the generated one would run interpreted (tests/test_dataclasses.py).
    def __init__(self, reason: str) -> None:
        object.__setattr__(self, "reason", reason)


@dataclass(frozen=True, slots=True)
class _Hit:
    """One direction's bytes are, with certainty, this protocol."""

    protocol: str
    evidence: str

    # Written out: compiled, the generated one would run interpreted (tests/test_dataclasses.py).
    def __init__(self, protocol: str, evidence: str) -> None:
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "evidence", evidence)


# A signature check's answer: a hit, False (ruled out whatever bytes follow), or None (wait for more bytes).
_Verdict: TypeAlias = "_Hit | Literal[False] | None"
# What a protocol's upgrade follow-up adds: the upgrade (if any) and a note for the evidence.
_Outcome: TypeAlias = "tuple[Upgrade | None, str]"

_MAX_EVIDENCE: Final = 120
_PRINTABLE: Final = bytes(range(0x20, 0x7F))
_TEXT_BYTES: Final = _PRINTABLE + b"\t\r\n"
_HIGH_BYTES: Final = bytes(range(0x80, 0x100))
_SHOW_ESCAPES: Final = {b: f"\\x{b:02x}" for b in (*range(0x20), *range(0x7F, 0x100))} | {
    0x09: "\\t",
    0x0A: "\\n",
    0x0D: "\\r",
    0x5C: "\\\\",
}
_DIGITS_AS_ZERO: Final = bytes.maketrans(b"0123456789", b"0000000000")


# -- small helpers -----------------------------------------------------------------------------------------


def _show(data: bytes, limit: int = 48) -> str:
    """Bytes as printable ASCII: control and non-ASCII bytes escaped, long input cut."""
    shown = data[:limit].decode("latin-1").translate(_SHOW_ESCAPES)
    return shown + "..." if len(data) > limit else shown


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_EVIDENCE else text[: _MAX_EVIDENCE - 3] + "..."


def _printable(data: bytes) -> bool:
    """Printable ASCII only (tokens, request lines)."""
    return not data.translate(None, _PRINTABLE)


def _maybe_text(data: bytes) -> bool:
    """Could be the start of text: printable ASCII, whitespace, or bytes of (possibly cut) UTF-8 sequences."""
    rest = data.translate(None, _TEXT_BYTES)
    return not rest or min(rest) >= 0x80


def _is_text(data: bytes) -> bool:
    """Complete text: printable ASCII, whitespace and valid UTF-8."""
    rest = data.translate(None, _TEXT_BYTES)
    if not rest:
        return True
    if min(rest) < 0x80:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _starts(data: bytes, literal: bytes, final: bool) -> bool | None:
    """Whether data starts with literal; None while data is a shorter prefix of it and more may come."""
    if data.startswith(literal):
        return True
    if not final and literal.startswith(data):
        return None
    return False


def _starts_any(data: bytes, literals: Iterable[bytes], final: bool) -> bytes | Literal[False] | None:
    """The literal data starts with; None while data could still grow into one of them."""
    waiting = False
    for literal in literals:
        found = _starts(data, literal, final)
        if found:
            return literal
        waiting = waiting or found is None
    return None if waiting else False


def _line_at(data: bytes, pos: int, limit: int) -> tuple[bytes, int] | Literal[False] | None:
    """The line at pos (without its CR LF or LF) and the offset after it; False if none ends within limit."""
    newline = data.find(b"\n", pos, pos + limit)
    if newline < 0:
        return False if len(data) - pos >= limit else None
    line = data[pos:newline]
    return line.removesuffix(b"\r"), newline + 1


def _text_line(data: bytes, final: bool, limit: int = 1024) -> bytes | Literal[False] | None:
    """The first line of data, if it is text."""
    got = _line_at(data, 0, limit)
    if got is None:
        return None if not final and _maybe_text(data) else False
    if got is False or not _is_text(got[0]):
        return False
    return got[0]


def _tls_handshake_at(data: bytes, pos: int) -> bool:
    """A TLS handshake record header (content type 22, version 3.0-3.4) starts at pos."""
    return data[pos : pos + 2] == b"\x16\x03" and len(data) > pos + 2 and data[pos + 2] <= 4


def _tls_follows(data: bytes, pos: int, final: bool) -> bool | None:
    if len(data) >= pos + 3:
        return _tls_handshake_at(data, pos)
    return None if not final and b"\x16\x03".startswith(data[pos : pos + 2]) else False


# -- HTTP/1.x and h2c --------------------------------------------------------------------------------------

_HTTP_METHODS: Final = frozenset(
    {b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH"}
)
_HTTP_METHOD_STARTS: Final = frozenset(m[:i] for m in _HTTP_METHODS for i in range(len(m) + 1))
_MAX_REQUEST_LINE: Final = 8192
_MAX_HEADERS: Final = 16384
_H2C_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _http_request(data: bytes, final: bool) -> _Verdict:
    space = data.find(b" ", 0, 8)
    if space < 0:
        return None if not final and data in _HTTP_METHOD_STARTS else False
    if data[:space] not in _HTTP_METHODS:
        return False
    got = _line_at(data, 0, _MAX_REQUEST_LINE)
    if got is False:
        return False
    if got is None:
        rest = data[space + 1 :].removesuffix(b"\r")
        if not _printable(rest):
            return False
        if not final:
            return None
        # The capture ends inside the request line.
        return _Hit("http", f'client sent "{_show(data, 60)}" (request line cut short)') if rest else False
    line = got[0]
    parts = line.split(b" ")
    if len(parts) != 3:
        return False
    target, version = parts[1], parts[2]
    if not (target and _printable(target) and len(version) == 8 and version.startswith(b"HTTP/1.")):
        return False
    if not version[7:].isdigit():
        return False
    return _Hit("http", f'client sent "{_show(line, 80)}"')


# "Not that" for the parsers below that return an int: False would be an int too (0), and compiled code
# (mypyc) cannot tell the two apart.
_NO_INT: Final = -1


def _http_status(data: bytes, final: bool) -> int | None:
    """The status code of an HTTP/1.x status line at the start of data; _NO_INT if it is not one."""
    found = _starts(data, b"HTTP/1.", final)
    if found is None:
        return None
    if not found:
        return _NO_INT
    # minor version digit, space, three-digit code, then a space or the end of the line
    shape = data[7:13].translate(_DIGITS_AS_ZERO)
    if shape[5:] in (b"\r", b"\n"):
        shape = shape[:5] + b" "
    if not b"0 000 ".startswith(shape):
        return _NO_INT
    if len(shape) < 6 and (not final or len(shape) < 5):
        return None if not final else _NO_INT
    return int(data[9:12])


def _http_response(data: bytes, final: bool) -> _Verdict:
    status = _http_status(data, final)
    if status is None:
        return None
    if status == _NO_INT:
        return False
    return _Hit("http", f"server sent an HTTP/1.{chr(data[7])} response, status {status}")


def _h2c(data: bytes, final: bool) -> _Verdict:
    found = _starts(data, _H2C_PREFACE, final)
    if found is not True:
        return found
    return _Hit("h2c", "client sent the HTTP/2 connection preface in cleartext (prior knowledge)")


def _http_upgrade(client: bytes, server: bytes, final: bool) -> _Outcome | None:
    """A CONNECT tunnel through a proxy: TLS begins after the request's and the 2xx answer's header blocks."""
    if not client.startswith(b"CONNECT "):
        return None, ""
    head_end = client.find(b"\r\n\r\n", 0, _MAX_HEADERS)
    if head_end < 0:
        return None if not final and len(client) < _MAX_HEADERS else (None, "")
    client_end = head_end + 4
    if not server:
        if not final:
            return None
        if _tls_handshake_at(client, client_end):
            return Upgrade("http", client_end, 0), "TLS in the tunnel (proxy side not captured)"
        return None, "no proxy answer seen"
    status = _http_status(server, final)
    if status == _NO_INT:
        return None, "proxy answer unreadable"
    answer_end = server.find(b"\r\n\r\n", 0, _MAX_HEADERS)
    if status is None or answer_end < 0:
        return None if not final and len(server) < _MAX_HEADERS else (None, "no complete proxy answer seen")
    if not 200 <= status < 300:
        return None, f"proxy refused the tunnel ({status})"
    return Upgrade("http", client_end, answer_end + 4), f"proxy opened the tunnel ({status})"


# -- SSH ---------------------------------------------------------------------------------------------------

_SSH_VERSIONS: Final = frozenset({b"2.0", b"1.99"})
_SSH_MAX_LINE: Final = 255  # RFC 4253 4.2, including CR LF
_SSH_MAX_PRELUDE: Final = 512  # text lines a server may send before its identification line (as _TEXT_WINDOW)
_SSH_MAX_PACKET: Final = 35000  # RFC 4253 6.1: the packet size every implementation must handle
_SSH_MSG_KEXINIT: Final = 20


# The encryption algorithm lists a KEXINIT offers: client to server, server to client.
_Ciphers: TypeAlias = "tuple[list[bytes], list[bytes]]"


def _ssh_hello(data: bytes, final: bool, who: str) -> tuple[bytes, _Ciphers | None] | Literal[False] | None:
    """The identification line and the KEXINIT's cipher offer (None if the capture ends before it)."""
    pos = 0
    while not data.startswith(b"SSH-", pos):
        if not final and b"SSH-".startswith(data[pos : pos + 5]):
            return None
        if who == "client" or pos >= _SSH_MAX_PRELUDE:
            return False
        # RFC 4253 4.2: the server may send other lines of text before its identification line.
        got = _line_at(data, pos, _SSH_MAX_PRELUDE - pos)
        if got is None:
            return None if not final and _maybe_text(data[pos:]) else False
        if got is False or not _is_text(got[0]):
            return False
        pos = got[1]
    got = _line_at(data, pos, _SSH_MAX_LINE)
    if got is None:
        return None if not final and _printable(data[pos:].removesuffix(b"\r")) else False
    if got is False:
        return False
    line, end = got
    fields = line.split(b"-", 2)
    if len(fields) < 3 or fields[1] not in _SSH_VERSIONS or not _printable(line):
        return False
    ciphers = _ssh_ciphers(data, end)
    if ciphers is False or (ciphers is None and not final):
        return ciphers
    return line, ciphers


def _ssh_ciphers(data: bytes, start: int) -> _Ciphers | Literal[False] | None:
    """The cipher offer of the KEXINIT packet that must follow the identification line (RFC 4253 7.1):
    length, padding length, message code, 16-byte cookie, then name-lists (kex, host key, ciphers...)."""
    header = data[start : start + 6]
    if len(header) < 6:
        return None
    length, padding, message = int.from_bytes(header[:4]), header[4], header[5]
    if not (16 <= length <= _SSH_MAX_PACKET and 4 <= padding < length and message == _SSH_MSG_KEXINIT):
        return False
    end, pos = start + 4 + length - padding, start + 6 + 16
    lists = []
    for _ in range(4):
        if pos + 4 > end:
            return False
        if len(data) < pos + 4:
            return None
        size = int.from_bytes(data[pos : pos + 4])
        pos += 4
        if pos + size > end:
            return False
        if len(data) < pos + size:
            return None
        lists.append(data[pos : pos + size])
        pos += size
    if not (_printable(lists[2]) and _printable(lists[3])):
        return False
    return lists[2].split(b","), lists[3].split(b",")


def _ssh(data: bytes, final: bool, who: str) -> _Verdict:
    hello = _ssh_hello(data, final, who)
    if hello is None or hello is False:
        return hello
    return _Hit("ssh", f'{who} sent "{_show(hello[0], 40)}"')


def _ssh_identified(client: bytes, server: bytes, evidence: str) -> Identified:
    """SSH on every side that sent bytes: encrypted unless the cipher is (or may be) "none"."""
    offers = []
    for data, who in ((client, "client"), (server, "server")):
        hello = _ssh_hello(data, True, who) if data else None
        offers.append(hello[1] if hello else None)
    client_offer, server_offer = offers
    note = ""
    if client_offer is not None and server_offer is not None:
        # RFC 4253 7.1: the first cipher on the client's list that is also on the server's, per direction
        chosen = [
            next((c for c in mine if c in theirs), None)
            for mine, theirs in zip(client_offer, server_offer, strict=True)
        ]
        if None in chosen:
            note = "no cipher in common, so no encrypted channel"
        elif b"none" in chosen:
            note = 'cipher "none" negotiated'
    elif any(b"none" in names for offer in offers if offer is not None for names in offer):
        note = 'cipher "none" offered; the other side\'s KEXINIT was not seen'
    return Identified("ssh", not note, _clip(f"{note}; {evidence}" if note else evidence), None)


# -- PostgreSQL --------------------------------------------------------------------------------------------

_PG_SSL_REQUEST: Final = bytes.fromhex("0000000804d2162f")  # length 8, request code 80877103
_PG_GSSENC_REQUEST: Final = bytes.fromhex("0000000804d21630")  # length 8, request code 80877104
_PG_CANCEL_CODE: Final = 80877102
_PG_MAX_STARTUP: Final = 10000  # the server rejects longer startup packets
_PG_MAX_MESSAGE: Final = 1 << 20
_PG_BACKEND_NAMES: Final = {
    ord("R"): "Authentication",
    ord("S"): "ParameterStatus",
    ord("K"): "BackendKeyData",
    ord("Z"): "ReadyForQuery",
    ord("E"): "ErrorResponse",
    ord("N"): "NoticeResponse",
    ord("C"): "CommandComplete",
    ord("T"): "RowDescription",
    ord("D"): "DataRow",
    ord("I"): "EmptyQueryResponse",
    ord("1"): "ParseComplete",
    ord("2"): "BindComplete",
    ord("3"): "CloseComplete",
    ord("n"): "NoData",
    ord("s"): "PortalSuspended",
    ord("c"): "CopyDone",
    ord("t"): "ParameterDescription",
    ord("v"): "NegotiateProtocolVersion",
    ord("A"): "NotificationResponse",
    ord("G"): "CopyInResponse",
    ord("H"): "CopyOutResponse",
    ord("W"): "CopyBothResponse",
    ord("d"): "CopyData",
    ord("V"): "FunctionCallResponse",
}
_PG_BODYLESS: Final = frozenset(b"I123nsc")
# Authentication request codes with a fixed message length; codes 8, 10, 11, 12 carry variable data.
_PG_AUTH_LENGTHS: Final = {0: 8, 2: 8, 3: 8, 5: 12, 7: 8, 9: 8}
_PG_AUTH_VARIABLE: Final = frozenset({8, 10, 11, 12})
_PG_FIELD_CODES: Final = frozenset(b"SVCMDHPpqWstcdnFLR")


def _pgsql_client(data: bytes, final: bool) -> _Verdict:
    if len(data) < 8:
        # Every first message starts with a length below 64 KiB, then a 4-byte code.
        return None if not final and data[:2] == bytes(len(data[:2])) else False
    if data.startswith(_PG_SSL_REQUEST):
        return _Hit("pgsql", "client sent a PostgreSQL SSLRequest")
    if data.startswith(_PG_GSSENC_REQUEST):
        return _Hit("pgsql", "client sent a PostgreSQL GSSENCRequest")
    length, code = struct.unpack_from(">II", data)
    if code == _PG_CANCEL_CODE and 16 <= length <= 268:  # protocol 3.2: secret keys of up to 256 bytes
        return _Hit("pgsql", "client sent a PostgreSQL CancelRequest")
    major, minor = code >> 16, code & 0xFFFF
    if major != 3 or minor > 99 or not 9 <= length <= _PG_MAX_STARTUP:
        return False
    # StartupMessage: name\0value\0 pairs, then \0
    body = data[8:length]
    if len(data) < length:
        if not _maybe_text(body.replace(b"\0", b"")):
            return False
        if not final:
            return None
        return _Hit("pgsql", f"client sent a PostgreSQL StartupMessage (protocol 3.{minor}, cut short)")
    fields = body.split(b"\0")
    if len(fields) % 2 or fields[-2:] != [b"", b""]:
        return False
    names, values = fields[:-2:2], fields[1:-2:2]
    if not all(name and _printable(name) for name in names) or not all(_is_text(v) for v in values):
        return False
    user = dict(zip(names, values, strict=True)).get(b"user")
    user_text = f', user "{_show(user, 32)}"' if user is not None else ""
    return _Hit("pgsql", f"client sent a PostgreSQL StartupMessage (protocol 3.{minor}{user_text})")


def _pg_message(data: bytes, pos: int) -> tuple[bool, int] | Literal[False] | None:
    """Check the backend message at pos: (strong, offset after it). A strong message has enough fixed or
    textual structure to name PostgreSQL on its own; a weak one needs a well-formed successor."""
    header = data[pos : pos + 5]
    if not header:
        return None
    kind = header[0]
    if kind not in _PG_BACKEND_NAMES:
        return False
    if len(header) < 5:
        return None if header[1:2] in (b"", b"\0") else False
    length = int.from_bytes(header[1:5])
    if not 4 <= length <= _PG_MAX_MESSAGE:
        return False
    fixed = 4 if kind in _PG_BODYLESS else 5 if kind == ord("Z") else None
    if (fixed is not None and length != fixed) or (kind == ord("R") and length < 8):
        return False
    if kind == ord("K") and not 12 <= length <= 264:  # protocol 3.2: secret keys of up to 256 bytes
        return False
    end = pos + 1 + length
    if len(data) < end:
        return None
    body = data[pos + 5 : end]
    if kind == ord("R"):
        code = int.from_bytes(body[:4])
        if _PG_AUTH_LENGTHS.get(code) == length:
            return True, end
        if code in _PG_AUTH_VARIABLE and length > 8:
            # AuthenticationSASL lists mechanism names, each NUL-terminated, then a NUL.
            if code == 10 and not (body.endswith(b"\0\0") and _printable(body[4:].replace(b"\0", b""))):
                return False
            return True, end
        return False
    if kind == ord("Z"):
        return (True, end) if body in (b"I", b"T", b"E") else False
    if kind == ord("S"):
        fields = body.split(b"\0")
        ok = (
            len(fields) == 3 and fields[0] and not fields[2] and _printable(fields[0]) and _is_text(fields[1])
        )
        return (True, end) if ok else False
    if kind in (ord("E"), ord("N")):
        fields = body.removesuffix(b"\0").split(b"\0")
        if not body.endswith(b"\0\0") or fields[-1:] != [b""]:
            return False
        ok = all(f and f[0] in _PG_FIELD_CODES and _is_text(f[1:]) for f in fields[:-1])
        return (True, end) if ok and len(fields) > 1 else False
    if kind == ord("C"):
        tag = body.removesuffix(b"\0")
        ok = body.endswith(b"\0") and tag[:1].isupper() and _printable(tag)
        return (True, end) if ok else False
    return False, end


def _pg_backend(data: bytes, pos: int, final: bool, prefix: str) -> _Verdict:
    first = _pg_message(data, pos)
    if first is None or first is False:
        return first if not final else False
    strong, end = first
    name = _PG_BACKEND_NAMES[data[pos]]
    if not strong:
        second = _pg_message(data, end)
        if second is None or second is False:
            return second if not final else False
        name = f"{name} and {_PG_BACKEND_NAMES[data[end]]}"
    return _Hit("pgsql", f"{prefix}server sent PostgreSQL {name}")


def _pgsql_server(data: bytes, final: bool) -> _Verdict:
    as_messages = _pg_backend(data, 0, final, "")
    if as_messages is not False:
        return as_messages
    # A one-byte answer to SSLRequest/GSSENCRequest: 'S' then TLS, or 'N' (refused) then messages or 'S'.
    pos = 1 if data.startswith(b"NS") else 0
    if data[pos : pos + 1] == b"S":
        tls = _tls_follows(data, pos + 1, final)
        if tls is not True:
            return tls
        return _Hit("pgsql", "server accepted PostgreSQL's SSLRequest ('S') and started TLS")
    if data.startswith(b"N"):
        return _pg_backend(data, 1, final, "server refused encryption ('N'), then ")
    return False


def _pgsql_upgrade(client: bytes, server: bytes, final: bool) -> _Outcome | None:
    """Follow SSLRequest / GSSENCRequest and the server's one-byte answers (libpq may try GSS, then TLS)."""
    if not client:
        if not final:
            return None
        pos = 1 if server.startswith(b"NS") else 0
        if server[pos : pos + 1] == b"S" and _tls_handshake_at(server, pos + 1):
            return Upgrade("pgsql", 0, pos + 1), "client side not captured"
        return None, ""
    notes: list[str] = []
    c = s = 0
    while True:
        request = client[c : c + 8]
        if request not in (_PG_SSL_REQUEST, _PG_GSSENC_REQUEST):
            if not final and c and (_PG_SSL_REQUEST.startswith(request)):
                return None
            return None, "; ".join(notes)
        answer = server[s : s + 1]
        if not answer:
            if not final:
                return None
            if not server and request == _PG_SSL_REQUEST and _tls_handshake_at(client, c + 8):
                return Upgrade("pgsql", c + 8, 0), "; ".join(
                    [*notes, "TLS followed (server side not captured)"]
                )
            return None, "; ".join([*notes, "no server answer seen"])
        if request == _PG_SSL_REQUEST:
            if answer == b"S":
                return Upgrade("pgsql", c + 8, s + 1), "; ".join([*notes, "server accepted TLS ('S')"])
            if answer == b"N":
                return None, "; ".join([*notes, "server refused TLS ('N')"])
        else:
            if answer == b"G":
                note = "server accepted GSSAPI encryption ('G'), which is not TLS and not verified here"
                return None, "; ".join([*notes, note])
            if answer == b"N":
                notes.append("server refused GSSAPI encryption ('N')")
                c, s = c + 8, s + 1
                continue
        return None, "; ".join([*notes, f'server answered "{_show(answer)}"'])


# -- MySQL -------------------------------------------------------------------------------------------------

_MYSQL_CLIENT_SSL: Final = 0x0800
_MYSQL_CLIENT_PROTOCOL_41: Final = 0x0200
_MYSQL_SSL_REQUEST_END: Final = 4 + 32  # packet header + SSLRequest payload
_MYSQL_COM_QUERY: Final = 0x03
_MYSQL_CLIENT_SECURE_CONNECTION: Final = 0x8000
_MYSQL_CLIENT_PLUGIN_AUTH: Final = 0x80000


@dataclass(frozen=True, slots=True)
class _MySQLGreeting:
    end: int  # offset after the packet
    fields_end: int  # offset after its last field; differs from end only if the length field is wrong
    version: bytes  # empty for an error packet
    capabilities: int
    error: int | None


def _mysql_greeting(data: bytes) -> _MySQLGreeting | Literal[False] | None:
    """The server's first packet (3-byte length, sequence 0): a protocol 10 greeting or an error packet."""
    if len(data) < 5:
        plausible = (len(data) < 3 or data[2] == 0) and (len(data) < 4 or data[3] == 0)
        return None if plausible else False
    length, kind = int.from_bytes(data[:3], "little"), data[4]
    if data[3] != 0 or not (
        (kind == 0x0A and 18 <= length <= 1024) or (kind == 0xFF and 4 <= length <= 1024)
    ):
        return False
    end = 4 + length
    if len(data) < end:
        return None
    body = data[4:end]
    if kind == 0xFF:
        code, message = int.from_bytes(body[1:3], "little"), body[3:]
        return _MySQLGreeting(end, end, b"", 0, code) if code >= 1000 and _is_text(message) else False
    nul = body.find(b"\0", 1, 66)
    if nul < 2 or not body[1:2].isdigit() or not _printable(body[1:nul]):
        return False
    rest = body[nul + 1 :]
    # connection id (4), first 8 bytes of the auth challenge, a zero filler, capability flags (low 16 bits)
    if len(rest) < 15 or rest[12] != 0:
        return False
    capabilities = int.from_bytes(rest[13:15], "little")
    if len(rest) >= 20:  # character set (1), status (2), capability flags (high 16 bits)
        capabilities |= int.from_bytes(rest[18:20], "little") << 16
    fields_end = end
    if len(rest) >= 31:  # challenge length (1), 10 reserved bytes, rest of the challenge, auth plugin name
        after = nul + 1 + 31
        if capabilities & _MYSQL_CLIENT_SECURE_CONNECTION:
            after += max(13, rest[20] - 8)
        if capabilities & _MYSQL_CLIENT_PLUGIN_AUTH:
            name_end = body.find(b"\0", after)
            after = name_end + 1 if name_end >= 0 else len(body)
        fields_end = 4 + min(after, len(body))
    return _MySQLGreeting(end, fields_end, body[1:nul], capabilities, None)


def _mysql_server(data: bytes, final: bool) -> _Verdict:
    greeting = _mysql_greeting(data)
    if greeting is None or greeting is False:
        return greeting if not final else False
    if greeting.error is not None:
        return _Hit("mysql", f"server sent MySQL error {greeting.error} instead of a greeting")
    return _Hit("mysql", f'server sent a MySQL greeting (version "{_show(greeting.version, 32)}")')


def _mysql_client(data: bytes, final: bool) -> _Verdict:
    if len(data) < 5:
        return None if not final and (len(data) < 4 or data[3] in (0, 1)) else False
    length = int.from_bytes(data[:3], "little")
    if data[3] == 1:
        return _mysql_login(data, length, final)
    if data[3] != 0 or data[4] != _MYSQL_COM_QUERY or not 5 <= length <= 1 << 24:
        return False
    # A query on a connection picked up mid-stream: judged by its first 32 characters.
    wanted = min(length - 1, 32)
    sql = data[5 : 5 + wanted]
    if sql.translate(None, _TEXT_BYTES):
        return False
    if len(sql) < wanted:
        return None if not final else False
    return _Hit("mysql", f'client sent a MySQL query "{_show(sql, 40)}"')


def _mysql_login(data: bytes, length: int, final: bool) -> _Verdict:
    """HandshakeResponse41 or SSLRequest (sequence 1): capability flags, max packet size, charset and 23
    zero bytes; the SSLRequest stops there, the response goes on with the user name."""
    if not 32 <= length <= 4096:
        return False
    head = data[4:_MYSQL_SSL_REQUEST_END]
    if len(head) >= 2 and not int.from_bytes(head[:2], "little") & _MYSQL_CLIENT_PROTOCOL_41:
        return False
    if head[9:32] != bytes(len(head[9:32])):
        return False
    if len(head) < 32:
        return None if not final else False
    if length == 32:
        ssl = int.from_bytes(head[:4], "little") & _MYSQL_CLIENT_SSL
        return _Hit("mysql", "client sent a MySQL SSLRequest") if ssl else False
    end = 4 + length
    user_end = data.find(b"\0", _MYSQL_SSL_REQUEST_END, end)
    if user_end < 0:
        if len(data) >= end or not _maybe_text(data[_MYSQL_SSL_REQUEST_END:end]):
            return False
        return None if not final else False
    user = data[_MYSQL_SSL_REQUEST_END:user_end]
    if not _is_text(user):
        return False
    return _Hit("mysql", f'client sent a MySQL HandshakeResponse (user "{_show(user, 32)}")')


def _mysql_upgrade(client: bytes, server: bytes, final: bool) -> _Outcome | None:
    greeting = _mysql_greeting(server)
    if greeting is None and not final:
        return None
    if isinstance(greeting, _MySQLGreeting):
        if greeting.error is not None:
            return None, ""
        if not greeting.capabilities & _MYSQL_CLIENT_SSL:
            return None, "server does not offer TLS"
    server_offset = _mysql_tls_offset(server, greeting) if isinstance(greeting, _MySQLGreeting) else 0
    if not client:
        if not final:
            return None
        if server_offset and _tls_handshake_at(server, server_offset):
            return Upgrade("mysql", 0, server_offset), "TLS followed the greeting (client side not captured)"
        return None, ""
    request = client[:_MYSQL_SSL_REQUEST_END]
    if len(request) < _MYSQL_SSL_REQUEST_END and b"\x20\x00\x00\x01".startswith(request[:4]):
        return None if not final else (None, "")
    if not (request[:4] == b"\x20\x00\x00\x01" and _mysql_login(request, 32, final=True)):
        return None, "client did not ask for TLS" if greeting else ""
    note = "the server's greeting offered TLS" if server_offset else "no server greeting seen"
    return Upgrade("mysql", _MYSQL_SSL_REQUEST_END, server_offset), note


def _mysql_tls_offset(server: bytes, greeting: _MySQLGreeting) -> int:
    """Where the server's TLS begins: after the greeting packet, or after its last field when its length field
    is too long and a TLS record starts there (seen in a public trace; a client reading by the length field
    would have swallowed part of the ServerHello)."""
    if greeting.fields_end + 3 <= greeting.end and _tls_handshake_at(server, greeting.fields_end):
        return greeting.fields_end
    return greeting.end


# -- MongoDB -----------------------------------------------------------------------------------------------

_MONGO_MAX_MESSAGE: Final = 48_000_000
_MONGO_CLIENT_OPCODES: Final = {2013: "OP_MSG", 2004: "OP_QUERY", 2012: "OP_COMPRESSED"}
_MONGO_SERVER_OPCODES: Final = {2013: "OP_MSG", 1: "OP_REPLY", 2012: "OP_COMPRESSED"}


def _mongodb(data: bytes, final: bool, who: str) -> _Verdict:
    opcodes = _MONGO_CLIENT_OPCODES if who == "client" else _MONGO_SERVER_OPCODES
    if len(data) < 16:
        # messageLength (< 48 MB), requestID, responseTo (0 in requests), opCode
        plausible = (
            (len(data) < 4 or data[3] <= 0x02)
            and (who != "client" or data[8:12] == bytes(len(data[8:12])))
            and (len(data) <= 12 or any(op.to_bytes(4, "little").startswith(data[12:]) for op in opcodes))
        )
        return None if not final and plausible else False
    length, _request_id, response_to, opcode = struct.unpack_from("<iiii", data)
    if opcode not in opcodes or not 21 <= length <= _MONGO_MAX_MESSAGE:
        return False
    if who == "client" and response_to != 0:
        return False
    body = data[16:length]
    checked = _mongo_body(opcode, body, length, who)
    if checked is None:
        return None if not final and len(data) < length else False
    if not checked:
        return False
    return _Hit("mongodb", f"{who} sent a MongoDB {opcodes[opcode]} message ({length} bytes)")


def _mongo_body(opcode: int, body: bytes, length: int, who: str) -> bool | None:
    if opcode == 2013:  # OP_MSG: flagBits, then the first section's kind and size
        if len(body) < 9:
            return None
        flags, kind, size = int.from_bytes(body[:4], "little"), body[4], int.from_bytes(body[5:9], "little")
        return not flags & ~0x10003 and kind in (0, 1) and 5 <= size <= length - 21
    if opcode == 2004:  # OP_QUERY: flags, then the "db.collection" name
        if len(body) < 5:
            return None
        if int.from_bytes(body[:4], "little") & ~0xFE:
            return False
        nul = body.find(b"\0", 4, 4 + 256)
        if nul < 0:
            return None if len(body) < 4 + 256 and _printable(body[4:]) else False
        name = body[4:nul]
        return b"." in name and _printable(name)
    if opcode == 1:  # OP_REPLY: responseFlags, cursorID, startingFrom, numberReturned
        if len(body) < 20:
            return None
        returned = int.from_bytes(body[16:20], "little")
        return not int.from_bytes(body[:4], "little") & ~0xF and 5 * returned <= length - 36
    # OP_COMPRESSED: the original opcode, its uncompressed size, the compressor (noop, snappy, zlib, zstd)
    if len(body) < 9:
        return None
    original = int.from_bytes(body[:4], "little")
    size = int.from_bytes(body[4:8], "little")
    originals = _MONGO_CLIENT_OPCODES if who == "client" else _MONGO_SERVER_OPCODES
    return original in originals and original != 2012 and 0 < size <= _MONGO_MAX_MESSAGE and body[8] <= 3


# -- Redis (RESP2 / RESP3) ---------------------------------------------------------------------------------

# Inline commands (a bare line): only names no other line protocol of this module (or memcached) starts with.
_RESP_INLINE_COMMANDS: Final = frozenset(
    b"PING ECHO INFO HELLO MONITOR DBSIZE KEYS EXISTS DEL TTL PTTL EXPIRE HGETALL LRANGE SMEMBERS "
    b"PUBLISH SUBSCRIBE PSUBSCRIBE CLIENT CONFIG CLUSTER COMMAND FLUSHALL FLUSHDB MULTI".split()
)
_RESP_INLINE_STARTS: Final = frozenset(c[:i] for c in _RESP_INLINE_COMMANDS for i in range(len(c) + 1))
_RESP_NAME_EXTRAS: Final = b"._-|"  # module commands (FT.SEARCH, JSON.SET) and container subcommands
_RESP_STATUS_REPLIES: Final = (b"+OK\r\n", b"+PONG\r\n", b"+QUEUED\r\n")
_RESP_AGGREGATES: Final = frozenset(b"*%~>|")
_RESP_MAX_DEPTH: Final = 4
_RESP_MAX_INLINE: Final = 1024


def _resp_int(data: bytes, pos: int) -> tuple[int, int] | Literal[False] | None:
    """A decimal (optional minus sign) ending in CR LF at pos, and the offset after it."""
    end = data.find(b"\r\n", pos, pos + 22)
    token = data[pos:end] if end >= 0 else data[pos : pos + 22].removesuffix(b"\r")
    digits = token.removeprefix(b"-")
    if end < 0:
        return None if len(data) - pos < 22 and (not digits or digits.isdigit()) else False
    if not digits.isdigit():
        return False
    return int(token), end + 2


def _resp_line(data: bytes, pos: int) -> bool | None:
    """A printable line ending in CR LF at pos."""
    got = _line_at(data, pos, 512)
    if got is None:
        return None if _printable(data[pos:].removesuffix(b"\r")) else False
    return got is not False and _printable(got[0]) and data[got[1] - 2 : got[1]] == b"\r\n"


def _resp_value(data: bytes, pos: int, depth: int) -> bool | None:
    """Is a RESP2/RESP3 value at pos? Aggregates are judged by their first element; None: cut short."""
    kind = data[pos : pos + 1]
    if not kind:
        return None
    if kind in (b"+", b"-", b","):  # simple string, error, double
        return _resp_line(data, pos + 1)
    if kind == b"_":
        return _starts(data[pos : pos + 3], b"_\r\n", final=False)
    if kind == b"#":
        boolean = data[pos + 1 : pos + 4]
        return None if boolean in (b"", b"t", b"f", b"t\r", b"f\r") else boolean in (b"t\r\n", b"f\r\n")
    number = _resp_int(data, pos + 1)
    if number is None or number is False:
        return number
    count, after = number
    if kind in (b":", b"("):
        return True
    if kind in (b"$", b"!", b"="):  # bulk string, bulk error, verbatim string
        if count == -1 and kind == b"$":
            return True
        if not 0 <= count <= 512 << 20:
            return False
        if count > 4096:  # a large payload is not worth waiting for
            return True
        tail = data[after + count : after + count + 2]
        return None if len(tail) < 2 and b"\r\n".startswith(tail) else tail == b"\r\n"
    if kind[0] in _RESP_AGGREGATES:
        if (count == -1 and kind == b"*") or count == 0:
            return True
        if not 0 < count <= 1 << 20 or depth >= _RESP_MAX_DEPTH:
            return False
        return _resp_value(data, after, depth + 1)
    return False


def _resp_client(data: bytes, final: bool) -> _Verdict:
    if not data.startswith(b"*"):
        return _resp_inline(data, final)
    number = _resp_int(data, 1)
    if number is None or number is False:
        return number if not final else False
    elements, pos = number
    if not 1 <= elements <= 1 << 20:
        return False
    dollar = _starts(data[pos : pos + 1], b"$", final)
    if dollar is not True:
        return dollar
    number = _resp_int(data, pos + 1)
    if number is None or number is False:
        return number if not final else False
    size, pos = number
    if not 1 <= size <= 64:
        return False
    name = data[pos : pos + size]
    letters = name.translate(None, _RESP_NAME_EXTRAS)
    tail = data[pos + size : pos + size + 2]
    if letters and not letters.isalpha():
        return False
    if len(tail) < 2:
        return None if not final and b"\r\n".startswith(tail) else False
    if tail != b"\r\n" or not letters:
        return False
    return _Hit("resp", f'client sent the Redis command "{_show(name, 32)}" ({elements} elements)')


def _resp_inline(data: bytes, final: bool) -> _Verdict:
    head = data[:16]
    ends = [i for i in (head.find(b" "), head.find(b"\r"), head.find(b"\n")) if i >= 0]
    if not ends:
        return None if not final and head.upper() in _RESP_INLINE_STARTS else False
    if head[: min(ends)].upper() not in _RESP_INLINE_COMMANDS:
        return False
    got = _line_at(data, 0, _RESP_MAX_INLINE)
    if got is None:
        return None if not final and _printable(data.removesuffix(b"\r")) else False
    if got is False or not _printable(got[0]):
        return False
    return _Hit("resp", f'client sent the inline Redis command "{_show(got[0], 48)}"')


def _resp_server(data: bytes, final: bool) -> _Verdict:
    valid: bool | None
    if data.startswith(b"+"):  # unprompted-looking simple strings would be too weak: OK, PONG, QUEUED only
        status = _starts_any(data, _RESP_STATUS_REPLIES, final)
        valid = status if status is None or status is False else True
    elif data.startswith(b"-"):  # errors start with an upper-case code: ERR, WRONGTYPE, NOAUTH, MOVED...
        code = data[1:64].split(b" ", 1)[0].split(b"\r", 1)[0]
        if code and not (code.isalpha() and code.isupper()):
            return False
        valid = _resp_line(data, 1)
        if valid and len(code) < 2:
            return False
    else:
        valid = _resp_value(data, 0, 0)
    if not valid:
        return False if final or valid is False else None
    first_line = data.split(b"\r\n", 1)[0] if len(data) < 64 else data[:64].split(b"\r\n", 1)[0]
    return _Hit("resp", f'server sent the RESP reply "{_show(first_line, 40)}"')


# -- SMTP, IMAP, POP3 --------------------------------------------------------------------------------------


def _greeting(data: bytes, final: bool, starts: Iterable[bytes]) -> bytes | Literal[False] | None:
    """The greeting line, if data starts with one of the expected openings and the line is text."""
    found = _starts_any(data, starts, final)
    if found is None or found is False:
        return found
    return _text_line(data, final)


def _smtp_server(data: bytes, final: bool) -> _Verdict:
    line = _greeting(data, final, (b"220 ", b"220-"))
    if line is None or line is False:
        return line
    if b"FTP" in line.upper():  # FTP servers greet with 220 too
        return False
    return _Hit("smtp", f'server sent the banner "{_show(line, 48)}"')


def _smtp_client(data: bytes, final: bool) -> _Verdict:
    found = _starts_any(data[:5].upper(), (b"EHLO ", b"HELO "), final)
    if found is None or found is False:
        return found
    line = _text_line(data, final, 512)
    if line is None or line is False:
        return line
    return _Hit("smtp", f'client sent "{_show(line, 48)}"')


def _imap_server(data: bytes, final: bool) -> _Verdict:
    line = _greeting(data, final, (b"* OK ", b"* OK\r", b"* PREAUTH ", b"* BYE "))
    if line is None or line is False:
        return line
    return _Hit("imap", f'server sent the IMAP greeting "{_show(line, 48)}"')


def _pop3_server(data: bytes, final: bool) -> _Verdict:
    line = _greeting(data, final, (b"+OK ",))
    if line is None or line is False:
        return line
    return _Hit("pop3", f'server sent the POP3 greeting "{_show(line, 48)}"')


# (accepted, offset after the answer, the answer as text); False: unreadable; None: not there yet
_Answer: TypeAlias = "tuple[bool, int, str] | Literal[False] | None"
_MAX_COMMANDS: Final = 16
_MAX_SCAN: Final = 16384


@dataclass(frozen=True, slots=True)
class _StartTls:
    """How one line protocol asks for TLS and how its server answers."""

    protocol: str
    command: bytes
    allowed_before: frozenset[bytes]  # commands a client may send first without giving up on TLS
    tagged: bool  # IMAP: commands and the final answer carry a tag
    answer: Callable[[bytes, int, bytes], _Answer]  # (server, commands before, tag)
    accepts: Callable[[bytes], bool]  # does this server line accept the switch?


def _client_command(
    client: bytes, spec: _StartTls, final: bool
) -> tuple[int, bytes, int] | Literal[False] | None:
    """Walk the client's command lines to spec.command: (commands before it, its tag, offset after it).
    False when the client sent anything else first: it went on in cleartext."""
    pos = 0
    for before in range(_MAX_COMMANDS):
        got = _line_at(client, pos, 512)
        if got is None:
            return None if not final and _maybe_text(client[pos:]) else False
        if got is False:
            return False
        line, end = got
        if not _is_text(line):
            return False
        words = line.split()
        tag = words.pop(0) if spec.tagged and words else b""
        verb = words[0].upper() if words else b""
        if verb == spec.command and len(words) == 1:
            return before, tag, end
        if verb not in spec.allowed_before:
            return False
        pos = end
    return False


def _smtp_reply(server: bytes, pos: int) -> tuple[int, int] | Literal[False] | None:
    """The (possibly multi-line) SMTP reply at pos: its code and the offset after it."""
    for _ in range(64):
        got = _line_at(server, pos, 2048)
        if got is None or got is False:
            return got
        line, pos = got
        code, separator = line[:3], line[3:4]
        if len(code) < 3 or not code.isdigit():
            return False
        if separator in (b" ", b""):
            return int(code), pos
        if separator != b"-":
            return False
    return False


def _smtp_answer(server: bytes, before: int, tag: bytes) -> _Answer:
    """The reply to STARTTLS: after the greeting and one reply per earlier command (pipelined or not)."""
    pos = code = 0
    for _ in range(before + 2):
        reply = _smtp_reply(server, pos)
        if reply is None or reply is False:
            return reply
        code, pos = reply
    return code == 220, pos, str(code)


def _imap_answer(server: bytes, before: int, tag: bytes) -> _Answer:
    """The tagged status line that completes STARTTLS (untagged lines and other tags come before it)."""
    pos = 0
    while pos < _MAX_SCAN:
        got = _line_at(server, pos, 4096)
        if got is None or got is False:
            return got
        line, pos = got
        words = line.split(None, 2)
        if len(words) >= 2 and words[0] == tag:
            status = words[1].upper()
            return status == b"OK", pos, _show(status, 8)
    return False


def _pop3_answer(server: bytes, before: int, tag: bytes) -> _Answer:
    """The status line answering STLS, after the greeting and each CAPA (+OK, a list, then ".")."""
    got = _line_at(server, 0, 512)
    if got is None or got is False:
        return got
    pos = got[1]
    status = b""
    for index in range(before + 1):
        got = _line_at(server, pos, 512)
        if got is None or got is False:
            return got
        status, pos = got
        if not status.startswith((b"+OK", b"-ERR")):
            return False
        if index < before and status.startswith(b"+OK"):
            after_list = _after_dot_line(server, pos)
            if after_list is None:
                return None
            if after_list == _NO_INT:
                return False
            pos = after_list
    accepted = status.startswith(b"+OK")
    return accepted, pos, "+OK" if accepted else "-ERR"


def _after_dot_line(server: bytes, pos: int) -> int | None:
    """The offset after a multi-line POP3 answer's closing "." line; _NO_INT if there is none."""
    for _ in range(256):
        got = _line_at(server, pos, 512)
        if got is None:
            return None
        if got is False:
            return _NO_INT
        line, pos = got
        if line == b".":
            return pos
    return _NO_INT


def _imap_accepts(line: bytes) -> bool:
    words = line.split(None, 2)
    return len(words) >= 2 and words[0] != b"*" and words[1].upper() == b"OK"


_SMTP_STARTTLS: Final = _StartTls(
    "smtp",
    b"STARTTLS",
    frozenset({b"EHLO", b"HELO", b"LHLO", b"NOOP", b"RSET"}),
    tagged=False,
    answer=_smtp_answer,
    accepts=lambda line: line.startswith(b"220"),
)
_IMAP_STARTTLS: Final = _StartTls(
    "imap", b"STARTTLS", frozenset({b"CAPABILITY", b"NOOP", b"ID"}), True, _imap_answer, _imap_accepts
)
_POP3_STLS: Final = _StartTls(
    "pop3", b"STLS", frozenset({b"CAPA"}), False, _pop3_answer, lambda line: line.startswith(b"+OK")
)


def _accepted_then_tls(server: bytes, accepts: Callable[[bytes], bool]) -> int | None:
    """Offset after the server line that a TLS handshake record directly follows, if that line accepts."""
    pos = 0
    while pos < _MAX_SCAN:
        got = _line_at(server, pos, 4096)
        if got is None or got is False:
            return None
        line, pos = got
        if _tls_handshake_at(server, pos):
            return pos if accepts(line) else None
    return None


def _starttls_upgrade(spec: _StartTls, client: bytes, server: bytes, final: bool) -> _Outcome | None:
    command = spec.command.decode()
    if not client:
        if not final:
            return None
        end = _accepted_then_tls(server, spec.accepts)
        if end is None:
            return None, ""
        return Upgrade(spec.protocol, 0, end), f"server accepted {command} (client side not captured)"
    found = _client_command(client, spec, final)
    if found is None:
        return None
    if found is False:
        return None, ""
    before, tag, client_end = found
    if not server:
        if not final:
            return None
        if _tls_handshake_at(client, client_end):
            return Upgrade(spec.protocol, client_end, 0), f"client sent {command}, then TLS (no server side)"
        return None, f"client sent {command}; no server answer seen"
    answer = spec.answer(server, before, tag)
    if answer is None:
        return None if not final else (None, f"client sent {command}; no server answer seen")
    if answer is False:
        return None, f"client sent {command}; server answer unreadable"
    accepted, server_end, text = answer
    if not accepted:
        return None, f"server refused {command} ({text})"
    return Upgrade(spec.protocol, client_end, server_end), f"server accepted {command} ({text})"


# -- generic text ------------------------------------------------------------------------------------------

_TEXT_WINDOW: Final = 512
_TEXT_MIN: Final = 16
_TEXT_MIN_SHARE: Final = 0.95
_TEXT_MAX_BAD: Final = int(_TEXT_WINDOW * (1 - _TEXT_MIN_SHARE))  # more cannot reach the share


def _text_counts(window: bytes) -> tuple[int, int]:
    """(characters, non-printable characters) of window decoded as UTF-8; a sequence cut at the end is left
    out. Invalid bytes count as non-printable."""
    rest = window.translate(None, _TEXT_BYTES)
    controls = len(rest.translate(None, _HIGH_BYTES))
    if controls == len(rest) or controls > _TEXT_MAX_BAD:  # ASCII only, or already beyond the limit
        return len(window), controls
    chars = codecs.getincrementaldecoder("utf-8")("replace").decode(window)
    bad = sum(1 for ch in chars if ch == "\ufffd" or not (ch.isprintable() or ch in "\t\r\n"))
    return len(chars), bad


def _is_text_stream(data: bytes, final: bool) -> bool | None:
    chars, bad = _text_counts(data[:_TEXT_WINDOW])
    if bad > _TEXT_MAX_BAD:
        return False
    if len(data) < _TEXT_WINDOW and not final:
        return None
    return len(data) >= _TEXT_MIN and chars - bad >= _TEXT_MIN_SHARE * chars


def _text_or_unidentified(
    client: bytes, server: bytes, final: bool, note: str
) -> Identified | Unidentified | None:
    for who, data in (("client", client), ("server", server)):
        text = _is_text_stream(data, final)
        if text is None:
            return None
        if text:
            window = data[:_TEXT_WINDOW]
            evidence = f'{note}{who} sent printable text ({len(window)} bytes checked): "{_show(window, 40)}"'
            return Identified("text", False, _clip(evidence), None)
    if not client and not server:
        return Unidentified("no payload in either direction")
    seen = f"{len(client)} client and {len(server)} server bytes"
    if len(client) >= _TEXT_MIN or len(server) >= _TEXT_MIN:  # long enough to judge, and not text
        return Unidentified(f"{note}binary data, no known protocol in the first {seen}")
    return Unidentified(
        f"{note}no known protocol, and too few bytes to call text ({seen}; {_TEXT_MIN} needed)"
    )


# -- decision ----------------------------------------------------------------------------------------------

_Check: TypeAlias = Callable[[bytes, bool], _Verdict]

# In priority order; a check still waiting holds back the answers of the checks after it.
_CLIENT_CHECKS: Final[tuple[_Check, ...]] = (
    partial(_ssh, who="client"),
    _h2c,
    _http_request,
    _pgsql_client,
    _mysql_client,
    partial(_mongodb, who="client"),
    _resp_client,
    _smtp_client,
)
_SERVER_CHECKS: Final[tuple[_Check, ...]] = (
    _http_response,
    _pgsql_server,
    _mysql_server,
    partial(_mongodb, who="server"),
    _smtp_server,
    _imap_server,
    _pop3_server,
    _resp_server,
    partial(_ssh, who="server"),  # last: the text lines it allows before the banner would hold back the rest
)
_UPGRADES: Final[dict[str, Callable[[bytes, bytes, bool], _Outcome | None]]] = {
    "http": _http_upgrade,
    "pgsql": _pgsql_upgrade,
    "mysql": _mysql_upgrade,
    "smtp": partial(_starttls_upgrade, _SMTP_STARTTLS),
    "imap": partial(_starttls_upgrade, _IMAP_STARTTLS),
    "pop3": partial(_starttls_upgrade, _POP3_STLS),
}


def _scan(data: bytes, checks: tuple[_Check, ...], final: bool) -> _Verdict:
    waiting = False
    for check in checks:
        verdict = check(data, final)
        if verdict is None:
            waiting = True
        elif verdict is not False:
            return None if waiting else verdict
    return None if waiting else False


def _identified(hit: _Hit, client: bytes, server: bytes, final: bool) -> Identified | None:
    follow = _UPGRADES.get(hit.protocol)
    outcome = follow(client, server, final) if follow is not None else (None, "")
    if outcome is None:
        return None
    upgrade, note = outcome
    evidence = f"{hit.evidence}; {note}" if note else hit.evidence
    return Identified(hit.protocol, False, _clip(evidence), upgrade)


def identify(client: bytes, server: bytes, *, more_coming: bool) -> Identified | Unidentified | None:
    """Name the protocol of a flow from the first bytes of each direction.

    ``client`` and ``server`` are contiguous stream bytes from the first byte of each direction (either may be
    empty). With ``more_coming`` False the answer is never None.
    """
    final = not more_coming
    on_client = _scan(client, _CLIENT_CHECKS, final)
    if isinstance(on_client, _Hit) and on_client.protocol != "ssh":
        return _identified(on_client, client, server, final)
    if on_client is None:
        return None  # the client's bytes may still name a protocol, which would take precedence
    on_server = _scan(server, _SERVER_CHECKS, final)
    if isinstance(on_server, _Hit) and on_server.protocol != "ssh":
        return _identified(on_server, client, server, final)
    if on_server is None:
        return None
    # No cleartext protocol on either side. SSH needs an identification line from every side that sent bytes.
    hits = [hit for hit in (on_client, on_server) if isinstance(hit, _Hit)]
    note = ""
    if hits:
        if (on_client or not client) and (on_server or not server):
            return _ssh_identified(client, server, ", ".join(hit.evidence for hit in hits))
        other = "server" if on_client else "client"
        note = f"{hits[0].evidence}, but the {other}'s bytes are not SSH; "
    return _text_or_unidentified(client, server, final, note)
