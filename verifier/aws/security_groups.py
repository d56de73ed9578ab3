"""Can every mirror source reach an instance (ENI) mirror target with VXLAN? Check the target ENI's security
groups, add the rules that are missing (--fix-sg), and remove exactly the rules a run added.

Traffic Mirroring sends each source's mirrored packets as VXLAN, UDP port 4789, from the source ENI's
address to the target ENI; the target's security groups must let that in, or the packets are dropped with
no error anywhere. Security groups only allow (there are no deny rules), so a source is allowed when any
ingress rule of any of the target ENI's groups matches it.

Teardown order (the caller's job): sessions, then target, then filter rules and filter, then
``remove_vxlan_ingress``: the rules are needed as long as a session may still send.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from verifier.aws.calls import call, paginate
from verifier.aws.runstate import RunState
from verifier.aws.tags import CREATED_BY, TAG_CREATED_BY, TAG_EXPIRES_AT, TAG_RUN_ID
from verifier.errors import AwsError, UsageError

VXLAN_PORT = 4789
# How DescribeSecurityGroupRules names the protocols that carry UDP: by name, by number, or all (-1).
_UDP_PROTOCOLS = frozenset({"udp", "17"})
_ALL_PROTOCOLS = "-1"
STEP_KIND = "sg-rule"

# Authorizing with TagSpecifications makes EC2 authorize ec2:CreateTags on the new rules as well; the policy
# grants it only for this create (condition ec2:CreateAction).
SG_RULE_TAG_ON_CREATE_IAM_ACTION = "ec2:CreateTags"


@dataclass(frozen=True, slots=True)
class VxlanReachability:
    target_eni: str
    groups: tuple[str, ...]  # the target ENI's security groups
    allowed: tuple[str, ...]  # source addresses some ingress rule lets send UDP 4789 to the target
    missing: tuple[str, ...]  # source addresses no rule is known to let in
    # One sentence per allowed source naming the group and rule that allows it, then one per rule that might
    # let a missing source in but cannot be judged (a group reference without the source's groups, a prefix
    # list): those sources stay missing.
    how: tuple[str, ...]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise UsageError(f"mirror source address '{text}' is not an IP address") from None


def _carries_vxlan(rule: dict[str, Any]) -> bool:
    """Whether the rule's protocol and ports cover UDP 4789 (its source aside)."""
    protocol = str(rule.get("IpProtocol", ""))
    if protocol == _ALL_PROTOCOLS:
        return True
    if protocol not in _UDP_PROTOCOLS:
        return False
    first, last = rule.get("FromPort"), rule.get("ToPort")
    return isinstance(first, int) and isinstance(last, int) and first <= VXLAN_PORT <= last


def _target_groups(ec2: Any, target_eni: str) -> tuple[str, ...]:
    answer = call(
        ec2,
        "DescribeNetworkInterfaces",
        iam_action="ec2:DescribeNetworkInterfaces",
        NetworkInterfaceIds=[target_eni],
    )
    interfaces = answer.get("NetworkInterfaces", [])
    if not interfaces:
        raise AwsError(f"DescribeNetworkInterfaces: the mirror target {target_eni} does not exist")
    return tuple(str(group["GroupId"]) for group in interfaces[0].get("Groups", []))


def _rules(ec2: Any, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every security group rule DescribeSecurityGroupRules lists for ``filters``, all pages."""
    return paginate(
        ec2,
        "DescribeSecurityGroupRules",
        iam_action="ec2:DescribeSecurityGroupRules",
        key="SecurityGroupRules",
        Filters=filters,
    )


def check_vxlan_ingress(
    ec2: Any,
    target_eni: str,
    source_ips: Sequence[str],
    source_groups: Mapping[str, Sequence[str]] | None = None,
) -> VxlanReachability:
    """Which of ``source_ips`` the target ENI's security groups let send VXLAN (UDP 4789) in. A rule that
    references a security group allows a source only when ``source_groups`` (source address -> the source
    ENI's security groups) says the source is a member; rules naming a prefix list are never counted, as
    the list's entries are not looked up."""
    known_groups = source_groups or {}
    groups = _target_groups(ec2, target_eni)
    ingress: list[dict[str, Any]] = []
    if groups:
        ingress = [
            rule
            for rule in _rules(ec2, [{"Name": "group-id", "Values": list(groups)}])
            if not rule.get("IsEgress") and _carries_vxlan(rule)
        ]
    allowed: list[str] = []
    missing: list[str] = []
    allowed_how: list[str] = []
    undetermined_how: list[str] = []
    for source in dict.fromkeys(source_ips):
        address = _address(source)
        reason = None
        maybe: list[str] = []
        for rule in ingress:
            named = f"{rule['GroupId']} rule {rule['SecurityGroupRuleId']}"
            cidr = rule.get("CidrIpv4") or rule.get("CidrIpv6")
            referenced = (rule.get("ReferencedGroupInfo") or {}).get("GroupId")
            if cidr and address in ipaddress.ip_network(cidr, strict=False):
                reason = f"{source} is allowed by {named} (from {cidr})"
            elif referenced and source in known_groups and referenced in known_groups[source]:
                reason = f"{source} is allowed by {named} (from members of {referenced}, which it is)"
            elif referenced and source not in known_groups:
                maybe.append(f"{source}: {named} depends on membership of {referenced}, not known")
            elif rule.get("PrefixListId"):
                maybe.append(
                    f"{source}: {named} allows prefix list {rule['PrefixListId']}, whose entries are not "
                    "checked"
                )
            if reason:
                break
        if reason:
            allowed.append(source)
            allowed_how.append(reason)
        else:
            missing.append(source)
            undetermined_how += maybe
    return VxlanReachability(
        target_eni, groups, tuple(allowed), tuple(missing), tuple(allowed_how + undetermined_how)
    )


def _role(group_id: str, source: str) -> str:
    return f"sg-rule:{group_id}:{source}"


def _source_range(source: str) -> tuple[str, str, str]:
    """Where a range for one source address goes in an IpPermission, its key there, and its CIDR."""
    address = _address(source)
    if address.version == 4:
        return "IpRanges", "CidrIp", f"{address}/32"
    return "Ipv6Ranges", "CidrIpv6", f"{address}/128"


def fix_vxlan_ingress(
    ec2: Any, reachability: VxlanReachability, *, run_id: str, expires_at: datetime, state: RunState
) -> tuple[str, ...]:
    """Let every missing source send VXLAN to the target: one UDP 4789 ingress rule per missing source (its
    address alone), all on the target ENI's first security group, in one call, tagged with the run. Each
    rule is recorded in ``state`` before the call and its id after. Returns the new rules' ids."""
    if state.run_id != run_id:
        raise UsageError(f"the run state is run '{state.run_id}', the security group rules run '{run_id}'")
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must carry a time zone")
    if not reachability.missing:
        return ()
    if not reachability.groups:
        raise UsageError(
            f"the mirror target {reachability.target_eni} has no security group to add the VXLAN rule to"
        )
    group_id = reachability.groups[0]
    permission: dict[str, Any] = {"IpProtocol": "udp", "FromPort": VXLAN_PORT, "ToPort": VXLAN_PORT}
    role_of_cidr: dict[str, str] = {}
    for source in reachability.missing:
        ranges_key, cidr_key, cidr = _source_range(source)
        source_range = {cidr_key: cidr, "Description": f"verifier run {run_id}: VXLAN from mirror source"}
        permission.setdefault(ranges_key, []).append(source_range)
        role_of_cidr[cidr] = _role(group_id, source)
        # AuthorizeSecurityGroupIngress takes no client token: a run retried after a crash sees the rule
        # in check_vxlan_ingress, and teardown finds it by its tags.
        state.intend(role_of_cidr[cidr], STEP_KIND, "", {"GroupId": group_id, **source_range})
    tags = [
        {"Key": TAG_RUN_ID, "Value": run_id},
        {"Key": TAG_CREATED_BY, "Value": CREATED_BY},
        {"Key": TAG_EXPIRES_AT, "Value": expires_at.isoformat(timespec="seconds")},
    ]
    answer = call(
        ec2,
        "AuthorizeSecurityGroupIngress",
        iam_action="ec2:AuthorizeSecurityGroupIngress",
        GroupId=group_id,
        IpPermissions=[permission],
        TagSpecifications=[{"ResourceType": "security-group-rule", "Tags": tags}],
    )
    rule_ids: list[str] = []
    for rule in answer.get("SecurityGroupRules", []):
        role = role_of_cidr.get(str(rule.get("CidrIpv4") or rule.get("CidrIpv6")))
        if role is not None:
            state.created(role, str(rule["SecurityGroupRuleId"]))
            rule_ids.append(str(rule["SecurityGroupRuleId"]))
    return tuple(rule_ids)


def _tags(resource: dict[str, Any]) -> dict[str, str]:
    return {str(tag["Key"]): str(tag["Value"]) for tag in resource.get("Tags", [])}


def tagged_rules(ec2: Any, run_id: str | None = None) -> list[dict[str, Any]]:
    """The security group rules verifier added: tagged ``verifier:created-by`` = verifier and, with
    ``run_id``, ``verifier:run-id`` = run_id (without: any run id). The tags are checked on the answer as
    well: the Describe filters only spare listing every rule of the account."""
    wanted = {TAG_CREATED_BY: CREATED_BY, **({TAG_RUN_ID: run_id} if run_id is not None else {})}
    filters = [{"Name": f"tag:{key}", "Values": [value]} for key, value in wanted.items()]
    return [
        rule
        for rule in _rules(ec2, filters)
        if all(_tags(rule).get(key) == value for key, value in wanted.items()) and _tags(rule).get(TAG_RUN_ID)
    ]


def remove_vxlan_ingress(ec2: Any, state: RunState) -> tuple[str, ...]:
    """Revoke the security group rules the run added: those ``state`` recorded and those EC2 lists with the
    run's tags (a run killed between the call and its record). A rule is revoked only when EC2 shows it
    tagged with this run id by verifier; one already gone counts as removed. Returns the rule ids removed
    or found gone; safe to call again."""
    recorded = [
        str(step.resource_id)
        for step in state.steps
        if step.kind == STEP_KIND and step.resource_id is not None
    ]
    tagged = tagged_rules(ec2, state.run_id)
    wanted = list(dict.fromkeys(recorded + [str(rule["SecurityGroupRuleId"]) for rule in tagged]))
    if not wanted:
        return ()
    # Filtering by id (not SecurityGroupRuleIds) lists the rules that still exist without failing on the
    # ones already gone.
    existing = {
        str(rule["SecurityGroupRuleId"]): rule
        for rule in _rules(ec2, [{"Name": "security-group-rule-id", "Values": wanted}])
    }
    ours = {TAG_RUN_ID: state.run_id, TAG_CREATED_BY: CREATED_BY}
    removed: list[str] = []
    for rule_id in wanted:
        rule = existing.get(rule_id)
        if rule is None:
            removed.append(rule_id)
            continue
        if any(_tags(rule).get(key) != value for key, value in ours.items()):
            continue
        try:
            call(
                ec2,
                "RevokeSecurityGroupIngress",
                iam_action="ec2:RevokeSecurityGroupIngress",
                GroupId=rule["GroupId"],
                SecurityGroupRuleIds=[rule_id],
            )
        except AwsError as exc:
            if not exc.code.endswith(".NotFound"):
                raise
        removed.append(rule_id)
    return tuple(removed)
