"""The active TLS probe against real servers on loopback: OpenSSL TLS servers (Python's ssl) and raw TCP
servers that misbehave, each in threads started and stopped by fixtures, every wait bounded."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from tests.pki import SERVICE_NAME, Issued, ec_key, issue, make_ca
from verifier.errors import UsageError
from verifier.probe import ProbeTarget, _presented_chain, parse_endpoint, probe, probe_all

# Long enough for a loaded machine; the tests that time out on purpose pass their own.
TIMEOUT = 5.0
HTTP_400 = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


# --- certificates ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chain:
    leaf: Issued
    intermediate: Issued

    @property
    def der(self) -> tuple[bytes, bytes]:
        return self.leaf.der, self.intermediate.der


def make_chain(label: str, lifetime: timedelta) -> Chain:
    root = make_ca(f"{label} root CA", ec_key(f"probe-{label}-root"), None)
    intermediate = make_ca(f"{label} intermediate CA", ec_key(f"probe-{label}-sub"), root)
    leaf = issue(SERVICE_NAME, ec_key(f"probe-{label}-leaf"), intermediate, ca=False, lifetime=lifetime)
    return Chain(leaf, intermediate)


@pytest.fixture(scope="module")
def chain() -> Chain:
    return make_chain("current", timedelta(days=365 * 100))


@pytest.fixture(scope="module")
def expired_chain() -> Chain:
    expired = make_chain("expired", timedelta(days=7))
    assert expired.leaf.cert.not_valid_after_utc < datetime.now(UTC)  # the test's premise
    return expired


def server_context(chain: Chain, directory: Path) -> ssl.SSLContext:
    """A server context presenting leaf + intermediate (load_cert_chain wants files)."""
    key = chain.leaf.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    (directory / "chain.pem").write_bytes(chain.leaf.pem + chain.intermediate.pem)
    (directory / "key.pem").write_bytes(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "chain.pem", directory / "key.pem")
    return context


# --- servers ---------------------------------------------------------------------------------------------


class Server:
    """A loopback TCP listener; each accepted connection is given to ``handle`` in its own thread."""

    def __init__(self, handle: Callable[[socket.socket], None] | None, host: str = "127.0.0.1") -> None:
        self.handle = handle  # None: listen but never accept (the kernel still completes TCP handshakes)
        self.listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.listener.bind((host, 0))
        self.listener.listen(16)
        self.listener.settimeout(0.05)
        self.port: int = self.listener.getsockname()[1]
        self.accepted = 0
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> Server:
        self.acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.acceptor.join(timeout=2)
        for thread in self.threads:
            thread.join(timeout=5)
        self.listener.close()
        assert not self.acceptor.is_alive() and not any(t.is_alive() for t in self.threads)

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            if self.handle is None:
                time.sleep(0.05)
                continue
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.settimeout(3)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        assert self.handle is not None
        with conn:
            self.handle(conn)


@dataclass
class Session:
    """What a TLS server saw of one connection."""

    version: str | None = None
    cipher: str | None = None
    error: str | None = None
    app_data: bytes = b""
    close_notify: bool = False  # the client closed with close_notify, not a bare TCP close


@dataclass
class TlsServer:
    """An OpenSSL TLS server that records the SNI of every ClientHello and what each connection did."""

    context: ssl.SSLContext
    delay: float = 0.0  # held before the handshake, counted as an active connection
    snis: list[str | None] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    active: int = 0
    most_active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.context.sni_callback = self._record_sni

    def _record_sni(self, _: object, server_name: str | None, __: ssl.SSLContext) -> None:
        self.snis.append(server_name)

    def handle(self, conn: socket.socket) -> None:
        if self.delay:
            with self.lock:
                self.active += 1
                self.most_active = max(self.most_active, self.active)
            time.sleep(self.delay)
            with self.lock:
                self.active -= 1
        session = Session()
        self.sessions.append(session)
        with self.context.wrap_socket(
            conn, server_side=True, do_handshake_on_connect=False, suppress_ragged_eofs=False
        ) as tls:
            try:
                tls.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                session.error = str(exc)
                return
            session.version, session.cipher = tls.version(), tls.cipher()[0]  # type: ignore[index]
            try:
                while chunk := tls.recv(4096):  # b"" only on close_notify: a bare close raises SSLEOFError
                    session.app_data += chunk
                session.close_notify = True
                tls.unwrap()
            except (ssl.SSLError, OSError) as exc:
                session.error = str(exc)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., tuple[Server, TlsServer]]]:
    """Start TLS servers presenting a given chain; all of them stop at the end of the test."""
    running: list[Server] = []

    def start(
        chain: Chain,
        *,
        host: str = "127.0.0.1",
        delay: float = 0.0,
        tweak: Callable[[ssl.SSLContext], None] | None = None,
    ) -> tuple[Server, TlsServer]:
        directory = tmp_path / f"server{len(running)}"
        directory.mkdir()
        tls = TlsServer(server_context(chain, directory), delay=delay)
        if tweak is not None:
            tweak(tls.context)
        server = Server(tls.handle, host).__enter__()
        running.append(server)
        return server, tls

    yield start
    for server in running:
        server.__exit__()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], None] | None], Server]]:
    running: list[Server] = []

    def start(handle: Callable[[socket.socket], None] | None) -> Server:
        server = Server(handle).__enter__()
        running.append(server)
        return server

    yield start
    for server in running:
        server.__exit__()


# --- successful handshakes -------------------------------------------------------------------------------


def test_tls13_server_presents_its_whole_chain(
    serve: Callable[..., tuple[Server, TlsServer]], chain: Chain
) -> None:
    server, tls = serve(chain)
    result = probe(ProbeTarget("127.0.0.1", server.port, SERVICE_NAME), timeout=TIMEOUT)
    assert result.ok, result.error
    assert result.error is None
    assert result.tls_version == "TLS1.3"
    assert result.cipher_suite is not None and result.cipher_suite.startswith("TLS_")
    # Python >= 3.10 exposes the unverified chain (private _sslobj call on 3.10-3.12, public on 3.13+).
    assert result.chain_complete
    assert result.certificates == chain.der
    assert 0 < result.elapsed < TIMEOUT
    # The server saw the SNI, the handshake, then close_notify and not one byte of application data.
    assert tls.snis == [SERVICE_NAME]
    assert [(s.version, s.cipher, s.app_data, s.close_notify, s.error) for s in tls.sessions] == [
        ("TLSv1.3", result.cipher_suite, b"", True, None)
    ]


def test_tls12_only_server(serve: Callable[..., tuple[Server, TlsServer]], chain: Chain) -> None:
    def tls12_only(context: ssl.SSLContext) -> None:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")

    server, tls = serve(chain, tweak=tls12_only)
    result = probe(ProbeTarget("127.0.0.1", server.port, SERVICE_NAME), timeout=TIMEOUT)
    assert result.ok, result.error
    assert (result.tls_version, result.cipher_suite) == ("TLS1.2", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert result.certificates == chain.der
    assert [(s.version, s.app_data, s.close_notify) for s in tls.sessions] == [("TLSv1.2", b"", True)]


def test_legacy_tls10_server_is_reported_with_its_version(
    serve: Callable[..., tuple[Server, TlsServer]], chain: Chain
) -> None:
    def tls10_only(context: ssl.SSLContext) -> None:
        with pytest.warns(DeprecationWarning):
            context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers("ALL:@SECLEVEL=0")

    server, _ = serve(chain, tweak=tls10_only)
    result = probe(ProbeTarget("127.0.0.1", server.port, SERVICE_NAME), timeout=TIMEOUT)
    assert result.ok, result.error
    assert result.tls_version == "TLS1.0"
    assert result.certificates == chain.der


def test_expired_certificate_is_still_collected(
    serve: Callable[..., tuple[Server, TlsServer]], expired_chain: Chain
) -> None:
    server, _ = serve(expired_chain)
    result = probe(ProbeTarget("127.0.0.1", server.port, SERVICE_NAME), timeout=TIMEOUT)
    assert result.ok, result.error
    assert result.certificates == expired_chain.der


def test_no_sni_is_sent_when_the_client_sent_none(
    serve: Callable[..., tuple[Server, TlsServer]], chain: Chain
) -> None:
    server, tls = serve(chain)
    result = probe(ProbeTarget("127.0.0.1", server.port, None), timeout=TIMEOUT)
    assert result.ok, result.error
    assert tls.snis == [None]


def test_ipv6(serve: Callable[..., tuple[Server, TlsServer]], chain: Chain) -> None:
    try:
        server, tls = serve(chain, host="::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    host, port = parse_endpoint(f"[::1]:{server.port}")
    result = probe(ProbeTarget(host, port, SERVICE_NAME), timeout=TIMEOUT)
    assert result.ok, result.error
    assert result.certificates == chain.der
    assert tls.snis == [SERVICE_NAME]


# --- failures: each a result with a clear reason, never an exception ---------------------------------------


def test_tls_alert_unrecognized_name(serve: Callable[..., tuple[Server, TlsServer]], chain: Chain) -> None:
    def only_service_name(context: ssl.SSLContext) -> None:
        def check(_: object, server_name: str | None, __: ssl.SSLContext) -> int | None:
            return None if server_name == SERVICE_NAME else ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME

        context.sni_callback = check

    server, _ = serve(chain, tweak=only_service_name)
    result = probe(ProbeTarget("127.0.0.1", server.port, "other.example"), timeout=TIMEOUT)
    assert not result.ok
    assert result.error == "the server ended the handshake with TLS alert unrecognized_name"
    assert (result.tls_version, result.cipher_suite, result.certificates) == (None, None, ())


def test_tls12_server_demanding_a_client_certificate_has_shown_its_chain(
    serve: Callable[..., tuple[Server, TlsServer]], chain: Chain
) -> None:
    def require_client_certificate(context: ssl.SSLContext) -> None:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=chain.intermediate.der)

    server, _ = serve(chain, tweak=require_client_certificate)
    result = probe(ProbeTarget("127.0.0.1", server.port, SERVICE_NAME), timeout=TIMEOUT)
    assert not result.ok
    assert result.error == "the server ended the handshake with TLS alert handshake_failure"
    assert result.certificates == chain.der
    assert result.chain_complete


def reset_at_once(conn: socket.socket) -> None:
    # SO_LINGER on with a zero timeout: close() sends RST instead of FIN
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def close_after_hello(conn: socket.socket) -> None:
    conn.recv(65536)  # read the ClientHello first so the close is a FIN, not a reset for unread data


def answer_http(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(HTTP_400)


@pytest.mark.parametrize(
    ("handle", "error"),
    [
        (reset_at_once, "the server reset the connection"),
        (close_after_hello, "the server closed the connection without answering the ClientHello"),
        (answer_http, "the server answered with data that is not TLS: b'HTTP/1.1 400 Bad Request'"),
    ],
)
def test_misbehaving_servers(
    raw_server: Callable[[Callable[[socket.socket], None] | None], Server],
    handle: Callable[[socket.socket], None],
    error: str,
) -> None:
    server = raw_server(handle)
    result = probe(ProbeTarget("127.0.0.1", server.port, SERVICE_NAME), timeout=TIMEOUT)
    assert not result.ok
    assert result.error is not None
    if handle is reset_at_once:
        # The RST comes before or after the ClientHello left: "... as soon as it was established" or
        # "... during the TLS handshake"
        assert result.error.startswith(error)
    else:
        assert result.error == error
    assert result.elapsed < TIMEOUT
    assert server.accepted == 1


def test_server_that_never_answers_times_out(
    raw_server: Callable[[Callable[[socket.socket], None] | None], Server],
) -> None:
    server = raw_server(None)
    result = probe(ProbeTarget("127.0.0.1", server.port, SERVICE_NAME), timeout=0.5)
    assert not result.ok
    assert result.error == "the server accepted the connection but sent no TLS reply within 0.5 s"
    assert 0.5 <= result.elapsed < 1.5


def test_full_accept_queue_times_out_the_connect() -> None:
    # Linux drops a SYN while a listener's accept queue is full; with a backlog of 0 one connection fills it.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        with socket.create_connection(listener.getsockname(), timeout=TIMEOUT):
            result = probe(ProbeTarget("127.0.0.1", listener.getsockname()[1], SERVICE_NAME), timeout=0.3)
    assert not result.ok
    assert result.error == "no TCP connection within 0.3 s (connect timed out)"
    assert 0.3 <= result.elapsed < 1.3


def test_nothing_listening_is_refused() -> None:
    with socket.socket() as bound:  # bound, never listening: the kernel answers SYN with RST
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        result = probe(ProbeTarget("127.0.0.1", port, SERVICE_NAME), timeout=TIMEOUT)
    assert not result.ok
    assert result.error == "connection refused"
    assert result.certificates == ()


def test_unsendable_sni_is_an_error_not_an_exception() -> None:
    result = probe(ProbeTarget("127.0.0.1", 1, ""), timeout=TIMEOUT)
    assert not result.ok
    assert result.error is not None and result.error.startswith("the SNI '' cannot be sent")


# --- many targets ----------------------------------------------------------------------------------------


def test_probe_all_bounds_concurrency_and_keeps_order(
    serve: Callable[..., tuple[Server, TlsServer]], chain: Chain
) -> None:
    server, tls = serve(chain, delay=0.3)
    # Distinct SNIs make distinct targets; each connection is held 0.3 s by the server before its handshake,
    # so a client thread cannot start its next probe while the server still counts the previous one.
    targets = [ProbeTarget("127.0.0.1", server.port, f"s{i}.example") for i in range(6)]
    results = probe_all(targets, timeout=TIMEOUT, concurrency=2)
    assert [r.target for r in results] == targets
    assert all(r.ok for r in results), [r.error for r in results]
    assert tls.most_active == 2
    assert sorted(s for s in tls.snis if s is not None) == sorted(t.sni for t in targets if t.sni is not None)


def test_probe_all_probes_duplicates_once(
    serve: Callable[..., tuple[Server, TlsServer]], chain: Chain
) -> None:
    server, tls = serve(chain)
    a, b, c = (
        ProbeTarget("127.0.0.1", server.port, name) for name in ("a.example", "b.example", "c.example")
    )
    results = probe_all([a, b, a, c, b], timeout=TIMEOUT)
    assert [r.target for r in results] == [a, b, a, c, b]
    assert results[0] is results[2] and results[1] is results[4]
    assert sorted(s for s in tls.snis if s is not None) == ["a.example", "b.example", "c.example"]
    assert server.accepted == 3
    assert probe_all([], timeout=TIMEOUT) == []
    with pytest.raises(ValueError, match="concurrency"):
        probe_all([a], concurrency=0)


# --- pieces ----------------------------------------------------------------------------------------------


def test_leaf_only_when_python_cannot_give_the_chain() -> None:
    # An SSLObject of a Python without get_unverified_chain, public or private: getpeercert is all there is.
    old_python = types.SimpleNamespace(getpeercert=lambda binary_form: b"leaf DER" if binary_form else {})
    assert _presented_chain(old_python) == ((b"leaf DER",), False)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("10.1.0.9:443", ("10.1.0.9", 443)),
        ("[::1]:8443", ("::1", 8443)),
        ("api.example:1", ("api.example", 1)),
    ],
)
def test_parse_endpoint(text: str, endpoint: tuple[str, int]) -> None:
    assert parse_endpoint(text) == endpoint


@pytest.mark.parametrize(
    "text", ["10.1.0.9", "::1:443", "[::1]", "host:0", "host:65536", "host:https", ":443"]
)
def test_parse_endpoint_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_endpoint(text)
