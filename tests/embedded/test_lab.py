"""The mirror lab: its bookkeeping anywhere; its namespaces, mirrors and peers as root."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.traffic import make_pki
from verifier.embedded import lab as lab_module
from verifier.embedded.lab import Lab, TrafficClient, open_udp_socket
from verifier.errors import InputError

TASK_IP, DB_IP = "10.0.1.25", "10.0.1.26"
CLIENT_IP = "10.0.1.100"
COLLECTOR_IP = "10.0.2.10"
ETHERTYPE_IPV4 = 0x0800
VXLAN_FLAG_VNI_VALID = 0x08  # RFC 7348: the I flag, first byte of the VXLAN header
QUIET_S = 1.0  # how long "nothing arrives" is watched for

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None,
    reason="the mirror lab needs root and iproute2 (ip, tc)",
)
needs_servers = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("psql", "redis-server", "redis-cli", "openssl"))
    or not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
    reason="needs postgresql, redis-server, redis-cli and openssl (Debian packages)",
)


def _prefix() -> str:
    return "t" + secrets.token_hex(3)  # random, so parallel runs never share namespaces


def _namespaces(prefix: str) -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.startswith(f"{prefix}-")]


def _in(namespace: str, *argv: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", namespace, *argv], capture_output=True, text=True, check=True, timeout=30
    ).stdout


def _small_lab(prefix: str) -> Lab:
    return Lab({"api": f"{TASK_IP}/24"}, {"web": f"{CLIENT_IP}/24"}, f"{COLLECTOR_IP}/24", prefix=prefix)


def _drain(sock: socket.socket, quiet_s: float = QUIET_S) -> list[tuple[bytes, str]]:
    """Every datagram until none arrives for quiet_s, with its source address."""
    sock.settimeout(quiet_s)
    received = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            datagram, (source, _) = sock.recvfrom(65535)
        except TimeoutError:
            break
        received.append((datagram, source))
    return received


def _vni_and_frame(datagram: bytes) -> tuple[int, bytes]:
    # VXLAN header: flags(1) reserved(3) VNI(3) reserved(1), then the mirrored Ethernet frame.
    assert datagram[0] == VXLAN_FLAG_VNI_VALID
    return int.from_bytes(datagram[4:7], "big"), datagram[8:]


def _tcp_endpoints(frame: bytes) -> tuple[str, int, str, int]:
    """(source ip, source port, destination ip, destination port) of an Ethernet/IPv4/TCP frame."""
    assert int.from_bytes(frame[12:14], "big") == ETHERTYPE_IPV4, "only IPv4 crosses the ENI (no ARP)"
    ip = frame[14:]
    header_length = (ip[0] & 0x0F) * 4
    assert ip[9] == 6, "TCP"
    tcp = ip[header_length:]
    return (
        socket.inet_ntoa(ip[12:16]),
        int.from_bytes(tcp[0:2], "big"),
        socket.inet_ntoa(ip[16:20]),
        int.from_bytes(tcp[2:4], "big"),
    )


# --------------------------------------------------------------------------- anywhere


def test_names_must_be_short_lowercase_words() -> None:
    with pytest.raises(InputError, match="'my-lab'"):
        Lab({}, {}, f"{COLLECTOR_IP}/24", prefix="my-lab")
    with pytest.raises(InputError, match="1-12 characters"):
        Lab({"averyverylongname": f"{TASK_IP}/24"}, {}, f"{COLLECTOR_IP}/24")


def test_a_name_cannot_be_both_task_and_client() -> None:
    with pytest.raises(InputError, match="db named both"):
        Lab({"db": f"{TASK_IP}/24"}, {"db": f"{CLIENT_IP}/24"}, f"{COLLECTOR_IP}/24")


def test_underlay_addresses_skip_the_collector() -> None:
    lab = Lab({"a": "10.0.1.2/24", "b": "10.0.1.3/24"}, {}, "10.0.2.1/24")
    assert {task: str(address) for task, address in lab.underlay.items()} == {
        "a": "10.0.2.2/24",
        "b": "10.0.2.3/24",
    }


def test_underlay_network_too_small_for_the_tasks() -> None:
    # A /30 has two hosts: the collector and one task.
    with pytest.raises(InputError, match="no room for 2 tasks"):
        Lab({"a": "10.0.1.2/24", "b": "10.0.1.3/24"}, {}, "10.0.2.1/30")


def test_up_refuses_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab_module.os, "geteuid", lambda: 1000)
    with pytest.raises(
        InputError, match=r"^the mirror lab needs root \(network namespaces\): run with sudo$"
    ):
        _small_lab(_prefix()).up()


def test_up_names_a_missing_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab_module.os, "geteuid", lambda: 0)
    monkeypatch.setattr(lab_module.shutil, "which", lambda tool: None if tool == "tc" else f"/usr/bin/{tool}")
    with pytest.raises(InputError, match="needs tc, not found"):
        _small_lab(_prefix()).up()


def test_vni_must_fit_24_bits() -> None:
    with pytest.raises(InputError, match="not 24 bits"):
        _small_lab(_prefix()).install_mirror("api", 1 << 24)


def test_unknown_task_is_refused() -> None:
    with pytest.raises(InputError, match="'db'"):
        _small_lab(_prefix()).install_mirror("db", 7)


def test_client_loop_runs_count_rounds_and_records_failures() -> None:
    calls: list[int] = []

    def one_round() -> None:
        calls.append(len(calls))
        if len(calls) == 2:
            raise OSError("connection refused")

    client = TrafficClient("flaky", one_round, count=3, pause=0.01)
    client.start()
    assert client.wait(10)
    assert calls == [0, 1, 2]
    assert client.rounds == 2
    assert client.failures == ["mirror lab: flaky: connection refused"]


def test_client_stop_ends_the_loop_during_a_pause() -> None:
    client = TrafficClient("slow", lambda: None, count=1000, pause=60)
    client.start()
    started = time.monotonic()
    client.stop()
    assert time.monotonic() - started < 5
    assert client.rounds == 1


# --------------------------------------------------------------------------- root


@pytest.fixture
def small_lab() -> Iterator[Lab]:
    with _small_lab(_prefix()) as lab:
        yield lab


@pytest.mark.root
@needs_root
def test_topology(small_lab: Lab) -> None:
    prefix = small_lab.prefix
    assert sorted(_namespaces(prefix)) == sorted(
        [f"{prefix}-fabric", f"{prefix}-collector", f"{prefix}-task-api", f"{prefix}-client-web"]
    )
    task = small_lab.task_namespace("api")
    assert f"inet {TASK_IP}/24" in _in(task, "ip", "-4", "addr", "show", "dev", "eth0")
    assert "inet 10.0.2.1/24" in _in(task, "ip", "-4", "addr", "show", "dev", "ul0")
    collector = _in(small_lab.collector_namespace, "ip", "-4", "addr", "show", "dev", "eth0")
    assert f"inet {COLLECTOR_IP}/24" in collector
    # The underlay is its own segment: the subnet bridge holds the task's and the client's ENIs only.
    ports = _in(small_lab.fabric_namespace, "ip", "-o", "link", "show", "master", "svc")
    assert sorted(line.split(":")[1].split("@")[0].strip() for line in ports.splitlines()) == ["c0", "t0"]
    # VPC-like: the client reaches the task, and the ENI's neighbours are static (no ARP on the wire).
    small_lab.start_http_server("api", 80)
    small_lab.start_http_client("web", TASK_IP, 80, count=0).run_once()
    assert "PERMANENT" in _in(task, "ip", "neigh", "show", CLIENT_IP)


@pytest.mark.root
@needs_root
def test_down_removes_everything_and_can_run_twice() -> None:
    lab = _small_lab(_prefix())
    lab.up()
    assert lab.workdir is None  # made only for what needs files
    pki = make_pki()
    lab.start_tls_server("api", 443, pki.chain_pem, pki.key_pem)
    workdir = lab.workdir
    assert workdir is not None and workdir.is_dir()
    lab.down()
    lab.down()
    assert _namespaces(lab.prefix) == []
    assert not workdir.exists()


@pytest.mark.root
@needs_root
def test_up_failing_halfway_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    lab = _small_lab(_prefix())
    made: list[str] = []
    real_veth = Lab._veth

    def veth_then_fail(self: Lab, port: str, *args: object, **kwargs: object) -> None:
        if made:
            raise InputError("mirror lab: simulated failure")
        made.append(port)
        real_veth(self, port, *args, **kwargs)

    monkeypatch.setattr(Lab, "_veth", veth_then_fail)
    with pytest.raises(InputError, match="simulated failure"):
        lab.up()
    assert made == ["t0"]
    assert _namespaces(lab.prefix) == []
    assert lab.workdir is None


@pytest.mark.root
@needs_root
def test_up_removes_a_namespace_left_by_a_crashed_run() -> None:
    lab = _small_lab(_prefix())
    stale = f"{lab.prefix}-task-api"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    leftover = subprocess.Popen(["ip", "netns", "exec", stale, "sleep", "60"])
    try:
        time.sleep(0.2)  # let sleep enter the namespace
        with lab:
            assert leftover.wait(10) != 0  # killed, not finished
            assert _namespaces(lab.prefix).count(stale) == 1
    finally:
        if leftover.poll() is None:
            leftover.kill()
            leftover.wait()
    assert _namespaces(lab.prefix) == []


@pytest.mark.root
@needs_root
def test_mirror_copies_both_directions_over_the_underlay_until_removed(small_lab: Lab) -> None:
    collector = open_udp_socket(small_lab.collector_namespace, COLLECTOR_IP, 4789)
    try:
        small_lab.start_http_server("api", 80)
        small_lab.start_http_client("web", TASK_IP, 80, count=0)
        small_lab.install_mirror("api", 4242)
        assert small_lab.mirrors == {"api": 4242}
        small_lab.run_clients_once()
        received = _drain(collector)
        assert received, "the mirror delivered nothing"
        assert {source for _, source in received} == {"10.0.2.1"}  # the task's underlay address
        assert {_vni_and_frame(datagram)[0] for datagram, _ in received} == {4242}
        endpoints = {_tcp_endpoints(_vni_and_frame(datagram)[1]) for datagram, _ in received}
        assert {(src, dst) for src, _, dst, _ in endpoints} == {(CLIENT_IP, TASK_IP), (TASK_IP, CLIENT_IP)}

        small_lab.remove_mirror("api")
        task = small_lab.task_namespace("api")
        assert (
            "mirred"
            not in subprocess.run(
                ["tc", "-n", task, "filter", "show", "dev", "eth0", "ingress"], capture_output=True, text=True
            ).stdout
        )
        assert "vxmirror" not in _in(task, "ip", "link")
        small_lab.run_clients_once()  # traffic still flows...
        assert _drain(collector) == []  # ...but none of it is mirrored
        small_lab.remove_mirror("api")  # and removing twice is harmless
    finally:
        collector.close()


@pytest.mark.root
@needs_root
def test_reinstalling_with_another_vni_replaces_the_mirror(small_lab: Lab) -> None:
    collector = open_udp_socket(small_lab.collector_namespace, COLLECTOR_IP, 4789)
    try:
        small_lab.install_mirror("api", 7)
        small_lab.install_mirror("api", 7)  # the same session again changes nothing
        small_lab.install_mirror("api", 8)
        vxlan = _in(small_lab.task_namespace("api"), "ip", "-d", "link", "show", "vxmirror")
        assert "vxlan id 8 " in vxlan
        small_lab.start_http_server("api", 80)
        small_lab.start_http_client("web", TASK_IP, 80, count=0).run_once()
        assert {_vni_and_frame(datagram)[0] for datagram, _ in _drain(collector)} == {8}
    finally:
        collector.close()


def test_open_udp_socket_in_a_missing_namespace() -> None:
    with pytest.raises(InputError, match="no network namespace"):
        open_udp_socket("no-such-namespace-here", "127.0.0.1", 0)


@pytest.mark.root
@needs_root
@needs_servers
def test_peers_and_clients_through_the_mirror(tmp_path: Path) -> None:
    pki = make_pki("api.internal.example")
    other_ca = make_pki("other.internal.example")
    keylog = tmp_path / "keys.log"
    tasks = {"api": f"{TASK_IP}/24", "db": f"{DB_IP}/24"}
    clients = {"tls": "10.0.1.100/24", "plain": "10.0.1.101/24", "sql": "10.0.1.102/24"}
    with Lab(tasks, clients, f"{COLLECTOR_IP}/24", prefix=_prefix()) as lab:
        lab.start_tls_server("api", 443, pki.chain_pem, pki.key_pem)
        lab.start_tls_server("api", 8443, other_ca.chain_pem, other_ca.key_pem)
        lab.start_http_server("api", 80)
        lab.start_postgres("db", pki.chain_pem, pki.key_pem)
        lab.start_redis("db")
        collector = open_udp_socket(lab.collector_namespace, COLLECTOR_IP, 4789)
        try:
            lab.install_mirror("api", 101)
            lab.install_mirror("db", 102)
            looping = lab.start_tls_client(
                "tls", TASK_IP, 443, keylog, server_name="api.internal.example", count=2, pause=0.05
            )
            lab.start_tls_client("tls", TASK_IP, 8443, keylog, count=0)
            lab.start_http_client("plain", TASK_IP, 80, count=0)
            lab.start_psql_client("sql", DB_IP, sslmode="disable", count=0)
            lab.start_psql_client("sql", DB_IP, sslmode="require", count=0)
            lab.start_redis_client("plain", DB_IP, count=0)
            assert looping.wait(20)
            assert (looping.rounds, looping.failures) == (2, [])
            lab.run_clients_once()  # the psql clients check the server saw ssl off, then on
            received = _drain(collector)
        finally:
            collector.close()
        servers = set()
        for datagram, _ in received:
            vni, frame = _vni_and_frame(datagram)
            _, _, destination, port = _tcp_endpoints(frame)
            if destination in (TASK_IP, DB_IP):
                servers.add((vni, destination, port))
        assert servers == {
            (101, TASK_IP, 443),
            (101, TASK_IP, 8443),
            (101, TASK_IP, 80),
            (102, DB_IP, 5432),
            (102, DB_IP, 6379),
        }
        # TLS 1.3 secrets of 2 looped + 2 one-off connections (SSLKEYLOGFILE format).
        assert keylog.read_text().count("CLIENT_TRAFFIC_SECRET_0 ") == 4
        # The TLS server refuses anything older than TLS 1.3.
        refused = subprocess.run(
            ["ip", "netns", "exec", lab.client_namespace("tls"), "openssl", "s_client", "-tls1_2",
             "-connect", f"{TASK_IP}:443"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
        )  # fmt: skip
        assert refused.returncode != 0
        prefix = lab.prefix
    assert _namespaces(prefix) == []
    assert subprocess.run(["pgrep", "-f", f"{prefix}-lab-"], capture_output=True).stdout == b""
