"""`verifier plan` against moto: it shows every create call and makes none."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from tests.aws.test_pca import offline_environment
from verifier.cli import app
from verifier.embedded import moto_mirroring

REGION = "us-east-1"


@pytest.fixture
def ec2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    offline_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    moto_mirroring.install()
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION)


def _enis(ec2: Any, count: int) -> list[str]:
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    return [
        ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"]
        for _ in range(count)
    ]


def _foreign_session(ec2: Any, source: str, collector: str, number: int) -> None:
    """Someone else's mirror session on ``source``, to a target and filter of their own."""
    target = ec2.create_traffic_mirror_target(NetworkInterfaceId=collector)["TrafficMirrorTarget"]
    mirror_filter = ec2.create_traffic_mirror_filter()["TrafficMirrorFilter"]
    ec2.create_traffic_mirror_session(
        NetworkInterfaceId=source,
        TrafficMirrorTargetId=target["TrafficMirrorTargetId"],
        TrafficMirrorFilterId=mirror_filter["TrafficMirrorFilterId"],
        SessionNumber=number,
    )


def test_plan_lists_the_calls_and_makes_none(ec2: Any) -> None:
    first, second, collector = _enis(ec2, 3)
    arguments = ["plan", "--eni", first, "--eni", second, "--collector-eni", collector, "--region", REGION]
    result = CliRunner().invoke(app, [*arguments, "--run-id", "r1", "--ports", "443", "--format", "json"])
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.output)["runs"]
    operations = [call["operation"] for call in run["calls"]]
    assert operations[0] == "CreateTrafficMirrorFilter"
    assert operations.count("CreateTrafficMirrorSession") == 2 and "CreateTrafficMirrorTarget" in operations
    sessions = [
        call["parameters"] for call in run["calls"] if call["operation"] == "CreateTrafficMirrorSession"
    ]
    assert {session["NetworkInterfaceId"] for session in sessions} == {first, second}
    tags = {t["Key"]: t["Value"] for t in sessions[0]["TagSpecifications"][0]["Tags"]}
    assert tags["verifier:run-id"] == "r1" and tags["verifier:created-by"] == "verifier"
    # Nothing was created.
    assert ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"] == []
    assert ec2.describe_traffic_mirror_sessions()["TrafficMirrorSessions"] == []


def test_plan_reports_someone_elses_session_as_a_coverage_risk(ec2: Any) -> None:
    source, collector = _enis(ec2, 2)
    _foreign_session(ec2, source, collector, number=1)
    result = CliRunner().invoke(
        app, ["plan", "--eni", source, "--collector-eni", collector, "--region", REGION]
    )
    assert result.exit_code == 0, result.output
    assert "coverage risk" in result.output and "session 1" in result.output
    assert "'SessionNumber': 2" in result.output


def test_plan_needs_exactly_one_target(ec2: Any) -> None:
    (source,) = _enis(ec2, 1)
    result = CliRunner().invoke(app, ["plan", "--eni", source, "--region", REGION])
    assert result.exit_code != 0 and "exactly one mirror target" in str(result.exception)


def test_cleanup_command_dry_run_then_delete(
    ec2: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from verifier.aws import runstate
    from verifier.aws.mirroring import Target, create, make_plans

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    source, collector = _enis(ec2, 2)
    expires = datetime.now(UTC) - timedelta(minutes=5)
    (plan,) = make_plans(ec2, "gone-run", [source], Target("network-interface", collector), expires)
    create(ec2, plan, runstate.start("gone-run"))

    listed = CliRunner().invoke(app, ["cleanup", "--expired", "--dry-run", "--region", REGION])
    assert listed.exit_code == 0 and "gone-run: would delete" in listed.output
    assert ec2.describe_traffic_mirror_sessions()["TrafficMirrorSessions"]  # dry run: still there

    done = CliRunner().invoke(app, ["cleanup", "--expired", "--region", REGION])
    assert done.exit_code == 0, done.output
    assert "gone-run: deleted" in done.output
    assert ec2.describe_traffic_mirror_sessions()["TrafficMirrorSessions"] == []
    assert ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"] == []
    nothing = CliRunner().invoke(app, ["cleanup", "--region", REGION])
    assert nothing.exit_code != 0 and "--run-id" in str(nothing.exception)


def _address(ec2: Any, eni: str) -> str:
    (interface,) = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"]
    return str(interface["PrivateIpAddress"])


def test_plan_says_which_sources_the_collector_would_drop(ec2: Any) -> None:
    first, second, collector = _enis(ec2, 3)
    arguments = ["plan", "--eni", first, "--eni", second, "--collector-eni", collector, "--region", REGION]
    blocked = CliRunner().invoke(app, [*arguments, "--format", "json"])
    assert blocked.exit_code == 0, blocked.output
    ingress = json.loads(blocked.output)["vxlan_ingress"]
    assert sorted(ingress["missing"]) == sorted([_address(ec2, first), _address(ec2, second)])

    (group,) = ec2.describe_network_interfaces(NetworkInterfaceIds=[collector])["NetworkInterfaces"][0][
        "Groups"
    ]
    ec2.authorize_security_group_ingress(
        GroupId=group["GroupId"],
        IpPermissions=[
            {"IpProtocol": "udp", "FromPort": 4789, "ToPort": 4789, "IpRanges": [{"CidrIp": "10.20.0.0/16"}]}
        ],
    )
    allowed = CliRunner().invoke(app, arguments)
    assert allowed.exit_code == 0 and "allowed from every source" in allowed.output


def test_session_number_override_never_takes_someone_elses(ec2: Any) -> None:
    source, collector = _enis(ec2, 2)
    _foreign_session(ec2, source, collector, number=5)
    base = ["plan", "--eni", source, "--collector-eni", collector, "--region", REGION, "--format", "json"]
    first = json.loads(CliRunner().invoke(app, [*base, "--session-number", "1"]).output)["runs"][0]
    session = next(c["parameters"] for c in first["calls"] if c["operation"] == "CreateTrafficMirrorSession")
    assert session["SessionNumber"] == 1
    assert any("comes before session 5" in risk for risk in first["coverage_risks"])
    taken = json.loads(CliRunner().invoke(app, [*base, "--session-number", "5"]).output)["runs"][0]
    assert taken["not_mirrorable"] and "taken" in taken["not_mirrorable"][0]["why"]
    assert not any(c["operation"] == "CreateTrafficMirrorSession" for c in taken["calls"])
    out_of_range = CliRunner().invoke(app, [*base, "--session-number", "0"])
    assert out_of_range.exit_code != 0 and "1 to 32766" in str(out_of_range.exception)
