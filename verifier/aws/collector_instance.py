"""The collector EC2 instance named by --collector: its primary network interface is the mirror target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from verifier.aws.calls import call
from verifier.errors import AwsError, UsageError


@dataclass(frozen=True, slots=True)
class CollectorInstance:
    instance_id: str
    eni_id: str  # the primary interface (device index 0): the mirror target
    private_ip: str
    instance_type: str
    state: str


def describe_collector(ec2: Any, instance_id: str) -> CollectorInstance:
    if not instance_id.startswith("i-"):
        raise UsageError(f"--collector {instance_id}: expected an EC2 instance id (i-...)")
    try:
        answer = call(ec2, "DescribeInstances", iam_action="ec2:DescribeInstances", InstanceIds=[instance_id])
    except AwsError as exc:
        if exc.code.startswith("InvalidInstanceID"):
            raise AwsError(f"--collector {instance_id}: no such instance in this account and region") from exc
        raise
    instances = [item for reservation in answer.get("Reservations", []) for item in reservation["Instances"]]
    if not instances:
        raise AwsError(f"--collector {instance_id}: no such instance in this account and region")
    instance = instances[0]
    state = str(instance.get("State", {}).get("Name", "unknown"))
    if state != "running":
        raise AwsError(f"--collector {instance_id} is {state}: a mirror target must be a running instance")
    primary = next(
        (eni for eni in instance.get("NetworkInterfaces", []) if eni["Attachment"]["DeviceIndex"] == 0), None
    )
    if primary is None:
        raise AwsError(f"--collector {instance_id}: has no primary network interface to mirror to")
    return CollectorInstance(
        instance_id=instance_id,
        eni_id=str(primary["NetworkInterfaceId"]),
        private_ip=str(primary.get("PrivateIpAddress", instance.get("PrivateIpAddress", ""))),
        instance_type=str(instance.get("InstanceType", "")),
        state=state,
    )
