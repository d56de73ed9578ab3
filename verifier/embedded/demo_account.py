"""The account `verifier demo` runs against: seeded into the embedded AWS (moto) through ordinary API calls.

A shop's VPC with a task subnet and a collector subnet; an ECS cluster "shop" with two awsvpc services:
  * "web" declares Service Connect TLS on its "https" port (8443), with certificates from the account's
    AWS Private CA, and leaves a plaintext "http" port (8080) open beside it;
  * "data" declares its "postgres" port (5432) through Service Connect without TLS, and also serves Redis
    (6379) and an old TLS endpoint (9443) whose certificate comes from another CA;
a collector instance (a Nitro type that can be a mirror target) whose security group lets VXLAN in from the
task subnet only; and the Private CA, which issues the "web" server certificate the lab's TLS 1.3 server
presents. Clients of the moto endpoint are made from the session given (the caller points it at moto).

Seeding is the demo's stand-in for an account someone already built: its calls go straight to the clients,
not through verifier.aws.calls, and are not verifier's own (the IAM policy does not cover them).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CLUSTER = "shop"
NAMESPACE = "shop.local"
TASK_SUBNET = "10.0.1.0/24"
COLLECTOR_SUBNET = "10.0.2.0/24"
WEB_NAME = "web.shop.local"
WEB_HTTPS_PORT = 8443
WEB_HTTP_PORT = 8080
POSTGRES_PORT = 5432
REDIS_PORT = 6379
LEGACY_TLS_PORT = 9443
VXLAN_PORT = 4789
COLLECTOR_INSTANCE_TYPE = "c5n.large"
# moto accepts any image id; a real account would use the collector stack's AMI.
IMAGE_ID = "ami-0123456789abcdef0"
ROOT_TEMPLATE = "arn:aws:acm-pca:::template/RootCACertificate/V1"
END_ENTITY_TEMPLATE = "arn:aws:acm-pca:::template/EndEntityCertificate/V1"


@dataclass(frozen=True, slots=True)
class DemoTask:
    service: str
    task_arn: str
    eni_id: str
    private_ip: str


@dataclass(frozen=True, slots=True)
class DemoAccount:
    region: str
    cluster: str
    services: tuple[str, ...]
    tasks: tuple[DemoTask, ...]
    collector_instance_id: str
    collector_eni_id: str
    collector_ip: str
    pca_arn: str
    pca_root_pem: bytes
    web_certificate_pem: bytes  # the "web" server's certificate and the chain AWS returns with it
    web_key_pem: bytes
    free_task_subnet_addresses: tuple[str, ...]  # for the lab's clients: in the subnet, used by nothing


def seed(session: Any, region: str) -> DemoAccount:
    ec2 = session.client("ec2", region_name=region)
    ecs = session.client("ecs", region_name=region)
    pca = session.client("acm-pca", region_name=region)

    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # awsvpc tasks need DNS hostnames (ECS refuses the task otherwise, and moto checks it too).
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    task_subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=TASK_SUBNET)["Subnet"]["SubnetId"]
    collector_subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=COLLECTOR_SUBNET)["Subnet"]["SubnetId"]
    tasks_group = ec2.create_security_group(GroupName="shop-tasks", Description="ECS tasks", VpcId=vpc)[
        "GroupId"
    ]
    collector_group = ec2.create_security_group(
        GroupName="verifier-collector", Description="VXLAN from the mirror sources only", VpcId=vpc
    )["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=collector_group,
        IpPermissions=[
            {
                "IpProtocol": "udp",
                "FromPort": VXLAN_PORT,
                "ToPort": VXLAN_PORT,
                "IpRanges": [{"CidrIp": TASK_SUBNET, "Description": "VXLAN from mirrored tasks"}],
            }
        ],
    )
    collector = ec2.run_instances(
        ImageId=IMAGE_ID,
        MinCount=1,
        MaxCount=1,
        InstanceType=COLLECTOR_INSTANCE_TYPE,
        SubnetId=collector_subnet,
        SecurityGroupIds=[collector_group],
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "verifier-collector"}]}
        ],
    )["Instances"][0]
    collector_eni = collector["NetworkInterfaces"][0]

    pca_arn, root_pem = _private_ca(pca)
    web_certificate, web_key = _web_certificate(pca, pca_arn)

    ecs.create_cluster(clusterName=CLUSTER)
    network = {"awsvpcConfiguration": {"subnets": [task_subnet], "securityGroups": [tasks_group]}}
    _service(
        ecs,
        "web",
        network,
        ports={"https": WEB_HTTPS_PORT, "http": WEB_HTTP_PORT},
        service_connect={
            "portName": "https",
            "discoveryName": "web",
            "clientAliases": [{"port": 443, "dnsName": WEB_NAME}],
            "tls": {"issuerCertificateAuthority": {"awsPcaAuthorityArn": pca_arn}},
        },
    )
    _service(
        ecs,
        "data",
        network,
        ports={"postgres": POSTGRES_PORT, "redis": REDIS_PORT, "legacy-tls": LEGACY_TLS_PORT},
        service_connect={
            "portName": "postgres",
            "discoveryName": "postgres",
            "clientAliases": [{"port": POSTGRES_PORT, "dnsName": f"postgres.{NAMESPACE}"}],
        },
    )
    tasks = tuple(_run_task(ecs, name, network) for name in ("web", "data"))
    used = {task.private_ip for task in tasks} | {str(collector_eni["PrivateIpAddress"])}
    subnet = ipaddress.ip_network(TASK_SUBNET)
    # High in the subnet, far from the addresses the embedded AWS gives its ENIs (the lowest free ones).
    free = tuple(str(address) for address in list(subnet.hosts())[200:250] if str(address) not in used)
    return DemoAccount(
        region=region,
        cluster=CLUSTER,
        services=("web", "data"),
        tasks=tasks,
        collector_instance_id=str(collector["InstanceId"]),
        collector_eni_id=str(collector_eni["NetworkInterfaceId"]),
        collector_ip=str(collector_eni["PrivateIpAddress"]),
        pca_arn=pca_arn,
        pca_root_pem=root_pem,
        web_certificate_pem=web_certificate,
        web_key_pem=web_key,
        free_task_subnet_addresses=free,
    )


def _service(
    ecs: Any, name: str, network: dict[str, Any], *, ports: dict[str, int], service_connect: dict[str, Any]
) -> None:
    ecs.register_task_definition(
        family=name,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": name,
                "image": f"{name}:1",
                "memory": 256,  # moto wants a container-level memory for awsvpc tasks
                "portMappings": [
                    {"name": port_name, "containerPort": port} for port_name, port in ports.items()
                ],
            }
        ],
    )
    ecs.create_service(
        cluster=CLUSTER,
        serviceName=name,
        taskDefinition=name,
        desiredCount=1,
        launchType="FARGATE",
        networkConfiguration=network,
        serviceConnectConfiguration={"enabled": True, "namespace": NAMESPACE, "services": [service_connect]},
    )


def _run_task(ecs: Any, service: str, network: dict[str, Any]) -> DemoTask:
    # moto's services start no task: start the service's task as ECS would, in the service's group.
    task = ecs.run_task(
        cluster=CLUSTER,
        taskDefinition=service,
        launchType="FARGATE",
        networkConfiguration=network,
        group=f"service:{service}",
    )["tasks"][0]
    details = {detail["name"]: detail["value"] for detail in task["attachments"][0]["details"]}
    return DemoTask(
        service, str(task["taskArn"]), details["networkInterfaceId"], details["privateIPv4Address"]
    )


def _issue(pca: Any, ca_arn: str, csr_pem: bytes, template: str, days: int) -> tuple[bytes, bytes]:
    certificate_arn = pca.issue_certificate(
        CertificateAuthorityArn=ca_arn,
        Csr=csr_pem,
        SigningAlgorithm="SHA256WITHECDSA",
        TemplateArn=template,
        Validity={"Value": days, "Type": "DAYS"},
    )["CertificateArn"]
    got = pca.get_certificate(CertificateAuthorityArn=ca_arn, CertificateArn=certificate_arn)
    return str(got["Certificate"]).encode(), str(got.get("CertificateChain", "")).encode()


def _private_ca(pca: Any) -> tuple[str, bytes]:
    """A root CA installed as AWS installs one: the CA issues its own certificate from its CSR, then it is
    imported."""
    arn = str(
        pca.create_certificate_authority(
            CertificateAuthorityConfiguration={
                "KeyAlgorithm": "EC_prime256v1",
                "SigningAlgorithm": "SHA256WITHECDSA",
                "Subject": {"Organization": "Shop", "CommonName": "Shop Service Connect CA"},
            },
            CertificateAuthorityType="ROOT",
            UsageMode="SHORT_LIVED_CERTIFICATE",
        )["CertificateAuthorityArn"]
    )
    csr = str(pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]).encode()
    certificate, _chain = _issue(pca, arn, csr, ROOT_TEMPLATE, 3650)
    pca.import_certificate_authority_certificate(CertificateAuthorityArn=arn, Certificate=certificate)
    return arn, certificate


def _web_certificate(pca: Any, ca_arn: str) -> tuple[bytes, bytes]:
    """The "web" server's certificate (then the chain AWS returns with it) and its ECDSA P-256 key."""
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, WEB_NAME)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(WEB_NAME)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    certificate, chain = _issue(
        pca, ca_arn, request.public_bytes(serialization.Encoding.PEM), END_ENTITY_TEMPLATE, 7
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate + (b"\n" + chain if chain else b""), key_pem
