"""Findings: flow groups, finding kinds, bounded text, and the ASFF and OCSF renderings."""

from __future__ import annotations

import io
import json
import unicodedata
from dataclasses import replace
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import REPO
from tests.records import make_record
from tests.report.samples import DECLARED, as_run
from verifier.analysis import analyze_files
from verifier.core.model import Report, Verdict
from verifier.report.findings import (
    FindingKind,
    FlowGroups,
    asff_findings,
    findings,
    flow_kind,
    group_flows,
    ocsf_findings,
    safe_text,
    write_asff,
    write_ocsf,
)

CAPTURES = sorted((REPO / "captures").glob("*.pcap"))
# What a peer could put in an SNI or in the evidence of a reason.
HOSTILE = "evil\u202eexe.\x00\x1b[31m\r\n<script>alert(1)</script> | `x` @everyone ]]> \ud800 " + "A" * 5000


def hostile_report() -> Report:
    base = analyze_files([])
    flows = (
        make_record(
            category="plaintext(http)",
            verdict=Verdict.FAIL,
            sni=HOSTILE,
            reason=f"cleartext http: client sent {HOSTILE}",
            server="[fd00::2]:80",
        ),
        make_record(category="TLS-no-handshake-visible", verdict=Verdict.INCONCLUSIVE, reason="midstream"),
    )
    row = replace(DECLARED[1], service=HOSTILE, reason=HOSTILE)
    return replace(base, flows=flows, declared=(row,))


# ---------------------------------------------------------------------------------------------------------
# safe_text


def test_safe_text_keeps_ordinary_text() -> None:
    assert safe_text("api.internal.example", 100) == "api.internal.example"
    assert safe_text("a\tb\nc", 100) == "a b c"


def test_safe_text_neutralises_controls_and_bidi_overrides() -> None:
    assert safe_text("evil\u202eexe\x00\x1b", 100) == "evil\ufffdexe\ufffd\ufffd"
    assert safe_text("\ud800", 10) == "\ufffd"


def test_safe_text_cuts_with_an_ellipsis() -> None:
    assert safe_text("abcdef", 4) == "abc\u2026"
    assert safe_text("abcd", 4) == "abcd"


@given(st.text(), st.integers(min_value=1, max_value=300))
def test_safe_text_is_always_bounded_and_printable(text: str, limit: int) -> None:
    result = safe_text(text, limit)
    assert len(result) <= limit
    assert not any(
        unicodedata.category(char) in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"} for char in result
    )
    result.encode("utf-8")  # no lone surrogate survives


# ---------------------------------------------------------------------------------------------------------
# kinds and groups


@pytest.mark.parametrize(
    ("overrides", "kind"),
    [
        ({}, None),
        ({"category": "plaintext(pgsql)", "verdict": Verdict.FAIL}, FindingKind.PLAINTEXT),
        ({"identity": Verdict.FAIL, "verdict": Verdict.FAIL}, FindingKind.CHAIN_FAILURE),
        ({"category": "TLS1.2", "verdict": Verdict.WARN}, FindingKind.WEAK_TLS),
        ({"category": "TLS1.0-1.1", "verdict": Verdict.FAIL}, FindingKind.WEAK_TLS),
        (
            {"category": "TLS1.0-1.1", "identity": Verdict.FAIL, "verdict": Verdict.FAIL},
            FindingKind.CHAIN_FAILURE,
        ),
        ({"category": "other-encrypted(ssh)", "verdict": Verdict.WARN}, FindingKind.WEAK_TLS),
        ({"identity": Verdict.WARN, "verdict": Verdict.WARN}, FindingKind.CHAIN_FAILURE),
        ({"category": "TLS-no-handshake-visible", "verdict": Verdict.INCONCLUSIVE}, FindingKind.INCONCLUSIVE),
        ({"category": "unknown(data)", "verdict": Verdict.INCONCLUSIVE}, FindingKind.INCONCLUSIVE),
    ],
)
def test_the_kind_of_a_flow(overrides: dict[str, Any], kind: FindingKind | None) -> None:
    assert flow_kind(make_record(**overrides)) == kind


def test_flows_fold_into_groups_by_server_and_category() -> None:
    flows = [
        make_record(first_seen=10.0, last_seen=11.0, sni=None),
        make_record(
            first_seen=5.0,
            last_seen=6.0,
            identity=Verdict.FAIL,
            verdict=Verdict.FAIL,
            reason="bad chain",
            sni=None,
        ),
        make_record(first_seen=20.0, last_seen=30.0, sni="second.example"),
        make_record(category="plaintext(http)", verdict=Verdict.FAIL, server="10.0.0.2:80", sni=None),
    ]
    streamed = FlowGroups()
    for record in flows:
        streamed.add(record)
    groups = streamed.groups()
    assert groups == group_flows(flows)
    tls, cleartext = groups if groups[0].category == "TLS1.3" else groups[::-1]
    assert (tls.flows, tls.by_verdict, tls.verdict, tls.kind) == (
        3,
        {"FAIL": 1, "PASS": 2},
        Verdict.FAIL,
        FindingKind.CHAIN_FAILURE,
    )
    assert (tls.reason, tls.sni, tls.first_seen, tls.last_seen) == ("bad chain", "second.example", 5.0, 30.0)
    assert cleartext.flows == 1 and cleartext.kind is FindingKind.PLAINTEXT


def test_groups_come_worst_first_then_largest() -> None:
    flows = [make_record(server="10.0.0.9:443")] * 3 + [
        make_record(category="TLS1.2", verdict=Verdict.WARN),
        make_record(category="plaintext(http)", verdict=Verdict.FAIL, server="10.0.0.3:80"),
    ]
    assert [group.verdict for group in group_flows(flows)] == [Verdict.FAIL, Verdict.WARN, Verdict.PASS]
    assert group_flows(flows)[2].flows == 3


def test_findings_skip_what_passes() -> None:
    report = as_run(analyze_files(CAPTURES))
    found = findings(report, group_flows(report.flows))
    assert [finding.subject for finding in found if finding.row is not None] == ["prod/api:8080"]
    assert {finding.kind for finding in found} == {
        FindingKind.DECLARED_TLS_VIOLATED,
        FindingKind.PLAINTEXT,
        FindingKind.WEAK_TLS,
    }
    assert all(finding.verdict is not Verdict.PASS for finding in found)


# ---------------------------------------------------------------------------------------------------------
# ASFF

_BATCH_IMPORT = (
    botocore.session.get_session().get_service_model("securityhub").operation_model("BatchImportFindings")
)


def assert_valid_asff(entries: list[dict[str, Any]]) -> None:
    """Against Security Hub's request model (types, required members) and ASFF's documented limits."""
    report = ParamValidator().validate({"Findings": entries}, _BATCH_IMPORT.input_shape)
    assert not report.has_errors(), report.generate_report()
    for entry in entries:
        assert len(entry["Title"]) <= 256 and len(entry["Description"]) <= 1024 and len(entry["Id"]) <= 512
        assert len(entry["ProductFields"]) <= 50
        assert all(len(key) <= 128 and len(value) <= 2048 for key, value in entry["ProductFields"].items())
        assert entry["SchemaVersion"] == "2018-10-08" and entry["Resources"]
        assert all(type_.count("/") in (1, 2) for type_ in entry["Types"])


def test_asff_of_a_run() -> None:
    report = as_run(analyze_files(CAPTURES))
    entries = asff_findings(
        report,
        group_flows(report.flows),
        account="111122223333",
        region="eu-west-1",
        now="2026-11-22T18:00:00Z",
    )
    assert_valid_asff(entries)
    statuses = sorted(entry["Compliance"]["Status"] for entry in entries)
    assert statuses == ["FAILED", "FAILED", "FAILED", "FAILED", "PASSED", "WARNING"]
    assert len({entry["Id"] for entry in entries}) == len(entries)
    assert all(entry["ProductFields"]["verifier/run_id"] == "vrf-20261122-1700-ab12" for entry in entries)
    assert {entry["FindingProviderFields"]["Severity"]["Label"] for entry in entries} == {
        "HIGH",
        "LOW",
        "INFORMATIONAL",
    }


def test_asff_bounds_what_the_wire_controls() -> None:
    report = hostile_report()
    out = io.StringIO()
    write_asff(report, out, account="111122223333", region="eu-west-1")
    entries = json.loads(out.getvalue())
    assert_valid_asff(entries)
    cleartext = next(entry for entry in entries if entry["GeneratorId"] == "verifier/plaintext")
    assert cleartext["Network"] == {
        "Direction": "IN",
        "Protocol": "TCP",
        "DestinationIpV6": "fd00::2",
        "DestinationPort": 80,
    }
    assert len(cleartext["ProductFields"]["verifier/sni"]) <= 255
    assert "\u202e" not in out.getvalue() and "\\u202e" not in out.getvalue()


# ---------------------------------------------------------------------------------------------------------
# OCSF


def assert_valid_ocsf(events: list[dict[str, Any]]) -> None:
    """The attributes OCSF requires of a Detection Finding (class 2004): base event, finding, metadata."""
    for event in events:
        assert event["class_uid"] == 2004 and event["category_uid"] == 2
        assert event["type_uid"] == event["class_uid"] * 100 + event["activity_id"]
        assert event["severity_id"] in range(7) and isinstance(event["time"], int)
        assert event["metadata"]["version"] and event["metadata"]["product"]["vendor_name"]
        assert event["finding_info"]["uid"] and event["finding_info"]["title"]


def test_ocsf_of_a_run() -> None:
    report = as_run(analyze_files(CAPTURES))
    events = ocsf_findings(report, group_flows(report.flows), now=1_800_000_000.5)
    assert_valid_ocsf(events)
    assert len(events) == 5  # the passing declared row and the passing groups are no detections
    assert {event["time"] for event in events} == {1_800_000_000_500}
    assert sorted(event["severity"] for event in events) == ["High", "High", "High", "High", "Low"]
    cleartext = next(event for event in events if event["finding_info"]["types"] == ["plaintext"])
    assert cleartext["evidences"][0]["dst_endpoint"]["ip"].startswith("10.77.0.")


def test_ocsf_bounds_what_the_wire_controls() -> None:
    out = io.StringIO()
    write_ocsf(hostile_report(), out)
    events = json.loads(out.getvalue())
    assert_valid_ocsf(events)
    assert "\u202e" not in out.getvalue() and "\\u202e" not in out.getvalue()
    cleartext = next(event for event in events if event["finding_info"]["types"] == ["plaintext"])
    assert len(cleartext["evidences"][0]["dst_endpoint"]["hostname"]) <= 255
    assert len(cleartext["finding_info"]["desc"]) <= 600


def test_no_flows_no_findings() -> None:
    report: Report = analyze_files([])
    assert ocsf_findings(report, [], now=0.0) == []
    assert (
        asff_findings(report, [], account="111122223333", region="eu-west-1", now="2026-11-22T18:00:00Z")
        == []
    )
