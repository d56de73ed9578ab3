"""Completes moto's VPC Traffic Mirroring so verifier's tests and no-account demo see AWS's behaviour.

What moto 5.2.5 lacks (its models/traffic_mirrors.py and responses/traffic_mirrors.py):
  * CreateTrafficMirrorFilterRule, ModifyTrafficMirrorFilterRule, DeleteTrafficMirrorFilterRule,
    DeleteTrafficMirrorTarget and DeleteTrafficMirrorFilter are not implemented at all;
  * the Describe calls ignore `tag:KEY`, `tag-key`, `tag-value` and `virtual-network-id`, and compare
    integer attributes (session-number, packet-length) with the request's strings, so those never match;
  * sessions get no VNI, the 3-sessions-per-ENI quota and per-ENI session numbers are not enforced,
    unknown ENI/target/filter ids are accepted, and DeleteTrafficMirrorSession "succeeds" for unknown ids;
  * ClientToken is stored but never makes a create idempotent.

What install() changes, and only that (mock_aws and ThreadedMotoServer share these classes, so both see it;
every EC2 action goes through the one query endpoint and is looked up by name on the response class, so
the URL dispatch needs nothing):
  * TrafficMirrorsBackend (mixed into EC2Backend): replaces create_traffic_mirror_filter/target/session,
    delete_traffic_mirror_session and describe_traffic_mirror_filters/targets/sessions;
  * TrafficMirrorFilter.to_dict: lists the filter's rules and its current tags;
  * TrafficMirrors (mixed into EC2Response): adds the five missing actions and replaces
    describe_traffic_mirror_filters (moto's answers with objects whose rule lists are always empty).
Rules and ClientToken records live in a per-backend object, so moto's reset() clears them with the rest.

Two ECS gaps too, because the demo's account is an ECS shop whose tasks are mirrored:
  * moto's CreateService drops ``serviceConnectConfiguration``, so DescribeServices never shows what a
    service declares: install() wraps EC2ContainerServiceResponse.create_service to keep it on the new
    service's PRIMARY deployment, where DescribeServices returns it (botocore:
    Deployment.serviceConnectConfiguration);
  * moto gives an awsvpc task's ENI a random 10.x.y.z address outside its subnet (AWS assigns one of the
    subnet's free addresses), which makes every security-group check against the subnet fail: install()
    wraps EC2ContainerServiceBackend.run_task to move each new task ENI to a free address of its subnet.

Error codes are the ones AWS documents in "Error codes for the Amazon EC2 API", except where EC2 was seen
answering otherwise: the table says TrafficMirrorTargetInUseException, a Terraform run against EC2 shows
TrafficMirrorTargetInUse. The quota page gives 10 rules per filter, not split by direction (so ingress and
egress count together), and 3 sessions per source interface. AWS names no error for a session number
already used on the interface, nor for malformed values: InvalidParameterValue is used.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol, TypeVar, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from moto.acmpca.responses import ACMPCAResponse
from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import EC2Backend, ec2_backends
from moto.ec2.models.traffic_mirrors import (
    TrafficMirrorFilter,
    TrafficMirrorsBackend,
    TrafficMirrorSession,
    TrafficMirrorTarget,
)
from moto.ec2.responses.traffic_mirrors import TrafficMirrors
from moto.ec2.utils import convert_tag_spec, random_id
from moto.ecs.models import EC2ContainerServiceBackend
from moto.ecs.responses import EC2ContainerServiceResponse

# Traffic Mirroring quotas (AWS VPC docs), none adjustable.
RULES_PER_FILTER = 10
SESSIONS_PER_INTERFACE = 3
SESSION_NUMBERS = range(1, 32767)
# VXLAN network identifiers are 24 bits (RFC 7348).
VNI_LIMIT = 1 << 24

TRAFFIC_DIRECTIONS = ("ingress", "egress")
RULE_ACTIONS = ("accept", "reject")
# ModifyTrafficMirrorFilterRule's RemoveFields values (botocore: TrafficMirrorFilterRuleField).
REMOVABLE_RULE_FIELDS = ("destination-port-range", "source-port-range", "protocol", "description")

_STATE_ATTRIBUTE = "_verifier_traffic_mirroring"


def _error(code: str, message: str) -> EC2ClientError:
    return EC2ClientError(code, message)


def _invalid(parameter: str, value: object) -> EC2ClientError:
    return _error("InvalidParameterValue", f"Value ({value}) for parameter {parameter} is invalid.")


@dataclasses.dataclass(frozen=True, slots=True)
class PortRange:
    from_port: int | None
    to_port: int | None

    def to_dict(self) -> dict[str, int]:
        present = {"FromPort": self.from_port, "ToPort": self.to_port}
        return {key: value for key, value in present.items() if value is not None}


@dataclasses.dataclass(frozen=True, slots=True)
class FilterRule:
    rule_id: str
    filter_id: str
    direction: str
    number: int
    action: str
    protocol: int | None
    destination_ports: PortRange | None
    source_ports: PortRange | None
    destination_cidr: str
    source_cidr: str
    description: str | None


@dataclasses.dataclass(slots=True)
class _MirrorState:
    rules: dict[str, FilterRule] = dataclasses.field(default_factory=dict)
    # (operation, ClientToken) -> (the request it came with, id of the resource it created)
    client_tokens: dict[tuple[str, str], tuple[str, str]] = dataclasses.field(default_factory=dict)


def _state(backend: EC2Backend) -> _MirrorState:
    # Kept in the backend's __dict__, which moto's reset() empties.
    state = backend.__dict__.get(_STATE_ATTRIBUTE)
    if state is None:
        state = _MirrorState()
        backend.__dict__[_STATE_ATTRIBUTE] = state
    return cast(_MirrorState, state)


# --- ClientToken idempotency -------------------------------------------------------------------------


def _replayed(backend: EC2Backend, operation: str, client_token: str | None, request: object) -> str | None:
    """Id of the resource an earlier identical request with this token created, None for a new token."""
    if client_token is None:
        return None
    seen = _state(backend).client_tokens.get((operation, client_token))
    if seen is None:
        return None
    if seen[0] != json.dumps(request, sort_keys=True):
        raise _error(
            "IdempotentParameterMismatch",
            f"The client token {client_token} was already used with different parameters.",
        )
    return seen[1]


def _remember(
    backend: EC2Backend, operation: str, client_token: str | None, request: object, resource_id: str
) -> None:
    if client_token is not None:
        fingerprint = json.dumps(request, sort_keys=True)
        _state(backend).client_tokens[(operation, client_token)] = (fingerprint, resource_id)


# --- lookups -------------------------------------------------------------------------------------------


def _filter(backend: EC2Backend, filter_id: str) -> TrafficMirrorFilter:
    found = backend.traffic_mirror_filters.get(filter_id)
    if found is None:
        raise _error(
            "InvalidTrafficMirrorFilterId.NotFound",
            f"The traffic mirror filter '{filter_id}' does not exist.",
        )
    return found


def _target(backend: EC2Backend, target_id: str) -> TrafficMirrorTarget:
    found = backend.traffic_mirror_targets.get(target_id)
    if found is None:
        raise _error(
            "InvalidTrafficMirrorTargetId.NotFound",
            f"The traffic mirror target '{target_id}' does not exist.",
        )
    return found


def _rule(backend: EC2Backend, rule_id: str) -> FilterRule:
    found = _state(backend).rules.get(rule_id)
    if found is None:
        raise _error(
            "InvalidTrafficMirrorFilterRuleId.NotFound",
            f"The traffic mirror filter rule '{rule_id}' does not exist.",
        )
    return found


def _tag_list(backend: EC2Backend, resource_id: str) -> list[dict[str, str]]:
    # .get: backend.tags is a defaultdict and reading must not create entries.
    return [{"Key": key, "Value": value} for key, value in backend.tags.get(resource_id, {}).items()]


def _apply_tag_specifications(
    backend: EC2Backend, resource_id: str, resource_type: str, tag_specifications: list[dict[str, Any]] | None
) -> None:
    tags = convert_tag_spec(tag_specifications or []).get(resource_type, {})
    if tags:
        backend.create_tags([resource_id], tags)


# --- filter rules ----------------------------------------------------------------------------------------


def _one_of(parameter: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise _invalid(parameter, value)
    return value


def _cidr(parameter: str, value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise _invalid(parameter, value) from None
    return value


def _protocol(value: int | None) -> int | None:
    if value is not None and not 0 <= value <= 255:
        raise _invalid("Protocol", value)
    return value


def _port_range(parameter: str, value: Mapping[str, Any] | None) -> PortRange | None:
    if value is None:
        return None
    from_port, to_port = value.get("FromPort"), value.get("ToPort")
    for port in (from_port, to_port):
        if port is not None and not 0 <= int(port) <= 65535:
            raise _invalid(parameter, port)
    if from_port is not None and to_port is not None and int(from_port) > int(to_port):
        raise _invalid(parameter, f"{from_port}-{to_port}")
    return PortRange(
        None if from_port is None else int(from_port),
        None if to_port is None else int(to_port),
    )


def _check_rule_number_free(backend: EC2Backend, rule: FilterRule) -> None:
    # Rule numbers are unique per filter and direction (CreateTrafficMirrorFilterRule's RuleNumber doc).
    for other in _state(backend).rules.values():
        if (
            other.rule_id != rule.rule_id
            and other.filter_id == rule.filter_id
            and other.direction == rule.direction
            and other.number == rule.number
        ):
            raise _error(
                "TrafficMirrorFilterRuleAlreadyExists",
                f"The {rule.direction} rule number {rule.number} already exists in {rule.filter_id}.",
            )


def _rule_to_dict(backend: EC2Backend, rule: FilterRule) -> dict[str, Any]:
    """The rule as botocore's TrafficMirrorFilterRule shape."""
    shape: dict[str, Any] = {
        "TrafficMirrorFilterRuleId": rule.rule_id,
        "TrafficMirrorFilterId": rule.filter_id,
        "TrafficDirection": rule.direction,
        "RuleNumber": rule.number,
        "RuleAction": rule.action,
        "DestinationCidrBlock": rule.destination_cidr,
        "SourceCidrBlock": rule.source_cidr,
        "Tags": _tag_list(backend, rule.rule_id),
    }
    if rule.protocol is not None:
        shape["Protocol"] = rule.protocol
    if rule.destination_ports is not None:
        shape["DestinationPortRange"] = rule.destination_ports.to_dict()
    if rule.source_ports is not None:
        shape["SourcePortRange"] = rule.source_ports.to_dict()
    if rule.description is not None:
        shape["Description"] = rule.description
    return shape


def _create_filter_rule(
    backend: EC2Backend,
    *,
    filter_id: str,
    direction: str,
    number: int,
    action: str,
    destination_port_range: Mapping[str, Any] | None,
    source_port_range: Mapping[str, Any] | None,
    protocol: int | None,
    destination_cidr: str,
    source_cidr: str,
    description: str | None,
    tag_specifications: list[dict[str, Any]] | None,
    client_token: str | None,
) -> FilterRule:
    request = {
        "filter": filter_id,
        "direction": direction,
        "number": number,
        "action": action,
        "destination_ports": destination_port_range,
        "source_ports": source_port_range,
        "protocol": protocol,
        "destination_cidr": destination_cidr,
        "source_cidr": source_cidr,
        "description": description,
        "tags": tag_specifications,
    }
    rules = _state(backend).rules
    replayed = _replayed(backend, "CreateTrafficMirrorFilterRule", client_token, request)
    if replayed in rules:
        return rules[replayed]
    _filter(backend, filter_id)
    rule = FilterRule(
        rule_id=random_id("tmfr"),
        filter_id=filter_id,
        direction=_one_of("TrafficDirection", direction, TRAFFIC_DIRECTIONS),
        number=number,
        action=_one_of("RuleAction", action, RULE_ACTIONS),
        protocol=_protocol(protocol),
        destination_ports=_port_range("DestinationPortRange", destination_port_range),
        source_ports=_port_range("SourcePortRange", source_port_range),
        destination_cidr=_cidr("DestinationCidrBlock", destination_cidr),
        source_cidr=_cidr("SourceCidrBlock", source_cidr),
        description=description,
    )
    if sum(1 for other in rules.values() if other.filter_id == filter_id) >= RULES_PER_FILTER:
        raise _error(
            "TrafficMirrorFilterRuleLimitExceeded",
            f"The maximum number of rules ({RULES_PER_FILTER}) for {filter_id} has been reached.",
        )
    _check_rule_number_free(backend, rule)
    rules[rule.rule_id] = rule
    _apply_tag_specifications(backend, rule.rule_id, "traffic-mirror-filter-rule", tag_specifications)
    _remember(backend, "CreateTrafficMirrorFilterRule", client_token, request, rule.rule_id)
    return rule


def _modify_filter_rule(
    backend: EC2Backend,
    *,
    rule_id: str,
    direction: str | None,
    number: int | None,
    action: str | None,
    destination_port_range: Mapping[str, Any] | None,
    source_port_range: Mapping[str, Any] | None,
    protocol: int | None,
    destination_cidr: str | None,
    source_cidr: str | None,
    description: str | None,
    remove_fields: Sequence[str],
) -> FilterRule:
    rule = _rule(backend, rule_id)
    for field in remove_fields:
        _one_of("RemoveField", field, REMOVABLE_RULE_FIELDS)
    changes: dict[str, Any] = {}
    if direction is not None:
        changes["direction"] = _one_of("TrafficDirection", direction, TRAFFIC_DIRECTIONS)
    if number is not None:
        changes["number"] = number
    if action is not None:
        changes["action"] = _one_of("RuleAction", action, RULE_ACTIONS)
    if destination_cidr is not None:
        changes["destination_cidr"] = _cidr("DestinationCidrBlock", destination_cidr)
    if source_cidr is not None:
        changes["source_cidr"] = _cidr("SourceCidrBlock", source_cidr)
    removable: tuple[tuple[str, str, object], ...] = (
        (
            "destination-port-range",
            "destination_ports",
            _port_range("DestinationPortRange", destination_port_range),
        ),
        ("source-port-range", "source_ports", _port_range("SourcePortRange", source_port_range)),
        ("protocol", "protocol", _protocol(protocol)),
        ("description", "description", description),
    )
    for field, attribute, value in removable:
        if field in remove_fields:
            if value is not None:
                raise _error("InvalidParameterCombination", f"{field} is both set and removed.")
            changes[attribute] = None
        elif value is not None:
            changes[attribute] = value
    updated = dataclasses.replace(rule, **changes)
    _check_rule_number_free(backend, updated)
    _state(backend).rules[rule_id] = updated
    return updated


def _delete_filter_rule(backend: EC2Backend, rule_id: str) -> str:
    _rule(backend, rule_id)
    del _state(backend).rules[rule_id]
    backend.tags.pop(rule_id, None)
    return rule_id


def _filter_to_dict(self: TrafficMirrorFilter) -> dict[str, Any]:
    """Replaces TrafficMirrorFilter.to_dict: moto's always lists no rules and the tags of creation time."""
    backend = cast(EC2Backend, self.ec2_backend)
    rules = sorted(
        (rule for rule in _state(backend).rules.values() if rule.filter_id == self.id),
        key=lambda rule: rule.number,
    )
    return {
        "TrafficMirrorFilterId": self.id,
        "IngressFilterRules": [_rule_to_dict(backend, rule) for rule in rules if rule.direction == "ingress"],
        "EgressFilterRules": [_rule_to_dict(backend, rule) for rule in rules if rule.direction == "egress"],
        "NetworkServices": [],
        "Description": self.description,
        "Tags": _tag_list(backend, self.id),
    }


# --- filters, targets, sessions: creation and deletion --------------------------------------------------


def _create_filter(
    self: EC2Backend,
    description: str | None,
    tag_specifications: list[dict[str, Any]] | None,
    client_token: str | None,
) -> TrafficMirrorFilter:
    request = {"description": description, "tags": tag_specifications}
    replayed = _replayed(self, "CreateTrafficMirrorFilter", client_token, request)
    if replayed in self.traffic_mirror_filters:
        return self.traffic_mirror_filters[replayed]
    created = TrafficMirrorFilter(self, description, tag_specifications, client_token)
    self.traffic_mirror_filters[created.id] = created
    _remember(self, "CreateTrafficMirrorFilter", client_token, request, created.id)
    return created


def _create_target(
    self: EC2Backend,
    network_interface_id: str | None,
    network_load_balancer_arn: str | None,
    description: str | None,
    tag_specifications: list[dict[str, Any]] | None,
    client_token: str | None,
    gateway_load_balancer_endpoint_id: str | None,
) -> TrafficMirrorTarget:
    request = {
        "interface": network_interface_id,
        "nlb": network_load_balancer_arn,
        "description": description,
        "tags": tag_specifications,
        "gwlbe": gateway_load_balancer_endpoint_id,
    }
    replayed = _replayed(self, "CreateTrafficMirrorTarget", client_token, request)
    if replayed in self.traffic_mirror_targets:
        return self.traffic_mirror_targets[replayed]
    if network_interface_id is not None:
        self.get_network_interface(network_interface_id)  # InvalidNetworkInterfaceID.NotFound
    created = TrafficMirrorTarget(
        self,
        network_interface_id,
        network_load_balancer_arn,
        description,
        tag_specifications,
        client_token,
        gateway_load_balancer_endpoint_id,
    )
    self.traffic_mirror_targets[created.id] = created
    _remember(self, "CreateTrafficMirrorTarget", client_token, request, created.id)
    return created


def _unused_vni(backend: EC2Backend) -> int:
    # AWS picks a random VNI unique in the account when the caller gives none.
    used = {session.virtual_network_id for session in backend.traffic_mirror_sessions.values()}
    while True:
        candidate = random.randrange(1, VNI_LIMIT)
        if candidate not in used:
            return candidate


def _create_session(
    self: EC2Backend,
    network_interface_id: str,
    traffic_mirror_target_id: str,
    traffic_mirror_filter_id: str,
    session_number: int,
    packet_length: int | None,
    virtual_network_id: int | None,
    description: str | None,
    tag_specifications: list[dict[str, Any]] | None,
    client_token: str | None,
) -> TrafficMirrorSession:
    request = {
        "interface": network_interface_id,
        "target": traffic_mirror_target_id,
        "filter": traffic_mirror_filter_id,
        "number": session_number,
        "packet_length": packet_length,
        "vni": virtual_network_id,
        "description": description,
        "tags": tag_specifications,
    }
    replayed = _replayed(self, "CreateTrafficMirrorSession", client_token, request)
    if replayed in self.traffic_mirror_sessions:
        return self.traffic_mirror_sessions[replayed]
    self.get_network_interface(network_interface_id)  # InvalidNetworkInterfaceID.NotFound
    _target(self, traffic_mirror_target_id)
    _filter(self, traffic_mirror_filter_id)
    if session_number not in SESSION_NUMBERS:
        raise _invalid("SessionNumber", session_number)
    if virtual_network_id is not None and not 0 <= virtual_network_id < VNI_LIMIT:
        raise _invalid("VirtualNetworkId", virtual_network_id)
    on_interface = [
        session
        for session in self.traffic_mirror_sessions.values()
        if session.network_interface_id == network_interface_id
    ]
    if len(on_interface) >= SESSIONS_PER_INTERFACE:
        raise _error(
            "TrafficMirrorSessionsPerInterfaceLimitExceeded",
            f"{network_interface_id} already has {SESSIONS_PER_INTERFACE} traffic mirror sessions.",
        )
    # The session number orders the sessions of one interface, so it cannot repeat there.
    if any(session.session_number == session_number for session in on_interface):
        raise _error(
            "InvalidParameterValue",
            f"Session number {session_number} is already used on {network_interface_id}.",
        )
    created = TrafficMirrorSession(
        self,
        network_interface_id,
        traffic_mirror_target_id,
        traffic_mirror_filter_id,
        session_number,
        packet_length,
        _unused_vni(self) if virtual_network_id is None else virtual_network_id,
        description,
        tag_specifications,
        client_token,
    )
    self.traffic_mirror_sessions[created.id] = created
    _remember(self, "CreateTrafficMirrorSession", client_token, request, created.id)
    return created


def _delete_session(self: EC2Backend, traffic_mirror_session_id: str) -> str:
    session = self.traffic_mirror_sessions.pop(traffic_mirror_session_id, None)
    if session is None:
        raise _error(
            "InvalidTrafficMirrorSessionId.NotFound",
            f"The traffic mirror session '{traffic_mirror_session_id}' does not exist.",
        )
    self.tags.pop(traffic_mirror_session_id, None)
    self.tagger.delete_all_tags_for_resource(session.arn)
    return traffic_mirror_session_id


def _sessions_using(backend: EC2Backend, attribute: str, resource_id: str) -> list[str]:
    return sorted(
        session.id
        for session in backend.traffic_mirror_sessions.values()
        if getattr(session, attribute) == resource_id
    )


def _delete_target(backend: EC2Backend, target_id: str) -> str:
    _target(backend, target_id)
    users = _sessions_using(backend, "traffic_mirror_target_id", target_id)
    if users:
        raise _error(
            "TrafficMirrorTargetInUse", f"Cannot delete {target_id}. Target is in use by {', '.join(users)}"
        )
    del backend.traffic_mirror_targets[target_id]
    backend.tags.pop(target_id, None)
    return target_id


def _delete_filter(backend: EC2Backend, filter_id: str) -> str:
    _filter(backend, filter_id)
    users = _sessions_using(backend, "traffic_mirror_filter_id", filter_id)
    if users:
        raise _error(
            "TrafficMirrorFilterInUse", f"Cannot delete {filter_id}. Filter is in use by {', '.join(users)}"
        )
    # The rules belong to the filter and go with it.
    for rule_id in [rule.rule_id for rule in _state(backend).rules.values() if rule.filter_id == filter_id]:
        _delete_filter_rule(backend, rule_id)
    del backend.traffic_mirror_filters[filter_id]
    backend.tags.pop(filter_id, None)
    return filter_id


# --- Describe filters -------------------------------------------------------------------------------------


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


_Resource = TypeVar("_Resource", bound=_Identified)

# The attribute filters AWS documents for each Describe call (botocore's Filters member docs).
_FILTER_FIELDS: dict[str, Callable[[TrafficMirrorFilter], object]] = {
    "description": lambda mirror_filter: mirror_filter.description,
    "traffic-mirror-filter-id": lambda mirror_filter: mirror_filter.id,
}
_TARGET_FIELDS: dict[str, Callable[[TrafficMirrorTarget], object]] = {
    "description": lambda target: target.description,
    "network-interface-id": lambda target: target.network_interface_id,
    "network-load-balancer-arn": lambda target: target.network_load_balancer_arn,
    "owner-id": lambda target: target.owner_id,
    "traffic-mirror-target-id": lambda target: target.id,
}
_SESSION_FIELDS: dict[str, Callable[[TrafficMirrorSession], object]] = {
    "description": lambda session: session.description,
    "network-interface-id": lambda session: session.network_interface_id,
    "owner-id": lambda session: session.owner_id,
    "packet-length": lambda session: session.packet_length,
    "session-number": lambda session: session.session_number,
    "traffic-mirror-filter-id": lambda session: session.traffic_mirror_filter_id,
    "traffic-mirror-session-id": lambda session: session.id,
    "traffic-mirror-target-id": lambda session: session.traffic_mirror_target_id,
    "virtual-network-id": lambda session: session.virtual_network_id,
}


def _wildcard(pattern: str) -> re.Pattern[str]:
    # EC2 filter values take * (any run) and ? (one character); nothing else is special.
    return re.compile(".*".join(".".join(map(re.escape, part.split("?"))) for part in pattern.split("*")))


def _select(
    backend: EC2Backend,
    resources: Iterable[_Resource],
    ids: Sequence[str] | None,
    filters: Mapping[str, Sequence[str]] | None,
    fields: Mapping[str, Callable[[_Resource], object]],
) -> list[_Resource]:
    """Resources among `ids` (all when none) matching every filter: one of its values, wildcards allowed."""
    selected = [resource for resource in resources if not ids or resource.id in ids]
    for name, values in (filters or {}).items():
        patterns = [_wildcard(value) for value in values]
        kept = []
        for resource in selected:
            tags = backend.tags.get(resource.id, {})
            if name == "tag-key":
                candidates = list(tags)
            elif name == "tag-value":
                candidates = list(tags.values())
            elif name.startswith("tag:"):
                key = name.removeprefix("tag:")
                candidates = [tags[key]] if key in tags else []
            elif name in fields:
                value = fields[name](resource)
                candidates = [] if value is None else [str(value)]
            else:
                raise _error("InvalidParameterValue", f"The filter '{name}' is invalid")
            if any(pattern.fullmatch(candidate) for pattern in patterns for candidate in candidates):
                kept.append(resource)
        selected = kept
    return selected


def _describe_filters(
    self: EC2Backend, traffic_mirror_filter_ids: list[str] | None, filters: dict[str, list[str]] | None
) -> list[TrafficMirrorFilter]:
    return _select(
        self, self.traffic_mirror_filters.values(), traffic_mirror_filter_ids, filters, _FILTER_FIELDS
    )


def _describe_targets(
    self: EC2Backend, traffic_mirror_target_ids: list[str] | None, filters: dict[str, list[str]] | None
) -> list[TrafficMirrorTarget]:
    return _select(
        self, self.traffic_mirror_targets.values(), traffic_mirror_target_ids, filters, _TARGET_FIELDS
    )


def _describe_sessions(
    self: EC2Backend, traffic_mirror_session_ids: list[str] | None, filters: dict[str, list[str]] | None
) -> list[TrafficMirrorSession]:
    return _select(
        self, self.traffic_mirror_sessions.values(), traffic_mirror_session_ids, filters, _SESSION_FIELDS
    )


# --- EC2 query actions ------------------------------------------------------------------------------------


def _backend(response: TrafficMirrors) -> EC2Backend:
    return cast(EC2Backend, response.ec2_backend)


def _rule_fields(self: TrafficMirrors) -> dict[str, Any]:
    """The request parameters CreateTrafficMirrorFilterRule and ModifyTrafficMirrorFilterRule share."""
    return {
        "direction": self._get_param("TrafficDirection"),
        "number": self._get_int_param("RuleNumber"),
        "action": self._get_param("RuleAction"),
        "destination_port_range": self._get_param("DestinationPortRange"),
        "source_port_range": self._get_param("SourcePortRange"),
        "protocol": self._get_int_param("Protocol"),
        "destination_cidr": self._get_param("DestinationCidrBlock"),
        "source_cidr": self._get_param("SourceCidrBlock"),
        "description": self._get_param("Description"),
    }


def _respond_create_filter_rule(self: TrafficMirrors) -> ActionResult:
    backend = _backend(self)
    client_token = self._get_param("ClientToken")
    rule = _create_filter_rule(
        backend,
        filter_id=self._get_param("TrafficMirrorFilterId"),
        tag_specifications=self._get_param("TagSpecifications"),
        client_token=client_token,
        **_rule_fields(self),
    )
    return ActionResult(
        {"TrafficMirrorFilterRule": _rule_to_dict(backend, rule), "ClientToken": client_token}
    )


def _respond_modify_filter_rule(self: TrafficMirrors) -> ActionResult:
    backend = _backend(self)
    rule = _modify_filter_rule(
        backend,
        rule_id=self._get_param("TrafficMirrorFilterRuleId"),
        remove_fields=self._get_param("RemoveFields", []),
        **_rule_fields(self),
    )
    return ActionResult({"TrafficMirrorFilterRule": _rule_to_dict(backend, rule)})


def _respond_delete_filter_rule(self: TrafficMirrors) -> ActionResult:
    rule_id = _delete_filter_rule(_backend(self), self._get_param("TrafficMirrorFilterRuleId"))
    return ActionResult({"TrafficMirrorFilterRuleId": rule_id})


def _respond_delete_target(self: TrafficMirrors) -> ActionResult:
    target_id = _delete_target(_backend(self), self._get_param("TrafficMirrorTargetId"))
    return ActionResult({"TrafficMirrorTargetId": target_id})


def _respond_delete_filter(self: TrafficMirrors) -> ActionResult:
    filter_id = _delete_filter(_backend(self), self._get_param("TrafficMirrorFilterId"))
    return ActionResult({"TrafficMirrorFilterId": filter_id})


def _respond_describe_filters(self: TrafficMirrors) -> ActionResult:
    found = _describe_filters(
        _backend(self),
        self._get_param("TrafficMirrorFilterIds"),
        # moto annotates this dict[str, str]; it maps each filter name to its list of values.
        cast(dict[str, list[str]], self._filters_from_querystring()),
    )
    return ActionResult({"TrafficMirrorFilters": [mirror_filter.to_dict() for mirror_filter in found]})


_MOTO_CREATE_SERVICE = EC2ContainerServiceResponse.create_service


def _respond_create_service(self: EC2ContainerServiceResponse) -> ActionResult:
    answer = _MOTO_CREATE_SERVICE(self)
    declared = self._get_param("serviceConnectConfiguration")
    service = cast(dict[str, Any], answer.result)["service"]
    if declared is not None:
        for deployment in service.deployments:
            if deployment.get("status") == "PRIMARY":
                deployment["serviceConnectConfiguration"] = declared
    return answer


_MOTO_RUN_TASK = EC2ContainerServiceBackend.run_task


def _free_subnet_address(backend: EC2Backend, subnet_id: str, moving: str) -> str:
    """The lowest address of the subnet no ENI but ``moving`` holds. AWS reserves the first four addresses
    and the last one; hosts() already leaves out the first and the last."""
    subnet = backend.get_subnet(subnet_id)
    used = {
        str(address.get("PrivateIpAddress"))
        for eni in backend.get_all_network_interfaces()
        if eni.subnet.id == subnet_id and eni.id != moving
        for address in eni.private_ip_addresses
        if isinstance(address, dict)
    }
    hosts = list(ipaddress.ip_network(subnet.cidr_block).hosts())
    for host in hosts[3:]:
        if str(host) not in used:
            return str(host)
    raise EC2ClientError("InsufficientFreeAddressesInSubnet", f"subnet {subnet_id} has no free address")


def _run_task(self: EC2ContainerServiceBackend, *args: Any, **kwargs: Any) -> Any:
    tasks = _MOTO_RUN_TASK(self, *args, **kwargs)
    for task in tasks:
        attachments: list[dict[str, Any]] = task.attachments
        for attachment in attachments:
            details = {detail["name"]: detail for detail in attachment["details"]}
            if attachment["type"] != "ElasticNetworkInterface" or "networkInterfaceId" not in details:
                continue
            ec2_backend = ec2_backends[self.account_id][self.region_name]
            eni = ec2_backend.get_network_interface(details["networkInterfaceId"]["value"])
            address = _free_subnet_address(ec2_backend, eni.subnet.id, moving=eni.id)
            eni.private_ip_address = address
            eni.private_ip_addresses = [{"Primary": True, "PrivateIpAddress": address}]
            details["privateIPv4Address"]["value"] = address
    return tasks


_MOTO_ISSUE_CERTIFICATE = ACMPCAResponse.issue_certificate
_VALIDITY_DAYS = {"DAYS": 1, "MONTHS": 30, "YEARS": 365}


def _respond_issue_certificate(self: ACMPCAResponse) -> str:
    answer = _MOTO_ISSUE_CERTIFICATE(self)
    request = json.loads(self.body)
    validity = request.get("Validity") or {}
    days_per_unit = _VALIDITY_DAYS.get(str(validity.get("Type")))
    if days_per_unit is None:
        return answer  # END_DATE and ABSOLUTE: moto's lifetime stays
    authority = self.acmpca_backend.describe_certificate_authority(request["CertificateAuthorityArn"])
    certificate_arn = json.loads(answer)["CertificateArn"]
    made = x509.load_pem_x509_certificate(authority.issued_certificates[certificate_arn])
    builder = (
        x509.CertificateBuilder()
        .subject_name(made.subject)
        .issuer_name(made.issuer)
        .public_key(made.public_key())
        .serial_number(made.serial_number)
        .not_valid_before(made.not_valid_before_utc)
        .not_valid_after(made.not_valid_before_utc + timedelta(days=int(validity["Value"]) * days_per_unit))
    )
    for extension in made.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    resigned = builder.sign(authority.key, made.signature_hash_algorithm)  # type: ignore[arg-type]
    authority.issued_certificates[certificate_arn] = resigned.public_bytes(serialization.Encoding.PEM)
    return answer


# Every patch install() applies: (moto class, attribute, replacement or addition).
_PATCHES: tuple[tuple[type, str, Callable[..., object]], ...] = (
    (TrafficMirrorsBackend, "create_traffic_mirror_filter", _create_filter),
    (TrafficMirrorsBackend, "create_traffic_mirror_target", _create_target),
    (TrafficMirrorsBackend, "create_traffic_mirror_session", _create_session),
    (TrafficMirrorsBackend, "delete_traffic_mirror_session", _delete_session),
    (TrafficMirrorsBackend, "describe_traffic_mirror_filters", _describe_filters),
    (TrafficMirrorsBackend, "describe_traffic_mirror_targets", _describe_targets),
    (TrafficMirrorsBackend, "describe_traffic_mirror_sessions", _describe_sessions),
    (TrafficMirrorFilter, "to_dict", _filter_to_dict),
    (TrafficMirrors, "create_traffic_mirror_filter_rule", _respond_create_filter_rule),
    (TrafficMirrors, "modify_traffic_mirror_filter_rule", _respond_modify_filter_rule),
    (TrafficMirrors, "delete_traffic_mirror_filter_rule", _respond_delete_filter_rule),
    (TrafficMirrors, "delete_traffic_mirror_target", _respond_delete_target),
    (TrafficMirrors, "delete_traffic_mirror_filter", _respond_delete_filter),
    (TrafficMirrors, "describe_traffic_mirror_filters", _respond_describe_filters),
    (EC2ContainerServiceResponse, "create_service", _respond_create_service),
    (EC2ContainerServiceBackend, "run_task", _run_task),
    (ACMPCAResponse, "issue_certificate", _respond_issue_certificate),
)


def install() -> None:
    """Patch moto's classes (see the module doc). Setting the same functions again is harmless."""
    for moto_class, attribute, function in _PATCHES:
        setattr(moto_class, attribute, function)
