"""JSON rendering of a Report (schema: docs/report-json.md, docs/report.schema.json), and reading it back.

``JsonReportWriter`` streams: flow records are written as they arrive, everything else when the analysis
ends, so a capture with millions of flows is written in constant memory. The object's keys therefore come
in the order flows, then the rest; JSON readers do not care.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import operator
from collections.abc import Callable
from dataclasses import asdict, fields
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from verifier import __version__
from verifier.core.chains import Check, CheckStatus, summarize_certificate
from verifier.core.model import (
    CaptureSource,
    CollectorCoverage,
    Coverage,
    DeclaredPort,
    ExceptionOutcome,
    FlowRecord,
    Report,
    ResourceEvent,
    RunRecord,
    SourceOutcome,
    Summary,
    Verdict,
    VniCoverage,
)
from verifier.errors import InputError, ParseError


class JsonReportWriter:
    """Nothing is written until the first flow or ``finish``: a run that fails before any result leaves no
    half document behind."""

    def __init__(self, out: TextIO, schema_version: str) -> None:
        self._out = out
        self._schema_version = schema_version
        self._flows = 0

    def flow(self, record: FlowRecord) -> None:
        if not self._flows:
            self._header()
            self._out.write("\n  ")
        else:
            self._out.write(",\n  ")
        self._flows += 1
        self._out.write(flow_json(record))

    def _header(self) -> None:
        self._out.write(f'{{"schema_version": {json.dumps(self._schema_version)},\n')
        self._out.write(f' "tool": {{"name": "verifier", "version": {json.dumps(__version__)}}},\n')
        self._out.write(' "flows": [')

    def finish(self, report: Report) -> None:
        """Write the flows collected in ``report`` (if any) and everything that is not a flow."""
        for record in report.flows:
            self.flow(record)
        if not self._flows:
            self._header()
        rest = report_to_dict(report)
        del rest["schema_version"], rest["tool"], rest["flows"]
        self._out.write("\n ],\n")
        body = json.dumps(rest, indent=1)
        self._out.write(" " + body[1:].lstrip())  # the members of `rest`, continuing this object
        self._out.write("\n")


def report_to_dict(report: Report) -> dict[str, Any]:
    coverage = asdict(report.coverage)
    coverage["first_timestamp"] = _iso(report.coverage.first_timestamp)
    coverage["last_timestamp"] = _iso(report.coverage.last_timestamp)
    coverage["per_vni"] = list(coverage["per_vni"])
    collector = report.coverage.collector
    if collector is not None:
        coverage["collector"].update(started=_iso(collector.started), ended=_iso(collector.ended))
    return {
        "schema_version": report.schema_version,
        "tool": {"name": "verifier", "version": report.tool_version},
        "captures": [asdict(capture) for capture in report.captures],
        "keylog": report.keylog,
        "summary": asdict(report.summary),
        "coverage": coverage,
        "run": run_to_dict(report.run) if report.run is not None else None,
        "declared_vs_observed": [declared_to_dict(row) for row in report.declared],
        "policy_exceptions": [asdict(outcome) for outcome in report.policy_exceptions],
        "flows": [flow_to_dict(flow) for flow in report.flows],
        "certificates": [certificate_to_dict(der, digest) for digest, der in report.certificates.items()],
    }


_FLOW_FIELDS = tuple(field.name for field in fields(FlowRecord))
_flow_values = operator.attrgetter(*_FLOW_FIELDS)  # every field in one call
# The flows' separators: flow_json writes what this encoder would write for flow_to_dict.
_FLOW_ENCODER = json.JSONEncoder(separators=(", ", ": "))


def flow_to_dict(flow: FlowRecord) -> dict[str, Any]:
    # Not dataclasses.asdict: its recursive deep copy costs more than the whole analysis of a flow.
    record = dict(zip(_FLOW_FIELDS, _flow_values(flow), strict=True))
    record["first_seen"] = _iso(flow.first_seen)
    record["last_seen"] = _iso(flow.last_seen)
    record["cipher_suite"] = f"0x{flow.cipher_suite:04x}" if flow.cipher_suite is not None else None
    record["verdict"] = flow.verdict.value
    record["identity"] = flow.identity.value if flow.identity is not None else None
    record["identity_checks"] = _checks_to_list(flow.identity_checks)
    for name in ("server_certificates", "client_certificates", "alerts", "alpn_offered"):
        record[name] = list(record[name])
    return record


# The C encoder's own string escaping (ensure_ascii), so that flow_json writes what the encoder would.
_text: Callable[[str], str] = json.encoder.encode_basestring_ascii


def flow_json(flow: FlowRecord) -> str:
    """One flow record as JSON: the text ``_FLOW_ENCODER.encode(flow_to_dict(flow))`` gives (a test checks
    that they are equal), written directly, because building the dict first was most of the writer's time."""
    suite = flow.cipher_suite
    suite_text = "null" if suite is None else f'"0x{suite:04x}"'
    identity = flow.identity
    checks = _FLOW_ENCODER.encode(_checks_to_list(flow.identity_checks)) if flow.identity_checks else "[]"
    # str() of a StrEnum (verdicts) is its value, without the Python-level property behind .value.
    return (
        f'{{"client": {_text(flow.client)}, "server": {_text(flow.server)}, '
        f'"vni": {"null" if flow.vni is None else flow.vni}, '
        f'"first_seen": "{_utc(flow.first_seen)}", "last_seen": "{_utc(flow.last_seen)}", '
        f'"role_rule": {_text(flow.role_rule)}, "midstream": {_bool(flow.midstream)}, '
        f'"handshake_seen": {_bool(flow.handshake_seen)}, "category": {_text(flow.category)}, '
        f'"protocol": {_maybe_text(flow.protocol)}, "upgrade_from": {_maybe_text(flow.upgrade_from)}, '
        f'"tls_version": {_maybe_text(flow.tls_version)}, '
        f'"cipher_suite": {suite_text}, '
        f'"cipher_suite_name": {_maybe_text(flow.cipher_suite_name)}, "sni": {_maybe_text(flow.sni)}, '
        f'"alpn": {_maybe_text(flow.alpn)}, "alpn_offered": {_texts(flow.alpn_offered)}, '
        f'"ja4": {_maybe_text(flow.ja4)}, "hello_retry_request": {_bool(flow.hello_retry_request)}, '
        f'"server_certificates": {_texts(flow.server_certificates)}, '
        f'"client_certificates": {_texts(flow.client_certificates)}, '
        f'"chain_source": {_maybe_text(flow.chain_source)}, "chain_note": {_maybe_text(flow.chain_note)}, '
        f'"alerts": {_texts(flow.alerts)}, "evidence": {_text(flow.evidence)}, '
        f'"evidence_truncated": {_bool(flow.evidence_truncated)}, '
        f'"identity": {"null" if identity is None else _text(str(identity))}, "identity_checks": {checks}, '
        f'"packets_client": {flow.packets_client}, "packets_server": {flow.packets_server}, '
        f'"bytes_client": {flow.bytes_client}, "bytes_server": {flow.bytes_server}, '
        f'"retransmissions": {flow.retransmissions}, "out_of_order": {flow.out_of_order}, '
        f'"gaps": {flow.gaps}, "gap_bytes": {flow.gap_bytes}, "truncated_frames": {flow.truncated_frames}, '
        f'"verdict": {_text(str(flow.verdict))}, "reason": {_text(flow.reason)}}}'
    )


def _checks_to_list(checks: tuple[Check, ...]) -> list[dict[str, str]]:
    return [{"name": check.name, "status": check.status.value, "detail": check.detail} for check in checks]


def _maybe_text(value: str | None) -> str:
    return "null" if value is None else _text(value)


def _texts(values: tuple[str, ...]) -> str:
    if not values:
        return "[]"
    return "[" + ", ".join([_text(value) for value in values]) + "]"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def run_to_dict(run: RunRecord) -> dict[str, Any]:
    record = asdict(run)
    record["services"] = list(run.services)
    record["risks"] = list(run.risks)
    record["resources"] = [asdict(event) for event in run.resources]
    record["sources"] = [dict(asdict(source), fallbacks=list(source.fallbacks)) for source in run.sources]
    return record


def declared_to_dict(row: DeclaredPort) -> dict[str, Any]:
    record = asdict(row)
    record["by_category"] = dict(row.by_category)
    record["verdict"] = row.verdict.value
    return record


def certificate_to_dict(der: bytes, digest: str | None = None) -> dict[str, Any]:
    """One certificate for a report: its summary, or why it cannot be read, and its DER."""
    entry: dict[str, Any] = {"sha256": digest or hashlib.sha256(der).hexdigest()}
    try:
        summary = summarize_certificate(der)
    except ParseError as exc:
        entry["error"] = f"not a certificate this tool can read: {exc}"
    else:
        entry.update(
            subject=summary.subject,
            issuer=summary.issuer,
            serial=summary.serial,
            not_before=summary.not_before.isoformat(),
            not_after=summary.not_after.isoformat(),
            san_dns=list(summary.san_dns),
            san_ip=list(summary.san_ip),
            key=summary.key,
            signature_hash=summary.signature_hash,
            is_ca=summary.is_ca,
            self_signed=summary.self_signed,
        )
    entry["der_base64"] = base64.b64encode(der).decode("ascii")
    return entry


# Each flow has two timestamps and most share their second with the previous flow's: the date and time of
# day are formatted once per second, the microseconds per call. Bounded: cleared when full.
_SECOND_TEXT: dict[int, str] = {}
_SECOND_TEXT_MAX = 4096


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else _utc(timestamp)


def _utc(timestamp: float) -> str:
    """RFC 3339 UTC with microseconds, rounded as datetime.fromtimestamp rounds (half to even)."""
    fraction, whole = math.modf(timestamp)
    micro = round(fraction * 1e6)
    if micro >= 1_000_000:
        micro -= 1_000_000
        whole += 1.0
    elif micro < 0:
        micro += 1_000_000
        whole -= 1.0
    second = int(whole)
    text = _SECOND_TEXT.get(second)
    if text is None:
        if len(_SECOND_TEXT) >= _SECOND_TEXT_MAX:
            _SECOND_TEXT.clear()
        # isoformat, not strftime: glibc's %Y does not pad years before 1000 to four digits.
        text = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds").removesuffix("+00:00")
        _SECOND_TEXT[second] = text
    return f"{text}.{str(1_000_000 + micro)[1:]}Z"  # six digits, without a format spec to parse


def report_from_dict(data: dict[str, Any]) -> Report:
    """The Report a JSON report (``report_to_dict``) describes; InputError when it is not one."""
    try:
        return _report_from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
        raise InputError(f"not a verifier JSON report: {type(exc).__name__}: {exc}") from exc


def _report_from_dict(data: dict[str, Any]) -> Report:
    coverage = dict(data["coverage"])
    coverage["first_timestamp"] = _timestamp(coverage["first_timestamp"])
    coverage["last_timestamp"] = _timestamp(coverage["last_timestamp"])
    coverage["per_vni"] = tuple(VniCoverage(**vni) for vni in coverage["per_vni"])
    collector = coverage["collector"]
    if collector is not None:
        coverage["collector"] = CollectorCoverage(
            **dict(collector, started=_timestamp(collector["started"]), ended=_timestamp(collector["ended"]))
        )
    summary = dict(data["summary"])
    summary["verdict"] = Verdict(summary["verdict"])
    run = data["run"]
    return Report(
        schema_version=data["schema_version"],
        tool_version=data["tool"]["version"],
        captures=tuple(CaptureSource(**capture) for capture in data["captures"]),
        keylog=data["keylog"],
        flows=tuple(flow_from_dict(flow) for flow in data["flows"]),
        certificates={
            entry["sha256"]: base64.b64decode(entry["der_base64"], validate=True)
            for entry in data["certificates"]
        },
        summary=Summary(**summary),
        coverage=Coverage(**coverage),
        run=_run_from_dict(run) if run is not None else None,
        declared=tuple(_declared_from_dict(row) for row in data["declared_vs_observed"]),
        policy_exceptions=tuple(ExceptionOutcome(**outcome) for outcome in data["policy_exceptions"]),
    )


def flow_from_dict(data: dict[str, Any]) -> FlowRecord:
    record = dict(data)
    record["first_seen"] = _timestamp(data["first_seen"])
    record["last_seen"] = _timestamp(data["last_seen"])
    suite = data["cipher_suite"]
    record["cipher_suite"] = int(suite, 16) if suite is not None else None
    record["verdict"] = Verdict(data["verdict"])
    record["identity"] = Verdict(data["identity"]) if data["identity"] is not None else None
    record["identity_checks"] = tuple(
        Check(check["name"], CheckStatus(check["status"]), check["detail"])
        for check in data["identity_checks"]
    )
    for name in ("server_certificates", "client_certificates", "alerts", "alpn_offered"):
        record[name] = tuple(data[name])
    return FlowRecord(**record)


def _run_from_dict(data: dict[str, Any]) -> RunRecord:
    return RunRecord(
        **dict(
            data,
            services=tuple(data["services"]),
            risks=tuple(data["risks"]),
            resources=tuple(ResourceEvent(**event) for event in data["resources"]),
            sources=tuple(
                SourceOutcome(**dict(source, fallbacks=tuple(source["fallbacks"])))
                for source in data["sources"]
            ),
        )
    )


def _declared_from_dict(data: dict[str, Any]) -> DeclaredPort:
    return DeclaredPort(
        **dict(data, by_category=tuple(data["by_category"].items()), verdict=Verdict(data["verdict"]))
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _timestamp(text: str | None) -> float | None:
    """The inverse of ``_iso``: whole microseconds divided once, as the capture reader does, so a capture
    time read back is the float it was."""
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text}: a time without its zone")
    return ((moment - _EPOCH) // timedelta(microseconds=1)) / 1_000_000
