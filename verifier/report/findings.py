"""Findings: what a report says is wrong, in the shape the CI and security formats file it, and two of those
formats, AWS Security Hub's ASFF and OCSF Detection Findings.

Flows are folded into groups (server address and port, category) as they stream by, so the formats built on
findings need no flow records in memory. Declared-vs-observed rows are findings about a service's port.

Strings a peer on the wire controls (SNI, the evidence inside reasons) reach every format only through
``safe_text``: bounded, one line, no control or bidirectional-formatting characters.
"""

from __future__ import annotations

import ipaddress
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TextIO

from verifier.core import model
from verifier.core.model import DeclaredPort, FlowRecord, Report, Verdict
from verifier.core.policy import severity


class FindingKind(StrEnum):
    PLAINTEXT = "plaintext"
    WEAK_TLS = "weak-tls"
    CHAIN_FAILURE = "chain-failure"
    DECLARED_TLS_VIOLATED = "declared-tls-violated"
    INCONCLUSIVE = "inconclusive"


KIND_TITLES = {
    FindingKind.PLAINTEXT: "Cleartext traffic",
    FindingKind.WEAK_TLS: "Encryption below the target (old TLS or SSL, a weak cipher, TLS 1.2, or not TLS)",
    FindingKind.CHAIN_FAILURE: "Server certificate chain fails, or is doubtful, against the configured CA",
    FindingKind.DECLARED_TLS_VIOLATED: "A service port's traffic contradicts what Service Connect declares",
    FindingKind.INCONCLUSIVE: "The capture does not show whether the traffic is encrypted",
}
KIND_HELP = {
    FindingKind.PLAINTEXT: "The payload crossed the network unencrypted: enable TLS for this service "
    "(Service Connect TLS with an AWS Private CA, or TLS in the application).",
    FindingKind.WEAK_TLS: "SSL 2/3, TLS 1.0/1.1 and NULL, EXPORT, RC4, anonymous or DES cipher suites fail; "
    "TLS 1.2 and SSH are encrypted but below the TLS 1.3 target and warn. Raise the minimum version and "
    "restrict the cipher suites on the server.",
    FindingKind.CHAIN_FAILURE: "The chain the server presented does not lead to the configured trust "
    "anchors, or one of its checks (name, validity, key, usage, lifetime) fails or warns.",
    FindingKind.DECLARED_TLS_VIOLATED: "Service Connect declares TLS for the port and the wire shows "
    "otherwise, or a port no declaration covers carries traffic the policy fails.",
    FindingKind.INCONCLUSIVE: "No handshake or no payload was visible (the connection began before the "
    "capture, or carried no data): capture longer, or from the start of the connections.",
}

_ENCRYPTED_BELOW_TARGET = frozenset(
    {model.TLS12, model.TLS10_11, model.SSLV3, model.SSLV2, model.OTHER_ENCRYPTED_SSH}
)

SNI_LIMIT = 255  # a DNS name has at most 253 characters
REASON_LIMIT = 500
NAME_LIMIT = 255  # ECS cluster and service names have at most 255 characters
# Characters that change how text displays rather than what it says: controls, bidirectional overrides and
# other format characters, surrogates, private-use and unassigned code points, line and paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def safe_text(text: str, limit: int) -> str:
    """``text`` on one line of printable characters, at most ``limit`` of them (an ellipsis marks a cut)."""
    cleaned = "".join(
        " " if char in "\t\n\r" else "\ufffd" if unicodedata.category(char) in _UNSAFE_CATEGORIES else char
        for char in text[: limit + 1]
    )
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "\u2026"


def flow_count(flows: int) -> str:
    return f"{flows} flow" if flows == 1 else f"{flows} flows"


def flow_kind(record: FlowRecord) -> FindingKind | None:
    """What is wrong with a flow, judged by its most serious cause; None for a PASS."""
    if record.verdict is Verdict.PASS:
        return None
    if record.category.startswith("plaintext("):
        return FindingKind.PLAINTEXT
    if record.identity is Verdict.FAIL:
        return FindingKind.CHAIN_FAILURE
    if record.category in _ENCRYPTED_BELOW_TARGET:
        return FindingKind.WEAK_TLS
    if record.identity is Verdict.WARN:
        return FindingKind.CHAIN_FAILURE
    # TLS 1.3 below PASS without a chain problem: only a stricter policy than the default does that.
    return FindingKind.WEAK_TLS if record.category == model.TLS13 else FindingKind.INCONCLUSIVE


@dataclass(frozen=True, slots=True)
class FlowGroup:
    """The flows with one server (address and port) and one category."""

    server: str
    category: str
    flows: int
    by_verdict: dict[str, int]
    verdict: Verdict  # the worst
    kind: FindingKind | None  # of the first flow with the worst verdict
    reason: str  # of that flow, through safe_text
    sni: str | None  # the first one seen, through safe_text
    first_seen: float
    last_seen: float


@dataclass(slots=True)
class _GroupTally:
    worst: FlowRecord
    flows: int = 0
    by_verdict: Counter[str] = field(default_factory=Counter)
    sni: str | None = None
    first_seen: float = 0.0
    last_seen: float = 0.0


class FlowGroups:
    """Folds flow records into FlowGroups as they stream by (``add`` is a flow sink)."""

    def __init__(self) -> None:
        self._tallies: dict[tuple[str, str], _GroupTally] = {}

    def add(self, record: FlowRecord) -> None:
        key = (record.server, record.category)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = _GroupTally(
                worst=record, first_seen=record.first_seen, last_seen=record.last_seen
            )
        tally.flows += 1
        tally.by_verdict[record.verdict.value] += 1
        if severity(record.verdict) > severity(tally.worst.verdict):
            tally.worst = record
        if tally.sni is None and record.sni is not None:
            tally.sni = safe_text(record.sni, SNI_LIMIT)
        tally.first_seen = min(tally.first_seen, record.first_seen)
        tally.last_seen = max(tally.last_seen, record.last_seen)

    def groups(self) -> list[FlowGroup]:
        """Worst first; then the most flows; then by server and category."""
        groups = [
            FlowGroup(
                server=server,
                category=category,
                flows=tally.flows,
                by_verdict=dict(sorted(tally.by_verdict.items())),
                verdict=tally.worst.verdict,
                kind=flow_kind(tally.worst),
                reason=safe_text(tally.worst.reason, REASON_LIMIT),
                sni=tally.sni,
                first_seen=tally.first_seen,
                last_seen=tally.last_seen,
            )
            for (server, category), tally in self._tallies.items()
        ]
        return sorted(
            groups, key=lambda group: (-severity(group.verdict), -group.flows, group.server, group.category)
        )


def group_flows(flows: Iterable[FlowRecord]) -> list[FlowGroup]:
    groups = FlowGroups()
    for record in flows:
        groups.add(record)
    return groups.groups()


def declared_kind(row: DeclaredPort) -> FindingKind | None:
    if row.verdict is Verdict.PASS:
        return None
    if row.verdict is Verdict.INCONCLUSIVE:
        return FindingKind.INCONCLUSIVE
    return FindingKind.DECLARED_TLS_VIOLATED


def service_port(row: DeclaredPort) -> str:
    """A declared row's name: cluster/service:port, e.g. ``prod/api:8443``."""
    port = str(row.port) if row.port is not None else "(port unknown)"
    service = safe_text(row.service, NAME_LIMIT) if row.service is not None else "(no service)"
    cluster = safe_text(row.cluster, NAME_LIMIT) if row.cluster is not None else "(no cluster)"
    return f"{cluster}/{service}:{port}"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the report says is wrong, about a service's port (declared row) or a server (flow group)."""

    kind: FindingKind
    verdict: Verdict
    subject: str  # service_port(row), or "server category"
    title: str
    detail: str
    flows: int
    group: FlowGroup | None = None
    row: DeclaredPort | None = None


def findings(report: Report, groups: list[FlowGroup]) -> list[Finding]:
    """Declared rows that do not pass, then flow groups that do not pass, each in their order."""
    found: list[Finding] = []
    for row in report.declared:
        kind = declared_kind(row)
        if kind is not None:
            found.append(_row_finding(row, kind))
    for group in groups:
        if group.kind is None:
            continue
        subject = f"{group.server} {group.category}"
        sni = f" (SNI {group.sni})" if group.sni else ""
        found.append(
            Finding(
                kind=group.kind,
                verdict=group.verdict,
                subject=subject,
                title=safe_text(f"{group.verdict.value} {group.category} to {group.server}{sni}", 200),
                detail=safe_text(f"{flow_count(group.flows)}; worst: {group.reason}", REASON_LIMIT + 40),
                flows=group.flows,
                group=group,
            )
        )
    return found


_DECLARED = {True: "TLS declared", False: "TLS not declared", None: "nothing declared"}


def _row_finding(row: DeclaredPort, kind: FindingKind) -> Finding:
    subject = service_port(row)
    return Finding(
        kind=kind,
        verdict=row.verdict,
        subject=subject,
        title=safe_text(f"{row.verdict.value} {subject}: {_DECLARED[row.tls_declared]}", 200),
        detail=safe_text(row.reason, REASON_LIMIT),
        flows=row.flows,
        row=row,
    )


# --- AWS Security Hub (ASFF) -------------------------------------------------------------------------------

ASFF_SCHEMA_VERSION = "2018-10-08"
_ASFF_SEVERITY = {
    Verdict.FAIL: "HIGH",
    Verdict.INCONCLUSIVE: "MEDIUM",
    Verdict.WARN: "LOW",
    Verdict.PASS: "INFORMATIONAL",
}
_ASFF_COMPLIANCE = {
    Verdict.FAIL: "FAILED",
    Verdict.INCONCLUSIVE: "NOT_AVAILABLE",
    Verdict.WARN: "WARNING",
    Verdict.PASS: "PASSED",
}
_ASFF_ENCRYPTION_TYPE = "Software and Configuration Checks/AWS Security Best Practices/Encryption in transit"
_ASFF_EXPOSURE_TYPE = "Effects/Data Exposure/Cleartext traffic"
_ASFF_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:/\[\]()-]")


def asff_findings(
    report: Report, groups: list[FlowGroup], *, account: str, region: str, now: str
) -> list[dict[str, Any]]:
    """Every finding, and every declared row that passes (Compliance PASSED, so Security Hub shows the
    compliant ports too), as ASFF. ``now``: ISO 8601 UTC, the findings' CreatedAt and UpdatedAt."""
    product = f"arn:aws:securityhub:{region}:{account}:product/{account}/default"
    run_id = report.run.run_id if report.run is not None else None
    entries: list[dict[str, Any]] = []
    # A passing row is filed as the finding its kind would be, with Compliance PASSED.
    passing = [
        _row_finding(row, FindingKind.DECLARED_TLS_VIOLATED)
        for row in report.declared
        if declared_kind(row) is None
    ]
    for finding in [*findings(report, groups), *passing]:
        kind = finding.kind.value
        fields = {
            "verifier/kind": kind,
            "verifier/verdict": finding.verdict.value,
            "verifier/flows": str(finding.flows),
            "verifier/tool_version": report.tool_version,
        }
        if run_id is not None:
            fields["verifier/run_id"] = run_id
        types = [_ASFF_ENCRYPTION_TYPE] + (
            [_ASFF_EXPOSURE_TYPE] if finding.kind is FindingKind.PLAINTEXT else []
        )
        entry: dict[str, Any] = {
            "SchemaVersion": ASFF_SCHEMA_VERSION,
            # Stable across runs, so a later run updates the finding instead of adding one.
            "Id": _ASFF_ID_UNSAFE.sub("_", f"verifier/{account}/{region}/{finding.subject}")[:512],
            "ProductArn": product,
            "GeneratorId": f"verifier/{kind}",
            "AwsAccountId": account,
            "Types": types,
            "CreatedAt": now,
            "UpdatedAt": now,
            "Severity": {"Label": _ASFF_SEVERITY[finding.verdict]},
            # Security Hub takes later changes of severity and types from a provider only through these.
            "FindingProviderFields": {"Severity": {"Label": _ASFF_SEVERITY[finding.verdict]}, "Types": types},
            "Title": finding.title[:256],
            "Description": finding.detail[:1024],
            "Compliance": {"Status": _ASFF_COMPLIANCE[finding.verdict]},
            "RecordState": "ACTIVE",
            "ProductFields": fields,
        }
        if finding.row is not None:
            entry["Resources"] = [_asff_service(finding.row, account, region)]
        if finding.group is not None:
            group = finding.group
            fields["verifier/category"] = group.category
            if group.sni is not None:
                fields["verifier/sni"] = group.sni
            entry["FirstObservedAt"] = _iso(group.first_seen)
            entry["LastObservedAt"] = _iso(group.last_seen)
            entry["Resources"] = [{"Type": "Other", "Id": group.server, "Partition": "aws", "Region": region}]
            network = _network(group.server)
            if network is not None:
                entry["Network"] = network
        entries.append(entry)
    return entries


def _asff_service(row: DeclaredPort, account: str, region: str) -> dict[str, Any]:
    if row.cluster is not None and row.service is not None:
        cluster, service = safe_text(row.cluster, NAME_LIMIT), safe_text(row.service, NAME_LIMIT)
        arn = f"arn:aws:ecs:{region}:{account}:service/{cluster}/{service}"
        return {"Type": "AwsEcsService", "Id": arn, "Partition": "aws", "Region": region}
    return {"Type": "Other", "Id": service_port(row), "Partition": "aws", "Region": region}


def _network(server: str) -> dict[str, Any] | None:
    """Security Hub's Network object for connections to ``server`` (``ip:port``, ``[v6]:port``)."""
    address, _, port = server.rpartition(":")
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None
    destination = "DestinationIpV4" if ip.version == 4 else "DestinationIpV6"
    return {"Direction": "IN", "Protocol": "TCP", destination: str(ip), "DestinationPort": int(port)}


def write_asff(
    report: Report, out: TextIO, *, account: str, region: str, groups: list[FlowGroup] | None = None
) -> None:
    """The ASFF findings as one JSON array (the shape BatchImportFindings takes, in batches of 100)."""
    flow_groups = group_flows(report.flows) if groups is None else groups
    entries = asff_findings(report, flow_groups, account=account, region=region, now=_iso(_now()))
    json.dump(entries, out, indent=1)
    out.write("\n")


# --- OCSF Detection Finding ------------------------------------------------------------------------------

OCSF_VERSION = "1.4.0"
_OCSF_CLASS = 2004  # Detection Finding, category 2 (Findings)
_OCSF_CREATE = 1
_OCSF_SEVERITY = {  # severity_id, severity
    Verdict.FAIL: (4, "High"),
    Verdict.INCONCLUSIVE: (3, "Medium"),
    Verdict.WARN: (2, "Low"),
    Verdict.PASS: (1, "Informational"),
}


def ocsf_findings(report: Report, groups: list[FlowGroup], *, now: float) -> list[dict[str, Any]]:
    """Every finding as an OCSF Detection Finding (Create activity); ``now`` in seconds since the epoch."""
    events: list[dict[str, Any]] = []
    for finding in findings(report, groups):
        severity_id, severity_name = _OCSF_SEVERITY[finding.verdict]
        info: dict[str, Any] = {
            "uid": f"verifier/{finding.subject}",
            "title": finding.title,
            "desc": finding.detail,
            "types": [finding.kind.value],
            "analytic": {
                "uid": finding.kind.value,
                "name": KIND_TITLES[finding.kind],
                "type_id": 1,
                "type": "Rule",
            },
        }
        event: dict[str, Any] = {
            "class_uid": _OCSF_CLASS,
            "class_name": "Detection Finding",
            "category_uid": 2,
            "category_name": "Findings",
            "activity_id": _OCSF_CREATE,
            "activity_name": "Create",
            "type_uid": _OCSF_CLASS * 100 + _OCSF_CREATE,
            "type_name": "Detection Finding: Create",
            "time": int(now * 1000),
            "severity_id": severity_id,
            "severity": severity_name,
            "status_id": 1,
            "status": "New",
            "is_alert": finding.verdict is Verdict.FAIL,
            "message": finding.title,
            "metadata": {
                "version": OCSF_VERSION,
                "product": {"name": "verifier", "vendor_name": "verifier", "version": report.tool_version},
            },
            "finding_info": info,
            "unmapped": {"verdict": finding.verdict.value, "flows": finding.flows},
        }
        if finding.row is not None:
            event["resources"] = [{"type": "ECS Service port", "name": finding.subject}]
        if finding.group is not None:
            group = finding.group
            info["first_seen_time"] = int(group.first_seen * 1000)
            info["last_seen_time"] = int(group.last_seen * 1000)
            endpoint: dict[str, Any] = {}
            network = _network(group.server)
            if network is not None:
                endpoint = {
                    "ip": network.get("DestinationIpV4", network.get("DestinationIpV6")),
                    "port": network["DestinationPort"],
                }
            if group.sni is not None:
                endpoint["hostname"] = group.sni
            event["resources"] = [{"type": "Network Endpoint", "name": group.server}]
            if endpoint:
                event["evidences"] = [{"dst_endpoint": endpoint}]
            event["unmapped"]["category"] = group.category
        events.append(event)
    return events


def write_ocsf(report: Report, out: TextIO, groups: list[FlowGroup] | None = None) -> None:
    """The OCSF Detection Findings as one JSON array."""
    flow_groups = group_flows(report.flows) if groups is None else groups
    json.dump(ocsf_findings(report, flow_groups, now=_now().timestamp()), out, indent=1)
    out.write("\n")


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: float | datetime) -> str:
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
