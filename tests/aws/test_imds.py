"""verifier.aws.imds against a local HTTP server that plays IMDSv2 (token required), and against addresses
where nothing answers."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from verifier.aws.imds import InstanceIdentity, instance_identity

TOKEN = "AQAEAFake-token=="
MAC = "0a:1b:2c:3d:4e:5f"
# The fields of a real instance identity document that verifier reads, among some it does not.
DOCUMENT = {
    "accountId": "123456789012",
    "architecture": "x86_64",
    "availabilityZone": "eu-west-1a",
    "imageId": "ami-0abcdef1234567890",
    "instanceId": "i-0123456789abcdef0",
    "instanceType": "c5n.large",
    "privateIp": "10.0.1.17",
    "region": "eu-west-1",
    "version": "2017-09-30",
}
PATHS = {
    "/latest/dynamic/instance-identity/document": json.dumps(DOCUMENT),
    "/latest/meta-data/mac": MAC,
    f"/latest/meta-data/network/interfaces/macs/{MAC}/interface-id": "eni-0fedcba9876543210",
}


class Imds(BaseHTTPRequestHandler):
    """IMDSv2 as AWS documents it: PUT a TTL for a token, GETs need the token, else 401."""

    paths = PATHS
    seen: list[tuple[str, str]]

    def do_PUT(self) -> None:
        self.seen.append(("PUT", self.path))
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if self.path != "/latest/api/token":
            self._answer(404, "")
        elif not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            self._answer(400, "")
        else:
            self._answer(200, TOKEN)

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path))
        if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            self._answer(401, "")
        elif self.path in self.paths:
            self._answer(200, self.paths[self.path])
        else:
            self._answer(404, "")

    def _answer(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def imds() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    seen: list[tuple[str, str]] = []
    handler = type("RecordingImds", (Imds,), {"seen": seen})
    with serve(handler) as url:
        yield url, seen


def test_identity_from_imdsv2(
    imds: tuple[str, list[tuple[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = imds
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # a proxy must not be used for link-local IMDS
    assert instance_identity(url) == InstanceIdentity(
        instance_id="i-0123456789abcdef0",
        region="eu-west-1",
        account_id="123456789012",
        instance_type="c5n.large",
        network_interface_id="eni-0fedcba9876543210",
    )
    assert seen[0] == ("PUT", "/latest/api/token")


def test_a_metadata_service_without_imds_paths_is_not_ec2() -> None:
    # Something else on the address: it answers the token PUT, but not with the paths EC2 has.
    handler = type("Other", (Imds,), {"seen": [], "paths": {"/latest/meta-data/mac": MAC}})
    with serve(handler) as url:
        assert instance_identity(url) is None


def test_a_document_that_is_not_an_instance_identity_is_not_ec2() -> None:
    paths = {**PATHS, "/latest/dynamic/instance-identity/document": json.dumps({"instanceId": "x"})}
    handler = type("Odd", (Imds,), {"seen": [], "paths": paths})
    with serve(handler) as url:
        assert instance_identity(url) is None


def test_a_closed_port_is_none_at_once() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    started = time.monotonic()
    assert instance_identity(f"http://127.0.0.1:{port}") is None
    assert time.monotonic() - started < 0.5


def test_a_silent_listener_is_none_after_the_timeout() -> None:
    # Connections complete in the kernel's backlog but nobody answers: like a token response dropped by
    # the hop limit inside a container.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        assert instance_identity(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.3) is None
        assert time.monotonic() - started < 1.0
