"""VPC Traffic Mirroring for one run: plan the filter, its rules, the target and one session per source ENI;
create them with idempotent client tokens, recording each in the run state before and after its create call;
tear down everything tagged with the run id, whatever state a killed run left behind.

Facts from the AWS docs (Traffic Mirroring quotas; "How Traffic Mirroring works"):
  * at most 10 rules per filter (ingress and egress together) and 3 sessions per source interface;
  * a packet is mirrored by the session with the lowest number whose filter accepts it, and by no other, so
    sessions already on an ENI with lower numbers take the packets their filters match away from ours;
  * an instance (ENI) target takes 10 sources, 100 on the instance types AWS lists (the largest size of
    some families, e.g. m5.24xlarge, c5n.18xlarge): the caller that knows the collector's type says so
    with ``instance_target_sources``; NLB and GWLB endpoint targets have no source limit.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from verifier.aws.calls import call, paginate
from verifier.aws.runstate import RunState
from verifier.aws.security_groups import remove_vxlan_ingress
from verifier.aws.tags import CREATED_BY, TAG_CREATED_BY, TAG_EXPIRES_AT, TAG_RUN_ID
from verifier.errors import AwsError, UsageError

RULES_PER_FILTER = 10
SESSIONS_PER_INTERFACE = 3
INSTANCE_TARGET_SOURCES = 10
LARGE_INSTANCE_TARGET_SOURCES = 100
MAX_SESSION_NUMBER = 32766
VNI_LIMIT = 1 << 24  # 24-bit VXLAN network identifier
TCP = 6
ANYWHERE = "0.0.0.0/0"  # includes the VPC's own addresses: intra-VPC traffic is mirrored too


# Placeholders in planned parameters for ids that exist only once the filter and the target do.
FILTER_ID = "<filter id>"
TARGET_ID = "<target id>"

# Delete errors worth waiting out: a session still being deleted keeps its target and filter in use, and
# throttling passes (botocore has already retried it by the time it reaches us).
_RETRYABLE = frozenset(
    {
        "TrafficMirrorTargetInUse",
        "TrafficMirrorTargetInUseException",
        "TrafficMirrorFilterInUse",
        # EC2's generic answer when another resource still references the one being deleted.
        "DependencyViolation",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "EC2ThrottledException",
    }
)
_FIRST_DELAY = 1.0
_MAX_DELAY = 30.0
_DELETE_ATTEMPTS = 8

TargetKind = Literal["network-interface", "network-load-balancer", "gateway-load-balancer-endpoint"]
_TARGET_PARAMETER: dict[str, str] = {
    "network-interface": "NetworkInterfaceId",
    "network-load-balancer": "NetworkLoadBalancerArn",
    "gateway-load-balancer-endpoint": "GatewayLoadBalancerEndpointId",
}


@dataclass(frozen=True, slots=True)
class Target:
    kind: TargetKind
    value: str  # the ENI id (--collector-eni), the NLB's ARN or the GWLB endpoint's id


@dataclass(frozen=True, slots=True)
class Rule:
    direction: Literal["ingress", "egress"]
    number: int
    # None: every TCP port; else the port range matched on the side named by port_side.
    ports: tuple[int, int] | None
    port_side: Literal["source", "destination"]


@dataclass(frozen=True, slots=True)
class Session:
    network_interface_id: str
    session_number: int
    virtual_network_id: int | None  # None: AWS picks one unique in the account


@dataclass(frozen=True, slots=True)
class MirrorPlan:
    run_id: str
    rules: tuple[Rule, ...]
    target: Target
    sessions: tuple[Session, ...]
    snaplen: int | None  # PacketLength; None mirrors whole packets
    tags: tuple[tuple[str, str], ...]
    # ENIs that cannot be mirrored at all, with why, and what lowers the coverage of the others.
    unmirrorable: tuple[tuple[str, str], ...] = ()
    risks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Created:
    filter_id: str
    rule_ids: tuple[str, ...]
    target_id: str
    mirrored: tuple[tuple[str, str], ...]  # (ENI id, session id)
    not_mirrorable: tuple[tuple[str, str], ...]  # (ENI id, why), AWS's own words when AWS refused
    vni_of_session: tuple[tuple[str, int], ...] = ()  # (session id, the VNI its packets carry)


@dataclass(frozen=True, slots=True)
class TeardownReport:
    deleted: tuple[str, ...]  # resource ids, in the order they were deleted
    already_gone: tuple[str, ...]
    left: tuple[tuple[str, str], ...]  # (resource id, why it is still there)


def filter_rules(ports: Iterable[int] | None) -> tuple[Rule, ...]:
    """TCP accept rules for both directions: every port, or only connections to or from ``ports`` (each
    contiguous run of ports is one range, which takes four rules: each direction, by source and by
    destination port, so both client and server sides of a connection match)."""
    if ports is None:
        return (Rule("ingress", 100, None, "destination"), Rule("egress", 100, None, "destination"))
    wanted = sorted(set(ports))
    if not wanted:
        raise UsageError("--ports: no port given")
    bad = [port for port in wanted if not 1 <= port <= 65535]
    if bad:
        raise UsageError(f"--ports: {bad[0]} is not a TCP port (1-65535)")
    ranges: list[tuple[int, int]] = []
    for port in wanted:
        if ranges and ranges[-1][1] == port - 1:
            ranges[-1] = (ranges[-1][0], port)
        else:
            ranges.append((port, port))
    needed = 4 * len(ranges)
    if needed > RULES_PER_FILTER:
        raise UsageError(
            f"--ports: {len(wanted)} ports in {len(ranges)} ranges need {needed} filter rules "
            "(2 directions x source and destination port), a filter holds at most "
            f"{RULES_PER_FILTER}: give at most {RULES_PER_FILTER // 4} ranges"
        )
    rules: list[Rule] = []
    for direction in ("ingress", "egress"):
        number = 100
        for port_range in ranges:
            for side in ("destination", "source"):
                rules.append(Rule(direction, number, port_range, side))
                number += 10
    return tuple(rules)


def _sessions_on(ec2: Any, eni: str) -> list[dict[str, Any]]:
    by_eni = [{"Name": "network-interface-id", "Values": [eni]}]
    return paginate(
        ec2,
        "DescribeTrafficMirrorSessions",
        iam_action="ec2:DescribeTrafficMirrorSessions",
        key="TrafficMirrorSessions",
        Filters=by_eni,
    )


def make_plans(
    ec2: Any,
    run_id: str,
    sources: Sequence[str],
    target: Target,
    expires_at: datetime,
    *,
    ports: Iterable[int] | None = None,
    snaplen: int | None = None,
    vni: int | None = None,
    instance_target_sources: int = INSTANCE_TARGET_SOURCES,
    batch: bool = False,
    session_number: int | None = None,
) -> list[MirrorPlan]:
    """The plan of a run mirroring ``sources`` to ``target``: one plan, or with ``batch`` one per batch of
    sources an instance target can take (run one after the other, run ids RUN-b1, RUN-b2...). Asks EC2 for
    the sessions already on each source (read only)."""
    rules = filter_rules(ports)
    if session_number is not None and not 1 <= session_number <= MAX_SESSION_NUMBER:
        raise UsageError(f"--session-number {session_number}: AWS allows 1 to {MAX_SESSION_NUMBER}")
    if snaplen is not None and snaplen < 1:
        raise UsageError(f"--snaplen {snaplen}: must be at least 1")
    unique = list(dict.fromkeys(sources))
    # Explicit VNIs count up from vni, one per session, so each source stays tellable apart in the capture.
    if vni is not None and (vni < 0 or vni + len(unique) > VNI_LIMIT):
        raise UsageError(f"--vni {vni}: VNIs are 24-bit, {vni}..{vni + len(unique) - 1} do not fit")
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must carry a time zone")
    capacity = instance_target_sources if target.kind == "network-interface" else len(unique) or 1
    if len(unique) > capacity and not batch:
        raise UsageError(
            f"{len(unique)} source ENIs, but the instance target {target.value} takes at most {capacity}: "
            "mirror fewer, use an NLB or GWLB endpoint target, or split into batches"
        )
    batches = [unique[start : start + capacity] for start in range(0, len(unique), capacity)] or [[]]
    plans = []
    for index, members in enumerate(batches, start=1):
        batch_run_id = run_id if len(batches) == 1 else f"{run_id}-b{index}"
        sessions: list[Session] = []
        unmirrorable: list[tuple[str, str]] = []
        risks: list[str] = []
        for eni in members:
            existing = sorted(_sessions_on(ec2, eni), key=lambda session: int(session["SessionNumber"]))
            numbers = [int(session["SessionNumber"]) for session in existing]
            if len(existing) >= SESSIONS_PER_INTERFACE:
                unmirrorable.append(
                    (
                        eni,
                        f"already has {len(existing)} mirror sessions (numbers "
                        f"{', '.join(map(str, numbers))}), the most AWS allows on one interface",
                    )
                )
                continue
            number = session_number if session_number is not None else max(numbers, default=0) + 1
            if number in numbers:
                taken = next(
                    s["TrafficMirrorSessionId"] for s in existing if int(s["SessionNumber"]) == number
                )
                unmirrorable.append((eni, f"session number {number} is taken by {taken}, which is not ours"))
                continue
            if number > MAX_SESSION_NUMBER:
                unmirrorable.append(
                    (eni, f"an existing session already has the highest number {numbers[-1]}")
                )
                continue
            # The lowest-numbered session whose filter matches takes a packet, and each packet goes once.
            risks += [
                f"{eni}: packets matched by session {session['SessionNumber']}'s filter "
                f"({session['TrafficMirrorSessionId']}) go there, not to us"
                if int(session["SessionNumber"]) < number
                else f"{eni}: our session {number} comes before session {session['SessionNumber']} "
                f"({session['TrafficMirrorSessionId']}): packets both filters match come to us, not to it"
                for session in existing
            ]
            session_vni = None if vni is None else vni + len(sessions)
            sessions.append(Session(eni, number, session_vni))
        plans.append(
            MirrorPlan(
                run_id=batch_run_id,
                rules=rules,
                target=target,
                sessions=tuple(sessions),
                snaplen=snaplen,
                tags=(
                    (TAG_RUN_ID, batch_run_id),
                    (TAG_CREATED_BY, CREATED_BY),
                    (TAG_EXPIRES_AT, expires_at.isoformat(timespec="seconds")),
                ),
                unmirrorable=tuple(unmirrorable),
                risks=tuple(risks),
            )
        )
    return plans


def client_token(run_id: str, role: str) -> str:
    """The ClientToken of the create call for ``role``: the same run id retried creates nothing new."""
    # EC2 client tokens are at most 64 ASCII characters.
    return hashlib.sha256(f"{run_id}/{role}".encode()).hexdigest()[:64]


@dataclass(frozen=True, slots=True)
class _PlannedCreate:
    role: str
    kind: str
    operation: str
    params: dict[str, Any]


def _tag_specifications(plan: MirrorPlan, resource_type: str) -> list[dict[str, Any]]:
    return [{"ResourceType": resource_type, "Tags": [{"Key": k, "Value": v} for k, v in plan.tags]}]


def _creates(plan: MirrorPlan) -> list[_PlannedCreate]:
    """Every create call of the plan, in order; FILTER_ID and TARGET_ID stand for ids not yet known."""
    creates = [
        _PlannedCreate(
            "filter",
            "filter",
            "CreateTrafficMirrorFilter",
            {
                "Description": f"verifier run {plan.run_id}",
                "TagSpecifications": _tag_specifications(plan, "traffic-mirror-filter"),
            },
        )
    ]
    for rule in plan.rules:
        params: dict[str, Any] = {
            "TrafficMirrorFilterId": FILTER_ID,
            "TrafficDirection": rule.direction,
            "RuleNumber": rule.number,
            "RuleAction": "accept",
            "Protocol": TCP,
            "SourceCidrBlock": ANYWHERE,
            "DestinationCidrBlock": ANYWHERE,
            "TagSpecifications": _tag_specifications(plan, "traffic-mirror-filter-rule"),
        }
        if rule.ports is not None:
            side = "DestinationPortRange" if rule.port_side == "destination" else "SourcePortRange"
            params[side] = {"FromPort": rule.ports[0], "ToPort": rule.ports[1]}
        role = f"rule:{rule.direction}:{rule.number}"
        creates.append(_PlannedCreate(role, "filter-rule", "CreateTrafficMirrorFilterRule", params))
    creates.append(
        _PlannedCreate(
            "target",
            "target",
            "CreateTrafficMirrorTarget",
            {
                _TARGET_PARAMETER[plan.target.kind]: plan.target.value,
                "Description": f"verifier run {plan.run_id}",
                "TagSpecifications": _tag_specifications(plan, "traffic-mirror-target"),
            },
        )
    )
    for session in plan.sessions:
        params = {
            "NetworkInterfaceId": session.network_interface_id,
            "TrafficMirrorTargetId": TARGET_ID,
            "TrafficMirrorFilterId": FILTER_ID,
            "SessionNumber": session.session_number,
            "Description": f"verifier run {plan.run_id}",
            "TagSpecifications": _tag_specifications(plan, "traffic-mirror-session"),
        }
        if plan.snaplen is not None:
            params["PacketLength"] = plan.snaplen
        if session.virtual_network_id is not None:
            params["VirtualNetworkId"] = session.virtual_network_id
        creates.append(
            _PlannedCreate(
                f"session:{session.network_interface_id}", "session", "CreateTrafficMirrorSession", params
            )
        )
    return creates


def planned_calls(plan: MirrorPlan) -> list[tuple[str, dict[str, Any]]]:
    """Every create call ``create`` would make for the plan, with its parameters (ClientToken included);
    makes no call."""
    return [
        (planned.operation, {**planned.params, "ClientToken": client_token(plan.run_id, planned.role)})
        for planned in _creates(plan)
    ]


def _aws_said(error: AwsError) -> str:
    """AWS's own code and message when AWS answered, else the whole line."""
    cause = error.__cause__
    if isinstance(cause, ClientError):
        details = cause.response.get("Error", {})
        return f"{details.get('Code', '')}: {' '.join(str(details.get('Message', '')).split())}"
    return str(error)


# Creating with TagSpecifications makes EC2 authorize ec2:CreateTags on the new resource as well; the policy
# grants it only for these creates (condition ec2:CreateAction).
TAG_ON_CREATE_IAM_ACTION = "ec2:CreateTags"


def _create_call(ec2: Any, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    # One literal iam_action per operation (tests/aws/test_iam_policy.py reads them from the source).
    if operation == "CreateTrafficMirrorFilter":
        return call(ec2, operation, iam_action="ec2:CreateTrafficMirrorFilter", **params)
    if operation == "CreateTrafficMirrorFilterRule":
        return call(ec2, operation, iam_action="ec2:CreateTrafficMirrorFilterRule", **params)
    if operation == "CreateTrafficMirrorTarget":
        return call(ec2, operation, iam_action="ec2:CreateTrafficMirrorTarget", **params)
    return call(ec2, operation, iam_action="ec2:CreateTrafficMirrorSession", **params)


# Where each create's answer holds the new resource's id.
_CREATED_ID: dict[str, tuple[str, str]] = {
    "CreateTrafficMirrorFilter": ("TrafficMirrorFilter", "TrafficMirrorFilterId"),
    "CreateTrafficMirrorFilterRule": ("TrafficMirrorFilterRule", "TrafficMirrorFilterRuleId"),
    "CreateTrafficMirrorTarget": ("TrafficMirrorTarget", "TrafficMirrorTargetId"),
    "CreateTrafficMirrorSession": ("TrafficMirrorSession", "TrafficMirrorSessionId"),
}


def create(ec2: Any, plan: MirrorPlan, state: RunState) -> Created:
    """Create the plan's resources. Each create is recorded in ``state`` before it is made and its id after,
    so teardown finds it from then on. A failing filter, rule or target raises AwsError (tear down what the
    state holds); a session AWS refuses only makes its ENI not mirrorable."""
    if state.run_id != plan.run_id:
        raise UsageError(f"the run state is run '{state.run_id}', the plan run '{plan.run_id}'")
    ids = {FILTER_ID: "", TARGET_ID: ""}
    rule_ids: list[str] = []
    mirrored: list[tuple[str, str]] = []
    vnis: list[tuple[str, int]] = []
    refused: list[tuple[str, str]] = list(plan.unmirrorable)
    for planned in _creates(plan):
        params = {
            key: ids.get(value, value) if isinstance(value, str) else value
            for key, value in planned.params.items()
        }
        token = client_token(plan.run_id, planned.role)
        state.intend(planned.role, planned.kind, token, params)
        try:
            answer = _create_call(ec2, planned.operation, {**params, "ClientToken": token})
        except AwsError as exc:
            if planned.kind != "session":
                raise
            refused.append((params["NetworkInterfaceId"], _aws_said(exc)))
            continue
        shape, id_key = _CREATED_ID[planned.operation]
        resource_id = str(answer[shape][id_key])
        state.created(planned.role, resource_id)
        if planned.kind == "filter":
            ids[FILTER_ID] = resource_id
        elif planned.kind == "target":
            ids[TARGET_ID] = resource_id
        elif planned.kind == "filter-rule":
            rule_ids.append(resource_id)
        else:
            mirrored.append((params["NetworkInterfaceId"], resource_id))
            vni = answer[shape].get("VirtualNetworkId")
            if vni is not None:
                vnis.append((resource_id, int(vni)))
    return Created(
        ids[FILTER_ID], tuple(rule_ids), ids[TARGET_ID], tuple(mirrored), tuple(refused), tuple(vnis)
    )


def _tagged(ec2: Any, operation: str, run_id: str) -> list[dict[str, Any]]:
    """Every resource of the Describe ``operation`` tagged with ``run_id`` by verifier."""
    return describe_tagged(ec2, operation, {TAG_RUN_ID: run_id, TAG_CREATED_BY: CREATED_BY})


def describe_tagged(ec2: Any, operation: str, tags: dict[str, str]) -> list[dict[str, Any]]:
    """Every resource the Describe ``operation`` lists with all of ``tags``, all pages."""
    by_tags = [{"Name": f"tag:{name}", "Values": [value]} for name, value in tags.items()]
    if operation == "DescribeTrafficMirrorSessions":
        return paginate(
            ec2,
            operation,
            iam_action="ec2:DescribeTrafficMirrorSessions",
            key="TrafficMirrorSessions",
            Filters=by_tags,
        )
    if operation == "DescribeTrafficMirrorTargets":
        return paginate(
            ec2,
            operation,
            iam_action="ec2:DescribeTrafficMirrorTargets",
            key="TrafficMirrorTargets",
            Filters=by_tags,
        )
    return paginate(
        ec2,
        operation,
        iam_action="ec2:DescribeTrafficMirrorFilters",
        key="TrafficMirrorFilters",
        Filters=by_tags,
    )


def _delete_call(ec2: Any, kind: str, resource_id: str) -> None:
    if kind == "session":
        call(
            ec2,
            "DeleteTrafficMirrorSession",
            iam_action="ec2:DeleteTrafficMirrorSession",
            TrafficMirrorSessionId=resource_id,
        )
    elif kind == "target":
        call(
            ec2,
            "DeleteTrafficMirrorTarget",
            iam_action="ec2:DeleteTrafficMirrorTarget",
            TrafficMirrorTargetId=resource_id,
        )
    elif kind == "filter-rule":
        call(
            ec2,
            "DeleteTrafficMirrorFilterRule",
            iam_action="ec2:DeleteTrafficMirrorFilterRule",
            TrafficMirrorFilterRuleId=resource_id,
        )
    else:
        call(
            ec2,
            "DeleteTrafficMirrorFilter",
            iam_action="ec2:DeleteTrafficMirrorFilter",
            TrafficMirrorFilterId=resource_id,
        )


def teardown(
    ec2: Any,
    state: RunState,
    sleep: Callable[[float], None] = time.sleep,
    on_deleted: Callable[[str], None] | None = None,
) -> TeardownReport:
    """Delete the run's sessions, target, filter rules and filter, in that order: those the state recorded
    and those EC2 lists with the run's tags (a run killed between a create and its record). A resource
    already gone counts as deleted; in-use and throttling errors are retried with exponential backoff.
    ``on_deleted`` hears each resource id as soon as it is deleted (the run record's timestamps)."""
    recorded: dict[str, list[str]] = {"session": [], "target": [], "filter-rule": [], "filter": []}
    for step in state.steps:
        if step.resource_id is not None and step.kind in recorded:  # sg-rule steps: remove_vxlan_ingress
            recorded[step.kind].append(step.resource_id)
    sessions = _tagged(ec2, "DescribeTrafficMirrorSessions", state.run_id)
    recorded["session"] += [item["TrafficMirrorSessionId"] for item in sessions]
    targets = _tagged(ec2, "DescribeTrafficMirrorTargets", state.run_id)
    recorded["target"] += [item["TrafficMirrorTargetId"] for item in targets]
    filters = _tagged(ec2, "DescribeTrafficMirrorFilters", state.run_id)
    recorded["filter"] += [item["TrafficMirrorFilterId"] for item in filters]
    for mirror_filter in filters:
        for rule in mirror_filter.get("IngressFilterRules", []) + mirror_filter.get("EgressFilterRules", []):
            recorded["filter-rule"].append(rule["TrafficMirrorFilterRuleId"])

    deleted: list[str] = []
    gone: list[str] = []
    left: list[tuple[str, str]] = []
    for kind in ("session", "target", "filter-rule", "filter"):
        for resource_id in dict.fromkeys(recorded[kind]):
            outcome = _delete_with_retries(ec2, kind, resource_id, sleep)
            if outcome == "deleted":
                deleted.append(resource_id)
                if on_deleted is not None:
                    on_deleted(resource_id)
            elif outcome == "gone":
                gone.append(resource_id)
            else:
                left.append((resource_id, outcome))
    # Last, the security-group rules a --fix-sg added, recorded or found by their tags (a run killed before
    # its record): only now is no session sending to the target.
    for rule_id in remove_vxlan_ingress(ec2, state):
        deleted.append(rule_id)
        if on_deleted is not None:
            on_deleted(rule_id)
    if not left:
        state.mark_torn_down()
    return TeardownReport(tuple(deleted), tuple(gone), tuple(left))


def _delete_with_retries(ec2: Any, kind: str, resource_id: str, sleep: Callable[[float], None]) -> str:
    """ "deleted", "gone" (it was not there), or why it is still there."""
    delay = _FIRST_DELAY
    attempt = 1
    while True:
        try:
            _delete_call(ec2, kind, resource_id)
        except AwsError as exc:
            code = exc.code
            if code.endswith(".NotFound"):
                return "gone"
            if code not in _RETRYABLE or attempt == _DELETE_ATTEMPTS:
                return str(exc)
            sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)
            attempt += 1
            continue
        return "deleted"
