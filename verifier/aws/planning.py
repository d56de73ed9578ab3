"""`verifier plan`: what a run would mirror and every AWS call it would make, making only read-only calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import boto3  # type: ignore[import-untyped]

from verifier.aws.calls import new_client
from verifier.aws.ecs import resolve_sources
from verifier.aws.mirroring import MirrorPlan, Target, make_plans
from verifier.aws.security_groups import VxlanReachability, check_vxlan_ingress
from verifier.core.targets import MirrorSource, ServiceConnectDeclaration


@dataclass(frozen=True, slots=True)
class PlanOutcome:
    sources: tuple[MirrorSource, ...]
    declarations: tuple[ServiceConnectDeclaration, ...]
    plans: tuple[MirrorPlan, ...]
    vxlan_ingress: VxlanReachability | None  # instance targets: can every source send UDP 4789 to it?


def plan_run(
    session: boto3.session.Session,
    *,
    region: str,
    run_id: str,
    target: Target,
    expires_at: datetime,
    cluster: str | None = None,
    services: Sequence[str] = (),
    tasks: Sequence[str] = (),
    enis: Sequence[str] = (),
    rds: Sequence[str] = (),
    elasticache: Sequence[str] = (),
    ports: Sequence[int] | None = None,
    snaplen: int | None = None,
    vni: int | None = None,
    batch: bool = False,
    session_number: int | None = None,
) -> PlanOutcome:
    sources, declarations = resolve_sources(
        session,
        region=region,
        cluster=cluster,
        services=services,
        tasks=tasks,
        enis=enis,
        rds=rds,
        elasticache=elasticache,
    )
    ec2 = new_client(session, "ec2", region)
    plans = make_plans(
        ec2,
        run_id,
        [source.eni_id for source in sources],
        target,
        expires_at,
        ports=ports,
        snaplen=snaplen,
        vni=vni,
        batch=batch,
        session_number=session_number,
    )
    reachability = None
    if target.kind == "network-interface":
        addresses = [source.private_ip for source in sources if source.private_ip]
        reachability = check_vxlan_ingress(ec2, target.value, addresses)
    return PlanOutcome(tuple(sources), tuple(declarations), tuple(plans), reachability)
