"""``verifier collector deploy|status|destroy``: the collector's CloudFormation stacks (templates in
infra/cloudformation): the evidence bucket, the collector instance and, optionally, the scheduled spot check.

Each deploy creates a stack or updates it in place, then polls it until CloudFormation settles, for a bounded
time. Facts from the CloudFormation docs this module relies on:
  * a stack whose creation failed stays in ROLLBACK_COMPLETE, holds no resources and can only be deleted;
  * UpdateStack without any change fails with ValidationError "No updates are to be performed.";
  * DescribeStacks by name answers ValidationError "Stack with id NAME does not exist" for a stack that does
    not exist or was deleted;
  * templates that create IAM roles without naming them need CAPABILITY_IAM;
  * resources with DeletionPolicy Retain (the evidence bucket and its key) outlive their stack.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verifier.aws.calls import call
from verifier.errors import AwsError, UsageError

EVIDENCE = "evidence"
COLLECTOR = "collector"
SPOT_CHECK = "spot-check"
TEMPLATE_FILES = {
    EVIDENCE: "evidence-bucket.yaml",
    COLLECTOR: "collector.yaml",
    SPOT_CHECK: "spot-check.yaml",
}
DEFAULT_NAME = "verifier"
# Stack names are NAME-evidence etc.; the evidence bucket is named after its stack, and the operator policy
# scopes stacks and buckets to verifier-*. The bucket name (stack name, account, region) must fit 63 chars.
_NAME = re.compile(r"verifier(-[a-z0-9]+)*")
_MAX_NAME = 24
_SECURITY_GROUP = re.compile(r"sg-[0-9a-f]{8,17}")
_CIDR = re.compile(r"([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}")
_NO_UPDATES = "No updates are to be performed"
_SUCCESS = {"create": "CREATE_COMPLETE", "update": "UPDATE_COMPLETE", "delete": "DELETE_COMPLETE"}
DEFAULT_TIMEOUT = 1800.0  # seconds; an instance, its role and a KMS key settle in minutes
DEFAULT_POLL = 10.0
_EVENTS_SHOWN = 3


@dataclass(frozen=True, slots=True)
class StackState:
    name: str
    status: str  # CloudFormation's StackStatus
    reason: str  # StackStatusReason, "" when CloudFormation gives none
    outputs: tuple[tuple[str, str], ...]  # (OutputKey, OutputValue), in CloudFormation's order

    def output(self, key: str) -> str:
        for name, value in self.outputs:
            if name == key:
                return value
        raise AwsError(
            f"stack {self.name} ({self.status}) has no output {key}: was it deployed from these templates?"
        )


@dataclass(frozen=True, slots=True)
class CollectorSettings:
    """What the collector stack needs from the operator (the evidence stack's outputs come on their own)."""

    vpc_id: str
    subnet_id: str
    package: str  # the pip requirement installed on the collector
    mirror_source_security_group: str | None = None
    mirror_source_cidr: str | None = None
    instance_type: str = "m5.large"
    retention_days: int = 90
    evidence_prefix: str = "evidence/"


@dataclass(frozen=True, slots=True)
class SpotCheckSettings:
    cluster: str
    services: tuple[str, ...]
    duration: str = "300s"
    schedule: str = "rate(1 day)"
    run_arguments: str = ""  # more `verifier run` options
    alarm_topic_arn: str | None = None  # None: the stack creates a topic


@dataclass(frozen=True, slots=True)
class Waiting:
    """How long to wait for CloudFormation; the clock and sleep are replaceable for tests."""

    timeout: float = DEFAULT_TIMEOUT
    poll: float = DEFAULT_POLL
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


def default_templates() -> Path:
    """infra/cloudformation of the checkout verifier runs from (an editable or source install)."""
    templates = Path(__file__).resolve().parents[2] / "infra" / "cloudformation"
    if not templates.is_dir():
        raise UsageError(
            f"no CloudFormation templates at {templates}: pass the infra/cloudformation directory of a "
            "verifier checkout"
        )
    return templates


def stack_names(name: str) -> dict[str, str]:
    """The three stacks of the collector called ``name``, by kind."""
    if not _NAME.fullmatch(name) or len(name) > _MAX_NAME:
        raise UsageError(
            f"collector name '{name}': use 'verifier' or 'verifier-' followed by lowercase letters, digits "
            f"and '-', at most {_MAX_NAME} characters"
        )
    return {kind: f"{name}-{kind}" for kind in TEMPLATE_FILES}


def deploy(
    cfn: Any,
    templates: Path,
    collector: CollectorSettings,
    spot_check: SpotCheckSettings | None = None,
    name: str = DEFAULT_NAME,
    waiting: Waiting = Waiting(),
    progress: Callable[[str], None] = lambda line: None,
) -> list[StackState]:
    """Create or update the evidence stack, then the collector stack with the bucket's outputs, then (when
    asked) the spot check with the collector's; the states of the stacks deployed, in that order."""
    names = stack_names(name)
    collector_parameters = _collector_parameters(collector)  # checked before anything is created
    spot_check_parameters = _spot_check_parameters(spot_check) if spot_check is not None else None
    evidence = deploy_stack(
        cfn,
        names[EVIDENCE],
        _template(templates, EVIDENCE),
        {"RetentionDays": str(collector.retention_days)},
        waiting,
        progress,
    )
    collector_parameters |= {
        "EvidenceBucketName": evidence.output("BucketName"),
        "EvidenceKeyArn": evidence.output("KeyArn"),
    }
    instance = deploy_stack(
        cfn, names[COLLECTOR], _template(templates, COLLECTOR), collector_parameters, waiting, progress
    )
    deployed = [evidence, instance]
    if spot_check_parameters is not None:
        spot_check_parameters |= {
            "CollectorInstanceId": instance.output("InstanceId"),
            "CollectorRoleName": instance.output("RoleName"),
            "EvidenceBucketName": evidence.output("BucketName"),
            "EvidencePrefix": collector.evidence_prefix,
        }
        deployed.append(
            deploy_stack(
                cfn,
                names[SPOT_CHECK],
                _template(templates, SPOT_CHECK),
                spot_check_parameters,
                waiting,
                progress,
            )
        )
    return deployed


def status(cfn: Any, name: str = DEFAULT_NAME) -> list[tuple[str, StackState | None]]:
    """Each stack's name and state (None: not deployed), evidence first."""
    return [(stack, describe_stack(cfn, stack)) for stack in stack_names(name).values()]


def destroy(
    cfn: Any,
    name: str = DEFAULT_NAME,
    evidence: bool = False,
    waiting: Waiting = Waiting(),
    progress: Callable[[str], None] = lambda line: None,
) -> list[str]:
    """Delete the spot check, then the collector, and with ``evidence`` the evidence stack (its bucket and key
    are retained: the evidence outlives the stack); the names of the stacks that were there and are gone."""
    names = stack_names(name)
    kinds = [SPOT_CHECK, COLLECTOR] + ([EVIDENCE] if evidence else [])
    return [names[kind] for kind in kinds if destroy_stack(cfn, names[kind], waiting, progress)]


def describe_stack(cfn: Any, stack_name: str) -> StackState | None:
    """The stack's state; None when there is no such stack."""
    try:
        answer = call(cfn, "DescribeStacks", iam_action="cloudformation:DescribeStacks", StackName=stack_name)
    except AwsError as exc:
        if _is_validation_error(exc, "does not exist"):
            return None
        raise
    stack = answer["Stacks"][0]
    outputs = tuple((str(item["OutputKey"]), str(item["OutputValue"])) for item in stack.get("Outputs", []))
    return StackState(
        name=stack_name,
        status=str(stack["StackStatus"]),
        reason=str(stack.get("StackStatusReason", "")),
        outputs=outputs,
    )


def deploy_stack(
    cfn: Any,
    stack_name: str,
    template_body: str,
    parameters: Mapping[str, str],
    waiting: Waiting = Waiting(),
    progress: Callable[[str], None] = lambda line: None,
) -> StackState:
    """Create the stack, or update it when it exists; wait until it is complete."""
    given = [{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()]
    current = describe_stack(cfn, stack_name)
    if current is not None and current.status == "ROLLBACK_COMPLETE":
        progress(f"{stack_name}: an earlier creation failed and left it empty; deleting it to start again")
        destroy_stack(cfn, stack_name, waiting, progress)
        current = None
    if current is not None and current.status.endswith("_IN_PROGRESS"):
        raise AwsError(
            f"stack {stack_name} is {current.status}: another operation is running on it; wait for it to "
            "finish (verifier collector status) and deploy again"
        )
    if current is None:
        progress(f"{stack_name}: creating")
        call(
            cfn,
            "CreateStack",
            iam_action="cloudformation:CreateStack",
            StackName=stack_name,
            TemplateBody=template_body,
            Parameters=given,
            Capabilities=["CAPABILITY_IAM"],
        )
        return _wait(cfn, stack_name, "create", waiting, progress)
    progress(f"{stack_name}: updating")
    try:
        call(
            cfn,
            "UpdateStack",
            iam_action="cloudformation:UpdateStack",
            StackName=stack_name,
            TemplateBody=template_body,
            Parameters=given,
            Capabilities=["CAPABILITY_IAM"],
        )
    except AwsError as exc:
        if _is_validation_error(exc, _NO_UPDATES):
            progress(f"{stack_name}: up to date")
            return current
        raise
    return _wait(cfn, stack_name, "update", waiting, progress)


def destroy_stack(
    cfn: Any,
    stack_name: str,
    waiting: Waiting = Waiting(),
    progress: Callable[[str], None] = lambda line: None,
) -> bool:
    """Delete the stack and wait until it is gone; False when there was none."""
    if describe_stack(cfn, stack_name) is None:
        return False
    progress(f"{stack_name}: deleting")
    call(cfn, "DeleteStack", iam_action="cloudformation:DeleteStack", StackName=stack_name)
    _wait(cfn, stack_name, "delete", waiting, progress)
    return True


def _wait(
    cfn: Any, stack_name: str, operation: str, waiting: Waiting, progress: Callable[[str], None]
) -> StackState:
    """Poll until the stack leaves *_IN_PROGRESS: its state when the operation succeeded, else an AwsError
    with CloudFormation's reasons. A deleted stack may vanish from DescribeStacks by name."""
    deadline = waiting.clock() + waiting.timeout
    while True:
        state = describe_stack(cfn, stack_name)
        if state is None:
            if operation == "delete":
                return StackState(stack_name, _SUCCESS["delete"], "", ())
            raise AwsError(f"stack {stack_name} disappeared while waiting for it to {operation}")
        if not state.status.endswith("_IN_PROGRESS"):
            if state.status == _SUCCESS[operation]:
                progress(f"{stack_name}: {state.status}")
                return state
            raise AwsError(
                f"stack {stack_name} did not {operation}: {state.status}"
                + (f" ({state.reason})" if state.reason else "")
                + _failure_events(cfn, stack_name)
            )
        if waiting.clock() >= deadline:
            raise AwsError(
                f"stack {stack_name} is still {state.status} after {waiting.timeout:.0f} s: CloudFormation "
                "goes on without us; see verifier collector status, or the stack's events in the console"
            )
        waiting.sleep(waiting.poll)


def _failure_events(cfn: Any, stack_name: str) -> str:
    """The earliest resource failures among the stack's recent events, the likeliest cause of the rest."""
    answer = call(
        cfn, "DescribeStackEvents", iam_action="cloudformation:DescribeStackEvents", StackName=stack_name
    )
    failures = [
        f"{event['LogicalResourceId']}: {event.get('ResourceStatusReason', event['ResourceStatus'])}"
        for event in answer.get("StackEvents", [])
        if str(event.get("ResourceStatus", "")).endswith("_FAILED")
        and event.get("LogicalResourceId") != stack_name
    ]
    # Events come newest first: the last ones listed happened first.
    earliest = list(reversed(failures))[:_EVENTS_SHOWN]
    return "; " + "; ".join(earliest) if earliest else ""


def _template(templates: Path, kind: str) -> str:
    path = templates / TEMPLATE_FILES[kind]
    try:
        return path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read the {kind} template {path}: {exc.strerror}") from exc


def _collector_parameters(settings: CollectorSettings) -> dict[str, str]:
    group, cidr = settings.mirror_source_security_group, settings.mirror_source_cidr
    if (group is None) == (cidr is None):
        raise UsageError(
            "give exactly one of the mirror sources' security group and their CIDR: the collector accepts "
            "VXLAN from nothing else"
        )
    if group is not None and not _SECURITY_GROUP.fullmatch(group):
        raise UsageError(f"mirror source security group '{group}': expected sg-...")
    if cidr is not None and not _CIDR.fullmatch(cidr):
        raise UsageError(f"mirror source CIDR '{cidr}': expected an IPv4 range such as 10.0.0.0/16")
    if settings.retention_days < 1:
        raise UsageError(f"evidence retention {settings.retention_days} days: must be at least 1")
    return {
        "VpcId": settings.vpc_id,
        "SubnetId": settings.subnet_id,
        "VerifierPackage": settings.package,
        "MirrorSourceSecurityGroupId": group or "",
        "MirrorSourceCidr": cidr or "",
        "InstanceType": settings.instance_type,
        "EvidencePrefix": settings.evidence_prefix,
    }


def _spot_check_parameters(settings: SpotCheckSettings) -> dict[str, str]:
    if not settings.services:
        raise UsageError("the spot check needs at least one ECS service to mirror")
    return {
        "Cluster": settings.cluster,
        "Services": ",".join(settings.services),
        "Duration": settings.duration,
        "ScheduleExpression": settings.schedule,
        "RunArguments": settings.run_arguments,
        "AlarmTopicArn": settings.alarm_topic_arn or "",
    }


def _is_validation_error(error: AwsError, says: str) -> bool:
    return error.code == "ValidationError" and says in str(error)


def status_lines(states: list[tuple[str, StackState | None]]) -> list[str]:
    """What ``verifier collector status`` prints: each stack's status, reason and outputs."""
    lines: list[str] = []
    for stack_name, state in states:
        if state is None:
            lines.append(f"{stack_name}: not deployed")
            continue
        lines.append(f"{stack_name}: {state.status}" + (f" ({state.reason})" if state.reason else ""))
        lines.extend(f"  {key}: {value}" for key, value in state.outputs)
    return lines
