"""Report parts that only `verifier run` fills in, built by hand for the renderers' tests."""

from __future__ import annotations

from dataclasses import replace

from verifier.core.model import (
    CollectorCoverage,
    DeclaredPort,
    Report,
    ResourceEvent,
    RunRecord,
    SourceOutcome,
    Verdict,
)

PCA = "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"

COLLECTOR = CollectorCoverage(
    datagrams=1520,
    bytes=1_843_200,
    kernel_drops=None,
    started=1_700_000_000.0,
    ended=1_700_000_300.0,
    stop_reason="duration reached",
)

DECLARED = (
    DeclaredPort(
        cluster="prod",
        service="api",
        port_name="api-http",
        port=8443,
        tls_declared=True,
        pca_declared=PCA,
        flows=12,
        by_category=(("TLS1.3", 12),),
        plaintext_flows=0,
        chains_verified=12,
        chains_failed=0,
        verdict=Verdict.PASS,
        reason="TLS on all 12 flows with data; chains verified 12, failed 0, not judged 0",
    ),
    DeclaredPort(
        cluster="prod",
        service="api",
        port_name=None,
        port=8080,
        tls_declared=None,
        pca_declared=None,
        flows=3,
        by_category=(("plaintext(http)", 3),),
        plaintext_flows=3,
        chains_verified=0,
        chains_failed=0,
        verdict=Verdict.FAIL,
        reason="plaintext on a port no Service Connect declaration covers: 3 of 3 flows",
    ),
)

MIRRORED = SourceOutcome(
    eni_id="eni-0a1b2c3d4e5f60718",
    kind="task",
    service="api",
    task_arn="arn:aws:ecs:eu-west-1:111122223333:task/prod/4c7e",
    private_ip="10.0.1.10",
    eligibility="likely",
    eligibility_reason="m5.large is a Nitro instance type not on AWS's list of exceptions",
    session_id="tms-0123456789abcdef0",
    vni=4242,
    refused=None,
    fallbacks=(),
)
REFUSED = SourceOutcome(
    eni_id="eni-0fedcba9876543210",
    kind="task",
    service="web",
    task_arn="arn:aws:ecs:eu-west-1:111122223333:task/prod/9a1f",
    private_ip="10.0.2.20",
    eligibility="unknown",
    eligibility_reason="the ENI is not attached to an EC2 instance, so its instance type is unknown",
    session_id=None,
    vni=None,
    refused="InvalidParameterValue: eni-0fedcba9876543210 is not a valid mirror source",
    fallbacks=("run the service on the EC2 launch type in bridge or host mode on a Nitro instance",),
)

RUN = RunRecord(
    run_id="vrf-20261122-1700-ab12",
    region="eu-west-1",
    caller_arn="arn:aws:sts::111122223333:assumed-role/auditor/alice",
    account="111122223333",
    started_at="2026-11-22T17:00:00Z",
    ended_at="2026-11-22T17:05:30Z",
    placement="collector",
    cluster="prod",
    services=("api", "web"),
    target="network-interface eni-0c0ffee0c0ffee000",
    duration_seconds=300.0,
    sources=(MIRRORED, REFUSED),
    risks=("eni-0a1b2c3d4e5f60718 has session tms-0aaa with a lower number: it takes the packets first",),
    resources=(
        ResourceEvent(
            resource_id="tmf-0123456789abcdef0",
            kind="filter",
            created_at="2026-11-22T17:00:01Z",
            deleted_at="2026-11-22T17:05:29Z",
            outcome="deleted",
        ),
        ResourceEvent(
            resource_id="tms-0123456789abcdef0",
            kind="session",
            created_at="2026-11-22T17:00:02Z",
            deleted_at=None,
            outcome="already gone",
        ),
    ),
    teardown_complete=True,
)

LEFT_BEHIND = ResourceEvent(
    resource_id="tmt-0123456789abcdef0",
    kind="target",
    created_at="2026-11-22T17:00:01Z",
    deleted_at=None,
    outcome="DeleteTrafficMirrorTarget: AccessDenied",
)


def as_run(report: Report, *, teardown_left: bool = False) -> Report:
    """``report`` as `verifier run` would give it: with the run record, declared rows and the collector."""
    run = RUN
    if teardown_left:
        run = replace(RUN, resources=(*RUN.resources, LEFT_BEHIND), teardown_complete=False)
    coverage = replace(report.coverage, collector=COLLECTOR)
    return replace(report, run=run, declared=DECLARED, coverage=coverage)
