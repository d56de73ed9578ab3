"""What to mirror (network interfaces of ECS tasks and their hosts) and what Service Connect declares.

The eligibility of a mirror source is a pre-flight guess from AWS's documented limitations: AWS decides when
the mirror session is created, and its answer is what a run records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SourceKind = Literal["task", "container-instance", "rds", "elasticache", "eni"]
Eligibility = Literal["likely", "unlikely", "unknown"]

# From "Traffic Mirroring limitations", Instance types (Amazon VPC Traffic Mirroring guide,
# https://docs.aws.amazon.com/vpc/latest/mirroring/traffic-mirroring-network-limitations.html): mirroring
# is not available on these virtualized Nitro families, nor on bare metal instances...
UNSUPPORTED_NITRO_FAMILIES = frozenset(
    {
        # General purpose
        *("m8g", "m6a", "m6i", "m6id", "m6idn", "m6in", "m7a", "m7g", "m7gd", "m7i", "m7i-flex"),
        # Compute optimized
        *("c8g", "c6a", "c6gd", "c6gn", "c6i", "c6id", "c6in", "c7a", "c7g", "c7gd", "c7gn", "c7i"),
        # Memory optimized
        *("r8g", "r6a", "r6i", "r6id", "r6idn", "r6in", "r7a", "r7g", "r7gd", "r7i", "r7iz"),
        *("x8g", "x2idn", "x2iedn", "x2iezn"),
        # Storage optimized
        *("i4g", "i4i", "im4gn", "is4gen"),
        # Accelerated computing
        *("inf2", "p5", "trn1", "trn1n"),
        # High-performance computing
        *("hpc6a", "hpc6id", "hpc7a", "hpc7g"),
    }
)
# ... and of the instance types not built on Nitro (Xen), only these families support it ("this does not
# include T2 instances").
SUPPORTED_XEN_FAMILIES = frozenset({"c4", "d2", "g3", "g3s", "h1", "i3", "m4", "p2", "p3", "r4", "x1", "x1e"})

REQUESTER_MANAGED_REASON = (
    "AWS documents mirror sources as Nitro instance ENIs or RDS/ElastiCache requester-managed ENIs; this ENI "
    "is requester-managed by {requester}: the session will be tried and AWS's answer recorded"
)


@dataclass(frozen=True, slots=True)
class MirrorSource:
    """One network interface to mirror, with where it comes from and whether AWS is likely to mirror it."""

    eni_id: str
    private_ip: str | None
    kind: SourceKind
    eligibility: Eligibility
    eligibility_reason: str
    fallbacks: tuple[str, ...] = ()
    task_arn: str | None = None
    service_name: str | None = None
    cluster: str | None = None
    launch_type: str | None = None  # FARGATE, EC2 or EXTERNAL
    network_mode: str | None = None  # awsvpc, bridge, host (None: unknown, an ENI given directly)
    host_ports: tuple[int, ...] = ()  # the task's ports on the host, for bridge and host mode
    instance_id: str | None = None
    instance_type: str | None = None
    requester_managed: bool = False
    requester_id: str | None = None
    interface_type: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceConnectDeclaration:
    """One port a service exposes through Service Connect, as its primary deployment declares it."""

    cluster: str
    service: str
    port_name: str
    tls_enabled: bool
    pca_arn: str | None
    discovery_name: str | None
    # (dnsName, port); dnsName None: the alias leaves the name to ECS's default
    client_aliases: tuple[tuple[str | None, int], ...]
    namespace: str | None
    # The port the server tasks' Service Connect proxy listens on, which is what the wire shows: the
    # ingressPortOverride, else (awsvpc) the named portMapping's containerPort. None: unknown (bridge mode
    # uses an ephemeral proxy port).
    port: int | None = None


def instance_family(instance_type: str) -> str:
    """The part of an instance type before its size: m7i-flex for m7i-flex.large."""
    return instance_type.split(".", 1)[0].lower()


def judge_eligibility(
    *,
    interface_type: str | None,
    requester_managed: bool,
    requester_id: str | None,
    instance_type: str | None,
    hypervisor: str | None,
    bare_metal: bool | None,
) -> tuple[Eligibility, str]:
    """The pre-flight guess for one ENI from what DescribeNetworkInterfaces and DescribeInstanceTypes say."""
    if interface_type is not None and interface_type != "interface":
        # The guide: "A traffic mirror source is the network interface of type interface".
        return "unlikely", f"the ENI's type is {interface_type}; AWS mirrors ENIs of type interface only"
    if requester_managed:
        return "unknown", REQUESTER_MANAGED_REASON.format(requester=requester_id or "an AWS service")
    if instance_type is None:
        return "unknown", "the ENI is not attached to an EC2 instance, so its instance type is unknown"
    family = instance_family(instance_type)
    if bare_metal or instance_type.lower().endswith(".metal"):
        return "unlikely", f"{instance_type} is a bare metal instance; AWS does not mirror those"
    if family in UNSUPPORTED_NITRO_FAMILIES:
        return "unlikely", f"AWS documents Traffic Mirroring as not available on {family} instances"
    if family in SUPPORTED_XEN_FAMILIES:
        return "likely", f"{family} is one of the non-Nitro families AWS documents as supported"
    if hypervisor == "nitro":
        return "likely", f"{instance_type} is a Nitro instance type not on AWS's list of exceptions"
    if hypervisor == "xen":
        return "unlikely", f"{instance_type} is not built on Nitro and not on AWS's list of supported ones"
    return "unknown", f"whether {instance_type} is built on Nitro is unknown"
