"""The JSON report: streamed and collected output are the same document, and it parses back."""

from __future__ import annotations

import io
import json

from tests.conftest import REPO
from verifier.analysis import SCHEMA_VERSION, analyze_files
from verifier.core.model import FlowRecord
from verifier.report.json_report import JsonReportWriter, flow_to_dict, report_to_dict

CAPTURE = REPO / "captures" / "vxlan-tls12-chain.pcap"


def test_streamed_report_equals_the_collected_one() -> None:
    collected = analyze_files([CAPTURE])
    out = io.StringIO()
    writer = JsonReportWriter(out, SCHEMA_VERSION)
    streamed: list[FlowRecord] = []

    def sink(record: FlowRecord) -> None:
        streamed.append(record)
        writer.flow(record)

    report = analyze_files([CAPTURE], sink=sink)
    writer.finish(report)
    assert report.flows == () and len(streamed) == report.summary.flows == 2
    document = json.loads(out.getvalue())
    expected = report_to_dict(collected)
    assert sorted(document["flows"], key=str) == sorted(expected["flows"], key=str)
    for key in ("schema_version", "tool", "captures", "summary", "coverage", "certificates", "keylog"):
        assert document[key] == expected[key], key


def test_flow_fields_are_plain_json() -> None:
    record = analyze_files([CAPTURE]).flows[0]
    flow = flow_to_dict(record)
    assert flow["cipher_suite"] == "0xc02b"
    assert flow["verdict"] == "WARN"
    assert flow["first_seen"].endswith("Z") and "T" in flow["first_seen"]
    assert json.loads(json.dumps(flow)) == flow


def test_a_report_with_no_flows_is_still_a_document() -> None:
    out = io.StringIO()
    writer = JsonReportWriter(out, SCHEMA_VERSION)
    report = analyze_files([CAPTURE], sink=lambda record: None)
    writer.finish(report)
    assert json.loads(out.getvalue())["flows"] == []


def test_every_member_is_documented() -> None:
    """docs/report-json.md is the schema's documentation: a member it does not name is a defect."""
    text = (REPO / "docs" / "report-json.md").read_text()
    document = report_to_dict(analyze_files([CAPTURE]))
    members = set(document) | set(document["flows"][0]) | set(document["coverage"]) | set(document["summary"])
    missing = sorted(name for name in members if f"`{name}`" not in text)
    assert not missing
