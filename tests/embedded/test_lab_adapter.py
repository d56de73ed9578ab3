"""MirrorLabAdapter: Traffic Mirroring sessions in moto become mirrors in the lab (a fake one anywhere, the
real one as root)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import boto3
import pytest
from moto import mock_aws

from verifier.embedded.lab import Lab, open_udp_socket
from verifier.embedded.lab_adapter import MirrorLabAdapter
from verifier.embedded.moto_mirroring import install

REGION = "us-east-1"
ANY_IMAGE = "ami-0123456789abcdef0"
REACTION_S = 1.0  # AWS's data plane follows a session change within about a second; so must the adapter
TASK_IP, CLIENT_IP, COLLECTOR_IP = "10.0.1.25", "10.0.1.100", "10.0.2.10"

Client = Any  # a boto3 EC2 client; boto3 ships no static types for it


class FakeLab:
    """The part of Lab the adapter uses, recording what it is asked to do."""

    def __init__(self) -> None:
        self.mirrors: dict[str, int] = {}
        self.calls: list[tuple[str, str, int | None]] = []

    def install_mirror(self, task: str, vni: int) -> None:
        if self.mirrors.get(task) != vni:
            self.calls.append(("install", task, vni))
            self.mirrors[task] = vni

    def remove_mirror(self, task: str) -> None:
        self.calls.append(("remove", task, None))
        del self.mirrors[task]


@pytest.fixture(scope="module")
def client() -> Client:
    return boto3.client(
        "ec2", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )


@pytest.fixture
def ec2(client: Client) -> Iterator[Client]:
    install()
    with mock_aws():
        yield client


def _mirroring_world(ec2: Client, sources: int) -> tuple[list[str], str, str]:
    """`sources` ENIs to mirror, a target on an instance's ENI and a filter accepting all TCP each way."""
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    instance = ec2.run_instances(ImageId=ANY_IMAGE, MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]
    enis = [
        ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"]
        for _ in range(sources)
    ]
    target = ec2.create_traffic_mirror_target(
        NetworkInterfaceId=instance["NetworkInterfaces"][0]["NetworkInterfaceId"]
    )["TrafficMirrorTarget"]["TrafficMirrorTargetId"]
    filter_id = ec2.create_traffic_mirror_filter()["TrafficMirrorFilter"]["TrafficMirrorFilterId"]
    for direction in ("ingress", "egress"):
        ec2.create_traffic_mirror_filter_rule(
            TrafficMirrorFilterId=filter_id,
            TrafficDirection=direction,
            RuleNumber=100,
            RuleAction="accept",
            Protocol=6,
            SourceCidrBlock="0.0.0.0/0",
            DestinationCidrBlock="0.0.0.0/0",
        )
    return enis, target, filter_id


def _session(
    ec2: Client, eni: str, target: str, filter_id: str, number: int = 1, vni: int | None = None
) -> str:
    extra = {} if vni is None else {"VirtualNetworkId": vni}
    created = ec2.create_traffic_mirror_session(
        NetworkInterfaceId=eni,
        TrafficMirrorTargetId=target,
        TrafficMirrorFilterId=filter_id,
        SessionNumber=number,
        **extra,
    )
    return str(created["TrafficMirrorSession"]["TrafficMirrorSessionId"])


def _within(seconds: float, condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# --------------------------------------------------------------------------- anywhere (fake lab)


def test_sessions_become_mirrors_and_leave_with_them(ec2: Client) -> None:
    (api_eni, other_eni), target, filter_id = _mirroring_world(ec2, 2)
    lab = FakeLab()
    adapter = MirrorLabAdapter(ec2, cast(Lab, lab), {api_eni: "api"})
    adapter.poll_once()
    assert lab.calls == []
    session = _session(ec2, api_eni, target, filter_id, vni=4242)
    _session(ec2, other_eni, target, filter_id, vni=99)  # an ENI the lab does not stand for
    adapter.poll_once()
    adapter.poll_once()  # nothing changed: nothing to do
    assert lab.calls == [("install", "api", 4242)]
    ec2.delete_traffic_mirror_session(TrafficMirrorSessionId=session)
    adapter.poll_once()
    assert lab.calls == [("install", "api", 4242), ("remove", "api", None)]


def test_an_automatic_vni_is_used(ec2: Client) -> None:
    (api_eni,), target, filter_id = _mirroring_world(ec2, 1)
    _session(ec2, api_eni, target, filter_id)
    described = ec2.describe_traffic_mirror_sessions()["TrafficMirrorSessions"]
    lab = FakeLab()
    MirrorLabAdapter(ec2, cast(Lab, lab), {api_eni: "api"}).poll_once()
    assert lab.mirrors == {"api": described[0]["VirtualNetworkId"]}


def test_the_lowest_session_number_wins_on_one_eni(ec2: Client) -> None:
    (api_eni,), target, filter_id = _mirroring_world(ec2, 1)
    _session(ec2, api_eni, target, filter_id, number=5, vni=500)
    first = _session(ec2, api_eni, target, filter_id, number=2, vni=200)
    lab = FakeLab()
    adapter = MirrorLabAdapter(ec2, cast(Lab, lab), {api_eni: "api"})
    adapter.poll_once()
    assert lab.mirrors == {"api": 200}
    ec2.delete_traffic_mirror_session(TrafficMirrorSessionId=first)
    adapter.poll_once()
    assert lab.mirrors == {"api": 500}


class PagedEc2:
    """Answers DescribeTrafficMirrorSessions in two pages joined by a NextToken."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []

    def describe_traffic_mirror_sessions(self, **request: str) -> dict[str, Any]:
        self.requests.append(request)
        if "NextToken" not in request:
            first = {"NetworkInterfaceId": "eni-a", "SessionNumber": 1, "VirtualNetworkId": 11}
            return {"TrafficMirrorSessions": [first], "NextToken": "page-2"}
        second = {"NetworkInterfaceId": "eni-b", "SessionNumber": 1, "VirtualNetworkId": 12}
        return {"TrafficMirrorSessions": [second]}


def test_every_page_of_sessions_is_read() -> None:
    ec2, lab = PagedEc2(), FakeLab()
    MirrorLabAdapter(ec2, cast(Lab, lab), {"eni-a": "a", "eni-b": "b"}).poll_once()
    assert ec2.requests == [{}, {"NextToken": "page-2"}]
    assert lab.mirrors == {"a": 11, "b": 12}


def test_the_thread_reacts_within_a_second_and_survives_failures(ec2: Client) -> None:
    (api_eni,), target, filter_id = _mirroring_world(ec2, 1)
    failing = {"left": 2}

    class FlakyLab(FakeLab):
        def install_mirror(self, task: str, vni: int) -> None:
            if failing["left"]:
                failing["left"] -= 1
                raise OSError("tc is busy")
            super().install_mirror(task, vni)

    lab = FlakyLab()
    with MirrorLabAdapter(ec2, cast(Lab, lab), {api_eni: "api"}, poll_interval=0.05) as adapter:
        session = _session(ec2, api_eni, target, filter_id, vni=7)
        assert _within(REACTION_S, lambda: lab.mirrors == {"api": 7})
        assert list(adapter.errors) == ["OSError: tc is busy"] * 2
        ec2.delete_traffic_mirror_session(TrafficMirrorSessionId=session)
        assert _within(REACTION_S, lambda: lab.mirrors == {})
    started = time.monotonic()
    adapter.stop()  # stopping again is harmless and quick
    assert time.monotonic() - started < 1


# --------------------------------------------------------------------------- root (real lab)


def _mirrored_frames(sock: socket.socket, quiet_s: float = 1.0) -> list[int]:
    """The VNIs of the VXLAN datagrams that arrive until none has for quiet_s."""
    sock.settimeout(quiet_s)
    vnis = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            datagram = sock.recv(65535)
        except TimeoutError:
            break
        # VXLAN header: flags(1) reserved(3) VNI(3) reserved(1)
        vnis.append(int.from_bytes(datagram[4:7], "big"))
    return vnis


def _tc_filters(lab: Lab) -> str:
    return subprocess.run(
        ["tc", "-n", lab.task_namespace("api"), "filter", "show", "dev", "eth0", "ingress"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout


@pytest.mark.root
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None,
    reason="the mirror lab needs root and iproute2 (ip, tc)",
)
def test_moto_sessions_drive_the_real_lab(ec2: Client) -> None:
    (api_eni,), target, filter_id = _mirroring_world(ec2, 1)
    tasks, clients = {"api": f"{TASK_IP}/24"}, {"web": f"{CLIENT_IP}/24"}
    with Lab(tasks, clients, f"{COLLECTOR_IP}/24", prefix="a" + secrets.token_hex(3)) as lab:
        lab.start_http_server("api", 80)
        web = lab.start_http_client("web", TASK_IP, 80, count=0)
        collector = open_udp_socket(lab.collector_namespace, COLLECTOR_IP, 4789)
        try:
            with MirrorLabAdapter(ec2, lab, {api_eni: "api"}) as adapter:
                web.run_once()
                assert _mirrored_frames(collector) == []  # no session, no mirror
                session = _session(ec2, api_eni, target, filter_id, vni=4242)
                assert _within(REACTION_S, lambda: "mirred" in _tc_filters(lab))
                web.run_once()
                vnis = _mirrored_frames(collector)
                assert vnis and set(vnis) == {4242}
                ec2.delete_traffic_mirror_session(TrafficMirrorSessionId=session)
                assert _within(REACTION_S, lambda: "mirred" not in _tc_filters(lab))
                web.run_once()
                assert _mirrored_frames(collector) == []
                assert not adapter.errors
        finally:
            collector.close()
