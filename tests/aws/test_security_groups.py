"""verifier.aws.security_groups: judge, open and close the mirror target's VXLAN (UDP 4789) ingress against
moto, whose security groups have rule ids, rule tags, DescribeSecurityGroupRules with group-id, rule-id and
tag filters, and revoking by rule id; botocore's Stubber gives what moto cannot: a rule revoked by someone
else between our describe and our revoke, and an AuthorizeSecurityGroupIngress that fails."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.aws.test_pca import offline_environment
from verifier.aws import runstate
from verifier.aws.security_groups import (
    VxlanReachability,
    check_vxlan_ingress,
    fix_vxlan_ingress,
    remove_vxlan_ingress,
    tagged_rules,
)
from verifier.errors import AwsError

REGION = "eu-west-1"
EXPIRES = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)
RUN = "run-20261122-sg"
INSIDE = ("10.0.1.10", "10.0.200.3")  # in 10.0.0.0/16
OUTSIDE = "192.168.7.7"


@dataclass
class Vpc:
    ec2: Any
    vpc_id: str
    groups: tuple[str, str]  # the collector ENI's two security groups
    collector: str  # the mirror target's ENI
    states: Path


@pytest.fixture
def vpc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Vpc]:
    offline_environment(monkeypatch, tmp_path)
    with mock_aws():
        ec2 = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        ).client("ec2")
        vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        groups = tuple(
            ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc_id)["GroupId"]
            for name in ("collector", "collector-extra")
        )
        collector = ec2.create_network_interface(SubnetId=subnet, Groups=list(groups))["NetworkInterface"][
            "NetworkInterfaceId"
        ]
        yield Vpc(ec2, vpc_id, (groups[0], groups[1]), collector, tmp_path / "runs")


def allow(vpc: Vpc, group: str, permission: dict[str, Any], tags: dict[str, str] | None = None) -> str:
    """Add one ingress rule to ``group`` the way an operator (or another run) would; its rule id."""
    extra: dict[str, Any] = {}
    if tags:
        extra["TagSpecifications"] = [
            {"ResourceType": "security-group-rule", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    answer = vpc.ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[permission], **extra)
    [rule] = answer["SecurityGroupRules"]
    return str(rule["SecurityGroupRuleId"])


def udp(first: int, last: int, cidr: str) -> dict[str, Any]:
    return {"IpProtocol": "udp", "FromPort": first, "ToPort": last, "IpRanges": [{"CidrIp": cidr}]}


def ingress_rules(vpc: Vpc) -> dict[str, dict[str, Any]]:
    rules = vpc.ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": list(vpc.groups)}])[
        "SecurityGroupRules"
    ]
    return {rule["SecurityGroupRuleId"]: rule for rule in rules if not rule["IsEgress"]}


# ---------------------------------------------------------------------------------------------------------
# check_vxlan_ingress


def test_groups_allowing_nothing_leave_every_source_missing(vpc: Vpc) -> None:
    found = check_vxlan_ingress(vpc.ec2, vpc.collector, [*INSIDE, OUTSIDE])
    assert found == VxlanReachability(vpc.collector, vpc.groups, (), (*INSIDE, OUTSIDE), ())


def test_a_udp_4789_cidr_rule_allows_the_sources_inside_it(vpc: Vpc) -> None:
    # On the ENI's second group: every group of the ENI counts.
    rule = allow(vpc, vpc.groups[1], udp(4789, 4789, "10.0.0.0/16"))
    found = check_vxlan_ingress(vpc.ec2, vpc.collector, [*INSIDE, OUTSIDE, INSIDE[0]])
    assert found.allowed == INSIDE
    assert found.missing == (OUTSIDE,)
    assert found.how == tuple(
        f"{source} is allowed by {vpc.groups[1]} rule {rule} (from 10.0.0.0/16)" for source in INSIDE
    )


def test_an_all_protocols_rule_allows_without_ports(vpc: Vpc) -> None:
    allow(vpc, vpc.groups[0], {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]})
    found = check_vxlan_ingress(vpc.ec2, vpc.collector, [*INSIDE, OUTSIDE])
    assert found.allowed == (*INSIDE, OUTSIDE)
    assert found.missing == ()


def test_tcp_rules_and_other_udp_ports_do_not_count(vpc: Vpc) -> None:
    allow(
        vpc,
        vpc.groups[0],
        {"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
    )
    allow(vpc, vpc.groups[0], udp(53, 53, "0.0.0.0/0"))
    allow(vpc, vpc.groups[1], udp(4790, 6000, "0.0.0.0/0"))
    found = check_vxlan_ingress(vpc.ec2, vpc.collector, [INSIDE[0]])
    assert (found.allowed, found.missing, found.how) == ((), (INSIDE[0],), ())


def test_a_udp_port_range_covering_4789_counts(vpc: Vpc) -> None:
    rule = allow(vpc, vpc.groups[0], udp(4000, 5000, f"{INSIDE[0]}/32"))
    found = check_vxlan_ingress(vpc.ec2, vpc.collector, INSIDE)
    assert found.allowed == (INSIDE[0],)
    assert found.missing == (INSIDE[1],)
    assert found.how == (f"{INSIDE[0]} is allowed by {vpc.groups[0]} rule {rule} (from {INSIDE[0]}/32)",)


def test_a_group_reference_allows_only_sources_known_to_be_members(vpc: Vpc) -> None:
    tasks = vpc.ec2.create_security_group(GroupName="tasks", Description="tasks", VpcId=vpc.vpc_id)["GroupId"]
    rule = allow(
        vpc,
        vpc.groups[0],
        {"IpProtocol": "udp", "FromPort": 4789, "ToPort": 4789, "UserIdGroupPairs": [{"GroupId": tasks}]},
    )
    member, other, unknown = INSIDE[0], INSIDE[1], OUTSIDE
    found = check_vxlan_ingress(
        vpc.ec2, vpc.collector, [member, other, unknown], {member: ["sg-0aaa", tasks], other: ["sg-0bbb"]}
    )
    assert found.allowed == (member,)
    # Unknown membership is not counted as allowed, but said.
    assert found.missing == (other, unknown)
    assert found.how == (
        f"{member} is allowed by {vpc.groups[0]} rule {rule} (from members of {tasks}, which it is)",
        f"{unknown}: {vpc.groups[0]} rule {rule} depends on membership of {tasks}, not known",
    )


def test_a_prefix_list_rule_is_not_counted_but_said(vpc: Vpc) -> None:
    rule = allow(
        vpc,
        vpc.groups[0],
        {
            "IpProtocol": "udp",
            "FromPort": 4789,
            "ToPort": 4789,
            "PrefixListIds": [{"PrefixListId": "pl-0123"}],
        },
    )
    found = check_vxlan_ingress(vpc.ec2, vpc.collector, [INSIDE[0]])
    assert found.missing == (INSIDE[0],)
    assert found.how == (
        f"{INSIDE[0]}: {vpc.groups[0]} rule {rule} allows prefix list pl-0123, whose entries are not checked",
    )


def test_ipv6_sources_are_judged_and_fixed_with_ipv6_ranges(vpc: Vpc) -> None:
    v6_inside, v6_outside = "2001:db8:1::10", "2001:db8:2::10"
    rule = allow(
        vpc,
        vpc.groups[0],
        {
            "IpProtocol": "udp",
            "FromPort": 4789,
            "ToPort": 4789,
            "Ipv6Ranges": [{"CidrIpv6": "2001:db8:1::/48"}],
        },
    )
    # An IPv6 range never contains an IPv4 address.
    found = check_vxlan_ingress(vpc.ec2, vpc.collector, [v6_inside, v6_outside, INSIDE[0]])
    assert found.allowed == (v6_inside,)
    assert found.how == (f"{v6_inside} is allowed by {vpc.groups[0]} rule {rule} (from 2001:db8:1::/48)",)
    state = runstate.start(RUN, vpc.states)
    added = fix_vxlan_ingress(vpc.ec2, found, run_id=RUN, expires_at=EXPIRES, state=state)
    rules = ingress_rules(vpc)
    assert sorted(rules[rule_id].get("CidrIpv6") or rules[rule_id]["CidrIpv4"] for rule_id in added) == [
        f"{INSIDE[0]}/32",
        f"{v6_outside}/128",
    ]
    assert check_vxlan_ingress(vpc.ec2, vpc.collector, [v6_inside, v6_outside, INSIDE[0]]).missing == ()


def test_an_unknown_target_eni_is_an_aws_error(vpc: Vpc) -> None:
    with pytest.raises(AwsError, match="DescribeNetworkInterfaces"):
        check_vxlan_ingress(vpc.ec2, "eni-0123456789abcdef0", INSIDE)


# ---------------------------------------------------------------------------------------------------------
# fix_vxlan_ingress and remove_vxlan_ingress


def fix(vpc: Vpc, sources: tuple[str, ...]) -> tuple[runstate.RunState, tuple[str, ...]]:
    state = runstate.start(RUN, vpc.states)
    found = check_vxlan_ingress(vpc.ec2, vpc.collector, sources)
    return state, fix_vxlan_ingress(vpc.ec2, found, run_id=RUN, expires_at=EXPIRES, state=state)


def test_fix_adds_tagged_rules_for_the_missing_sources_only(vpc: Vpc) -> None:
    allow(vpc, vpc.groups[1], udp(4789, 4789, f"{INSIDE[0]}/32"))
    state, added = fix(vpc, (*INSIDE, OUTSIDE))

    rules = ingress_rules(vpc)
    assert len(added) == 2
    assert sorted(rules[rule_id]["CidrIpv4"] for rule_id in added) == [f"{INSIDE[1]}/32", f"{OUTSIDE}/32"]
    for rule_id in added:
        rule = rules[rule_id]
        assert (rule["GroupId"], rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == (
            vpc.groups[0],
            "udp",
            4789,
            4789,
        )
        assert rule["Tags"] == [
            {"Key": "verifier:run-id", "Value": RUN},
            {"Key": "verifier:created-by", "Value": "verifier"},
            {"Key": "verifier:expires-at", "Value": "2026-11-22T18:00:00+00:00"},
        ]
    again = check_vxlan_ingress(vpc.ec2, vpc.collector, (*INSIDE, OUTSIDE))
    assert again.missing == ()

    # The run state on disk names each rule, so a later teardown finds them.
    recorded = runstate.load(RUN, vpc.states).steps
    assert [(step.kind, step.params["CidrIp"]) for step in recorded] == [
        ("sg-rule", f"{INSIDE[1]}/32"),
        ("sg-rule", f"{OUTSIDE}/32"),
    ]
    assert [step.params["GroupId"] for step in recorded] == [vpc.groups[0]] * 2
    assert sorted(str(step.resource_id) for step in recorded) == sorted(added)
    assert state.steps == recorded


def test_fix_with_nothing_missing_changes_nothing(vpc: Vpc) -> None:
    allow(vpc, vpc.groups[0], udp(4789, 4789, "10.0.0.0/16"))
    before = ingress_rules(vpc)
    state, added = fix(vpc, INSIDE)
    assert added == ()
    assert state.steps == []
    assert ingress_rules(vpc) == before


def test_remove_revokes_exactly_the_runs_rules_and_is_safe_twice(vpc: Vpc) -> None:
    operators = allow(vpc, vpc.groups[0], udp(4789, 4789, "172.16.0.0/12"))
    other_run = allow(
        vpc,
        vpc.groups[1],
        udp(4789, 4789, "172.31.0.0/16"),
        {"verifier:run-id": "run-other", "verifier:created-by": "verifier"},
    )
    state, added = fix(vpc, (*INSIDE, OUTSIDE))

    assert sorted(remove_vxlan_ingress(vpc.ec2, state)) == sorted(added)
    assert set(ingress_rules(vpc)) == {operators, other_run}
    # Again: every rule is already gone, which counts as removed; nothing else is touched.
    assert sorted(remove_vxlan_ingress(vpc.ec2, state)) == sorted(added)
    assert set(ingress_rules(vpc)) == {operators, other_run}


def test_remove_finds_a_rule_the_run_added_but_did_not_record(vpc: Vpc) -> None:
    # A run killed after AuthorizeSecurityGroupIngress and before recording the rule id.
    unrecorded = allow(
        vpc,
        vpc.groups[0],
        udp(4789, 4789, f"{OUTSIDE}/32"),
        {"verifier:run-id": RUN, "verifier:created-by": "verifier"},
    )
    state = runstate.start(RUN, vpc.states)
    assert remove_vxlan_ingress(vpc.ec2, state) == (unrecorded,)
    assert ingress_rules(vpc) == {}


def test_remove_never_revokes_a_recorded_rule_not_tagged_with_the_run(vpc: Vpc) -> None:
    # A state file naming someone else's rule (edited, or copied from another account) must not make
    # teardown delete it.
    foreign = allow(vpc, vpc.groups[0], udp(4789, 4789, "10.0.0.0/16"), {"verifier:run-id": "run-other"})
    state = runstate.start(RUN, vpc.states)
    state.intend(f"sg-rule:{vpc.groups[0]}:10.0.0.0", "sg-rule", "", {"GroupId": vpc.groups[0]})
    state.created(f"sg-rule:{vpc.groups[0]}:10.0.0.0", foreign)
    assert remove_vxlan_ingress(vpc.ec2, state) == ()
    assert set(ingress_rules(vpc)) == {foreign}


# ---------------------------------------------------------------------------------------------------------
# What moto cannot do: Stubber


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Any, Stubber]]:
    offline_environment(monkeypatch, tmp_path)
    ec2 = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    ).client("ec2")
    with Stubber(ec2) as stubber:
        yield ec2, stubber
        stubber.assert_no_pending_responses()


GROUP = "sg-0123456789abcdef0"
RULE = "sgr-0123456789abcdef0"


def test_fix_records_its_intent_before_the_call(stubbed: tuple[Any, Stubber], tmp_path: Path) -> None:
    ec2, stubber = stubbed
    stubber.add_client_error(
        "authorize_security_group_ingress", "UnauthorizedOperation", "You are not authorized", 403
    )
    state = runstate.start(RUN, tmp_path / "runs")
    found = VxlanReachability("eni-0123456789abcdef0", (GROUP,), (), (OUTSIDE,), ())
    with pytest.raises(AwsError, match="ec2:AuthorizeSecurityGroupIngress"):
        fix_vxlan_ingress(ec2, found, run_id=RUN, expires_at=EXPIRES, state=state)
    [step] = runstate.load(RUN, tmp_path / "runs").steps
    assert (step.kind, step.params["GroupId"], step.params["CidrIp"], step.resource_id) == (
        "sg-rule",
        GROUP,
        f"{OUTSIDE}/32",
        None,
    )


def rule_answer(tags: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "SecurityGroupRules": [
            {
                "SecurityGroupRuleId": RULE,
                "GroupId": GROUP,
                "IsEgress": False,
                "IpProtocol": "udp",
                "FromPort": 4789,
                "ToPort": 4789,
                "CidrIpv4": f"{OUTSIDE}/32",
                "Tags": tags,
            }
        ]
    }


def recorded_state(tmp_path: Path) -> runstate.RunState:
    state = runstate.start(RUN, tmp_path / "runs")
    state.intend(f"sg-rule:{GROUP}:{OUTSIDE}", "sg-rule", "", {"GroupId": GROUP, "CidrIp": f"{OUTSIDE}/32"})
    state.created(f"sg-rule:{GROUP}:{OUTSIDE}", RULE)
    return state


OURS = [{"Key": "verifier:run-id", "Value": RUN}, {"Key": "verifier:created-by", "Value": "verifier"}]


def test_a_rule_revoked_by_someone_else_meanwhile_counts_as_removed(
    stubbed: tuple[Any, Stubber], tmp_path: Path
) -> None:
    ec2, stubber = stubbed
    stubber.add_response("describe_security_group_rules", {"SecurityGroupRules": []})
    stubber.add_response(
        "describe_security_group_rules",
        rule_answer(OURS),
        {"Filters": [{"Name": "security-group-rule-id", "Values": [RULE]}]},
    )
    stubber.add_client_error(
        "revoke_security_group_ingress",
        "InvalidSecurityGroupRuleId.NotFound",
        f"The security group rule ID '{RULE}' does not exist",
        400,
        expected_params={"GroupId": GROUP, "SecurityGroupRuleIds": [RULE]},
    )
    assert remove_vxlan_ingress(ec2, recorded_state(tmp_path)) == (RULE,)


def test_a_refused_revoke_is_an_aws_error(stubbed: tuple[Any, Stubber], tmp_path: Path) -> None:
    ec2, stubber = stubbed
    stubber.add_response("describe_security_group_rules", {"SecurityGroupRules": []})
    stubber.add_response("describe_security_group_rules", rule_answer(OURS))
    stubber.add_client_error("revoke_security_group_ingress", "UnauthorizedOperation", "denied", 403)
    with pytest.raises(AwsError, match="missing IAM permission ec2:RevokeSecurityGroupIngress"):
        remove_vxlan_ingress(ec2, recorded_state(tmp_path))


def test_teardown_revokes_the_added_rules_last_and_only_then_marks_the_run_done(vpc: Vpc) -> None:
    """Integration with the mirroring teardown: a run that added VXLAN ingress rules leaves none behind."""
    from verifier.aws.mirroring import teardown

    _, added = fix(vpc, ("10.0.1.20",))
    assert added
    report = teardown(vpc.ec2, runstate.load(RUN, vpc.states), sleep=lambda seconds: None)
    assert set(added) <= set(report.deleted)
    assert runstate.load(RUN, vpc.states).torn_down
    assert check_vxlan_ingress(vpc.ec2, vpc.collector, ["10.0.1.20"]).missing == ("10.0.1.20",)


def test_cleanup_finds_and_removes_the_rule_of_a_run_killed_before_its_state_was_written(vpc: Vpc) -> None:
    """--fix-sg added a tagged rule, then the run died with no state file: cleanup finds the run by the
    rule's tags alone and revokes exactly that rule."""
    from verifier.aws.cleanup import clean, leftovers

    run_tags = {
        "verifier:run-id": RUN,
        "verifier:created-by": "verifier",
        "verifier:expires-at": "2026-11-22T18:00:00+00:00",
    }
    ours = allow(vpc, vpc.groups[0], udp(4789, 4789, f"{OUTSIDE}/32"), run_tags)
    # The same permission, untagged (an operator's), and tagged with the run id but not by verifier.
    operators = allow(vpc, vpc.groups[1], udp(4789, 4789, f"{OUTSIDE}/32"))
    lookalike = allow(vpc, vpc.groups[1], udp(4789, 4789, f"{INSIDE[0]}/32"), {"verifier:run-id": RUN})
    assert not (vpc.states / f"{RUN}.json").exists()

    found = leftovers(vpc.ec2, vpc.states)
    assert set(found) == {RUN}
    assert (found[RUN].resource_ids, found[RUN].expires_at) == ((ours,), EXPIRES)

    report = clean(vpc.ec2, [RUN], state_base=vpc.states, sleep=lambda seconds: None)
    assert (report[RUN].deleted, report[RUN].left) == ((ours,), ())
    assert set(ingress_rules(vpc)) == {operators, lookalike}
    assert leftovers(vpc.ec2, vpc.states) == {}
    # Safe twice: nothing of the run is left to find.
    assert clean(vpc.ec2, [RUN], state_base=vpc.states, sleep=lambda seconds: None)[RUN].deleted == ()


def test_tagged_rules_checks_the_tags_on_the_answer(stubbed: tuple[Any, Stubber]) -> None:
    """AWS filters by tag, but the answer is checked again: an answer that ignored the filters (as moto
    versions have) must not make cleanup revoke an operator's rule or another run's."""
    ec2, stubber = stubbed
    ours = rule_answer(OURS)["SecurityGroupRules"][0]
    untagged = {**ours, "SecurityGroupRuleId": "sgr-0untagged", "Tags": []}
    other_run = {
        **ours,
        "SecurityGroupRuleId": "sgr-0otherrun",
        "Tags": [{"Key": "verifier:run-id", "Value": "run-other"}, OURS[1]],
    }
    not_verifiers = {**ours, "SecurityGroupRuleId": "sgr-0notours", "Tags": [OURS[0]]}
    no_run_id = {**ours, "SecurityGroupRuleId": "sgr-0norunid", "Tags": [OURS[1]]}
    answer = {"SecurityGroupRules": [untagged, other_run, not_verifiers, no_run_id, ours]}
    stubber.add_response(
        "describe_security_group_rules",
        answer,
        {
            "Filters": [
                {"Name": "tag:verifier:created-by", "Values": ["verifier"]},
                {"Name": "tag:verifier:run-id", "Values": [RUN]},
            ]
        },
    )
    assert [rule["SecurityGroupRuleId"] for rule in tagged_rules(ec2, RUN)] == [RULE]
    stubber.add_response(
        "describe_security_group_rules",
        answer,
        {"Filters": [{"Name": "tag:verifier:created-by", "Values": ["verifier"]}]},
    )
    assert [rule["SecurityGroupRuleId"] for rule in tagged_rules(ec2)] == ["sgr-0otherrun", RULE]
