"""What to mirror for an ECS cluster, its services or tasks, or ENIs named directly; and the Service Connect
configuration the services' primary deployments declare.

An awsvpc task has its own ENI (the task's ElasticNetworkInterface attachment). A bridge or host mode task on
the EC2 launch type shares its container instance's network: its source is that instance's primary ENI
(device index 0), and the task's host ports tell its traffic apart there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3  # type: ignore[import-untyped]

from verifier.aws.calls import call, new_client
from verifier.aws.datastores import Resolver, datastore_sources, resolve_addresses
from verifier.core.targets import MirrorSource, ServiceConnectDeclaration, SourceKind, judge_eligibility
from verifier.errors import AwsError, UsageError

# The most identifiers one request takes: 100 for DescribeTasks and DescribeContainerInstances, 10 for
# DescribeServices.
_TASKS_PER_CALL = 100
_SERVICES_PER_CALL = 10
# DescribeNetworkInterfaces, DescribeInstances, DescribeInstanceTypes take lists; chunks keep requests small.
_EC2_IDS_PER_CALL = 100

FORWARDER = "in-task forwarder (future work)"


@dataclass(frozen=True, slots=True)
class _Interface:
    """An ENI to describe, and what the ECS side knows of it."""

    eni_id: str
    private_ip: str | None
    kind: SourceKind
    task: dict[str, Any] | None = None
    network_mode: str | None = None


def resolve_sources(
    session: boto3.session.Session,
    *,
    region: str,
    cluster: str | None = None,
    services: Sequence[str] = (),
    tasks: Sequence[str] = (),
    enis: Sequence[str] = (),
    rds: Sequence[str] = (),
    elasticache: Sequence[str] = (),
    resolve: Resolver = resolve_addresses,
) -> tuple[list[MirrorSource], list[ServiceConnectDeclaration]]:
    """The sources to mirror and the Service Connect declarations of their services.

    With ``services``: the RUNNING tasks of those services; with ``tasks``: those tasks; with only a
    ``cluster``: every RUNNING task of it. ``enis`` are added as they are, then the ENIs of the ``rds`` DB
    instances and ``elasticache`` cache clusters (``resolve`` looks up their endpoints' addresses). ECS
    requests go to ``cluster`` (ECS's "default" cluster when None)."""
    if not (cluster or services or tasks or enis or rds or elasticache):
        raise UsageError("nothing to mirror: name a cluster, services, tasks, ENIs, RDS or ElastiCache")
    ecs = new_client(session, "ecs", region)
    ec2 = new_client(session, "ec2", region)
    where = {"cluster": cluster} if cluster else {}

    described_tasks: list[dict[str, Any]] = []
    definitions: dict[str, dict[str, Any]] = {}
    with _cluster_must_exist(cluster or "default", region):
        if tasks or services or cluster:
            described_tasks = _describe_tasks(ecs, where, _task_arns(ecs, where, services, tasks), tasks)
        task_interfaces = _task_interfaces(ecs, ec2, where, described_tasks, definitions)
        service_names = list(dict.fromkeys([*services, *filter(None, map(_service_of, described_tasks))]))
        declarations = _declarations(ecs, where, cluster or "default", service_names, definitions)
    sources = _sources(ec2, [*task_interfaces, *(_Interface(e, None, "eni") for e in enis)])
    sources += datastore_sources(session, region=region, rds=rds, elasticache=elasticache, resolve=resolve)
    return sources, declarations


@contextmanager
def _cluster_must_exist(cluster: str, region: str) -> Iterator[None]:
    """ECS's ClusterNotFoundException does not say which cluster: name it."""
    try:
        yield
    except AwsError as exc:
        if exc.code == "ClusterNotFoundException":
            raise AwsError(f"ECS cluster {cluster} does not exist in {region} for this account") from exc
        raise


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _task_arns(ecs: Any, where: dict[str, str], services: Sequence[str], tasks: Sequence[str]) -> list[str]:
    if tasks:
        return list(tasks)
    listings: Iterable[dict[str, str]] = [{"serviceName": s} for s in services] if services else [{}]
    arns: list[str] = []
    for listing in listings:
        token: str | None = None
        while True:
            page = call(
                ecs,
                "ListTasks",
                iam_action="ecs:ListTasks",
                desiredStatus="RUNNING",
                **where,
                **listing,
                **({"nextToken": token} if token else {}),
            )
            arns.extend(page.get("taskArns", []))
            token = page.get("nextToken")
            if not token:
                break
    return list(dict.fromkeys(arns))


def _failures(failures: list[dict[str, Any]], what: str, cluster: str) -> None:
    """ECS answers unknown ARNs with failures[] rather than an error: make them one."""
    if failures:
        named = "; ".join(f"{f.get('arn', '?')}: {f.get('reason', 'no reason given')}" for f in failures)
        raise AwsError(f"ECS does not know these {what} in cluster {cluster}: {named}")


def _describe_tasks(
    ecs: Any, where: dict[str, str], arns: list[str], named: Sequence[str]
) -> list[dict[str, Any]]:
    cluster = where.get("cluster", "default")
    running: list[dict[str, Any]] = []
    for chunk in _chunks(arns, _TASKS_PER_CALL):
        answer = call(ecs, "DescribeTasks", iam_action="ecs:DescribeTasks", tasks=chunk, **where)
        _failures(answer.get("failures", []), "tasks", cluster)
        for task in answer.get("tasks", []):
            if task.get("lastStatus") == "RUNNING":
                running.append(task)
            elif named:
                # A task asked for by name that has stopped (or not started) has no traffic to mirror.
                raise AwsError(f"task {task['taskArn']} is {task.get('lastStatus')}, not RUNNING")
    # Besides failures[], a task ECS has forgotten (stopped long ago) may simply be left out of the answer.
    returned = [str(task["taskArn"]) for task in running]
    unanswered = [n for n in named if not any(a == n or a.endswith(f"/{n}") for a in returned)]
    if unanswered:
        raise AwsError(f"ECS does not know these tasks in cluster {cluster}: {', '.join(unanswered)}")
    return running


def _service_of(task: dict[str, Any]) -> str | None:
    """The service that started the task: ECS sets a service's tasks' group to "service:NAME"."""
    group = str(task.get("group", ""))
    return group.removeprefix("service:") if group.startswith("service:") else None


def _task_definition(ecs: Any, arn: str, definitions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The task definition ``arn``, described once per resolution (``definitions`` caches them)."""
    if arn not in definitions:
        definitions[arn] = call(
            ecs, "DescribeTaskDefinition", iam_action="ecs:DescribeTaskDefinition", taskDefinition=arn
        )["taskDefinition"]
    return definitions[arn]


def _network_mode(definition: dict[str, Any]) -> str:
    # A Linux task definition without networkMode uses bridge.
    return str(definition.get("networkMode", "bridge"))


def _task_interfaces(
    ecs: Any,
    ec2: Any,
    where: dict[str, str],
    tasks: list[dict[str, Any]],
    definitions: dict[str, dict[str, Any]],
) -> list[_Interface]:
    network_modes = {
        arn: _network_mode(_task_definition(ecs, arn, definitions))
        for arn in dict.fromkeys(task["taskDefinitionArn"] for task in tasks)
    }

    interfaces: list[_Interface] = []
    on_hosts: list[dict[str, Any]] = []
    for task in tasks:
        mode = network_modes[task["taskDefinitionArn"]]
        if mode == "awsvpc":
            details = {
                d["name"]: d.get("value")
                for attachment in task.get("attachments", [])
                if attachment.get("type") == "ElasticNetworkInterface"
                for d in attachment.get("details", [])
            }
            if "networkInterfaceId" not in details:
                raise AwsError(f"task {task['taskArn']} is RUNNING in awsvpc mode but has no ENI attached")
            interfaces.append(
                _Interface(
                    details["networkInterfaceId"], details.get("privateIPv4Address"), "task", task, mode
                )
            )
        elif task.get("containerInstanceArn"):
            on_hosts.append(task)
        else:
            raise AwsError(
                f"task {task['taskArn']} ({mode} mode) has neither an ENI nor a container instance"
            )
    if on_hosts:
        primary = _primary_enis_of_hosts(ecs, ec2, where, on_hosts)
        for task in on_hosts:
            eni_id, private_ip = primary[task["containerInstanceArn"]]
            mode = network_modes[task["taskDefinitionArn"]]
            interfaces.append(_Interface(eni_id, private_ip, "container-instance", task, mode))
    return interfaces


def _primary_enis_of_hosts(
    ecs: Any, ec2: Any, where: dict[str, str], tasks: list[dict[str, Any]]
) -> dict[str, tuple[str, str | None]]:
    """Container instance ARN -> its EC2 instance's primary ENI and private IP."""
    arns = list(dict.fromkeys(str(task["containerInstanceArn"]) for task in tasks))
    instance_of: dict[str, str] = {}
    for chunk in _chunks(arns, _TASKS_PER_CALL):
        answer = call(
            ecs,
            "DescribeContainerInstances",
            iam_action="ecs:DescribeContainerInstances",
            containerInstances=chunk,
            **where,
        )
        _failures(answer.get("failures", []), "container instances", where.get("cluster", "default"))
        for instance in answer.get("containerInstances", []):
            instance_of[instance["containerInstanceArn"]] = instance["ec2InstanceId"]
    primary: dict[str, tuple[str, str | None]] = {}
    for instance in _describe_instances(ec2, list(dict.fromkeys(instance_of.values()))):
        for eni in instance.get("NetworkInterfaces", []):
            if eni.get("Attachment", {}).get("DeviceIndex") == 0:
                primary[instance["InstanceId"]] = (eni["NetworkInterfaceId"], eni.get("PrivateIpAddress"))
    missing = sorted(set(instance_of.values()) - primary.keys())
    if missing:
        raise AwsError(f"EC2 instances without a primary network interface: {', '.join(missing)}")
    return {arn: primary[instance_id] for arn, instance_id in instance_of.items()}


def _describe_instances(ec2: Any, instance_ids: list[str]) -> list[dict[str, Any]]:
    instances: list[dict[str, Any]] = []
    for chunk in _chunks(instance_ids, _EC2_IDS_PER_CALL):
        answer = call(ec2, "DescribeInstances", iam_action="ec2:DescribeInstances", InstanceIds=chunk)
        instances.extend(i for r in answer.get("Reservations", []) for i in r.get("Instances", []))
    return instances


def _sources(ec2: Any, interfaces: list[_Interface]) -> list[MirrorSource]:
    eni_ids = list(dict.fromkeys(i.eni_id for i in interfaces))
    described: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(eni_ids, _EC2_IDS_PER_CALL):
        answer = call(
            ec2,
            "DescribeNetworkInterfaces",
            iam_action="ec2:DescribeNetworkInterfaces",
            NetworkInterfaceIds=chunk,
        )
        described.update((eni["NetworkInterfaceId"], eni) for eni in answer.get("NetworkInterfaces", []))
    missing = [e for e in eni_ids if e not in described]
    if missing:
        raise AwsError(f"DescribeNetworkInterfaces does not return {', '.join(missing)}")

    instance_ids = list(
        dict.fromkeys(
            str(eni["Attachment"]["InstanceId"])
            for eni in described.values()
            if eni.get("Attachment", {}).get("InstanceId")
        )
    )
    type_of = {i["InstanceId"]: str(i["InstanceType"]) for i in _describe_instances(ec2, instance_ids)}
    facts = _instance_type_facts(ec2, list(dict.fromkeys(type_of.values())))
    return [_source(interface, described[interface.eni_id], type_of, facts) for interface in interfaces]


def _instance_type_facts(ec2: Any, instance_types: list[str]) -> dict[str, tuple[str | None, bool | None]]:
    """Instance type -> (hypervisor: "nitro" or "xen", bare metal or not)."""
    facts: dict[str, tuple[str | None, bool | None]] = {}
    for chunk in _chunks(instance_types, _EC2_IDS_PER_CALL):
        answer = call(
            ec2, "DescribeInstanceTypes", iam_action="ec2:DescribeInstanceTypes", InstanceTypes=chunk
        )
        for offered in answer.get("InstanceTypes", []):
            facts[offered["InstanceType"]] = (offered.get("Hypervisor"), offered.get("BareMetal"))
    return facts


def _source(
    interface: _Interface,
    eni: dict[str, Any],
    type_of: dict[str, str],
    facts: dict[str, tuple[str | None, bool | None]],
) -> MirrorSource:
    instance_id = eni.get("Attachment", {}).get("InstanceId") or None
    instance_type = type_of.get(instance_id) if instance_id else None
    hypervisor, bare_metal = facts.get(instance_type, (None, None)) if instance_type else (None, None)
    requester_managed = bool(eni.get("RequesterManaged", False))
    eligibility, reason = judge_eligibility(
        interface_type=eni.get("InterfaceType"),
        requester_managed=requester_managed,
        requester_id=eni.get("RequesterId"),
        instance_type=instance_type,
        hypervisor=hypervisor,
        bare_metal=bare_metal,
    )
    task = interface.task or {}
    launch_type = task.get("launchType") or None
    fallbacks: tuple[str, ...] = ()
    if eligibility != "likely":
        if interface.kind == "task" and launch_type == "FARGATE":
            fallbacks = (
                "run the service on the EC2 launch type in bridge or host mode on a Nitro instance and "
                "mirror the container instance's ENI",
                FORWARDER,
            )
        elif interface.kind in ("task", "container-instance"):
            fallbacks = ("place the tasks on an instance type AWS can mirror", FORWARDER)
    return MirrorSource(
        eni_id=interface.eni_id,
        private_ip=interface.private_ip or eni.get("PrivateIpAddress"),
        kind=interface.kind,
        eligibility=eligibility,
        eligibility_reason=reason,
        fallbacks=fallbacks,
        task_arn=task.get("taskArn"),
        service_name=_service_of(task) if task else None,
        cluster=task.get("clusterArn"),
        launch_type=launch_type,
        network_mode=interface.network_mode,
        host_ports=tuple(
            sorted(
                {
                    int(binding["hostPort"])
                    for container in task.get("containers", [])
                    for binding in container.get("networkBindings", [])
                    if "hostPort" in binding
                }
            )
        ),
        instance_id=instance_id,
        instance_type=instance_type,
        requester_managed=requester_managed,
        requester_id=eni.get("RequesterId"),
        interface_type=eni.get("InterfaceType"),
    )


def _proxy_port(
    ecs: Any, exposed: dict[str, Any], task_definition: str | None, definitions: dict[str, dict[str, Any]]
) -> int | None:
    """The port the server tasks' Service Connect proxy listens on. ECS's API reference
    (ServiceConnectService.ingressPortOverride): "In awsvpc mode and Fargate, the default value is the
    container port number. The container port number is in the portMapping in the task definition. In bridge
    mode, the default value is the ephemeral port of the Service Connect proxy."""
    if exposed.get("ingressPortOverride") is not None:
        return int(exposed["ingressPortOverride"])
    if task_definition is None:
        return None
    definition = _task_definition(ecs, task_definition, definitions)
    if _network_mode(definition) != "awsvpc":
        return None
    for container in definition.get("containerDefinitions", []):
        for mapping in container.get("portMappings", []):
            if mapping.get("name") == exposed["portName"] and mapping.get("containerPort") is not None:
                return int(mapping["containerPort"])
    return None


def _declarations(
    ecs: Any,
    where: dict[str, str],
    cluster: str,
    service_names: list[str],
    definitions: dict[str, dict[str, Any]],
) -> list[ServiceConnectDeclaration]:
    declarations: list[ServiceConnectDeclaration] = []
    for chunk in _chunks(service_names, _SERVICES_PER_CALL):
        answer = call(ecs, "DescribeServices", iam_action="ecs:DescribeServices", services=chunk, **where)
        _failures(answer.get("failures", []), "services", cluster)
        for service in answer.get("services", []):
            primary: dict[str, Any] = next(
                (d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"), {}
            )
            connect = primary.get("serviceConnectConfiguration", {})
            if not connect.get("enabled"):
                continue
            for exposed in connect.get("services", []):
                tls = exposed.get("tls")
                declarations.append(
                    ServiceConnectDeclaration(
                        cluster=cluster,
                        service=str(service["serviceName"]),
                        port_name=str(exposed["portName"]),
                        tls_enabled=tls is not None,
                        pca_arn=(tls or {}).get("issuerCertificateAuthority", {}).get("awsPcaAuthorityArn"),
                        discovery_name=exposed.get("discoveryName"),
                        client_aliases=tuple(
                            (alias.get("dnsName"), int(alias["port"]))
                            for alias in exposed.get("clientAliases", [])
                        ),
                        namespace=connect.get("namespace"),
                        port=_proxy_port(ecs, exposed, primary.get("taskDefinition"), definitions),
                    )
                )
    return declarations
