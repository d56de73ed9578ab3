"""SARIF 2.1.0: one rule per finding kind, one result per finding. There is no source code to point at, so a
result's location is logical: the service port (cluster/service:port) or the server and category."""

from __future__ import annotations

import json
from typing import Any, TextIO

from verifier.core.model import Report, Verdict
from verifier.report.findings import (
    KIND_HELP,
    KIND_TITLES,
    FindingKind,
    FlowGroup,
    findings,
    group_flows,
    safe_text,
)

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVELS = {Verdict.FAIL: "error", Verdict.INCONCLUSIVE: "warning", Verdict.WARN: "warning"}
_DEFAULT_LEVELS = {
    FindingKind.PLAINTEXT: "error",
    FindingKind.WEAK_TLS: "warning",
    FindingKind.CHAIN_FAILURE: "error",
    FindingKind.DECLARED_TLS_VIOLATED: "error",
    FindingKind.INCONCLUSIVE: "warning",
}
RULES = tuple(FindingKind)


def sarif_log(report: Report, groups: list[FlowGroup]) -> dict[str, Any]:
    rules = [
        {
            "id": kind.value,
            "name": "".join(word.capitalize() for word in kind.value.split("-")),
            "shortDescription": {"text": KIND_TITLES[kind]},
            "fullDescription": {"text": KIND_HELP[kind]},
            "help": {"text": KIND_HELP[kind]},
            "defaultConfiguration": {"level": _DEFAULT_LEVELS[kind]},
            "properties": {"tags": ["security", "encryption-in-transit"]},
        }
        for kind in RULES
    ]
    results = []
    for finding in findings(report, groups):
        properties: dict[str, Any] = {"verdict": finding.verdict.value, "flows": finding.flows}
        location: dict[str, Any]
        if finding.group is not None:
            properties["category"] = finding.group.category
            properties["byVerdict"] = finding.group.by_verdict
            if finding.group.sni is not None:
                properties["sni"] = finding.group.sni
            location = {
                "name": finding.group.server,
                "fullyQualifiedName": finding.subject,
                "kind": "resource",
            }
        else:
            location = {"name": finding.subject, "fullyQualifiedName": finding.subject, "kind": "resource"}
        results.append(
            {
                "ruleId": finding.kind.value,
                "ruleIndex": RULES.index(finding.kind),
                "level": _LEVELS[finding.verdict],
                "message": {"text": f"{finding.title}. {finding.detail}"},
                "locations": [{"logicalLocations": [location]}],
                # What a finding is about, so code-scanning services match it across runs.
                "partialFingerprints": {"verifierSubject/v1": f"{finding.kind.value} {finding.subject}"},
                "properties": properties,
            }
        )
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "verifier",
                "version": report.tool_version,
                "rules": rules,
            }
        },
        "results": results,
        "invocations": [{"executionSuccessful": True}],
        "properties": {
            "verdict": report.summary.verdict.value,
            "flows": report.summary.flows,
            "byVerdict": report.summary.by_verdict,
        },
    }
    if report.run is not None:
        run["automationDetails"] = {"id": f"verifier/{safe_text(report.run.run_id, 100)}"}
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def write_sarif(report: Report, out: TextIO, groups: list[FlowGroup] | None = None) -> None:
    """``groups``: the flows folded by FlowGroups while they streamed; by default, those of ``report``."""
    flow_groups = group_flows(report.flows) if groups is None else groups
    json.dump(sarif_log(report, flow_groups), out, indent=1)
    out.write("\n")
