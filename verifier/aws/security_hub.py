"""`--security-hub`: the report's findings into AWS Security Hub (ASFF through BatchImportFindings).

Security Hub takes findings for the calling account only (the default product ARN), at most 100 per call, and
answers per finding: refused findings do not fail the call, so they are counted and named here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3  # type: ignore[import-untyped]

from verifier.aws.caller import caller_identity
from verifier.aws.calls import call, new_client
from verifier.core.model import Report
from verifier.report.findings import FlowGroup, asff_findings, group_flows

BATCH_SIZE = 100  # BatchImportFindings' limit


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    imported: int
    refused: tuple[str, ...]  # "finding id: ErrorCode: ErrorMessage", one per finding Security Hub refused


def import_findings(client: Any, findings: Sequence[dict[str, Any]]) -> ImportOutcome:
    imported = 0
    refused: list[str] = []
    for start in range(0, len(findings), BATCH_SIZE):
        answer = call(
            client,
            "BatchImportFindings",
            iam_action="securityhub:BatchImportFindings",
            Findings=list(findings[start : start + BATCH_SIZE]),
        )
        imported += int(answer.get("SuccessCount", 0))
        refused += [
            f"{item.get('Id', '?')}: {item.get('ErrorCode', '?')}: {item.get('ErrorMessage', '')}"
            for item in answer.get("FailedFindings", [])
        ]
    return ImportOutcome(imported=imported, refused=tuple(refused))


def send_to_security_hub(
    session: boto3.session.Session,
    report: Report,
    region: str,
    groups: list[FlowGroup] | None = None,
) -> ImportOutcome:
    """File the report's findings in ``region``, for the account of the credentials (the only account the
    default product ARN accepts findings for)."""
    account = caller_identity(new_client(session, "sts", region)).account
    flow_groups = group_flows(report.flows) if groups is None else groups
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    findings = asff_findings(report, flow_groups, account=account, region=region, now=now)
    return import_findings(new_client(session, "securityhub", region), findings)
