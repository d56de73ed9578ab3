"""--probe and `verifier probe` against a real TLS 1.3 server on 127.0.0.1 (OpenSSL through Python's ssl)."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.traffic import Endpoints, make_pki, tcp_frames, tls_conversation, write_pcap
from verifier.analysis import Judging, analyze_files
from verifier.core.chains import TrustAnchors
from verifier.core.model import Verdict
from verifier.probe import ProbeResult, ProbeTarget, probe

SNI = "api.internal.example"


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[int]:
    """A TLS 1.3 server presenting leaf + intermediate of make_pki(); serves until the test ends."""
    pki = make_pki()
    (tmp_path / "chain.pem").write_bytes(pki.chain_pem)
    (tmp_path / "key.pem").write_bytes(pki.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        for _ in range(500):  # bounded: at most 100 s of serving, normally ended by `stop`
            if stop.is_set():
                return
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.settimeout(2)
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    tls.recv(1)  # wait for the client's close_notify (or EOF)
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    listener.close()


def _capture_to(tmp_path: Path, port: int) -> Path:
    # A TLS 1.3 connection to 127.0.0.1:port as a capture shows it: version and SNI, no chain.
    messages = tls_conversation(tmp_path)
    frames = tcp_frames(messages, Endpoints(client=("127.0.0.1", 50000), server=("127.0.0.1", port)))
    return write_pcap(tmp_path / "tls13.pcap", frames)


def test_probe_supplies_the_chain_a_tls13_capture_hides(tmp_path: Path, tls_server: int) -> None:
    capture = _capture_to(tmp_path, tls_server)
    own = TrustAnchors.from_pem_bundle(make_pki().root_pem)
    (flow,) = analyze_files([capture], judging=Judging(anchors=own, probe_timeout=3)).flows
    assert (flow.category, flow.chain_source, flow.identity, flow.verdict) == (
        "TLS1.3",
        "probe",
        Verdict.PASS,
        Verdict.PASS,
    )
    assert len(flow.server_certificates) == 2 and "probe from this machine" in str(flow.chain_note)


def test_a_refused_probe_is_a_note_not_an_error(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]  # bound, then closed: nothing listens there
    capture = _capture_to(tmp_path, port)
    (flow,) = analyze_files([capture], judging=Judging(probe_timeout=1)).flows
    assert flow.verdict is Verdict.PASS and flow.server_certificates == ()
    assert "probe: connection refused" in str(flow.chain_note)


def test_probe_command(tmp_path: Path, tls_server: int) -> None:
    root = tmp_path / "root.pem"
    root.write_bytes(make_pki().root_pem)
    command = [
        sys.executable,
        "-c",
        "from verifier.cli import main; main()",
        "probe",
        f"127.0.0.1:{tls_server}",
    ]
    result = subprocess.run(
        [*command, "--sni", SNI, "--ca", root, "--format", "json"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["tls_version"] == "TLS1.3" and report["identity"] == "PASS"
    assert [c["subject"] for c in report["certificates"]] == [f"CN={SNI}", "CN=Test Intermediate CA"]
    other = tmp_path / "other.pem"
    other.write_bytes(make_pki("other.example").root_pem)
    result = subprocess.run(
        [*command, "--sni", SNI, "--ca", other], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and "FAIL" in result.stdout


def test_probe_command_on_a_closed_port_is_inconclusive() -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    command = [sys.executable, "-c", "from verifier.cli import main; main()", "probe", f"127.0.0.1:{port}"]
    result = subprocess.run([*command, "--format", "json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert (report["ok"], report["verdict"]) == (False, "INCONCLUSIVE") and "refused" in report["error"]


def probe_postgres_like_server(tmp_path: Path, answer: bytes) -> tuple[ProbeResult, list[bytes]]:
    """Probe (as an upgrade from pgsql) one connection of a server that reads PostgreSQL's SSLRequest,
    answers ``answer`` and, after b"S", does a TLS handshake with make_pki()'s chain, as PostgreSQL with
    ssl=on does; return the probe's result and what the server received."""
    pki = make_pki()
    (tmp_path / "pg-chain.pem").write_bytes(pki.chain_pem)
    (tmp_path / "pg-key.pem").write_bytes(pki.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "pg-chain.pem", tmp_path / "pg-key.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    requests: list[bytes] = []

    def serve() -> None:
        connection, _ = listener.accept()
        connection.settimeout(5)
        with connection:
            requests.append(connection.recv(8))
            connection.sendall(answer)
            if answer == b"S":
                with (
                    contextlib.suppress(OSError, ssl.SSLError),
                    context.wrap_socket(connection, server_side=True) as tls,
                ):
                    tls.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with listener:
        port = listener.getsockname()[1]
        result = probe(ProbeTarget("127.0.0.1", port, None, upgrade_from="pgsql"), timeout=5)
        thread.join(10)
    return result, requests


def test_a_postgres_server_is_asked_for_tls_first(tmp_path: Path) -> None:
    result, requests = probe_postgres_like_server(tmp_path, b"S")
    # SSLRequest, as PostgreSQL's protocol documentation gives it: length 8, code 80877103 (1234, 5679).
    assert requests == [bytes.fromhex("0000000804d2162f")]
    assert result.ok and len(result.certificates) == 2, result.error


def test_a_postgres_server_without_tls_is_said_so(tmp_path: Path) -> None:
    result, _ = probe_postgres_like_server(tmp_path, b"N")
    assert not result.ok and "answered the SSLRequest with 'N'" in str(result.error)
