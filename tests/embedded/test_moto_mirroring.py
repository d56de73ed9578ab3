"""moto's Traffic Mirroring after install(), as real boto3 EC2 clients see it: in-process and over HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.model import ListShape, Shape, StructureShape
from moto import mock_aws

from tests.moto_server import moto_endpoint
from verifier.embedded import moto_mirroring
from verifier.embedded.moto_mirroring import install

REGION = "us-east-1"
RUN_TAG = "verifier-run"
RUN = "run-0001"
# moto launches from any image id; looking one up in its catalogue would cost a second per test.
ANY_IMAGE = "ami-0123456789abcdef0"
EC2_MODEL = botocore.session.get_session().get_service_model("ec2")

Client = Any  # a boto3 EC2 client; boto3 ships no static types for it


def _client(endpoint_url: str | None = None) -> Client:
    return boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def in_process_client() -> Client:
    # Building a client costs up to 0.4 s; moto intercepts one made before mock_aws starts all the same.
    return _client()


@pytest.fixture
def ec2(in_process_client: Client) -> Iterator[Client]:
    install()
    with mock_aws():
        yield in_process_client


def _tagged(resource_type: str, run: str = RUN) -> list[dict[str, Any]]:
    return [{"ResourceType": resource_type, "Tags": [{"Key": RUN_TAG, "Value": run}]}]


def _error_code(call: Callable[..., object], *args: Any, **kwargs: Any) -> str:
    """The EC2 error code `call(*args, **kwargs)` fails with."""
    with pytest.raises(ClientError) as raised:
        call(*args, **kwargs)
    return str(raised.value.response["Error"]["Code"])


def _interfaces(ec2: Client, sources: int = 2) -> tuple[str, list[str]]:
    """An instance's primary ENI (the mirror target) and `sources` further ENIs in the same subnet."""
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    instance = ec2.run_instances(ImageId=ANY_IMAGE, MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]
    source_enis = [
        ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"]
        for _ in range(sources)
    ]
    return instance["NetworkInterfaces"][0]["NetworkInterfaceId"], source_enis


def _filter(ec2: Client, run: str = RUN, **extra: Any) -> str:
    created = ec2.create_traffic_mirror_filter(
        TagSpecifications=_tagged("traffic-mirror-filter", run), **extra
    )
    return str(created["TrafficMirrorFilter"]["TrafficMirrorFilterId"])


def _rule(ec2: Client, filter_id: str, direction: str, number: int, **extra: Any) -> dict[str, Any]:
    created = ec2.create_traffic_mirror_filter_rule(
        TrafficMirrorFilterId=filter_id,
        TrafficDirection=direction,
        RuleNumber=number,
        RuleAction="accept",
        DestinationCidrBlock="0.0.0.0/0",
        SourceCidrBlock="0.0.0.0/0",
        **extra,
    )
    return dict(created)


def _target(ec2: Client, eni: str, run: str = RUN, **extra: Any) -> str:
    created = ec2.create_traffic_mirror_target(
        NetworkInterfaceId=eni, TagSpecifications=_tagged("traffic-mirror-target", run), **extra
    )
    return str(created["TrafficMirrorTarget"]["TrafficMirrorTargetId"])


def _session(
    ec2: Client, eni: str, target_id: str, filter_id: str, number: int = 1, run: str = RUN, **extra: Any
) -> dict[str, Any]:
    created = ec2.create_traffic_mirror_session(
        NetworkInterfaceId=eni,
        TrafficMirrorTargetId=target_id,
        TrafficMirrorFilterId=filter_id,
        SessionNumber=number,
        TagSpecifications=_tagged("traffic-mirror-session", run),
        **extra,
    )
    return dict(created)


def _build(ec2: Client) -> dict[str, Any]:
    """One capture run: a filter with a rule each way, a target on an instance's ENI, a session per source.

    Every optional output member is given a value, so that the model walk below has something to check.
    """
    target_eni, source_enis = _interfaces(ec2)
    filter_id = _filter(ec2, Description="verifier capture filter")
    rules = [
        _rule(
            ec2,
            filter_id,
            direction,
            100,
            Protocol=6,
            DestinationPortRange={"FromPort": 0, "ToPort": 65535},
            SourcePortRange={"FromPort": 0, "ToPort": 65535},
            Description=f"all TCP {direction}",
            TagSpecifications=_tagged("traffic-mirror-filter-rule"),
            ClientToken=f"{RUN}-rule-{direction}",
        )["TrafficMirrorFilterRule"]["TrafficMirrorFilterRuleId"]
        for direction in ("ingress", "egress")
    ]
    target_id = _target(ec2, target_eni, Description="capture host")
    sessions = [
        _session(
            ec2, eni, target_id, filter_id, PacketLength=8500, Description="capture", ClientToken=f"s-{eni}"
        )
        for eni in source_enis
    ]
    return {
        "target_eni": target_eni,
        "source_enis": source_enis,
        "filter": filter_id,
        "rules": rules,
        "target": target_id,
        "sessions": [session["TrafficMirrorSession"]["TrafficMirrorSessionId"] for session in sessions],
    }


def _by_run(run: str = RUN) -> list[dict[str, Any]]:
    return [{"Name": f"tag:{RUN_TAG}", "Values": [run]}]


def _tear_down(ec2: Client, world: dict[str, Any]) -> None:
    """Sessions first (AWS keeps a target or filter a session uses), then target, rules, filter."""
    for session_id in world["sessions"]:
        ec2.delete_traffic_mirror_session(TrafficMirrorSessionId=session_id)
    ec2.delete_traffic_mirror_target(TrafficMirrorTargetId=world["target"])
    for rule_id in world["rules"]:
        ec2.delete_traffic_mirror_filter_rule(TrafficMirrorFilterRuleId=rule_id)
    ec2.delete_traffic_mirror_filter(TrafficMirrorFilterId=world["filter"])
    assert ec2.describe_traffic_mirror_sessions()["TrafficMirrorSessions"] == []
    assert ec2.describe_traffic_mirror_targets()["TrafficMirrorTargets"] == []
    assert ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"] == []


def _check_setup_described(ec2: Client, world: dict[str, Any]) -> None:
    [mirror_filter] = ec2.describe_traffic_mirror_filters(Filters=_by_run())["TrafficMirrorFilters"]
    assert mirror_filter["TrafficMirrorFilterId"] == world["filter"]
    [ingress] = mirror_filter["IngressFilterRules"]
    [egress] = mirror_filter["EgressFilterRules"]
    assert [ingress["TrafficMirrorFilterRuleId"], egress["TrafficMirrorFilterRuleId"]] == world["rules"]
    assert (ingress["TrafficDirection"], egress["TrafficDirection"]) == ("ingress", "egress")
    assert ingress["DestinationPortRange"] == {"FromPort": 0, "ToPort": 65535}
    assert ingress["Protocol"] == 6

    [target] = ec2.describe_traffic_mirror_targets(Filters=_by_run())["TrafficMirrorTargets"]
    assert target["NetworkInterfaceId"] == world["target_eni"]
    assert target["Type"] == "network-interface"

    sessions = ec2.describe_traffic_mirror_sessions(Filters=_by_run())["TrafficMirrorSessions"]
    assert sorted(session["NetworkInterfaceId"] for session in sessions) == sorted(world["source_enis"])
    vnis = [session["VirtualNetworkId"] for session in sessions]
    assert len(set(vnis)) == 2
    assert all(0 < vni < 1 << 24 for vni in vnis)


# --- creation and Describe ------------------------------------------------------------------------------


def test_full_setup_is_described_with_its_rules_and_distinct_automatic_vnis(ec2: Client) -> None:
    _check_setup_described(ec2, _build(ec2))


def test_describe_by_tag_selects_one_run(ec2: Client) -> None:
    target_eni, [source_eni] = _interfaces(ec2, sources=1)
    made: dict[str, tuple[str, str, str]] = {}
    for number, run in enumerate(("run-a", "run-b"), start=1):
        filter_id = _filter(ec2, run)
        target_id = _target(ec2, target_eni, run)
        session = _session(ec2, source_eni, target_id, filter_id, number, run)
        made[run] = (filter_id, target_id, session["TrafficMirrorSession"]["TrafficMirrorSessionId"])

    def described(filters: list[dict[str, Any]]) -> tuple[list[str], list[str], list[str]]:
        return (
            [
                f["TrafficMirrorFilterId"]
                for f in ec2.describe_traffic_mirror_filters(Filters=filters)["TrafficMirrorFilters"]
            ],
            [
                t["TrafficMirrorTargetId"]
                for t in ec2.describe_traffic_mirror_targets(Filters=filters)["TrafficMirrorTargets"]
            ],
            [
                s["TrafficMirrorSessionId"]
                for s in ec2.describe_traffic_mirror_sessions(Filters=filters)["TrafficMirrorSessions"]
            ],
        )

    for run, (filter_id, target_id, session_id) in made.items():
        assert described(_by_run(run)) == ([filter_id], [target_id], [session_id])
    assert described(_by_run("run-c")) == ([], [], [])
    # The value must sit under that key: run-a is no value of a "Name" tag.
    assert described([{"Name": "tag:Name", "Values": ["run-a"]}]) == ([], [], [])
    both = tuple(sorted(ids) for ids in zip(*made.values(), strict=True))
    assert tuple(sorted(ids) for ids in described([{"Name": "tag-key", "Values": [RUN_TAG]}])) == both
    assert tuple(sorted(ids) for ids in described([{"Name": "tag-value", "Values": ["run-?"]}])) == both
    assert described([{"Name": "tag-key", "Values": ["other"]}]) == ([], [], [])


def test_describe_honours_the_documented_attribute_filters(ec2: Client) -> None:
    target_eni, [first_eni, second_eni] = _interfaces(ec2)
    filter_id = _filter(ec2)
    other_filter_id = _filter(ec2)
    target_id = _target(ec2, target_eni)
    first = _session(ec2, first_eni, target_id, filter_id, 1, VirtualNetworkId=7)["TrafficMirrorSession"]
    second = _session(ec2, second_eni, target_id, other_filter_id, 2)["TrafficMirrorSession"]

    def session_ids(name: str, value: object) -> list[str]:
        found = ec2.describe_traffic_mirror_sessions(Filters=[{"Name": name, "Values": [str(value)]}])
        return [session["TrafficMirrorSessionId"] for session in found["TrafficMirrorSessions"]]

    first_id, second_id = first["TrafficMirrorSessionId"], second["TrafficMirrorSessionId"]
    assert session_ids("session-number", 2) == [second_id]
    assert session_ids("virtual-network-id", 7) == [first_id]
    assert session_ids("network-interface-id", first_eni) == [first_id]
    assert session_ids("traffic-mirror-filter-id", other_filter_id) == [second_id]
    assert session_ids("traffic-mirror-session-id", first_id) == [first_id]
    assert sorted(session_ids("traffic-mirror-target-id", target_id)) == sorted([first_id, second_id])

    found_filters = ec2.describe_traffic_mirror_filters(
        Filters=[{"Name": "traffic-mirror-filter-id", "Values": [other_filter_id]}]
    )["TrafficMirrorFilters"]
    assert [f["TrafficMirrorFilterId"] for f in found_filters] == [other_filter_id]
    for eni, expected in ((target_eni, [target_id]), (first_eni, [])):
        found_targets = ec2.describe_traffic_mirror_targets(
            Filters=[{"Name": "network-interface-id", "Values": [eni]}]
        )["TrafficMirrorTargets"]
        assert [target["TrafficMirrorTargetId"] for target in found_targets] == expected

    unknown = [{"Name": "no-such-filter", "Values": ["x"]}]
    assert _error_code(ec2.describe_traffic_mirror_sessions, Filters=unknown) == "InvalidParameterValue"


def test_a_given_vni_is_kept(ec2: Client) -> None:
    target_eni, [source_eni] = _interfaces(ec2, sources=1)
    session = _session(ec2, source_eni, _target(ec2, target_eni), _filter(ec2), VirtualNetworkId=4242)
    assert session["TrafficMirrorSession"]["VirtualNetworkId"] == 4242


# --- filter rules ------------------------------------------------------------------------------------


def test_a_filter_holds_ten_rules_whatever_their_direction(ec2: Client) -> None:
    filter_id = _filter(ec2)
    rule_ids = [
        _rule(ec2, filter_id, direction, number)["TrafficMirrorFilterRule"]["TrafficMirrorFilterRuleId"]
        for direction in ("ingress", "egress")
        for number in range(1, 6)
    ]
    for direction in ("ingress", "egress"):
        assert _error_code(_rule, ec2, filter_id, direction, 99) == "TrafficMirrorFilterRuleLimitExceeded"
    ec2.delete_traffic_mirror_filter_rule(TrafficMirrorFilterRuleId=rule_ids[0])
    _rule(ec2, filter_id, "egress", 99)


def test_rule_numbers_are_unique_per_filter_and_direction(ec2: Client) -> None:
    filter_id = _filter(ec2)
    _rule(ec2, filter_id, "ingress", 10)
    _rule(ec2, filter_id, "egress", 10)
    _rule(ec2, _filter(ec2), "ingress", 10)
    assert _error_code(_rule, ec2, filter_id, "ingress", 10) == "TrafficMirrorFilterRuleAlreadyExists"


@pytest.mark.parametrize(
    "change",
    [
        {"TrafficDirection": "sideways"},
        {"RuleAction": "drop"},
        {"DestinationCidrBlock": "10.0.0.0/33"},
        {"SourceCidrBlock": "not-a-cidr"},
        {"Protocol": 256},
        {"DestinationPortRange": {"FromPort": 443, "ToPort": 80}},
        {"SourcePortRange": {"FromPort": 0, "ToPort": 65536}},
    ],
)
def test_rule_values_aws_would_refuse_are_refused(ec2: Client, change: dict[str, Any]) -> None:
    request = {
        "TrafficMirrorFilterId": _filter(ec2),
        "TrafficDirection": "ingress",
        "RuleNumber": 1,
        "RuleAction": "accept",
        "DestinationCidrBlock": "0.0.0.0/0",
        "SourceCidrBlock": "0.0.0.0/0",
    }
    request.update(change)
    assert _error_code(ec2.create_traffic_mirror_filter_rule, **request) == "InvalidParameterValue"


def test_a_rule_needs_an_existing_filter(ec2: Client) -> None:
    missing = "tmf-0123456789abcdef0"
    assert _error_code(_rule, ec2, missing, "ingress", 1) == "InvalidTrafficMirrorFilterId.NotFound"


def test_modifying_a_rule_changes_and_removes_fields(ec2: Client) -> None:
    filter_id = _filter(ec2)
    rule_id = _rule(
        ec2, filter_id, "ingress", 1, Protocol=17, DestinationPortRange={"FromPort": 53, "ToPort": 53}
    )["TrafficMirrorFilterRule"]["TrafficMirrorFilterRuleId"]
    _rule(ec2, filter_id, "egress", 2)
    modified = ec2.modify_traffic_mirror_filter_rule(
        TrafficMirrorFilterRuleId=rule_id,
        RuleAction="reject",
        SourceCidrBlock="10.0.0.0/8",
        RemoveFields=["protocol", "destination-port-range"],
    )["TrafficMirrorFilterRule"]
    assert (modified["RuleAction"], modified["SourceCidrBlock"]) == ("reject", "10.0.0.0/8")
    assert "Protocol" not in modified
    assert "DestinationPortRange" not in modified
    [described] = ec2.describe_traffic_mirror_filters(TrafficMirrorFilterIds=[filter_id])[
        "TrafficMirrorFilters"
    ]
    assert described["IngressFilterRules"] == [modified]

    move_onto_the_egress_rule = {
        "TrafficMirrorFilterRuleId": rule_id,
        "TrafficDirection": "egress",
        "RuleNumber": 2,
    }
    assert (
        _error_code(ec2.modify_traffic_mirror_filter_rule, **move_onto_the_egress_rule)
        == "TrafficMirrorFilterRuleAlreadyExists"
    )
    missing = "tmfr-0123456789abcdef0"
    assert (
        _error_code(ec2.modify_traffic_mirror_filter_rule, TrafficMirrorFilterRuleId=missing, RuleNumber=3)
        == "InvalidTrafficMirrorFilterRuleId.NotFound"
    )


# --- sessions -------------------------------------------------------------------------------------------


def test_an_interface_is_the_source_of_at_most_three_sessions(ec2: Client) -> None:
    target_eni, [source_eni, other_eni] = _interfaces(ec2)
    target_id, filter_id = _target(ec2, target_eni), _filter(ec2)
    for number in (1, 2, 3):
        _session(ec2, source_eni, target_id, filter_id, number)
    assert (
        _error_code(_session, ec2, source_eni, target_id, filter_id, 4)
        == "TrafficMirrorSessionsPerInterfaceLimitExceeded"
    )
    _session(ec2, other_eni, target_id, filter_id, 4)


def test_session_numbers_are_unique_per_interface_and_in_range(ec2: Client) -> None:
    target_eni, [source_eni, other_eni] = _interfaces(ec2)
    target_id, filter_id = _target(ec2, target_eni), _filter(ec2)
    _session(ec2, source_eni, target_id, filter_id, 1)
    _session(ec2, other_eni, target_id, filter_id, 1)
    assert _error_code(_session, ec2, source_eni, target_id, filter_id, 1) == "InvalidParameterValue"
    for number in (0, 32767):
        assert _error_code(_session, ec2, other_eni, target_id, filter_id, number) == "InvalidParameterValue"


def test_a_session_needs_existing_interface_target_and_filter(ec2: Client) -> None:
    target_eni, [source_eni] = _interfaces(ec2, sources=1)
    target_id, filter_id = _target(ec2, target_eni), _filter(ec2)
    missing_target, missing_filter = "tmt-0123456789abcdef0", "tmf-0123456789abcdef0"
    cases = [
        (("eni-0123456789abcdef0", target_id, filter_id), "InvalidNetworkInterfaceID.NotFound"),
        ((source_eni, missing_target, filter_id), "InvalidTrafficMirrorTargetId.NotFound"),
        ((source_eni, target_id, missing_filter), "InvalidTrafficMirrorFilterId.NotFound"),
    ]
    for (eni, target, mirror_filter), code in cases:
        assert _error_code(_session, ec2, eni, target, mirror_filter) == code


# --- deletion -------------------------------------------------------------------------------------------


def test_a_target_or_filter_in_use_by_a_session_is_not_deleted(ec2: Client) -> None:
    world = _build(ec2)
    assert (
        _error_code(ec2.delete_traffic_mirror_target, TrafficMirrorTargetId=world["target"])
        == "TrafficMirrorTargetInUse"
    )
    assert (
        _error_code(ec2.delete_traffic_mirror_filter, TrafficMirrorFilterId=world["filter"])
        == "TrafficMirrorFilterInUse"
    )
    _check_setup_described(ec2, world)


def test_teardown_leaves_nothing_and_deleting_again_is_not_found(ec2: Client) -> None:
    world = _build(ec2)
    _tear_down(ec2, world)
    second_deletes = [
        (ec2.delete_traffic_mirror_session, {"TrafficMirrorSessionId": world["sessions"][0]}, "Session"),
        (ec2.delete_traffic_mirror_target, {"TrafficMirrorTargetId": world["target"]}, "Target"),
        (
            ec2.delete_traffic_mirror_filter_rule,
            {"TrafficMirrorFilterRuleId": world["rules"][0]},
            "FilterRule",
        ),
        (ec2.delete_traffic_mirror_filter, {"TrafficMirrorFilterId": world["filter"]}, "Filter"),
    ]
    for delete, request, kind in second_deletes:
        assert _error_code(delete, **request) == f"InvalidTrafficMirror{kind}Id.NotFound"
    assert ec2.describe_tags(Filters=[{"Name": "value", "Values": [RUN]}])["Tags"] == []


def test_deleting_a_filter_deletes_its_rules(ec2: Client) -> None:
    filter_id = _filter(ec2)
    rule_id = _rule(ec2, filter_id, "ingress", 1)["TrafficMirrorFilterRule"]["TrafficMirrorFilterRuleId"]
    ec2.delete_traffic_mirror_filter(TrafficMirrorFilterId=filter_id)
    assert (
        _error_code(ec2.delete_traffic_mirror_filter_rule, TrafficMirrorFilterRuleId=rule_id)
        == "InvalidTrafficMirrorFilterRuleId.NotFound"
    )


# --- ClientToken ----------------------------------------------------------------------------------------


def test_a_repeated_client_token_returns_the_same_resource(ec2: Client) -> None:
    target_eni, [source_eni] = _interfaces(ec2, sources=1)
    filter_ids = {_filter(ec2, ClientToken="filter-token") for _ in range(2)}
    target_ids = {_target(ec2, target_eni, ClientToken="target-token") for _ in range(2)}
    [filter_id], [target_id] = filter_ids, target_ids
    rule_ids = {
        _rule(ec2, filter_id, "ingress", 1, ClientToken="rule-token")["TrafficMirrorFilterRule"][
            "TrafficMirrorFilterRuleId"
        ]
        for _ in range(2)
    }
    session_ids = {
        _session(ec2, source_eni, target_id, filter_id, ClientToken="session-token")["TrafficMirrorSession"][
            "TrafficMirrorSessionId"
        ]
        for _ in range(2)
    }
    assert (len(rule_ids), len(session_ids)) == (1, 1)
    assert len(ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"]) == 1
    assert len(ec2.describe_traffic_mirror_targets()["TrafficMirrorTargets"]) == 1
    assert len(ec2.describe_traffic_mirror_sessions()["TrafficMirrorSessions"]) == 1
    [described] = ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"]
    assert [rule["TrafficMirrorFilterRuleId"] for rule in described["IngressFilterRules"]] == list(rule_ids)
    # The same token with another request is an error, not a second rule.
    assert (
        _error_code(_rule, ec2, filter_id, "ingress", 2, ClientToken="rule-token")
        == "IdempotentParameterMismatch"
    )


# --- installation and the botocore model ----------------------------------------------------------------


def test_installing_twice_is_harmless(ec2: Client) -> None:
    install()
    install()
    target_eni, [source_eni] = _interfaces(ec2, sources=1)
    filter_id = _filter(ec2)
    _rule(ec2, filter_id, "ingress", 1)
    _session(ec2, source_eni, _target(ec2, target_eni), filter_id)
    [described] = ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"]
    assert len(described["IngressFilterRules"]) == 1


def test_accepted_values_are_the_models_enums() -> None:
    assert set(moto_mirroring.TRAFFIC_DIRECTIONS) == set(EC2_MODEL.shape_for("TrafficDirection").enum)
    assert set(moto_mirroring.RULE_ACTIONS) == set(EC2_MODEL.shape_for("TrafficMirrorRuleAction").enum)
    removable = EC2_MODEL.shape_for("TrafficMirrorFilterRuleField").enum
    assert set(moto_mirroring.REMOVABLE_RULE_FIELDS) == set(removable)


def _absent_members(shape: Shape, value: object, path: str) -> list[str]:
    """Output members (by path) missing from a parsed response, walking structures and lists."""
    if isinstance(shape, StructureShape):
        assert isinstance(value, dict), path
        absent = []
        for name, member in shape.members.items():
            member_path = f"{path}.{name}" if path else name
            if name in value:
                absent += _absent_members(member, value[name], member_path)
            else:
                absent.append(member_path)
        return absent
    if isinstance(shape, ListShape):
        assert isinstance(value, list), path
        assert value or not isinstance(shape.member, StructureShape), f"{path} is empty: nothing to check"
        return [missing for item in value for missing in _absent_members(shape.member, item, f"{path}[]")]
    return []


def _modify_description(ec2: Client, world: dict[str, Any]) -> object:
    return ec2.modify_traffic_mirror_filter_rule(
        TrafficMirrorFilterRuleId=world["rules"][0], Description="changed"
    )


def _create_rule(ec2: Client, world: dict[str, Any]) -> object:
    return _rule(
        ec2,
        world["filter"],
        "egress",
        200,
        Protocol=17,
        DestinationPortRange={"FromPort": 53, "ToPort": 53},
        SourcePortRange={"FromPort": 1024, "ToPort": 65535},
        Description="dns",
        TagSpecifications=_tagged("traffic-mirror-filter-rule"),
        ClientToken="walk",
    )


def _create_session(ec2: Client, world: dict[str, Any]) -> object:
    return _session(
        ec2,
        world["source_enis"][0],
        world["target"],
        world["filter"],
        2,
        PacketLength=128,
        VirtualNetworkId=99,
        Description="second",
        ClientToken="walk",
    )


# Operation -> (a call in the world _build made, output members it legitimately lacks).
_OUTPUT_CASES: dict[str, tuple[Callable[[Client, dict[str, Any]], object], frozenset[str]]] = {
    "CreateTrafficMirrorFilterRule": (_create_rule, frozenset()),
    "ModifyTrafficMirrorFilterRule": (_modify_description, frozenset()),
    "DeleteTrafficMirrorFilterRule": (
        lambda ec2, world: ec2.delete_traffic_mirror_filter_rule(TrafficMirrorFilterRuleId=world["rules"][0]),
        frozenset(),
    ),
    "DeleteTrafficMirrorTarget": (
        lambda ec2, world: ec2.delete_traffic_mirror_target(
            TrafficMirrorTargetId=_target(ec2, world["target_eni"])
        ),
        frozenset(),
    ),
    "DeleteTrafficMirrorFilter": (
        lambda ec2, world: ec2.delete_traffic_mirror_filter(TrafficMirrorFilterId=_filter(ec2)),
        frozenset(),
    ),
    "CreateTrafficMirrorSession": (_create_session, frozenset()),
    "DeleteTrafficMirrorSession": (
        lambda ec2, world: ec2.delete_traffic_mirror_session(TrafficMirrorSessionId=world["sessions"][0]),
        frozenset(),
    ),
    # No pagination: one page holds everything, so there is never a NextToken.
    "DescribeTrafficMirrorFilters": (
        lambda ec2, world: ec2.describe_traffic_mirror_filters(Filters=_by_run()),
        frozenset({"NextToken"}),
    ),
    "DescribeTrafficMirrorSessions": (
        lambda ec2, world: ec2.describe_traffic_mirror_sessions(Filters=_by_run()),
        frozenset({"NextToken"}),
    ),
    # An ENI target has neither of the other two target kinds.
    "DescribeTrafficMirrorTargets": (
        lambda ec2, world: ec2.describe_traffic_mirror_targets(Filters=_by_run()),
        frozenset(
            {
                "NextToken",
                "TrafficMirrorTargets[].NetworkLoadBalancerArn",
                "TrafficMirrorTargets[].GatewayLoadBalancerEndpointId",
            }
        ),
    ),
}


@pytest.mark.parametrize("operation", sorted(_OUTPUT_CASES))
def test_responses_parse_and_carry_the_models_output_members(ec2: Client, operation: str) -> None:
    """EC2's model marks no output member required, so every member is checked, bar the listed exceptions."""
    call, allowed_absent = _OUTPUT_CASES[operation]
    output_shape = EC2_MODEL.operation_model(operation).output_shape
    assert isinstance(output_shape, StructureShape)
    parsed = call(ec2, _build(ec2))
    assert isinstance(parsed, dict)
    parsed = {key: value for key, value in parsed.items() if key != "ResponseMetadata"}
    absent = set(_absent_members(output_shape, parsed, ""))
    assert set(output_shape.required_members) <= set(output_shape.members) - absent
    assert absent == allowed_absent


# --- over HTTP ------------------------------------------------------------------------------------------


@pytest.fixture
def moto_server() -> Iterator[str]:
    install()
    with moto_endpoint() as url:
        yield url


def test_threaded_server_end_to_end(moto_server: str) -> None:
    ec2 = _client(endpoint_url=moto_server)
    world = _build(ec2)
    _check_setup_described(ec2, world)
    assert (
        _error_code(_session, ec2, world["source_enis"][0], world["target"], world["filter"], 1)
        == "InvalidParameterValue"
    )
    assert (
        _error_code(ec2.delete_traffic_mirror_target, TrafficMirrorTargetId=world["target"])
        == "TrafficMirrorTargetInUse"
    )
    _tear_down(ec2, world)
    assert (
        _error_code(ec2.delete_traffic_mirror_filter, TrafficMirrorFilterId=world["filter"])
        == "InvalidTrafficMirrorFilterId.NotFound"
    )


# ---------------------------------------------------------------------------------------------------------
# ECS Service Connect: what CreateService declares, DescribeServices shows

SERVICE_CONNECT = {
    "enabled": True,
    "namespace": "shop.local",
    "services": [
        {
            "portName": "api",
            "discoveryName": "api",
            "clientAliases": [{"port": 443, "dnsName": "api.shop.local"}],
            "tls": {
                "issuerCertificateAuthority": {
                    "awsPcaAuthorityArn": "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/x"
                }
            },
        }
    ],
}


def test_a_service_keeps_its_service_connect_configuration_on_the_primary_deployment() -> None:
    install()
    with mock_aws():
        ecs = boto3.client(
            "ecs", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        ecs.create_cluster(clusterName="shop")
        ecs.register_task_definition(
            family="api", containerDefinitions=[{"name": "api", "image": "api:1", "memory": 128}]
        )
        ecs.create_service(
            cluster="shop",
            serviceName="api",
            taskDefinition="api",
            desiredCount=1,
            serviceConnectConfiguration=SERVICE_CONNECT,
        )
        ecs.create_service(cluster="shop", serviceName="plain", taskDefinition="api", desiredCount=1)
        services = ecs.describe_services(cluster="shop", services=["api", "plain"])["services"]
    by_name = {service["serviceName"]: service for service in services}
    (primary,) = by_name["api"]["deployments"]
    assert primary["status"] == "PRIMARY"
    assert primary["serviceConnectConfiguration"] == SERVICE_CONNECT
    assert "serviceConnectConfiguration" not in by_name["plain"]["deployments"][0]
    # Where AWS's model puts it, not where moto happens to serialise it.
    deployment = botocore.session.get_session().get_service_model("ecs").shape_for("Deployment")
    assert isinstance(deployment, StructureShape)
    assert deployment.members["serviceConnectConfiguration"].name == "ServiceConnectConfiguration"


def test_a_task_eni_gets_a_free_address_of_its_subnet() -> None:
    install()
    with mock_aws():
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        ec2, ecs = session.client("ec2"), session.client("ecs")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/28")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="tasks", Description="tasks", VpcId=vpc)["GroupId"]
        taken = ec2.create_network_interface(SubnetId=subnet, PrivateIpAddress="10.0.1.4")
        ecs.create_cluster(clusterName="shop")
        ecs.register_task_definition(
            family="api",
            networkMode="awsvpc",
            containerDefinitions=[{"name": "api", "image": "api:1", "memory": 128}],
        )
        network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}}
        tasks = ecs.run_task(
            cluster="shop", taskDefinition="api", count=2, launchType="FARGATE", networkConfiguration=network
        )["tasks"]
        addresses = []
        for task in tasks:
            details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
            (eni,) = ec2.describe_network_interfaces(NetworkInterfaceIds=[details["networkInterfaceId"]])[
                "NetworkInterfaces"
            ]
            assert eni["PrivateIpAddress"] == details["privateIPv4Address"]
            addresses.append(details["privateIPv4Address"])
    # .0-.3 are AWS's, .4 is held by another ENI: the tasks get the next free ones, each its own.
    assert taken["NetworkInterface"]["PrivateIpAddress"] == "10.0.1.4"
    assert addresses == ["10.0.1.5", "10.0.1.6"]
