"""JUnit XML: a test case per declared port and per flow group, readable by a standard XML parser."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from dataclasses import replace

from tests.conftest import REPO
from tests.records import make_record
from tests.report.samples import as_run
from tests.report.test_findings import HOSTILE, hostile_report
from verifier.analysis import analyze_files
from verifier.core.model import Report, Verdict
from verifier.report.findings import FlowGroups
from verifier.report.junit import write_junit

CAPTURES = sorted((REPO / "captures").glob("*.pcap"))


def junit(report: Report) -> ET.Element:
    out = io.StringIO()
    write_junit(report, out)
    assert out.getvalue().startswith('<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(out.getvalue())


def cases(root: ET.Element, suite: str) -> dict[str, ET.Element]:
    found = root.find(f"testsuite[@name='{suite}']")
    assert found is not None
    return {case.get("name", ""): case for case in found.findall("testcase")}


def test_declared_rows_and_flow_groups_are_test_cases() -> None:
    root = junit(as_run(analyze_files(CAPTURES)))
    declared = cases(root, "declared vs observed")
    assert list(declared) == ["prod/api:8443 (api-http)", "prod/api:8080"]
    assert len(declared["prod/api:8443 (api-http)"]) == 0  # PASS: no child
    failure = declared["prod/api:8080"].find("failure")
    assert failure is not None and "plaintext on a port" in failure.get("message", "")
    flows = cases(root, "flows")
    assert set(flows) == {
        "10.77.0.2:6379 plaintext(resp)",
        "10.77.0.2:80 plaintext(http)",
        "10.77.0.2:5432 plaintext(pgsql)",
        "10.77.0.2:8443 TLS1.2",
        "10.77.0.2:443 TLS1.3",
        "10.77.0.3:5432 TLS1.3",
    }
    warned = flows["10.77.0.2:8443 TLS1.2"]
    assert warned.find("failure") is None and (warned.findtext("system-out") or "").startswith(
        "WARN: 2 flows"
    )
    assert (root.get("tests"), root.get("failures"), root.get("skipped"), root.get("errors")) == (
        "8",
        "4",
        "0",
        "0",
    )
    suite = root.find("testsuite[@name='flows']")
    assert suite is not None and suite.get("failures") == "3" and suite[0].tag == "properties"
    properties = {item.get("name"): item.get("value") for item in suite.iter("property")}
    assert properties == {"verdict": "FAIL", "flows": "10", "run_id": "vrf-20261122-1700-ab12"}


def test_inconclusive_is_skipped() -> None:
    flows = (
        make_record(category="TLS-no-handshake-visible", verdict=Verdict.INCONCLUSIVE, reason="midstream"),
    )
    root = junit(replace(analyze_files([]), flows=flows))
    (case,) = cases(root, "flows").values()
    skipped = case.find("skipped")
    assert skipped is not None and skipped.get("message") == "INCONCLUSIVE: 1 flow; worst: midstream"
    assert root.get("skipped") == "1" and root.get("failures") == "0"


def test_an_empty_capture_is_one_skipped_case() -> None:
    root = junit(analyze_files([]))
    assert list(cases(root, "flows")) == ["traffic"]
    assert cases(root, "declared vs observed") == {}
    assert root.get("tests") == "1" and root.get("skipped") == "1"


def test_streamed_groups_give_the_same_document() -> None:
    report = analyze_files(CAPTURES)
    groups = FlowGroups()
    for record in report.flows:
        groups.add(record)
    collected, streamed = io.StringIO(), io.StringIO()
    write_junit(report, collected)
    write_junit(replace(report, flows=()), streamed, groups.groups())
    assert streamed.getvalue() == collected.getvalue()


def test_what_the_wire_controls_stays_well_formed_and_bounded() -> None:
    root = junit(hostile_report())
    (row,) = cases(root, "declared vs observed").values()
    assert "<script>" in row.get("name", "") and len(row.get("name", "")) < 600
    failure = next(case for case in cases(root, "flows").values() if case.find("failure") is not None)
    message = failure.find("failure")
    assert message is not None
    assert "]]>" in message.get("message", "") and len(message.get("message", "")) < 600
    assert "\x00" not in message.get("message", "") and HOSTILE not in (message.text or "")
