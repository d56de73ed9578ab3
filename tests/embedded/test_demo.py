"""End to end on the mirror lab: `verifier run`'s code path against the embedded AWS, with Linux mirroring a
task's ENI exactly while its Traffic Mirroring session exists, real servers and clients talking.

Needs root (namespaces, VXLAN, tc) and the Debian packages ./scripts/test installs as root.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.report_schema import valid_report
from tests.shop import leftovers
from verifier.core.model import FlowRecord, Report, Verdict
from verifier.embedded.demo import LAB_PREFIX, REGION, DemoWorld, demo_world
from verifier.embedded.demo_account import (
    LEGACY_TLS_PORT,
    POSTGRES_PORT,
    REDIS_PORT,
    VXLAN_PORT,
    WEB_HTTP_PORT,
    WEB_HTTPS_PORT,
)
from verifier.embedded.lab import lab_namespaces, open_udp_socket
from verifier.report.json_report import report_to_dict
from verifier.run import SilentProgress, run

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the mirror lab needs root (network namespaces)"),
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("ip", "tc", "psql", "redis-server", "redis-cli")),
        reason="the mirror lab needs iproute2, PostgreSQL and Redis (./scripts/test installs them as root)",
    ),
]
CAPTURE_SECONDS = 5.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoWorld]:
    # Clients loop (until the fixture ends) long enough for every capture of this module, however slow.
    # Not the demo's own prefix: the `verifier demo` of a test below removes a lab with that one.
    with demo_world(tmp_path_factory.mktemp("demo"), 900, SilentProgress(), lab_prefix="vdtest") as built:
        yield built


def by_port(report: Report) -> dict[int, list[FlowRecord]]:
    flows: dict[int, list[FlowRecord]] = {}
    for flow in report.flows:
        flows.setdefault(int(flow.server.rsplit(":", 1)[1]), []).append(flow)
    return flows


# What a connection cut by the capture's end shows: its opening packets only. Nothing more is claimed of it.
CUT_AT_THE_END = frozenset({"no-payload", "TLS-incomplete"})


def captured_whole(flows: list[FlowRecord]) -> list[FlowRecord]:
    """The connections seen from their SYN through their data: the capture's start and end cut the others."""
    seen = [flow for flow in flows if not flow.midstream and flow.category not in CUT_AT_THE_END]
    assert seen, "no connection of this port was captured whole"
    cut = [flow for flow in flows if flow.category in CUT_AT_THE_END]
    assert all(flow.verdict is not Verdict.PASS for flow in cut)
    return seen


def mirrors_removed(world: DemoWorld) -> None:
    """The adapter removes a mirror within a poll of its session's deletion."""
    deadline = time.monotonic() + 5
    while world.lab.mirrors and time.monotonic() < deadline:
        time.sleep(0.1)
    assert world.lab.mirrors == {}


def test_the_run_judges_every_peer_and_leaves_nothing_behind(world: DemoWorld) -> None:
    report = run(
        world.session,
        world.request(CAPTURE_SECONDS),
        world.capture(),
        world.options(probe=False),
        SilentProgress(),
    )
    flows = by_port(report)
    # Service Connect's port: TLS 1.3, its chain (from the client's key log) leads to the account's PCA.
    for flow in captured_whole(flows[WEB_HTTPS_PORT]):
        assert (flow.category, flow.chain_source) == ("TLS1.3", "keylog")
        assert (flow.identity, flow.verdict) == (Verdict.PASS, Verdict.PASS), flow.reason
    # The TLS server whose certificate comes from another CA.
    for flow in captured_whole(flows[LEGACY_TLS_PORT]):
        assert (flow.category, flow.identity, flow.verdict) == ("TLS1.3", Verdict.FAIL, Verdict.FAIL)
    # Cleartext HTTP, PostgreSQL and Redis.
    for port, category in ((WEB_HTTP_PORT, "plaintext(http)"), (REDIS_PORT, "plaintext(resp)")):
        assert {flow.category for flow in captured_whole(flows[port])} == {category}
        assert all(flow.verdict is Verdict.FAIL for flow in captured_whole(flows[port]))
    postgres = captured_whole(flows[POSTGRES_PORT])
    plaintext = [flow for flow in postgres if flow.category == "plaintext(pgsql)"]
    upgraded = [flow for flow in postgres if flow.category == "TLS1.3"]
    assert plaintext and all(flow.verdict is Verdict.FAIL for flow in plaintext)
    # sslmode=require: SSLRequest answered 'S', then TLS: encrypted, never called plaintext.
    assert upgraded and all(
        flow.upgrade_from == "pgsql" and flow.verdict is not Verdict.FAIL for flow in upgraded
    )
    # Whatever else a capture's edges cut (a connection caught at its last packet), nothing claims more.
    assert {flow.category for flow in postgres} <= {
        "plaintext(pgsql)",
        "TLS1.3",
        "TLS-incomplete",
        "no-payload",
    }

    rows = {(row.service, row.port): row for row in report.declared}
    assert (rows["web", WEB_HTTPS_PORT].tls_declared, rows["web", WEB_HTTPS_PORT].verdict) == (
        True,
        Verdict.PASS,
    )
    # The plaintext port left open beside the TLS-declared one is flagged.
    assert (rows["web", WEB_HTTP_PORT].tls_declared, rows["web", WEB_HTTP_PORT].verdict) == (
        None,
        Verdict.FAIL,
    )

    assert report.run is not None and report.run.teardown_complete
    valid_report(json.dumps(report_to_dict(report)))  # the published schema holds a whole run's report
    assert world.keylog.stat().st_mode & 0o777 == 0o600  # TLS secrets
    assert leftovers(world.session.client("ec2")) == []
    # The mirror is gone from the data plane too: traffic still flows, and nothing reaches the collector.
    mirrors_removed(world)
    rounds_before = sum(client.rounds for client in world.traffic)
    with open_udp_socket(world.lab.collector_namespace, world.account.collector_ip, VXLAN_PORT) as collector:
        collector.settimeout(3.0)
        with pytest.raises(TimeoutError):
            collector.recv(65535)
    assert sum(client.rounds for client in world.traffic) > rounds_before


def test_a_probe_from_a_peer_verifies_the_chain_tls13_hides(world: DemoWorld) -> None:
    options = replace(world.options(probe=True), keylog=None)
    report = run(world.session, world.request(CAPTURE_SECONDS), world.capture(), options, SilentProgress())
    for flow in captured_whole(by_port(report)[WEB_HTTPS_PORT]):
        assert (flow.chain_source, flow.identity, flow.verdict) == ("probe", Verdict.PASS, Verdict.PASS)
    # PostgreSQL with sslmode=require: the probe asks for TLS as psql did (SSLRequest), and gets the server's
    # chain, from another CA than the account's.
    upgraded = [flow for flow in captured_whole(by_port(report)[POSTGRES_PORT]) if flow.category == "TLS1.3"]
    assert upgraded and all(
        (flow.chain_source, flow.identity) == ("probe", Verdict.FAIL) for flow in upgraded
    ), [flow.chain_note for flow in upgraded][:2]
    assert leftovers(world.session.client("ec2")) == []
    mirrors_removed(world)


def test_the_collector_socket_is_the_only_receiver(world: DemoWorld) -> None:
    # Sanity of the lab itself: while no session exists, the collector namespace hears no VXLAN at all.
    with open_udp_socket(world.lab.collector_namespace, world.account.collector_ip, VXLAN_PORT) as collector:
        collector.settimeout(1.0)
        with pytest.raises((TimeoutError, socket.timeout)):
            collector.recv(65535)


def test_sigterm_mid_capture_tears_down_and_stops_the_mirror(world: DemoWorld, tmp_path: Path) -> None:
    # A separate `verifier run` process on the embedded AWS (the environment points it there); it listens on
    # loopback, as what is asserted is the account and the lab's data plane, not what it captured.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as free:
        free.bind(("127.0.0.1", 0))
        listen = f"127.0.0.1:{free.getsockname()[1]}"
    command = [
        *(sys.executable, "-c", "from verifier.cli import main; main()", "run"),
        *("--collector", world.account.collector_instance_id, "--cluster", world.account.cluster),
        *("--placement", "collector", "--listen", listen, "--duration", "60s", "--region", REGION),
    ]
    errors = tmp_path / "stderr.txt"
    with (
        errors.open("w") as stderr,
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr) as run,
    ):
        try:
            deadline = time.monotonic() + 60
            capturing = "capturing on" in errors.read_text() and len(world.lab.mirrors) == 2
            while not capturing and run.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
                capturing = "capturing on" in errors.read_text() and len(world.lab.mirrors) == 2
            assert capturing, errors.read_text()  # in the capture phase, both ENIs mirrored
            run.send_signal(signal.SIGTERM)
            assert run.wait(60) == 128 + signal.SIGTERM, errors.read_text()
        finally:
            run.kill()
    assert leftovers(world.session.client("ec2")) == []
    mirrors_removed(world)


def test_sigterm_stops_the_demo_and_takes_everything_down(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "from verifier.cli import main; main()", "demo", "--duration", "60s"]
    errors = tmp_path / "stderr.txt"
    with (
        errors.open("w") as log,
        subprocess.Popen(
            [*command, "--out", str(tmp_path / "out")], stdout=subprocess.DEVNULL, stderr=log
        ) as demo,
    ):
        try:
            deadline = time.monotonic() + 60
            while "capturing on" not in errors.read_text() and demo.poll() is None:
                assert time.monotonic() < deadline, errors.read_text()
                time.sleep(0.1)
            demo.send_signal(signal.SIGTERM)
            assert demo.wait(60) == 128 + signal.SIGTERM, errors.read_text()
        finally:
            demo.kill()
    assert "demo stopped" in errors.read_text()
    assert lab_namespaces(LAB_PREFIX) == []  # the lab's namespaces, and the servers in them, are gone
    state = json.loads(next((tmp_path / "out" / "state" / "verifier" / "runs").glob("*.json")).read_text())
    assert state["torn_down"] is True  # the run tore down before the demo stopped
