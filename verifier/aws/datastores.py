"""Mirror sources for RDS DB instances (--rds) and ElastiCache cache nodes (--elasticache): the
requester-managed ENIs those services create in the VPC.

What is verified and what is not:
  * AWS's Traffic Mirroring guide ("Traffic mirror sources",
    https://docs.aws.amazon.com/vpc/latest/mirroring/traffic-mirroring-sessions.html) says "A traffic mirror
    source is the network interface of type interface. For example, a network interface for an EC2 instance
    or an RDS instance." ElastiCache is not named there.
  * AWS's EC2 guide ("Requester-managed network interfaces") names RDS DB instances among the resources whose
    ENIs an AWS service creates and manages; DescribeNetworkInterfaces shows them with RequesterManaged true.
  * Not in AWS's documentation, but what public tooling that maps ENIs to services relies on: RDS ENIs (also
    those of Neptune and DocumentDB, which share RDS's machinery) are described "RDSNetworkInterface",
    ElastiCache ENIs "ElastiCache <cache cluster id>", and their RequesterId is "amazon-rds" /
    "amazon-elasticache". The RequesterId is recorded, never relied on.
  Because the RDS description is shared by every DB in the VPC, candidates are narrowed by the DB's security
  groups and subnets, then by the address its endpoint name resolves to.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

import boto3  # type: ignore[import-untyped]

from verifier.aws.calls import call, new_client, paginate
from verifier.core.targets import Eligibility, MirrorSource, SourceKind
from verifier.errors import AwsError, UsageError

# A host name -> the addresses it resolves to; () when it does not resolve.
Resolver = Callable[[str], Sequence[str]]

RDS_ENI_DESCRIPTION = "RDSNetworkInterface"
ELASTICACHE_ENI_DESCRIPTION = "ElastiCache {cluster}"
RDS_REASON = (
    "RDS DB instance {name}: AWS's Traffic Mirroring guide names the network interface of an RDS instance "
    "as a traffic mirror source"
)
ELASTICACHE_REASON = (
    "ElastiCache cluster {name}: AWS's Traffic Mirroring guide accepts any network interface of type "
    "interface as a traffic mirror source (it names EC2 and RDS instances; ElastiCache is not named)"
)
# DNS answers slowly or never from some networks; the endpoint's address only narrows candidates.
DNS_TIMEOUT_SECONDS = 2.0


def resolve_addresses(host: str) -> tuple[str, ...]:
    """The addresses ``host`` resolves to, () when it does not resolve within DNS_TIMEOUT_SECONDS."""
    answers: list[tuple[str, ...]] = []

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):  # gaierror is an OSError; IDNA rejects malformed names
            return
        answers.append(tuple(dict.fromkeys(str(info[4][0]) for info in infos)))

    # getaddrinfo takes no timeout; a daemon thread left waiting does not hold up the process's exit.
    worker = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    worker.start()
    worker.join(DNS_TIMEOUT_SECONDS)
    return answers[0] if answers else ()


def datastore_sources(
    session: boto3.session.Session,
    *,
    region: str,
    rds: Sequence[str] = (),
    elasticache: Sequence[str] = (),
    resolve: Resolver = resolve_addresses,
) -> list[MirrorSource]:
    """One source per DB instance in ``rds`` and one per cache node of each cache cluster in
    ``elasticache``. UsageError when a DB instance or node's ENI cannot be told apart: the user then names
    it with --eni."""
    sources: list[MirrorSource] = []
    if not (rds or elasticache):
        return sources
    ec2 = new_client(session, "ec2", region)
    if rds:
        rds_client = new_client(session, "rds", region)
        for name in dict.fromkeys(rds):
            sources += _rds_sources(rds_client, ec2, region, name, resolve)
    if elasticache:
        elasticache_client = new_client(session, "elasticache", region)
        for name in dict.fromkeys(elasticache):
            sources += _elasticache_sources(elasticache_client, ec2, region, name, resolve)
    return sources


def _only(items: list[dict[str, Any]], operation: str, name: str) -> dict[str, Any]:
    """The one item a describe call by identifier answers; AWS raises a not-found error instead of none."""
    if len(items) != 1:
        raise AwsError(f"{operation} answered {len(items)} items for {name}, not one")
    return items[0]


def _rds_sources(rds: Any, ec2: Any, region: str, name: str, resolve: Resolver) -> list[MirrorSource]:
    try:
        answer = call(
            rds, "DescribeDBInstances", iam_action="rds:DescribeDBInstances", DBInstanceIdentifier=name
        )
    except AwsError as exc:
        if exc.code == "DBInstanceNotFound":
            raise AwsError(f"--rds {name}: no RDS DB instance {name} in {region} for this account") from exc
        raise
    instance = _only(answer.get("DBInstances", []), "DescribeDBInstances", name)
    groups = [str(g["VpcSecurityGroupId"]) for g in instance.get("VpcSecurityGroups", [])]
    subnet_group = instance.get("DBSubnetGroup") or {}
    subnets = [str(s["SubnetIdentifier"]) for s in subnet_group.get("Subnets", [])]
    pool = _candidates(ec2, RDS_ENI_DESCRIPTION, groups, subnets, subnet_group.get("VpcId"))
    endpoint = (instance.get("Endpoint") or {}).get("Address")
    chosen = _one_per_endpoint(f"--rds {name}", [endpoint], pool, resolve)
    return [_source(eni, "rds", RDS_REASON.format(name=name)) for eni in chosen]


def _elasticache_sources(
    elasticache: Any, ec2: Any, region: str, name: str, resolve: Resolver
) -> list[MirrorSource]:
    try:
        answer = call(
            elasticache,
            "DescribeCacheClusters",
            iam_action="elasticache:DescribeCacheClusters",
            CacheClusterId=name,
            ShowCacheNodeInfo=True,
        )
    except AwsError as exc:
        if exc.code == "CacheClusterNotFound":
            raise AwsError(
                f"--elasticache {name}: no ElastiCache cache cluster {name} in {region} for this account "
                "(a replication group's member clusters have ids like NAME-001; serverless caches have none)"
            ) from exc
        raise
    cluster = _only(answer.get("CacheClusters", []), "DescribeCacheClusters", name)
    cluster_id = str(cluster["CacheClusterId"])
    nodes = cluster.get("CacheNodes", [])
    if not nodes:
        raise UsageError(f"--elasticache {name}: the cache cluster has no cache nodes to mirror")
    groups = [str(g["SecurityGroupId"]) for g in cluster.get("SecurityGroups", [])]
    description = ELASTICACHE_ENI_DESCRIPTION.format(cluster=cluster_id)
    pool = _candidates(ec2, description, groups, [], None)
    endpoints = [(node.get("Endpoint") or {}).get("Address") for node in nodes]
    chosen = _one_per_endpoint(f"--elasticache {name}", endpoints, pool, resolve)
    return [_source(eni, "elasticache", ELASTICACHE_REASON.format(name=cluster_id)) for eni in chosen]


def _candidates(
    ec2: Any, description: str, groups: list[str], subnets: list[str], vpc_id: str | None
) -> list[dict[str, Any]]:
    """The requester-managed ENIs with ``description`` that carry all of ``groups``, in one of ``subnets``
    (any when empty) and ``vpc_id`` (any when None). The filters are checked again on the answer: they only
    spare listing every ENI of the account."""
    filters: list[dict[str, Any]] = [
        {"Name": "description", "Values": [description]},
        {"Name": "requester-managed", "Values": ["true"]},
    ]
    if groups:
        # Values of one filter are alternatives: one group narrows; carrying all of them is checked below.
        filters.append({"Name": "group-id", "Values": groups[:1]})
    if subnets:
        filters.append({"Name": "subnet-id", "Values": subnets})
    if vpc_id:
        filters.append({"Name": "vpc-id", "Values": [vpc_id]})
    listed = paginate(
        ec2,
        "DescribeNetworkInterfaces",
        iam_action="ec2:DescribeNetworkInterfaces",
        key="NetworkInterfaces",
        Filters=filters,
    )
    return [
        eni
        for eni in listed
        if eni.get("Description") == description
        and eni.get("RequesterManaged") is True
        and set(groups) <= {str(g.get("GroupId")) for g in eni.get("Groups", [])}
        and (not subnets or eni.get("SubnetId") in subnets)
        and (vpc_id is None or eni.get("VpcId") == vpc_id)
    ]


def _addresses_of(eni: dict[str, Any]) -> set[str]:
    """Every address the ENI answers on: its private ones and, for a public endpoint, its public one."""
    addresses = {
        str(a["PrivateIpAddress"]) for a in eni.get("PrivateIpAddresses", []) if "PrivateIpAddress" in a
    }
    addresses.update(
        str(a) for a in (eni.get("PrivateIpAddress"), (eni.get("Association") or {}).get("PublicIp")) if a
    )
    return addresses


def _one_per_endpoint(
    what: str, endpoints: list[str | None], pool: list[dict[str, Any]], resolve: Resolver
) -> list[dict[str, Any]]:
    """One ENI of ``pool`` per endpoint (a DB instance, a cache node). An endpoint whose name resolves to an
    address of exactly one candidate gets that one. The endpoints left over get the candidates left over
    when there are exactly as many of them, which is the case without DNS for a single-AZ DB alone in its
    groups and subnets, or for a cache cluster's nodes (their ENIs' description names the cluster)."""
    chosen: dict[str, dict[str, Any]] = {}
    unplaced = 0
    for endpoint in endpoints:
        resolved = list(resolve(endpoint)) if endpoint else []
        matching = [eni for eni in pool if _addresses_of(eni) & set(resolved)]
        if len(matching) == 1:
            chosen[str(matching[0]["NetworkInterfaceId"])] = matching[0]
            continue
        if not matching and any(_is_private(address) for address in resolved):
            # A private address is taken to be in the VPC: the DB's own ENI is then not among the candidates.
            raise UsageError(
                f"{what}: the endpoint {endpoint} resolves to {', '.join(resolved)}, which no candidate ENI "
                f"has (candidates: {_named(pool)}); pass the right ENI with --eni"
            )
        unplaced += 1
    rest = [eni for eni in pool if str(eni["NetworkInterfaceId"]) not in chosen]
    if unplaced and len(rest) != unplaced:
        expected = "one ENI" if len(endpoints) == 1 else f"one ENI per node ({len(endpoints)} nodes)"
        found = f"{len(rest)} candidate ENIs ({_named(rest)})" if rest else "no candidate ENI"
        raise UsageError(
            f"{what}: expected {expected} and found {found}, which DNS did not tell apart; pass the right "
            "ENIs with --eni"
        )
    return [*chosen.values(), *(rest if unplaced else [])]


def _is_private(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_private
    except ValueError:
        return False


def _named(enis: list[dict[str, Any]]) -> str:
    if not enis:
        return "none"
    return ", ".join(
        f"{eni['NetworkInterfaceId']} ({eni.get('PrivateIpAddress', 'no address')} in "
        f"{eni.get('SubnetId', 'no subnet')})"
        for eni in enis
    )


def _source(eni: dict[str, Any], kind: SourceKind, documented: str) -> MirrorSource:
    interface_type = eni.get("InterfaceType")
    eligibility: Eligibility = "likely"
    reason = documented
    if interface_type is not None and interface_type != "interface":
        eligibility = "unlikely"
        reason = f"the ENI's type is {interface_type}; AWS mirrors ENIs of type interface only"
    return MirrorSource(
        eni_id=str(eni["NetworkInterfaceId"]),
        private_ip=eni.get("PrivateIpAddress"),
        kind=kind,
        eligibility=eligibility,
        eligibility_reason=reason,
        requester_managed=True,
        requester_id=eni.get("RequesterId"),
        interface_type=interface_type,
    )
