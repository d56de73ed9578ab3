"""verifier.run: the whole run against the embedded AWS (moto, completed by verifier.embedded), with VXLAN
sent to the collector's socket on 127.0.0.1 as the mirror target would receive it.

Assertions about what is left in the account read moto's state through a separate EC2 client, never the run's
own record.
"""

from __future__ import annotations

import errno
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from tests.shop import Shop, leftovers, request
from tests.traffic import Endpoints, make_pki, tcp_frames, tls_conversation
from verifier.analysis import Judging
from verifier.aws import runstate
from verifier.aws.cleanup import clean
from verifier.core.chains import TrustAnchors
from verifier.core.model import Verdict
from verifier.embedded.demo_account import WEB_HTTP_PORT, WEB_HTTPS_PORT
from verifier.errors import UsageError
from verifier.run import AnalysisOptions, LocalCapture, SilentProgress, TeardownIncomplete, run

SAFETY = 20.0  # seconds any wait in these tests may take at most


def vxlan(vni: int, inner: bytes) -> bytes:
    # Flags 0x08 (VNI valid), 24 reserved bits, 24-bit VNI, 8 reserved bits (RFC 7348), then the inner frame.
    return struct.pack("!B3xI", 0x08, vni << 8) + inner


class MirrorTarget:
    """Plays AWS's data plane: once the run's sessions exist, sends the given conversations to the collector
    socket as VXLAN with each session's VNI."""

    def __init__(
        self, ec2: Any, conversations: Callable[[dict[str, int]], list[bytes]], sources: int
    ) -> None:
        self._ec2 = ec2
        self._sources = sources
        self._conversations = conversations
        self._opened = threading.Event()
        self._address: tuple[str, int] = ("", 0)
        self.sent = 0
        self._thread = threading.Thread(target=self._send, daemon=True)

    def open_socket(self) -> socket.socket:
        # UDP 4789, where the analyser decapsulates VXLAN, on a random loopback address (127/8 is all local).
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _attempt in range(5):
            try:
                sock.bind((f"127.{random.randrange(1, 255)}.{random.randrange(1, 255)}.1", 4789))
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        else:
            pytest.skip("UDP port 4789 is in use on every loopback address tried")
        self._address = sock.getsockname()
        self._opened.set()
        self._thread.start()
        return sock

    def _send(self) -> None:
        assert self._opened.wait(SAFETY)
        # The socket opens before the sessions exist (the run checks it can listen first): wait for them.
        deadline = time.monotonic() + SAFETY
        vni_of_eni: dict[str, int] = {}
        while len(vni_of_eni) < self._sources and time.monotonic() < deadline:
            time.sleep(0.05)
            sessions = self._ec2.describe_traffic_mirror_sessions()["TrafficMirrorSessions"]
            vni_of_eni = {s["NetworkInterfaceId"]: int(s["VirtualNetworkId"]) for s in sessions}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for datagram in self._conversations(vni_of_eni):
                sender.sendto(datagram, self._address)
                self.sent += 1

    def join(self) -> None:
        self._thread.join(SAFETY)


def web_traffic(shop: Shop, tmp_path: Path, keylog: Path) -> Callable[[dict[str, int]], list[bytes]]:
    """A TLS 1.3 client of web's Service Connect port and a plaintext one of its open HTTP port."""
    (web,) = [task for task in shop.account.tasks if task.service == "web"]
    client = shop.account.free_task_subnet_addresses[0]
    tls = tls_conversation(tmp_path, keylog=keylog)
    http = [(True, b"GET /orders HTTP/1.1\r\nHost: web\r\n\r\n"), (False, b"HTTP/1.1 200 OK\r\n\r\n")]

    def conversations(vni_of_eni: dict[str, int]) -> list[bytes]:
        datagrams = []
        for messages, port in ((tls, WEB_HTTPS_PORT), (http, WEB_HTTP_PORT)):
            ends = Endpoints(client=(client, 40000 + port), server=(web.private_ip, port))
            datagrams += [vxlan(vni_of_eni[web.eni_id], frame[2]) for frame in tcp_frames(messages, ends)]
        return datagrams

    return conversations


def test_a_run_mirrors_captures_tears_down_and_reports(shop: Shop, tmp_path: Path) -> None:
    keylog = tmp_path / "keys.log"
    target = MirrorTarget(shop.ec2, web_traffic(shop, tmp_path, keylog), len(shop.account.tasks))
    anchors = TrustAnchors.from_pem_bundle(make_pki().root_pem)
    report = run(
        shop.session,
        request(shop),
        LocalCapture(target.open_socket),
        AnalysisOptions(keylog=keylog, judging=Judging(anchors=anchors)),
        SilentProgress(),
    )
    target.join()

    assert leftovers(shop.ec2) == []
    assert report.coverage.collector is not None and report.coverage.collector.datagrams == target.sent > 0
    by_port = {int(flow.server.rsplit(":", 1)[1]): flow for flow in report.flows}
    tls, http = by_port[WEB_HTTPS_PORT], by_port[WEB_HTTP_PORT]
    assert (tls.category, tls.chain_source, tls.identity, tls.verdict) == (
        "TLS1.3",
        "keylog",
        Verdict.PASS,
        Verdict.PASS,
    )
    assert (http.category, http.verdict) == ("plaintext(http)", Verdict.FAIL)

    rows = {(row.service, row.port): row for row in report.declared}
    assert rows[("web", WEB_HTTPS_PORT)].tls_declared is True
    assert rows[("web", WEB_HTTPS_PORT)].verdict is Verdict.PASS
    assert rows[("web", WEB_HTTP_PORT)].tls_declared is None  # the port Service Connect does not cover
    assert rows[("web", WEB_HTTP_PORT)].verdict is Verdict.FAIL
    assert rows[("data", 5432)].verdict is Verdict.INCONCLUSIVE  # declared, no traffic during the capture

    record = report.run
    assert record is not None and record.teardown_complete
    assert record.caller_arn and record.account == "123456789012"
    assert {source.service for source in record.sources if source.session_id} == {"web", "data"}
    assert all(source.vni is not None for source in record.sources)
    kinds = sorted(event.kind for event in record.resources)
    assert kinds == ["filter", "filter-rule", "filter-rule", "session", "session", "target"]
    for event in record.resources:
        assert event.outcome == "deleted" and event.created_at and event.deleted_at
        assert event.created_at <= event.deleted_at
    assert runstate.load("run-test-1").torn_down


CREATES = (
    "CreateTrafficMirrorFilter",
    "CreateTrafficMirrorFilterRule",
    "CreateTrafficMirrorTarget",
    "CreateTrafficMirrorSession",
    "AuthorizeSecurityGroupIngress",
)


def fail_after_create(session: boto3.session.Session, k: int) -> list[str]:
    """Make the k-th create call of clients made from ``session`` raise once AWS has answered it: the resource
    exists, and the run is hit at its worst moment. Returns the calls seen."""
    seen: list[str] = []

    def after(event_name: str, **_kwargs: Any) -> None:
        seen.append(event_name.rsplit(".", 1)[1])
        if len(seen) == k:
            raise RuntimeError(f"injected failure after {seen[-1]}")

    for operation in CREATES:
        session.events.register(f"after-call.ec2.{operation}", after)
    return seen


@pytest.mark.parametrize("k", range(1, 7))
def test_a_failure_right_after_any_create_leaves_nothing(shop: Shop, k: int) -> None:
    seen = fail_after_create(shop.session, k)
    with pytest.raises(RuntimeError, match="injected failure"):
        run(shop.session, request(shop), LocalCapture(("127.0.0.1", 0)), AnalysisOptions(), SilentProgress())
    assert len(seen) == k
    assert leftovers(shop.ec2) == []
    assert runstate.load("run-test-1").torn_down


def drop_vxlan_rule(shop: Shop) -> str:
    (group,) = shop.ec2.describe_security_groups(GroupNames=["verifier-collector"])["SecurityGroups"]
    shop.ec2.revoke_security_group_ingress(GroupId=group["GroupId"], IpPermissions=group["IpPermissions"])
    return str(group["GroupId"])


def test_a_collector_that_drops_vxlan_is_refused_before_anything_is_made(shop: Shop) -> None:
    drop_vxlan_rule(shop)
    with pytest.raises(
        UsageError, match=r"drop VXLAN \(UDP 4789\) from 10\.0\.1\.\d+, 10\.0\.1\.\d+.*--fix-sg"
    ):
        run(shop.session, request(shop), LocalCapture(("127.0.0.1", 0)), AnalysisOptions(), SilentProgress())
    assert leftovers(shop.ec2) == []


@pytest.mark.parametrize("k", [1, 7])
def test_fix_sg_rules_last_only_as_long_as_the_run(shop: Shop, k: int) -> None:
    group = drop_vxlan_rule(shop)
    seen = fail_after_create(shop.session, k)  # 1: right after the rule; 7: after the last session
    with pytest.raises(RuntimeError, match="injected failure"):
        run(
            shop.session,
            request(shop, fix_sg=True),
            LocalCapture(("127.0.0.1", 0)),
            AnalysisOptions(),
            SilentProgress(),
        )
    assert seen[0] == "AuthorizeSecurityGroupIngress"
    assert leftovers(shop.ec2) == []
    (after,) = shop.ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
    assert after["IpPermissions"] == []


def test_fix_sg_run_completes_and_removes_its_rule(shop: Shop) -> None:
    group = drop_vxlan_rule(shop)
    report = run(
        shop.session,
        request(shop, fix_sg=True, duration=0.3),
        LocalCapture(("127.0.0.1", 0)),
        AnalysisOptions(),
        SilentProgress(),
    )
    assert report.run is not None and report.run.teardown_complete
    assert [event.kind for event in report.run.resources].count("sg-rule") == 2
    assert leftovers(shop.ec2) == []
    (after,) = shop.ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
    assert after["IpPermissions"] == []


def test_a_refused_source_is_reported_and_the_others_are_mirrored(shop: Shop) -> None:
    (data,) = [task for task in shop.account.tasks if task.service == "data"]
    # A foreign tool's three sessions fill the data task's ENI: AWS allows no fourth.
    foreign_filter = shop.ec2.create_traffic_mirror_filter()["TrafficMirrorFilter"]["TrafficMirrorFilterId"]
    foreign_target = shop.ec2.create_traffic_mirror_target(NetworkInterfaceId=shop.account.collector_eni_id)[
        "TrafficMirrorTarget"
    ]["TrafficMirrorTargetId"]
    for number in (1, 2, 3):
        shop.ec2.create_traffic_mirror_session(
            NetworkInterfaceId=data.eni_id,
            TrafficMirrorTargetId=foreign_target,
            TrafficMirrorFilterId=foreign_filter,
            SessionNumber=number,
        )
    report = run(
        shop.session,
        request(shop, duration=0.3),
        LocalCapture(("127.0.0.1", 0)),
        AnalysisOptions(),
        SilentProgress(),
    )
    assert report.run is not None
    outcome = {source.service: source for source in report.run.sources}
    assert outcome["web"].session_id is not None and outcome["web"].refused is None
    assert outcome["data"].session_id is None and "already has 3 mirror sessions" in str(
        outcome["data"].refused
    )
    # Ours are gone, the foreign tool's untouched.
    sessions = shop.ec2.describe_traffic_mirror_sessions()["TrafficMirrorSessions"]
    assert sorted(s["SessionNumber"] for s in sessions) == [1, 2, 3]


def refuse_deletes_of_targets(session: boto3.session.Session) -> None:
    """EC2 refuses every DeleteTrafficMirrorTarget (as a missing IAM permission would)."""

    def refuse(**_kwargs: Any) -> tuple[Any, dict[str, Any]]:
        # A before-call handler's answer stands for AWS's: the HTTP response and the parsed error.
        error = {"Code": "UnauthorizedOperation", "Message": "You are not authorized to perform this."}
        answer = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 403}}
        return SimpleNamespace(status_code=403, headers={}), answer

    session.events.register("before-call.ec2.DeleteTrafficMirrorTarget", refuse)


def test_a_failed_run_whose_teardown_leaves_something_says_what_and_how_to_finish(shop: Shop) -> None:
    fail_after_create(shop.session, 6)  # the run fails once every resource exists
    refuse_deletes_of_targets(shop.session)
    with pytest.raises(TeardownIncomplete) as raised:
        run(shop.session, request(shop), LocalCapture(("127.0.0.1", 0)), AnalysisOptions(), SilentProgress())
    (target,) = [
        t["TrafficMirrorTargetId"] for t in shop.ec2.describe_traffic_mirror_targets()["TrafficMirrorTargets"]
    ]
    message = str(raised.value)
    assert target in message and "UnauthorizedOperation" in message
    assert "injected failure" in message and "verifier cleanup --run-id run-test-1" in message
    assert raised.value.exit_code == 3
    # What the message tells the operator to do finishes the job.
    clean(shop.ec2, ["run-test-1"], sleep=lambda _seconds: None)
    assert leftovers(shop.ec2) == []


def more_web_tasks(shop: Shop, count: int) -> None:
    """``count`` more tasks of service web: with the two there are, more than an instance target takes."""
    ecs = shop.session.client("ecs")
    (service,) = ecs.describe_services(cluster="shop", services=["web"])["services"]
    ecs.run_task(
        cluster="shop",
        taskDefinition="web",
        count=count,
        launchType="FARGATE",
        networkConfiguration=service["networkConfiguration"],
        group="service:web",
    )


def test_more_sources_than_the_collector_takes_are_refused_with_the_numbers(shop: Shop) -> None:
    more_web_tasks(shop, 9)
    with pytest.raises(UsageError, match=r"11 source ENIs, but the instance target .* takes at most 10"):
        run(shop.session, request(shop), LocalCapture(("127.0.0.1", 0)), AnalysisOptions(), SilentProgress())
    assert leftovers(shop.ec2) == []


def test_batches_mirror_every_source_one_batch_at_a_time(shop: Shop) -> None:
    more_web_tasks(shop, 9)
    seen_sessions: list[int] = []

    def count_sessions(**_kwargs: Any) -> None:
        seen_sessions.append(len(shop.ec2.describe_traffic_mirror_sessions()["TrafficMirrorSessions"]))

    shop.session.events.register("before-call.ec2.DeleteTrafficMirrorSession", count_sessions)
    report = run(
        shop.session,
        request(shop, batch=True, duration=0.2),
        LocalCapture(("127.0.0.1", 0)),
        AnalysisOptions(),
        SilentProgress(),
    )
    assert report.run is not None and report.run.teardown_complete
    assert all(source.session_id is not None for source in report.run.sources)
    assert len(report.run.sources) == 11
    assert seen_sessions and max(seen_sessions) <= 10  # never more sessions on the target than it takes
    # One run state per batch, each torn down.
    assert sorted(path.stem for path in runstate.runs_directory().glob("*.json")) == [
        "run-test-1-b1",
        "run-test-1-b2",
    ]
    assert leftovers(shop.ec2) == []
