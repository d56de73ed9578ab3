"""verifier.aws.mirroring: plan, create and tear down Traffic Mirroring resources against moto (completed by
verifier.embedded.moto_mirroring) and, for AWS answers moto cannot give (a requester-managed ENI refused,
in-use and throttled deletes), against botocore's Stubber."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.aws.test_pca import offline_environment
from verifier.aws import runstate
from verifier.aws.mirroring import (
    MirrorPlan,
    Session,
    Target,
    client_token,
    create,
    filter_rules,
    make_plans,
    planned_calls,
    teardown,
)
from verifier.embedded import moto_mirroring
from verifier.errors import AwsError, UsageError

REGION = "eu-west-1"
EXPIRES = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)
RUN = "run-20261122-a"


@dataclass
class Vpc:
    ec2: Any
    tasks: tuple[str, str]  # two ECS task ENIs
    collector: str  # the collector instance's ENI
    states: Path


@pytest.fixture
def vpc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Vpc]:
    offline_environment(monkeypatch, tmp_path)
    moto_mirroring.install()
    with mock_aws():
        ec2 = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        ).client("ec2")
        vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        tasks = tuple(
            ec2.create_network_interface(SubnetId=subnet, Description=f"task {n}")["NetworkInterface"][
                "NetworkInterfaceId"
            ]
            for n in (1, 2)
        )
        instance = ec2.run_instances(
            ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="c5.large", SubnetId=subnet
        )["Instances"][0]
        collector = instance["NetworkInterfaces"][0]["NetworkInterfaceId"]
        yield Vpc(ec2, (tasks[0], tasks[1]), collector, tmp_path / "runs")


def plan_for(vpc: Vpc, run_id: str = RUN, **options: Any) -> MirrorPlan:
    [plan] = make_plans(
        vpc.ec2, run_id, vpc.tasks, Target("network-interface", vpc.collector), EXPIRES, **options
    )
    return plan


def tagged_with(vpc: Vpc, run_id: str) -> dict[str, list[str]]:
    """Every mirroring resource moto holds that carries the run's tag (rules: those of any filter)."""
    by_tag = [{"Name": "tag:verifier:run-id", "Values": [run_id]}]
    filters = vpc.ec2.describe_traffic_mirror_filters(Filters=by_tag)["TrafficMirrorFilters"]
    return {
        "sessions": [
            s["TrafficMirrorSessionId"]
            for s in vpc.ec2.describe_traffic_mirror_sessions(Filters=by_tag)["TrafficMirrorSessions"]
        ],
        "targets": [
            t["TrafficMirrorTargetId"]
            for t in vpc.ec2.describe_traffic_mirror_targets(Filters=by_tag)["TrafficMirrorTargets"]
        ],
        "filters": [f["TrafficMirrorFilterId"] for f in filters],
        "rules": [
            r["TrafficMirrorFilterRuleId"]
            for f in vpc.ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"]
            for r in f["IngressFilterRules"] + f["EgressFilterRules"]
            if {"Key": "verifier:run-id", "Value": run_id} in r["Tags"]
        ],
    }


def never_sleep(seconds: float) -> None:
    pytest.fail(f"slept {seconds} s where nothing is to be retried")


NOTHING: dict[str, list[str]] = {"sessions": [], "targets": [], "filters": [], "rules": []}


def foreign_session(vpc: Vpc, eni: str, number: int) -> str:
    """A session someone else set up on ``eni``, to their own target and filter."""
    target = vpc.ec2.create_traffic_mirror_target(NetworkLoadBalancerArn=f"arn:aws:elb:nlb/{eni}/{number}")
    mirror_filter = vpc.ec2.create_traffic_mirror_filter(Description="theirs")
    answer = vpc.ec2.create_traffic_mirror_session(
        NetworkInterfaceId=eni,
        TrafficMirrorTargetId=target["TrafficMirrorTarget"]["TrafficMirrorTargetId"],
        TrafficMirrorFilterId=mirror_filter["TrafficMirrorFilter"]["TrafficMirrorFilterId"],
        SessionNumber=number,
    )
    return str(answer["TrafficMirrorSession"]["TrafficMirrorSessionId"])


# ---------------------------------------------------------------------------------------------------------
# End to end with moto


def test_create_then_teardown_leaves_nothing(vpc: Vpc) -> None:
    plan = plan_for(vpc, snaplen=128)
    assert plan.risks == ()
    state = runstate.start(RUN, vpc.states)
    created = create(vpc.ec2, plan, state)

    assert [eni for eni, _ in created.mirrored] == list(vpc.tasks)
    assert created.not_mirrorable == ()
    [mirror_filter] = vpc.ec2.describe_traffic_mirror_filters(TrafficMirrorFilterIds=[created.filter_id])[
        "TrafficMirrorFilters"
    ]
    expected_tags = [
        {"Key": "verifier:run-id", "Value": RUN},
        {"Key": "verifier:created-by", "Value": "verifier"},
        {"Key": "verifier:expires-at", "Value": "2026-11-22T18:00:00+00:00"},
    ]
    assert mirror_filter["Tags"] == expected_tags
    for direction in ("IngressFilterRules", "EgressFilterRules"):
        [rule] = mirror_filter[direction]
        assert (
            rule["RuleAction"],
            rule["Protocol"],
            rule["SourceCidrBlock"],
            rule["DestinationCidrBlock"],
        ) == (
            "accept",
            6,
            "0.0.0.0/0",
            "0.0.0.0/0",
        )
        assert "DestinationPortRange" not in rule
        assert rule["Tags"] == expected_tags
    [target] = vpc.ec2.describe_traffic_mirror_targets()["TrafficMirrorTargets"]
    assert (target["TrafficMirrorTargetId"], target["NetworkInterfaceId"]) == (
        created.target_id,
        vpc.collector,
    )
    assert target["Tags"] == expected_tags
    sessions = vpc.ec2.describe_traffic_mirror_sessions()["TrafficMirrorSessions"]
    assert sorted(s["NetworkInterfaceId"] for s in sessions) == sorted(vpc.tasks)
    assert {(s["SessionNumber"], s["PacketLength"], s["TrafficMirrorTargetId"]) for s in sessions} == {
        (1, 128, created.target_id)
    }
    assert len({s["VirtualNetworkId"] for s in sessions}) == 2
    assert all(s["Tags"] == expected_tags for s in sessions)
    # Every resource is recorded with its id.
    recorded = runstate.load(RUN, vpc.states)
    assert all(step.resource_id for step in recorded.steps)
    assert len(recorded.steps) == 6

    report = teardown(vpc.ec2, recorded, sleep=never_sleep)
    assert tagged_with(vpc, RUN) == NOTHING
    assert vpc.ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"] == []
    assert report.left == ()
    assert report.deleted[:2] == tuple(session for _, session in created.mirrored)
    assert report.deleted[2:] == (created.target_id, *created.rule_ids, created.filter_id)
    assert runstate.load(RUN, vpc.states).torn_down
    again = teardown(vpc.ec2, runstate.load(RUN, vpc.states), sleep=never_sleep)
    assert (again.deleted, again.left) == ((), ())
    assert sorted(again.already_gone) == sorted(report.deleted)


def test_the_same_run_id_twice_creates_nothing_new(vpc: Vpc) -> None:
    plan = plan_for(vpc)
    first = create(vpc.ec2, plan, runstate.start(RUN, vpc.states))
    second = create(vpc.ec2, plan, runstate.start(RUN, vpc.states))
    assert second == first
    assert len(vpc.ec2.describe_traffic_mirror_sessions()["TrafficMirrorSessions"]) == 2
    assert len(vpc.ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"]) == 1


def test_a_foreign_session_pushes_ours_up_and_is_reported_and_left_alone(vpc: Vpc) -> None:
    theirs = foreign_session(vpc, vpc.tasks[0], 1)
    plan = plan_for(vpc)
    assert [(s.network_interface_id, s.session_number) for s in plan.sessions] == [
        (vpc.tasks[0], 2),
        (vpc.tasks[1], 1),
    ]
    assert plan.risks == (
        f"{vpc.tasks[0]}: packets matched by session 1's filter ({theirs}) go there, not to us",
    )
    state = runstate.start(RUN, vpc.states)
    create(vpc.ec2, plan, state)
    teardown(vpc.ec2, state, sleep=never_sleep)
    assert tagged_with(vpc, RUN) == NOTHING
    [left] = vpc.ec2.describe_traffic_mirror_sessions()["TrafficMirrorSessions"]
    assert left["TrafficMirrorSessionId"] == theirs
    assert len(vpc.ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"]) == 1


def test_an_eni_with_three_sessions_is_not_mirrorable_and_the_others_are(vpc: Vpc) -> None:
    for number in (1, 5, 9):
        foreign_session(vpc, vpc.tasks[0], number)
    plan = plan_for(vpc)
    assert plan.unmirrorable == (
        (
            vpc.tasks[0],
            "already has 3 mirror sessions (numbers 1, 5, 9), the most AWS allows on one interface",
        ),
    )
    created = create(vpc.ec2, plan, runstate.start(RUN, vpc.states))
    assert [eni for eni, _ in created.mirrored] == [vpc.tasks[1]]
    assert created.not_mirrorable == plan.unmirrorable


def test_planned_calls_match_what_create_does(vpc: Vpc) -> None:
    plan = plan_for(vpc, ports=[5432, 443, 444], vni=7000)
    calls = planned_calls(plan)
    assert [operation for operation, _ in calls] == [
        "CreateTrafficMirrorFilter",
        *["CreateTrafficMirrorFilterRule"] * 8,
        "CreateTrafficMirrorTarget",
        "CreateTrafficMirrorSession",
        "CreateTrafficMirrorSession",
    ]
    ranges = [
        (p["TrafficDirection"], p["RuleNumber"], p.get("DestinationPortRange"), p.get("SourcePortRange"))
        for operation, p in calls
        if operation == "CreateTrafficMirrorFilterRule"
    ]
    assert ranges[:4] == [
        ("ingress", 100, {"FromPort": 443, "ToPort": 444}, None),
        ("ingress", 110, None, {"FromPort": 443, "ToPort": 444}),
        ("ingress", 120, {"FromPort": 5432, "ToPort": 5432}, None),
        ("ingress", 130, None, {"FromPort": 5432, "ToPort": 5432}),
    ]
    assert [direction for direction, *_ in ranges[4:]] == ["egress"] * 4
    assert calls[0][1]["ClientToken"] == client_token(RUN, "filter")
    assert len({p["ClientToken"] for _, p in calls}) == len(calls)
    assert [p["VirtualNetworkId"] for _, p in calls[-2:]] == [7000, 7001]
    assert vpc.ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"] == []  # planning made none

    created = create(vpc.ec2, plan, runstate.start(RUN, vpc.states))
    sessions = vpc.ec2.describe_traffic_mirror_sessions()["TrafficMirrorSessions"]
    assert sorted(s["VirtualNetworkId"] for s in sessions) == [7000, 7001]
    assert len(created.rule_ids) == 8


def test_more_ports_than_a_filter_has_rules_for_is_refused() -> None:
    with pytest.raises(
        UsageError, match=r"3 ports in 3 ranges need 12 filter rules .* at most 10: give at most 2"
    ):
        filter_rules([22, 80, 443])
    assert len(filter_rules(range(8000, 9000))) == 4  # one range
    with pytest.raises(UsageError, match="70000 is not a TCP port"):
        filter_rules([70000])


def test_an_instance_target_takes_ten_sources_unless_batched(vpc: Vpc) -> None:
    sources = [f"eni-{n:017x}" for n in range(12)]
    target = Target("network-interface", vpc.collector)
    with pytest.raises(
        UsageError, match=f"12 source ENIs, but the instance target {vpc.collector} takes at most 10"
    ):
        make_plans(vpc.ec2, RUN, sources, target, EXPIRES)
    plans = make_plans(vpc.ec2, RUN, sources, target, EXPIRES, batch=True)
    assert [(p.run_id, len(p.sessions)) for p in plans] == [(f"{RUN}-b1", 10), (f"{RUN}-b2", 2)]
    assert len(make_plans(vpc.ec2, RUN, sources, target, EXPIRES, instance_target_sources=100)) == 1
    nlb = Target("network-load-balancer", "arn:aws:elasticloadbalancing:eu-west-1:1:loadbalancer/net/c/1")
    assert len(make_plans(vpc.ec2, RUN, sources, nlb, EXPIRES)[0].sessions) == 12


def test_nlb_and_gwlb_endpoint_targets_and_refused_options(vpc: Vpc) -> None:
    gwlbe = Target("gateway-load-balancer-endpoint", "vpce-0123456789abcdef0")
    [plan] = make_plans(vpc.ec2, RUN, vpc.tasks, gwlbe, EXPIRES)
    [target_call] = [p for operation, p in planned_calls(plan) if operation == "CreateTrafficMirrorTarget"]
    assert target_call["GatewayLoadBalancerEndpointId"] == "vpce-0123456789abcdef0"
    assert "NetworkInterfaceId" not in target_call
    with pytest.raises(UsageError, match=r"--vni 16777215: VNIs are 24-bit, 16777215\.\.16777216 do not fit"):
        make_plans(vpc.ec2, RUN, vpc.tasks, gwlbe, EXPIRES, vni=(1 << 24) - 1)
    with pytest.raises(UsageError, match="--snaplen 0"):
        make_plans(vpc.ec2, RUN, vpc.tasks, gwlbe, EXPIRES, snaplen=0)


class Killed(Exception):
    """The process dying right after AWS created a resource, before the run state recorded its id."""


class DiesAfter:
    """The EC2 client, killed right after its ``creates``-th successful create call."""

    def __init__(self, client: Any, creates: int) -> None:
        self._client = client
        self._left = creates
        self.meta = client.meta

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not name.startswith("create_"):
            return method

        def create_then_maybe_die(**params: Any) -> Any:
            answer = method(**params)
            self._left -= 1
            if self._left == 0:
                raise Killed(name)
            return answer

        return create_then_maybe_die


@pytest.mark.parametrize("step", range(1, 7))  # filter, 2 rules, target, 2 sessions
def test_a_run_killed_after_any_create_is_torn_down_from_its_state(vpc: Vpc, step: int) -> None:
    plan = plan_for(vpc)
    with pytest.raises(Killed):
        create(DiesAfter(vpc.ec2, step), plan, runstate.start(RUN, vpc.states))
    assert tagged_with(vpc, RUN) != NOTHING
    # A foreign run's resources stay.
    other = create(vpc.ec2, plan_for(vpc, run_id="someone-else"), runstate.start("someone-else", vpc.states))
    report = teardown(vpc.ec2, runstate.load(RUN, vpc.states), sleep=never_sleep)
    assert report.left == ()
    assert len(report.deleted) == step
    assert tagged_with(vpc, RUN) == NOTHING
    assert len(tagged_with(vpc, "someone-else")["sessions"]) == len(other.mirrored) == 2


# ---------------------------------------------------------------------------------------------------------
# What only AWS answers, through the Stubber


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Any, Stubber]]:
    offline_environment(monkeypatch, tmp_path)
    client = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    ).client("ec2")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_a_refused_source_does_not_stop_the_others(stubbed: tuple[Any, Stubber], tmp_path: Path) -> None:
    client, stubber = stubbed
    plan = MirrorPlan(
        run_id=RUN,
        rules=filter_rules(None),
        target=Target("network-interface", "eni-0c011ec7000000000"),
        sessions=(Session("eni-0ec5000000000000a", 1, None), Session("eni-0ec5000000000000b", 1, None)),
        snaplen=None,
        tags=(("verifier:run-id", RUN),),
    )
    stubber.add_response(
        "create_traffic_mirror_filter", {"TrafficMirrorFilter": {"TrafficMirrorFilterId": "tmf-1"}}
    )
    for number in (1, 2):
        stubber.add_response(
            "create_traffic_mirror_filter_rule",
            {"TrafficMirrorFilterRule": {"TrafficMirrorFilterRuleId": f"tmfr-{number}"}},
        )
    stubber.add_response(
        "create_traffic_mirror_target", {"TrafficMirrorTarget": {"TrafficMirrorTargetId": "tmt-1"}}
    )
    message = "You are not allowed to manage 'ela-attach' attachments."
    stubber.add_client_error("create_traffic_mirror_session", "OperationNotPermitted", message)
    stubber.add_response(
        "create_traffic_mirror_session",
        {"TrafficMirrorSession": {"TrafficMirrorSessionId": "tms-b"}},
        expected_params={
            **planned_calls(plan)[-1][1],
            "TrafficMirrorFilterId": "tmf-1",
            "TrafficMirrorTargetId": "tmt-1",
        },
    )
    state = runstate.start(RUN, tmp_path)
    created = create(client, plan, state)
    assert created.mirrored == (("eni-0ec5000000000000b", "tms-b"),)
    assert created.not_mirrorable == (("eni-0ec5000000000000a", f"OperationNotPermitted: {message}"),)
    refused = state.step("session:eni-0ec5000000000000a")
    assert refused is not None and refused.resource_id is None


def teardown_state(tmp_path: Path, kind: str, resource_id: str) -> runstate.RunState:
    state = runstate.start(RUN, tmp_path)
    state.intend(kind, kind, "token", {})
    state.created(kind, resource_id)
    return state


def expect_nothing_tagged(stubber: Stubber) -> None:
    stubber.add_response("describe_traffic_mirror_sessions", {"TrafficMirrorSessions": []})
    stubber.add_response("describe_traffic_mirror_targets", {"TrafficMirrorTargets": []})
    stubber.add_response("describe_traffic_mirror_filters", {"TrafficMirrorFilters": []})


def expect_no_tagged_rules(stubber: Stubber) -> None:
    # teardown's last step looks for security-group rules a --fix-sg of the run added
    stubber.add_response("describe_security_group_rules", {"SecurityGroupRules": []})


@pytest.mark.parametrize("code", ["TrafficMirrorTargetInUse", "DependencyViolation", "Throttling"])
def test_in_use_and_throttled_deletes_are_retried(
    stubbed: tuple[Any, Stubber], tmp_path: Path, code: str
) -> None:
    client, stubber = stubbed
    expect_nothing_tagged(stubber)
    for _ in range(3):
        stubber.add_client_error("delete_traffic_mirror_target", code, "busy")
    stubber.add_response("delete_traffic_mirror_target", {"TrafficMirrorTargetId": "tmt-1"})
    expect_no_tagged_rules(stubber)
    slept: list[float] = []
    report = teardown(client, teardown_state(tmp_path, "target", "tmt-1"), sleep=slept.append)
    assert report.deleted == ("tmt-1",)
    assert slept == [1.0, 2.0, 4.0]


def test_a_delete_that_never_succeeds_is_reported_after_bounded_retries(
    stubbed: tuple[Any, Stubber], tmp_path: Path
) -> None:
    client, stubber = stubbed
    expect_nothing_tagged(stubber)
    for _ in range(8):
        stubber.add_client_error(
            "delete_traffic_mirror_filter", "TrafficMirrorFilterInUse", "in use by tms-9"
        )
    expect_no_tagged_rules(stubber)
    slept: list[float] = []
    state = teardown_state(tmp_path, "filter", "tmf-1")
    report = teardown(client, state, sleep=slept.append)
    assert slept == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    [(resource, why)] = report.left
    assert resource == "tmf-1" and "TrafficMirrorFilterInUse: in use by tms-9" in why
    assert not runstate.load(RUN, tmp_path).torn_down


def test_not_found_on_delete_is_done_and_other_errors_are_not_retried(
    stubbed: tuple[Any, Stubber], tmp_path: Path
) -> None:
    client, stubber = stubbed
    expect_nothing_tagged(stubber)
    stubber.add_client_error(
        "delete_traffic_mirror_session", "InvalidTrafficMirrorSessionId.NotFound", "gone"
    )
    expect_no_tagged_rules(stubber)
    report = teardown(client, teardown_state(tmp_path, "session", "tms-1"), sleep=never_sleep)
    assert (report.deleted, report.already_gone, report.left) == ((), ("tms-1",), ())

    expect_nothing_tagged(stubber)
    stubber.add_client_error("delete_traffic_mirror_session", "UnauthorizedOperation", "no")
    expect_no_tagged_rules(stubber)
    report = teardown(client, teardown_state(tmp_path, "session", "tms-1"), sleep=never_sleep)
    [(_, why)] = report.left
    assert "missing IAM permission ec2:DeleteTrafficMirrorSession" in why


def test_a_failing_filter_create_raises(stubbed: tuple[Any, Stubber], tmp_path: Path) -> None:
    client, stubber = stubbed
    stubber.add_client_error("create_traffic_mirror_filter", "UnauthorizedOperation", "no")
    plan = MirrorPlan(RUN, filter_rules(None), Target("network-interface", "eni-1"), (), None, ())
    state = runstate.start(RUN, tmp_path)
    with pytest.raises(AwsError, match="ec2:CreateTrafficMirrorFilter"):
        create(client, plan, state)
    assert [(step.role, step.resource_id) for step in state.steps] == [("filter", None)]


def test_cleanup_finds_runs_by_tag_and_deletes_only_the_expired_ones(vpc: Vpc) -> None:
    from verifier.aws.cleanup import clean, expired, leftovers

    old = make_plans(vpc.ec2, "old-run", vpc.tasks[:1], Target("network-interface", vpc.collector),
                     EXPIRES - timedelta(hours=2))[0]  # fmt: skip
    fresh = make_plans(vpc.ec2, "fresh-run", vpc.tasks[1:], Target("network-interface", vpc.collector),
                       EXPIRES + timedelta(hours=2))[0]  # fmt: skip
    create(vpc.ec2, old, runstate.start("old-run", vpc.states))
    create(vpc.ec2, fresh, runstate.start("fresh-run", vpc.states))
    foreign = vpc.ec2.create_traffic_mirror_filter(Description="someone else's")["TrafficMirrorFilter"]

    found = leftovers(vpc.ec2, vpc.states)
    assert set(found) == {"old-run", "fresh-run"} and found["old-run"].expires_at == EXPIRES - timedelta(
        hours=2
    )
    assert expired(found, EXPIRES) == ["old-run"]

    reports = clean(vpc.ec2, ["old-run"], state_base=vpc.states, sleep=never_sleep)
    assert reports["old-run"].left == () and len(reports["old-run"].deleted) >= 4
    assert tagged_with(vpc, "old-run") == {"sessions": [], "targets": [], "filters": [], "rules": []}
    assert tagged_with(vpc, "fresh-run")["sessions"]  # not expired: untouched
    remaining = {
        f["TrafficMirrorFilterId"] for f in vpc.ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"]
    }
    assert foreign["TrafficMirrorFilterId"] in remaining  # untagged: never touched
    assert set(leftovers(vpc.ec2, vpc.states)) == {"fresh-run"}
    again = clean(vpc.ec2, ["old-run"], state_base=vpc.states, sleep=never_sleep)  # safe twice
    assert again["old-run"].deleted == () and again["old-run"].left == ()
