"""Active TLS probe: one handshake to a server endpoint, recording what the server presents.

In TLS 1.3 the server's Certificate message is encrypted, so a capture never shows the chain; the probe asks
the server itself, from the machine running the verifier. Verification is off on purpose: the probe collects
whatever the server presents and other modules judge it. It sends the ClientHello (with the SNI the observed
client used), completes the handshake, sends close_notify and closes: never any application data. It connects
only to the target it is given; a hostname is resolved only when the user typed one.

The TLS layer runs over memory BIOs on a plain socket, so every byte the server sends passes through here: a
server that answers in plaintext is reported with what it said, and one deadline bounds connect, handshake and
close together.
"""

from __future__ import annotations

import _ssl
import contextlib
import re
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from verifier.core.tls import version_name
from verifier.errors import UsageError


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    host: str  # IP address (v4 or v6) as observed, or a hostname given explicitly by the user
    port: int
    sni: str | None  # the SNI the observed client sent (None: send none)
    # The cleartext protocol the observed connection upgraded from ("pgsql": PostgreSQL's SSLRequest): the
    # probe asks for TLS the same way before its handshake.
    upgrade_from: str | None = None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    target: ProbeTarget
    ok: bool  # the handshake completed
    tls_version: str | None  # "TLS1.3", "TLS1.2", ... as verifier.core.tls.version_name spells them
    cipher_suite: str | None  # the name Python's ssl reports (OpenSSL's, IANA's for TLS 1.3)
    certificates: tuple[bytes, ...]  # DER, in the order the server presented them (leaf first)
    # True when `certificates` is everything the server presented; False when this Python can only give the
    # leaf (no get_unverified_chain), so a report must say "leaf only".
    chain_complete: bool
    error: str | None  # one sentence saying why the probe failed (ok=False)
    elapsed: float  # seconds


# SSLSocket.version() spellings, as protocol version numbers for version_name.
_SSL_VERSIONS = {"TLSv1.3": 0x0304, "TLSv1.2": 0x0303, "TLSv1.1": 0x0302, "TLSv1": 0x0301, "SSLv3": 0x0300}

# First byte of a TLS record: change_cipher_spec, alert, handshake, application_data, heartbeat.
_TLS_CONTENT_TYPES = range(20, 25)

# OpenSSL names a received alert SSLV3_ALERT_*, TLSV1_ALERT_*, TLSV13_ALERT_* or (alerts 110-114) TLSV1_*;
# the rest of the name is the RFC's alert name in capitals. SSLV3_ROLLBACK_ATTACK is not an alert.
_ALERT_REASON = re.compile(r"(?:SSLV3_ALERT|TLSV1_ALERT|TLSV13_ALERT|TLSV1)_(\w+)")

# How much of the server's first bytes to keep for an error message.
_KEPT_REPLY = 60

# How long closing may wait for the server's answer to close_notify, within what is left of the timeout.
_CLOSE_WAIT = 1.0


# (family, type, proto) -> a new socket: where a probe connects from. The default, socket.socket, is this
# machine; the mirror lab makes sockets inside a peer's network namespace.
SocketFactory = Callable[[int, int, int], socket.socket]


def probe(
    target: ProbeTarget, *, timeout: float = 5.0, make_socket: SocketFactory = socket.socket
) -> ProbeResult:
    """One TLS handshake to ``target``; ``timeout`` bounds connect and handshake together. Never raises for
    anything the network or the server does: a failed probe is a result with ``ok=False`` and ``error``."""
    started = time.monotonic()
    deadline = started + timeout

    def failed(error: str, certificates: tuple[bytes, ...] = (), complete: bool = True) -> ProbeResult:
        return ProbeResult(
            target, False, None, None, certificates, complete, error, time.monotonic() - started
        )

    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    try:
        tls = _client_context().wrap_bio(incoming, outgoing, server_hostname=target.sni)
    except ValueError as exc:  # includes UnicodeError from the IDNA encoding of the name
        return failed(f"the SNI {target.sni!r} cannot be sent: {exc}")

    try:
        sock = _connect(target, deadline, make_socket)
    except socket.gaierror as exc:
        return failed(f"cannot resolve {target.host}: {exc.strerror}")
    except ConnectionRefusedError:
        return failed("connection refused")
    except ConnectionResetError:  # a connect with a timeout reads the socket's error after the TCP handshake
        return failed("the server reset the connection as soon as it was established")
    except TimeoutError:
        return failed(f"no TCP connection within {timeout:g} s (connect timed out)")
    except OSError as exc:
        return failed(f"cannot connect: {exc.strerror or exc}")

    with sock:
        if target.upgrade_from == "pgsql":
            refusal = _postgres_ssl_request(sock, deadline)
            if refusal is not None:
                return failed(refusal)
        received = bytearray()  # the first bytes the server sent, to name what a non-TLS server said
        try:
            _handshake(sock, tls, incoming, outgoing, deadline, received)
        except (ssl.SSLError, OSError) as exc:
            # A server that aborts late (a TLS 1.2 server demanding a client certificate) has already
            # presented its chain; keep it.
            certificates, complete = _presented_chain(tls)
            return failed(_handshake_error(exc, bytes(received), timeout), certificates, complete)
        version = tls.version()
        cipher = tls.cipher()
        certificates, complete = _presented_chain(tls)
        _close(sock, tls, outgoing, min(deadline, time.monotonic() + _CLOSE_WAIT))
    return ProbeResult(
        target=target,
        ok=True,
        tls_version=version_name(_SSL_VERSIONS[version]) if version in _SSL_VERSIONS else version,
        cipher_suite=cipher[0] if cipher else None,
        certificates=certificates,
        chain_complete=complete,
        error=None,
        elapsed=time.monotonic() - started,
    )


def probe_all(
    targets: Sequence[ProbeTarget], *, timeout: float = 5.0, concurrency: int = 8
) -> list[ProbeResult]:
    """Probe every distinct target once, at most ``concurrency`` at a time; one result per entry of
    ``targets``, in its order (a duplicate gets the same result)."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    distinct = list(dict.fromkeys(targets))
    if not distinct:
        return []
    with ThreadPoolExecutor(max_workers=min(concurrency, len(distinct)), thread_name_prefix="probe") as pool:
        results = dict(zip(distinct, pool.map(lambda t: probe(t, timeout=timeout), distinct), strict=True))
    return [results[target] for target in targets]


def parse_endpoint(text: str) -> tuple[str, int]:
    """``HOST:PORT`` as a user types it (IPv6 in brackets: ``[::1]:443``) -> (host, port)."""
    host, colon, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise UsageError(f"{text!r}: write an IPv6 address in brackets, as [::1]:443")
    if not colon or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"{text!r} is not HOST:PORT with a port from 1 to 65535")
    return host, int(port_text)


def _client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # Offer every version and cipher this OpenSSL has, so a legacy server is reported with the version it
    # speaks rather than as a failed handshake. Security level 0 also accepts weak keys and SHA-1 signatures.
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.set_ciphers("ALL:@SECLEVEL=0")
    return context


# PostgreSQL's SSLRequest: length 8, then the code 80877103 (1234 in the high 16 bits, 5679 in the low).
_POSTGRES_SSL_REQUEST = (8).to_bytes(4) + (80877103).to_bytes(4)


def _postgres_ssl_request(sock: socket.socket, deadline: float) -> str | None:
    """Ask a PostgreSQL server for TLS, as its clients do; None when it agreed ('S'), else why not."""
    try:
        sock.settimeout(_remaining(deadline))
        sock.sendall(_POSTGRES_SSL_REQUEST)
        answer = sock.recv(1)
    except TimeoutError:
        return "PostgreSQL: no answer to the SSLRequest in time"
    except OSError as exc:
        return f"PostgreSQL: the SSLRequest failed: {exc.strerror or exc}"
    if answer == b"S":
        return None
    if answer == b"N":
        return "PostgreSQL answered the SSLRequest with 'N': this server does not offer TLS"
    return f"PostgreSQL: unexpected answer to the SSLRequest: {answer!r}"


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _connect(target: ProbeTarget, deadline: float, make_socket: SocketFactory) -> socket.socket:
    """A TCP connection to the target's first address that accepts. An IP address is used as it is:
    getaddrinfo parses a numeric host without asking DNS."""
    addresses = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    last_error: OSError = TimeoutError()
    for family, kind, proto, _, address in addresses:
        sock = make_socket(family, kind, proto)
        try:
            sock.settimeout(_remaining(deadline))
            sock.connect(address)
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        return sock
    raise last_error


def _handshake(
    sock: socket.socket,
    tls: ssl.SSLObject,
    incoming: ssl.MemoryBIO,
    outgoing: ssl.MemoryBIO,
    deadline: float,
    received: bytearray,
) -> None:
    """Drive the client handshake to its end, keeping the server's first bytes in ``received``."""
    while True:
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        else:
            sock.settimeout(_remaining(deadline))
            sock.sendall(outgoing.read())  # the client's last flight (Finished)
            return
        sock.settimeout(_remaining(deadline))
        sock.sendall(outgoing.read())
        data = sock.recv(65536)
        received += data[: _KEPT_REPLY - len(received)]
        if data:
            incoming.write(data)
        else:
            incoming.write_eof()


def _close(sock: socket.socket, tls: ssl.SSLObject, outgoing: ssl.MemoryBIO, deadline: float) -> None:
    """Send close_notify, then read until the server closes so no unread byte turns our close into a reset.
    Errors are ignored: the probe already has what it came for."""
    # unwrap writes close_notify, then raises SSLWantReadError: the server's is not awaited at the TLS layer
    with contextlib.suppress(ssl.SSLError):
        tls.unwrap()
    try:
        sock.settimeout(_remaining(deadline))
        sock.sendall(outgoing.read())
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            sock.settimeout(_remaining(deadline))
    except OSError:
        pass


def _presented_chain(tls: ssl.SSLObject) -> tuple[tuple[bytes, ...], bool]:
    """The certificates the server sent, leaf first, and whether that is all of them.

    Python 3.13 has SSLObject.get_unverified_chain (DER bytes); 3.10 to 3.12 have the same call, private, on
    the underlying _ssl object (Certificate objects). Without either only the leaf is available.
    """
    public = getattr(tls, "get_unverified_chain", None)
    private = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
    if public is not None:
        return tuple(public()), True
    if private is not None:
        return tuple(cert.public_bytes(_ssl.ENCODING_DER) for cert in private() or ()), True
    try:
        leaf = tls.getpeercert(binary_form=True)
    except ValueError:  # the handshake did not get that far
        leaf = None
    return ((leaf,) if leaf else ()), False


def _handshake_error(exc: ssl.SSLError | OSError, received: bytes, timeout: float) -> str:
    if received and received[0] not in _TLS_CONTENT_TYPES:
        first_line = received.split(b"\n", 1)[0].rstrip(b"\r")
        return f"the server answered with data that is not TLS: {first_line!r}"
    if isinstance(exc, TimeoutError):
        if not received:
            return f"the server accepted the connection but sent no TLS reply within {timeout:g} s"
        return f"the TLS handshake did not complete within {timeout:g} s"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "the server reset the connection during the TLS handshake"
    if isinstance(exc, ssl.SSLEOFError):
        if not received:
            return "the server closed the connection without answering the ClientHello"
        return "the server closed the connection during the TLS handshake"
    if isinstance(exc, ssl.SSLError):
        alert = _ALERT_REASON.fullmatch(exc.reason or "")
        if alert:
            return f"the server ended the handshake with TLS alert {alert.group(1).lower()}"
        return f"the TLS handshake failed: {(exc.reason or str(exc)).lower().replace('_', ' ')}"
    return f"the TLS handshake failed: {exc.strerror or exc}"
