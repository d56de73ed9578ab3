"""verifier.aws.ecs: mirror sources and Service Connect declarations, against moto's ECS and EC2 and, for what
moto does not model, botocore's Stubber.

What moto 5.2.5 does that shapes these tests (moto/ecs/models.py):
  * tasks start RUNNING, and by default every DescribeTasks moves them a step towards STOPPED: the state
    manager holds them RUNNING here;
  * an awsvpc task gets an ENI that is neither attached to an instance nor requester-managed, unlike AWS,
    where ECS manages it; tasks carry no containers[].networkBindings;
  * ListTasks ignores serviceName, and DescribeTasks leaves unknown tasks out instead of reporting failures[];
  * services keep no serviceConnectConfiguration.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.moto_api import state_manager

from tests.aws.test_pca import offline_environment
from verifier.aws.ecs import FORWARDER, resolve_sources
from verifier.core.targets import REQUESTER_MANAGED_REASON, MirrorSource, ServiceConnectDeclaration
from verifier.errors import AwsError, UsageError

REGION = "eu-west-1"
CLUSTER = "shop"


# ---------------------------------------------------------------------------------------------------------
# End to end with moto


@dataclass(frozen=True)
class World:
    session: boto3.session.Session
    ec2: Any
    ecs: Any
    fargate_task: dict[str, Any]
    bridge_task: dict[str, Any]
    instance: dict[str, Any]  # the container instance's EC2 instance (m5.large)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[World]:
    """A cluster with an awsvpc Fargate task of service "api" and a bridge-mode task on an EC2 container
    instance."""
    offline_environment(monkeypatch, tmp_path)
    # "manual": a task leaves RUNNING only after this many DescribeTasks, far more than a test makes.
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 1000})
    with mock_aws():
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        ec2 = session.client("ec2")
        ecs = session.client("ecs")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="tasks", Description="tasks", VpcId=vpc)["GroupId"]
        ecs.create_cluster(clusterName=CLUSTER)
        network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}}

        ecs.register_task_definition(
            family="api",
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="256",
            memory="512",
            containerDefinitions=[
                {
                    "name": "api",
                    "image": "api:1",
                    "memory": 256,
                    "portMappings": [{"containerPort": 8443, "name": "api"}],
                }
            ],
        )
        ecs.create_service(
            cluster=CLUSTER,
            serviceName="api",
            taskDefinition="api",
            desiredCount=1,
            launchType="FARGATE",
            networkConfiguration=network,
        )
        # The group ECS gives the tasks of service "api" (moto's services start no tasks).
        fargate_task = ecs.run_task(
            cluster=CLUSTER,
            taskDefinition="api",
            launchType="FARGATE",
            networkConfiguration=network,
            group="service:api",
        )["tasks"][0]

        instance = ec2.run_instances(
            ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="m5.large", SubnetId=subnet
        )["Instances"][0]
        ecs.register_container_instance(
            cluster=CLUSTER, instanceIdentityDocument=json.dumps({"instanceId": instance["InstanceId"]})
        )
        ecs.register_task_definition(
            family="legacy",
            networkMode="bridge",
            containerDefinitions=[
                {
                    "name": "legacy",
                    "image": "legacy:1",
                    "memory": 128,
                    "portMappings": [{"containerPort": 80, "hostPort": 8080}],
                }
            ],
        )
        bridge_task = ecs.run_task(cluster=CLUSTER, taskDefinition="legacy", launchType="EC2")["tasks"][0]
        yield World(session, ec2, ecs, fargate_task, bridge_task, instance)
    state_manager.unset_transition(model_name="ecs::task")


def eni_detail(task: dict[str, Any], name: str) -> str:
    (attachment,) = task["attachments"]
    return str(next(d["value"] for d in attachment["details"] if d["name"] == name))


def test_every_running_task_of_a_cluster(world: World) -> None:
    sources, declarations = resolve_sources(world.session, region=REGION, cluster=CLUSTER)
    by_kind = {source.kind: source for source in sources}
    assert set(by_kind) == {"task", "container-instance"}

    task = by_kind["task"]
    assert task.eni_id == eni_detail(world.fargate_task, "networkInterfaceId")
    assert task.private_ip == eni_detail(world.fargate_task, "privateIPv4Address")
    assert (task.task_arn, task.service_name, task.launch_type, task.network_mode) == (
        world.fargate_task["taskArn"],
        "api",
        "FARGATE",
        "awsvpc",
    )
    assert task.cluster == world.fargate_task["clusterArn"]
    assert (task.interface_type, task.requester_managed, task.instance_id) == ("interface", False, None)
    # moto's task ENI belongs to no instance (in AWS ECS manages it: see the Stubber tests).
    assert task.eligibility == "unknown"
    assert "not attached to an EC2 instance" in task.eligibility_reason
    assert task.fallbacks[-1] == FORWARDER

    host = by_kind["container-instance"]
    primary = world.instance["NetworkInterfaces"][0]
    assert (host.eni_id, host.private_ip) == (primary["NetworkInterfaceId"], primary["PrivateIpAddress"])
    assert (host.task_arn, host.service_name, host.launch_type, host.network_mode) == (
        world.bridge_task["taskArn"],
        None,
        "EC2",
        "bridge",
    )
    assert (host.instance_id, host.instance_type) == (world.instance["InstanceId"], "m5.large")
    assert host.eligibility == "likely"
    assert host.fallbacks == ()
    # moto stores no Service Connect configuration: the service is described, nothing is declared.
    assert declarations == []


def test_named_tasks_only(world: World) -> None:
    task_id = world.bridge_task["taskArn"].rsplit("/", 1)[1]
    sources, declarations = resolve_sources(world.session, region=REGION, cluster=CLUSTER, tasks=[task_id])
    assert [(s.kind, s.task_arn) for s in sources] == [("container-instance", world.bridge_task["taskArn"])]
    assert declarations == []


def test_an_eni_given_directly(world: World) -> None:
    primary = world.instance["NetworkInterfaces"][0]["NetworkInterfaceId"]
    sources, declarations = resolve_sources(world.session, region=REGION, enis=[primary])
    assert declarations == []
    (source,) = sources
    assert (source.kind, source.eni_id, source.instance_type, source.eligibility) == (
        "eni",
        primary,
        "m5.large",
        "likely",
    )
    assert (source.task_arn, source.network_mode, source.fallbacks) == (None, None, ())


def test_an_instance_type_aws_does_not_mirror(world: World) -> None:
    # T2 is built on Xen and is not among the non-Nitro families AWS lists as supported.
    old = world.ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="t2.micro")
    eni = old["Instances"][0]["NetworkInterfaces"][0]["NetworkInterfaceId"]
    (source,) = resolve_sources(world.session, region=REGION, enis=[eni])[0]
    assert (source.instance_type, source.eligibility) == ("t2.micro", "unlikely")
    assert "not built on Nitro" in source.eligibility_reason


def test_an_unknown_task(world: World) -> None:
    with pytest.raises(AwsError, match=f"^ECS does not know these tasks in cluster {CLUSTER}: 0123abcd$"):
        resolve_sources(world.session, region=REGION, cluster=CLUSTER, tasks=["0123abcd"])


def test_an_unknown_service(world: World) -> None:
    with pytest.raises(
        AwsError, match=f"^ECS does not know these services in cluster {CLUSTER}: .*nope: MISSING"
    ):
        resolve_sources(world.session, region=REGION, cluster=CLUSTER, services=["nope"])


def test_an_unknown_cluster(world: World) -> None:
    with pytest.raises(AwsError, match=f"^ECS cluster elsewhere does not exist in {REGION}") as caught:
        resolve_sources(world.session, region=REGION, cluster="elsewhere")
    assert caught.value.exit_code == 3


def test_nothing_to_mirror() -> None:
    with pytest.raises(UsageError, match="nothing to mirror"):
        resolve_sources(boto3.session.Session(region_name=REGION), region=REGION)


# ---------------------------------------------------------------------------------------------------------
# What moto does not model: botocore's Stubber

ACCOUNT = "111122223333"
CLUSTER_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}"
TASK_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/0f1e2d3c4b5a69788796a5b4c3d2e1f0"
OTHER_TASK_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/1f1e2d3c4b5a69788796a5b4c3d2e1f0"
TASK_DEFINITION_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/api:7"
CONTAINER_INSTANCE_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/{CLUSTER}/5a5b5c5d"
PCA_ARN = f"arn:aws:acm-pca:{REGION}:{ACCOUNT}:certificate-authority/5e0f7a1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b"
# The AWS-owned account that requests Fargate task ENIs.
ECS_REQUESTER = "578734482556"


class StubbedSession:
    """Stands in for a boto3 session: hands out one stubbed client per service."""

    def __init__(self, clients: dict[str, Any]) -> None:
        self._clients = clients

    def client(self, service_name: str, region_name: str | None = None, config: object = None) -> Any:
        return self._clients[service_name]


@dataclass(frozen=True)
class Stubs:
    session: StubbedSession
    ecs: Stubber
    ec2: Stubber


@pytest.fixture
def stubs() -> Iterator[Stubs]:
    real = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    ecs, ec2 = real.client("ecs"), real.client("ec2")
    with Stubber(ecs) as ecs_stubber, Stubber(ec2) as ec2_stubber:
        yield Stubs(StubbedSession({"ecs": ecs, "ec2": ec2}), ecs_stubber, ec2_stubber)
        ecs_stubber.assert_no_pending_responses()
        ec2_stubber.assert_no_pending_responses()


def fargate_task(task_arn: str = TASK_ARN) -> dict[str, Any]:
    return {
        "taskArn": task_arn,
        "clusterArn": CLUSTER_ARN,
        "taskDefinitionArn": TASK_DEFINITION_ARN,
        "lastStatus": "RUNNING",
        "launchType": "FARGATE",
        "group": "service:api",
        "attachments": [
            {
                "type": "ElasticNetworkInterface",
                "status": "ATTACHED",
                "details": [
                    {"name": "subnetId", "value": "subnet-0a1b2c3d"},
                    {"name": "networkInterfaceId", "value": "eni-0task"},
                    {"name": "privateIPv4Address", "value": "10.0.1.20"},
                ],
            }
        ],
    }


def describes_task_definition(stubs: Stubs, network_mode: str) -> None:
    stubs.ecs.add_response(
        "describe_task_definition",
        {"taskDefinition": {"taskDefinitionArn": TASK_DEFINITION_ARN, "networkMode": network_mode}},
        {"taskDefinition": TASK_DEFINITION_ARN},
    )


def test_a_fargate_task_with_service_connect(stubs: Stubs) -> None:
    stubs.ecs.add_response(
        "describe_tasks",
        {"tasks": [fargate_task()], "failures": []},
        {"cluster": CLUSTER, "tasks": [TASK_ARN]},
    )
    describes_task_definition(stubs, "awsvpc")
    stubs.ecs.add_response(
        "describe_services",
        {
            "services": [
                {
                    "serviceName": "api",
                    "deployments": [
                        # The deployment being replaced still declares plaintext: only the primary counts.
                        {
                            "status": "ACTIVE",
                            "serviceConnectConfiguration": {"enabled": True, "services": []},
                        },
                        {
                            "status": "PRIMARY",
                            "serviceConnectConfiguration": {
                                "enabled": True,
                                "namespace": "shop.local",
                                "services": [
                                    {
                                        "portName": "api",
                                        "discoveryName": "api",
                                        "clientAliases": [
                                            {"port": 443, "dnsName": "api.shop.local"},
                                            {"port": 8443},
                                        ],
                                        "tls": {
                                            "issuerCertificateAuthority": {"awsPcaAuthorityArn": PCA_ARN},
                                            "roleArn": f"arn:aws:iam::{ACCOUNT}:role/ecs-service-connect-tls",
                                        },
                                    },
                                    {"portName": "metrics", "clientAliases": [{"port": 9090}]},
                                ],
                            },
                        },
                    ],
                }
            ],
            "failures": [],
        },
        {"cluster": CLUSTER, "services": ["api"]},
    )
    stubs.ec2.add_response(
        "describe_network_interfaces",
        {
            "NetworkInterfaces": [
                {
                    "NetworkInterfaceId": "eni-0task",
                    "InterfaceType": "interface",
                    "RequesterManaged": True,
                    "RequesterId": ECS_REQUESTER,
                    "PrivateIpAddress": "10.0.1.20",
                }
            ]
        },
        {"NetworkInterfaceIds": ["eni-0task"]},
    )
    sources, declarations = resolve_sources(stubs.session, region=REGION, cluster=CLUSTER, tasks=[TASK_ARN])
    assert sources == [
        MirrorSource(
            eni_id="eni-0task",
            private_ip="10.0.1.20",
            kind="task",
            eligibility="unknown",
            eligibility_reason=REQUESTER_MANAGED_REASON.format(requester=ECS_REQUESTER),
            fallbacks=(
                "run the service on the EC2 launch type in bridge or host mode on a Nitro instance and "
                "mirror the container instance's ENI",
                FORWARDER,
            ),
            task_arn=TASK_ARN,
            service_name="api",
            cluster=CLUSTER_ARN,
            launch_type="FARGATE",
            network_mode="awsvpc",
            requester_managed=True,
            requester_id=ECS_REQUESTER,
            interface_type="interface",
        )
    ]
    assert declarations == [
        ServiceConnectDeclaration(
            cluster=CLUSTER,
            service="api",
            port_name="api",
            tls_enabled=True,
            pca_arn=PCA_ARN,
            discovery_name="api",
            client_aliases=(("api.shop.local", 443), (None, 8443)),
            namespace="shop.local",
        ),
        ServiceConnectDeclaration(
            cluster=CLUSTER,
            service="api",
            port_name="metrics",
            tls_enabled=False,
            pca_arn=None,
            discovery_name=None,
            client_aliases=((None, 9090),),
            namespace="shop.local",
        ),
    ]


def test_a_bridge_task_across_list_pages(stubs: Stubs) -> None:
    listing = {"cluster": CLUSTER, "desiredStatus": "RUNNING"}
    stubs.ecs.add_response("list_tasks", {"taskArns": [TASK_ARN], "nextToken": "page-2"}, listing)
    stubs.ecs.add_response("list_tasks", {"taskArns": [OTHER_TASK_ARN]}, {**listing, "nextToken": "page-2"})
    bridge = {
        "taskArn": TASK_ARN,
        "clusterArn": CLUSTER_ARN,
        "taskDefinitionArn": TASK_DEFINITION_ARN,
        "containerInstanceArn": CONTAINER_INSTANCE_ARN,
        "lastStatus": "RUNNING",
        "launchType": "EC2",
        "group": "family:api",
        "containers": [
            {
                "name": "api",
                "networkBindings": [{"containerPort": 8443, "hostPort": 32768, "protocol": "tcp"}],
            },
            {
                "name": "sidecar",
                "networkBindings": [{"containerPort": 80, "hostPort": 8080, "protocol": "tcp"}],
            },
        ],
    }
    # Desired RUNNING but still starting: nothing to mirror yet.
    pending = {**fargate_task(OTHER_TASK_ARN), "lastStatus": "PENDING"}
    stubs.ecs.add_response(
        "describe_tasks",
        {"tasks": [bridge, pending], "failures": []},
        {"cluster": CLUSTER, "tasks": [TASK_ARN, OTHER_TASK_ARN]},
    )
    describes_task_definition(stubs, "bridge")
    stubs.ecs.add_response(
        "describe_container_instances",
        {
            "containerInstances": [
                {"containerInstanceArn": CONTAINER_INSTANCE_ARN, "ec2InstanceId": "i-0host"}
            ]
        },
        {"cluster": CLUSTER, "containerInstances": [CONTAINER_INSTANCE_ARN]},
    )
    instance = {
        "InstanceId": "i-0host",
        "InstanceType": "c4.large",
        "NetworkInterfaces": [
            {
                "NetworkInterfaceId": "eni-0second",
                "PrivateIpAddress": "10.0.1.31",
                "Attachment": {"DeviceIndex": 1},
            },
            {
                "NetworkInterfaceId": "eni-0primary",
                "PrivateIpAddress": "10.0.1.30",
                "Attachment": {"DeviceIndex": 0},
            },
        ],
    }
    reservations = {"Reservations": [{"Instances": [instance]}]}
    stubs.ec2.add_response("describe_instances", reservations, {"InstanceIds": ["i-0host"]})
    stubs.ec2.add_response(
        "describe_network_interfaces",
        {
            "NetworkInterfaces": [
                {
                    "NetworkInterfaceId": "eni-0primary",
                    "InterfaceType": "interface",
                    "RequesterManaged": False,
                    "PrivateIpAddress": "10.0.1.30",
                    "Attachment": {"InstanceId": "i-0host", "DeviceIndex": 0},
                }
            ]
        },
        {"NetworkInterfaceIds": ["eni-0primary"]},
    )
    stubs.ec2.add_response("describe_instances", reservations, {"InstanceIds": ["i-0host"]})
    stubs.ec2.add_response(
        "describe_instance_types",
        {"InstanceTypes": [{"InstanceType": "c4.large", "Hypervisor": "xen", "BareMetal": False}]},
        {"InstanceTypes": ["c4.large"]},
    )
    sources, declarations = resolve_sources(stubs.session, region=REGION, cluster=CLUSTER)
    (source,) = sources
    assert (source.kind, source.eni_id, source.private_ip) == (
        "container-instance",
        "eni-0primary",
        "10.0.1.30",
    )
    assert (source.network_mode, source.host_ports) == ("bridge", (8080, 32768))
    assert (source.instance_id, source.instance_type) == ("i-0host", "c4.large")
    # C4 is not built on Nitro, but AWS lists it among the older families it mirrors.
    assert source.eligibility == "likely"
    assert declarations == []


def test_ecs_failures_become_errors(stubs: Stubs) -> None:
    stubs.ecs.add_response(
        "describe_tasks",
        {"tasks": [], "failures": [{"arn": TASK_ARN, "reason": "MISSING"}]},
        {"cluster": CLUSTER, "tasks": [TASK_ARN]},
    )
    with pytest.raises(
        AwsError, match=f"^ECS does not know these tasks in cluster {CLUSTER}: {TASK_ARN}: MISSING$"
    ):
        resolve_sources(stubs.session, region=REGION, cluster=CLUSTER, tasks=[TASK_ARN])


def test_a_stopped_task_asked_for_by_name(stubs: Stubs) -> None:
    stopped = {**fargate_task(), "lastStatus": "STOPPED"}
    stubs.ecs.add_response(
        "describe_tasks", {"tasks": [stopped], "failures": []}, {"cluster": CLUSTER, "tasks": [TASK_ARN]}
    )
    with pytest.raises(AwsError, match=f"^task {TASK_ARN} is STOPPED, not RUNNING$"):
        resolve_sources(stubs.session, region=REGION, cluster=CLUSTER, tasks=[TASK_ARN])


def test_access_denied_names_the_action(stubs: Stubs) -> None:
    stubs.ec2.add_client_error(
        "describe_network_interfaces",
        service_error_code="UnauthorizedOperation",
        service_message="You are not authorized to perform this operation.",
        http_status_code=403,
        expected_params={"NetworkInterfaceIds": ["eni-0given"]},
    )
    with pytest.raises(AwsError) as caught:
        resolve_sources(stubs.session, region=REGION, enis=["eni-0given"])
    assert str(caught.value).startswith(
        f"DescribeNetworkInterfaces in {REGION} is not allowed: "
        "missing IAM permission ec2:DescribeNetworkInterfaces"
    )
    assert caught.value.exit_code == 3


def test_a_branch_eni_is_unlikely(stubs: Stubs) -> None:
    # ENI trunking gives awsvpc tasks on EC2 branch interfaces; AWS mirrors interfaces of type interface only.
    stubs.ec2.add_response(
        "describe_network_interfaces",
        {
            "NetworkInterfaces": [
                {
                    "NetworkInterfaceId": "eni-0branch",
                    "InterfaceType": "branch",
                    "RequesterManaged": True,
                    "PrivateIpAddress": "10.0.1.40",
                }
            ]
        },
        {"NetworkInterfaceIds": ["eni-0branch"]},
    )
    (source,) = resolve_sources(stubs.session, region=REGION, enis=["eni-0branch"])[0]
    assert (source.kind, source.interface_type, source.eligibility) == ("eni", "branch", "unlikely")
    assert source.fallbacks == ()


LEGACY_DEFINITION_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/legacy:3"


def test_service_connect_ports_are_what_the_server_proxy_listens_on(stubs: Stubs) -> None:
    stubs.ecs.add_response(
        "describe_tasks",
        {"tasks": [fargate_task()], "failures": []},
        {"cluster": CLUSTER, "tasks": [TASK_ARN]},
    )
    # Described once, for the task's network mode, and found again for the service's primary deployment.
    stubs.ecs.add_response(
        "describe_task_definition",
        {
            "taskDefinition": {
                "taskDefinitionArn": TASK_DEFINITION_ARN,
                "networkMode": "awsvpc",
                "containerDefinitions": [
                    {"name": "sidecar", "portMappings": [{"name": "metrics", "containerPort": 9090}]},
                    {
                        "name": "api",
                        "portMappings": [
                            {"name": "api", "containerPort": 8443, "hostPort": 8443},
                            {"name": "admin", "containerPort": 9443},
                        ],
                    },
                ],
            }
        },
        {"taskDefinition": TASK_DEFINITION_ARN},
    )

    def exposed(port_name: str, **extra: Any) -> dict[str, Any]:
        return {"portName": port_name, "clientAliases": [{"port": 443}], **extra}

    def service(name: str, definition: str, services: list[dict[str, Any]]) -> dict[str, Any]:
        connect = {"enabled": True, "namespace": "shop.local", "services": services}
        deployment = {
            "status": "PRIMARY",
            "taskDefinition": definition,
            "serviceConnectConfiguration": connect,
        }
        return {"serviceName": name, "deployments": [deployment]}

    stubs.ecs.add_response(
        "describe_services",
        {
            "services": [
                service(
                    "api",
                    TASK_DEFINITION_ARN,
                    [
                        exposed("api"),  # awsvpc: the named portMapping's containerPort
                        exposed("admin", ingressPortOverride=15000),  # the override wins
                        exposed("metrics"),  # a portMapping of another container counts too
                        exposed("gone"),  # no portMapping of that name: unknown
                    ],
                ),
                service("legacy", LEGACY_DEFINITION_ARN, [exposed("web"), exposed("admin")]),
            ],
            "failures": [],
        },
        {"cluster": CLUSTER, "services": ["legacy", "api"]},
    )
    # Bridge mode: the proxy listens on an ephemeral port, whatever the containerPort.
    stubs.ecs.add_response(
        "describe_task_definition",
        {
            "taskDefinition": {
                "taskDefinitionArn": LEGACY_DEFINITION_ARN,
                "networkMode": "bridge",
                "containerDefinitions": [
                    {"name": "web", "portMappings": [{"name": "web", "containerPort": 80, "hostPort": 0}]}
                ],
            }
        },
        {"taskDefinition": LEGACY_DEFINITION_ARN},
    )
    stubs.ec2.add_response(
        "describe_network_interfaces",
        {"NetworkInterfaces": [{"NetworkInterfaceId": "eni-0task", "InterfaceType": "interface"}]},
        {"NetworkInterfaceIds": ["eni-0task"]},
    )
    _, declarations = resolve_sources(
        stubs.session, region=REGION, cluster=CLUSTER, services=["legacy"], tasks=[TASK_ARN]
    )
    assert [(d.service, d.port_name, d.port) for d in declarations] == [
        ("api", "api", 8443),
        ("api", "admin", 15000),
        ("api", "metrics", 9090),
        ("api", "gone", None),
        ("legacy", "web", None),
        ("legacy", "admin", None),
    ]
