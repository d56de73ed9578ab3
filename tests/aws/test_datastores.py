"""verifier.aws.datastores: the ENIs of RDS DB instances and ElastiCache cache nodes, against moto's RDS
and EC2 and, for what moto does not model, botocore's Stubber. The endpoint resolver is injected: no test
asks DNS.

What moto 5.2.5 does that shapes these tests:
  * create_db_instance creates no ENI: the tests create them with create_network_interface (description
    "RDSNetworkInterface", the DB's security group, a subnet of its subnet group) and then set the two fields
    no EC2 API lets a caller set, RequesterManaged and RequesterId, on moto's ENI object; moto's
    DescribeNetworkInterfaces filters requester-managed and requester-id on those same attributes;
  * describe_cache_clusters ignores ShowCacheNodeInfo (no CacheNodes, no SecurityGroups): ElastiCache nodes
    come from the Stubber.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends

from tests.aws.test_pca import offline_environment
from verifier.aws import datastores
from verifier.aws.datastores import datastore_sources, resolve_addresses
from verifier.aws.ecs import resolve_sources
from verifier.core.targets import MirrorSource
from verifier.errors import AwsError, UsageError

REGION = "eu-west-1"


def resolver(answers: dict[str, Sequence[str]], asked: list[str] | None = None) -> datastores.Resolver:
    """A resolver that knows only ``answers`` (a name not in it does not resolve) and notes each question."""

    def resolve(host: str) -> Sequence[str]:
        if asked is not None:
            asked.append(host)
        return answers.get(host, ())

    return resolve


NO_DNS = resolver({})


# ---------------------------------------------------------------------------------------------------------
# RDS with moto


@dataclass(frozen=True)
class Rds:
    session: boto3.session.Session
    ec2: Any
    rds: Any
    vpc: str
    subnets: tuple[str, str]  # the DB subnet group's, one per AZ
    group: str  # the DB's security group
    other_group: str  # another DB's
    endpoint: str  # DB "orders"'s endpoint name


def rds_eni(world: Rds, subnet: str, group: str, description: str = "RDSNetworkInterface") -> dict[str, Any]:
    """An ENI as RDS makes them: requester-managed by amazon-rds."""
    eni = world.ec2.create_network_interface(SubnetId=subnet, Groups=[group], Description=description)
    eni_id = eni["NetworkInterface"]["NetworkInterfaceId"]
    model = ec2_backends[DEFAULT_ACCOUNT_ID][REGION].enis[eni_id]
    model.requester_managed = True
    model.requester_id = "amazon-rds"
    (described,) = world.ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"]
    return dict(described)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Rds]:
    """DB instance "orders" (PostgreSQL) in a two-AZ subnet group and its own security group; no ENIs yet."""
    offline_environment(monkeypatch, tmp_path)
    with mock_aws():
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        ec2, rds = session.client("ec2"), session.client("rds")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = tuple(
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{n}.0/24", AvailabilityZone=f"{REGION}{zone}")[
                "Subnet"
            ]["SubnetId"]
            for n, zone in ((1, "a"), (2, "b"))
        )
        group, other_group = (
            ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]
            for name in ("orders-db", "billing-db")
        )
        rds.create_db_subnet_group(
            DBSubnetGroupName="databases", DBSubnetGroupDescription="databases", SubnetIds=list(subnets)
        )
        rds.create_db_instance(
            DBInstanceIdentifier="orders",
            DBInstanceClass="db.t3.micro",
            Engine="postgres",
            DBSubnetGroupName="databases",
            VpcSecurityGroupIds=[group],
            MasterUsername="admin",
            MasterUserPassword="not-a-real-password",
            AllocatedStorage=20,
        )
        (instance,) = rds.describe_db_instances(DBInstanceIdentifier="orders")["DBInstances"]
        endpoint = instance["Endpoint"]["Address"]
        yield Rds(session, ec2, rds, vpc, (subnets[0], subnets[1]), group, other_group, endpoint)


def test_the_one_rds_eni_in_the_dbs_groups_and_subnets(world: Rds) -> None:
    ours = rds_eni(world, world.subnets[0], world.group)
    # Not candidates: another DB's ENI (its own group), an ENI someone made and described like RDS's (not
    # requester-managed), and another service's ENI in the DB's group.
    rds_eni(world, world.subnets[1], world.other_group)
    world.ec2.create_network_interface(
        SubnetId=world.subnets[0], Groups=[world.group], Description="RDSNetworkInterface"
    )
    rds_eni(world, world.subnets[1], world.group, description="ELB app/shop/0123456789abcdef")
    asked: list[str] = []
    sources = datastore_sources(world.session, region=REGION, rds=["orders"], resolve=resolver({}, asked))
    assert sources == [
        MirrorSource(
            eni_id=ours["NetworkInterfaceId"],
            private_ip=ours["PrivateIpAddress"],
            kind="rds",
            eligibility="likely",
            eligibility_reason=datastores.RDS_REASON.format(name="orders"),
            requester_managed=True,
            requester_id="amazon-rds",
            interface_type="interface",
        )
    ]
    assert "Traffic Mirroring guide" in sources[0].eligibility_reason
    assert asked == [world.endpoint]


def test_multi_az_primary_and_standby_are_told_apart_by_the_endpoints_address(world: Rds) -> None:
    primary = rds_eni(world, world.subnets[0], world.group)
    standby = rds_eni(world, world.subnets[1], world.group)
    dns = resolver({world.endpoint: [primary["PrivateIpAddress"]]})
    (source,) = datastore_sources(world.session, region=REGION, rds=["orders"], resolve=dns)
    assert source.eni_id == primary["NetworkInterfaceId"]

    with pytest.raises(UsageError) as caught:
        datastore_sources(world.session, region=REGION, rds=["orders"], resolve=NO_DNS)
    message = str(caught.value)
    assert message.startswith("--rds orders: expected one ENI and found 2 candidate ENIs")
    assert primary["NetworkInterfaceId"] in message and standby["NetworkInterfaceId"] in message
    assert message.endswith("pass the right ENIs with --eni")


def test_a_private_endpoint_address_no_candidate_has_is_refused(world: Rds) -> None:
    # The only candidate is not the DB's ENI: the endpoint says the DB answers elsewhere in the VPC.
    candidate = rds_eni(world, world.subnets[0], world.group)
    dns = resolver({world.endpoint: ["10.0.2.99"]})
    with pytest.raises(UsageError, match=r"resolves to 10\.0\.2\.99, which no candidate ENI has") as caught:
        datastore_sources(world.session, region=REGION, rds=["orders"], resolve=dns)
    assert candidate["NetworkInterfaceId"] in str(caught.value)


def test_a_public_endpoint_address_no_candidate_has_does_not_narrow(world: Rds) -> None:
    # A publicly accessible DB resolved from outside the VPC: its public address is on no ENI that moto
    # shows, and says nothing about which private ENI is the DB's.
    ours = rds_eni(world, world.subnets[0], world.group)
    dns = resolver({world.endpoint: ["52.16.0.7"]})
    (source,) = datastore_sources(world.session, region=REGION, rds=["orders"], resolve=dns)
    assert source.eni_id == ours["NetworkInterfaceId"]


def test_no_candidate_eni(world: Rds) -> None:
    rds_eni(world, world.subnets[0], world.other_group)
    with pytest.raises(UsageError, match=r"^--rds orders: expected one ENI and found no candidate ENI"):
        datastore_sources(world.session, region=REGION, rds=["orders"], resolve=NO_DNS)


def test_an_unknown_db_instance(world: Rds) -> None:
    with pytest.raises(AwsError) as caught:
        datastore_sources(world.session, region=REGION, rds=["nope"], resolve=NO_DNS)
    assert str(caught.value) == f"--rds nope: no RDS DB instance nope in {REGION} for this account"
    assert caught.value.exit_code == 3


def test_an_unknown_cache_cluster(world: Rds) -> None:
    with pytest.raises(AwsError, match=f"^--elasticache nope: no ElastiCache cache cluster nope in {REGION}"):
        datastore_sources(world.session, region=REGION, elasticache=["nope"], resolve=NO_DNS)


def test_resolve_sources_adds_the_db_to_the_ecs_sources(world: Rds) -> None:
    ours = rds_eni(world, world.subnets[0], world.group)
    given = rds_eni(world, world.subnets[1], world.other_group)
    sources, declarations = resolve_sources(
        world.session, region=REGION, enis=[given["NetworkInterfaceId"]], rds=["orders"], resolve=NO_DNS
    )
    assert [(s.kind, s.eni_id) for s in sources] == [
        ("eni", given["NetworkInterfaceId"]),
        ("rds", ours["NetworkInterfaceId"]),
    ]
    assert declarations == []


def test_a_db_alone_is_something_to_mirror(world: Rds) -> None:
    rds_eni(world, world.subnets[0], world.group)
    sources, _ = resolve_sources(world.session, region=REGION, rds=["orders"], resolve=NO_DNS)
    assert [s.kind for s in sources] == ["rds"]


# ---------------------------------------------------------------------------------------------------------
# ElastiCache with the Stubber

CACHE_GROUP = "sg-0cache0000000000a"
NODE_ADDRESSES = {
    "sessions.abc123.0001.euw1.cache.amazonaws.com": "10.0.1.51",
    "sessions.abc123.0002.euw1.cache.amazonaws.com": "10.0.2.52",
}


class StubbedSession:
    def __init__(self, clients: dict[str, Any]) -> None:
        self._clients = clients

    def client(self, service_name: str, region_name: str | None = None, config: object = None) -> Any:
        return self._clients[service_name]


@dataclass(frozen=True)
class Stubs:
    session: StubbedSession
    elasticache: Stubber
    ec2: Stubber


@pytest.fixture
def stubs() -> Iterator[Stubs]:
    real = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    elasticache, ec2 = real.client("elasticache"), real.client("ec2")
    with Stubber(elasticache) as elasticache_stubber, Stubber(ec2) as ec2_stubber:
        yield Stubs(
            StubbedSession({"elasticache": elasticache, "ec2": ec2}), elasticache_stubber, ec2_stubber
        )
        elasticache_stubber.assert_no_pending_responses()
        ec2_stubber.assert_no_pending_responses()


def describes_cluster(stubs: Stubs) -> None:
    """Memcached cluster "sessions" with two nodes, as DescribeCacheClusters answers with node info."""
    stubs.elasticache.add_response(
        "describe_cache_clusters",
        {
            "CacheClusters": [
                {
                    "CacheClusterId": "sessions",
                    "Engine": "memcached",
                    "CacheSubnetGroupName": "caches",
                    "SecurityGroups": [{"SecurityGroupId": CACHE_GROUP, "Status": "active"}],
                    "CacheNodes": [
                        {"CacheNodeId": f"000{n}", "Endpoint": {"Address": address, "Port": 11211}}
                        for n, address in enumerate(NODE_ADDRESSES, start=1)
                    ],
                }
            ]
        },
        {"CacheClusterId": "sessions", "ShowCacheNodeInfo": True},
    )


def cache_eni(eni_id: str, address: str, **overrides: Any) -> dict[str, Any]:
    return {
        "NetworkInterfaceId": eni_id,
        "Description": "ElastiCache sessions",
        "InterfaceType": "interface",
        "RequesterManaged": True,
        "RequesterId": "amazon-elasticache",
        "PrivateIpAddress": address,
        "PrivateIpAddresses": [{"PrivateIpAddress": address, "Primary": True}],
        "SubnetId": "subnet-0a",
        "VpcId": "vpc-0a",
        "Groups": [{"GroupId": CACHE_GROUP, "GroupName": "caches"}],
        **overrides,
    }


def lists_enis(stubs: Stubs, enis: list[dict[str, Any]]) -> None:
    stubs.ec2.add_response(
        "describe_network_interfaces",
        {"NetworkInterfaces": enis},
        {
            "Filters": [
                {"Name": "description", "Values": ["ElastiCache sessions"]},
                {"Name": "requester-managed", "Values": ["true"]},
                {"Name": "group-id", "Values": [CACHE_GROUP]},
            ]
        },
    )


def test_one_eni_per_cache_node_by_the_nodes_addresses(stubs: Stubs) -> None:
    describes_cluster(stubs)
    # A third candidate (an ENI left from a removed node, say): only the nodes' addresses tell them apart.
    lists_enis(
        stubs,
        [
            cache_eni("eni-0node2", "10.0.2.52"),
            cache_eni("eni-0stale", "10.0.2.61"),
            cache_eni("eni-0node1", "10.0.1.51"),
        ],
    )
    sources = datastore_sources(
        stubs.session,
        region=REGION,
        elasticache=["sessions"],
        resolve=resolver({name: [address] for name, address in NODE_ADDRESSES.items()}),
    )
    assert [(s.eni_id, s.kind, s.eligibility, s.requester_id) for s in sources] == [
        ("eni-0node1", "elasticache", "likely", "amazon-elasticache"),
        ("eni-0node2", "elasticache", "likely", "amazon-elasticache"),
    ]
    assert sources[0].eligibility_reason == datastores.ELASTICACHE_REASON.format(name="sessions")


def test_without_dns_as_many_enis_as_nodes_are_the_nodes(stubs: Stubs) -> None:
    describes_cluster(stubs)
    # An answer as if AWS had ignored the filters: a customer's ENI with the same description, an ENI in
    # another group and one of another cluster are not candidates, checked on our side.
    lists_enis(
        stubs,
        [
            cache_eni("eni-0node1", "10.0.1.51"),
            cache_eni("eni-0custom", "10.0.1.60", RequesterManaged=False),
            cache_eni("eni-0other", "10.0.1.62", Groups=[{"GroupId": "sg-0other"}]),
            cache_eni("eni-0carts", "10.0.1.63", Description="ElastiCache carts"),
            cache_eni("eni-0node2", "10.0.2.52"),
        ],
    )
    sources = datastore_sources(stubs.session, region=REGION, elasticache=["sessions"], resolve=NO_DNS)
    assert [s.eni_id for s in sources] == ["eni-0node1", "eni-0node2"]


def test_without_dns_more_enis_than_nodes_is_refused(stubs: Stubs) -> None:
    describes_cluster(stubs)
    lists_enis(
        stubs,
        [
            cache_eni("eni-0node1", "10.0.1.51"),
            cache_eni("eni-0node2", "10.0.2.52"),
            cache_eni("eni-0stale", "10.0.2.61"),
        ],
    )
    with pytest.raises(UsageError) as caught:
        datastore_sources(stubs.session, region=REGION, elasticache=["sessions"], resolve=NO_DNS)
    assert str(caught.value).startswith(
        "--elasticache sessions: expected one ENI per node (2 nodes) and found 3 candidate ENIs "
        "(eni-0node1 (10.0.1.51 in subnet-0a), eni-0node2"
    )


def test_one_node_resolved_and_the_other_left_with_the_one_eni_left(stubs: Stubs) -> None:
    describes_cluster(stubs)
    lists_enis(stubs, [cache_eni("eni-0node1", "10.0.1.51"), cache_eni("eni-0node2", "10.0.2.52")])
    first = next(iter(NODE_ADDRESSES))
    dns = resolver({first: [NODE_ADDRESSES[first]]})
    sources = datastore_sources(stubs.session, region=REGION, elasticache=["sessions"], resolve=dns)
    assert [s.eni_id for s in sources] == ["eni-0node1", "eni-0node2"]


def test_an_eni_not_of_type_interface_is_unlikely(stubs: Stubs) -> None:
    describes_cluster(stubs)
    lists_enis(
        stubs,
        [cache_eni("eni-0node1", "10.0.1.51"), cache_eni("eni-0node2", "10.0.2.52", InterfaceType="branch")],
    )
    sources = datastore_sources(stubs.session, region=REGION, elasticache=["sessions"], resolve=NO_DNS)
    assert [(s.eni_id, s.eligibility) for s in sources] == [
        ("eni-0node1", "likely"),
        ("eni-0node2", "unlikely"),
    ]
    assert "type is branch" in sources[1].eligibility_reason


def test_a_cluster_without_nodes(stubs: Stubs) -> None:
    stubs.elasticache.add_response(
        "describe_cache_clusters",
        {"CacheClusters": [{"CacheClusterId": "sessions", "CacheNodes": []}]},
        {"CacheClusterId": "sessions", "ShowCacheNodeInfo": True},
    )
    with pytest.raises(UsageError, match=r"^--elasticache sessions: the cache cluster has no cache nodes"):
        datastore_sources(stubs.session, region=REGION, elasticache=["sessions"], resolve=NO_DNS)


def test_access_denied_names_the_action(stubs: Stubs) -> None:
    stubs.elasticache.add_client_error(
        "describe_cache_clusters",
        service_error_code="AccessDenied",
        service_message="no",
        http_status_code=403,
    )
    with pytest.raises(AwsError, match="missing IAM permission elasticache:DescribeCacheClusters"):
        datastore_sources(stubs.session, region=REGION, elasticache=["sessions"], resolve=NO_DNS)


def test_nothing_asked_makes_no_call(stubs: Stubs) -> None:
    assert datastore_sources(stubs.session, region=REGION, resolve=NO_DNS) == []


# ---------------------------------------------------------------------------------------------------------
# The default resolver (no DNS server is asked: localhost is in the hosts file, and a 64-character label is
# refused before any lookup)


def test_resolve_addresses_of_localhost_and_of_a_malformed_name() -> None:
    assert set(resolve_addresses("localhost")) & {"127.0.0.1", "::1"}
    assert resolve_addresses("a" * 64 + ".example") == ()


def test_a_lookup_that_hangs_gives_up_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def hang(*args: object, **kwargs: object) -> list[Any]:
        release.wait(5)
        return []

    monkeypatch.setattr(datastores, "DNS_TIMEOUT_SECONDS", 0.05)
    monkeypatch.setattr(socket, "getaddrinfo", hang)
    try:
        assert resolve_addresses("db.example") == ()
    finally:
        release.set()
