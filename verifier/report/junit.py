"""JUnit XML: one test case per declared service port and per flow group (server and category), for CI
systems that show test results. FAIL is a failure, INCONCLUSIVE is skipped, WARN passes with the reason on
system-out (JUnit has no warnings)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TextIO

from verifier.core.model import Report, Verdict
from verifier.report.findings import (
    REASON_LIMIT,
    FlowGroup,
    flow_count,
    group_flows,
    safe_text,
    service_port,
)


def write_junit(report: Report, out: TextIO, groups: list[FlowGroup] | None = None) -> None:
    """``groups``: the flows folded by FlowGroups while they streamed; by default, those of ``report``."""
    flow_groups = group_flows(report.flows) if groups is None else groups
    suites = ET.Element("testsuites", name="verifier")
    declared = _suite(suites, "declared vs observed")
    for row in report.declared:
        name = service_port(row) + (f" ({safe_text(row.port_name, 100)})" if row.port_name else "")
        _case(declared, "verifier.declared", name, row.verdict, safe_text(row.reason, REASON_LIMIT))
    flows = _suite(suites, "flows")
    # The report's overall figures; JUnit wants properties before the cases.
    properties = ET.SubElement(flows, "properties")
    ET.SubElement(properties, "property", name="verdict", value=report.summary.verdict.value)
    ET.SubElement(properties, "property", name="flows", value=str(report.summary.flows))
    if report.run is not None:
        ET.SubElement(properties, "property", name="run_id", value=safe_text(report.run.run_id, 100))
    for group in flow_groups:
        reason = f"{flow_count(group.flows)}; worst: {group.reason}"
        _case(flows, "verifier.flows", f"{group.server} {group.category}", group.verdict, reason)
    if not flow_groups:
        _case(flows, "verifier.flows", "traffic", Verdict.INCONCLUSIVE, "no TCP flows in the capture")
    _totals(suites)
    ET.indent(suites)
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    out.write(ET.tostring(suites, encoding="unicode"))
    out.write("\n")


def _suite(parent: ET.Element, name: str) -> ET.Element:
    return ET.SubElement(parent, "testsuite", name=name)


def _case(suite: ET.Element, classname: str, name: str, verdict: Verdict, reason: str) -> None:
    case = ET.SubElement(suite, "testcase", classname=classname, name=name)
    if verdict is Verdict.FAIL:
        ET.SubElement(case, "failure", message=reason, type="FAIL").text = reason
    elif verdict is Verdict.INCONCLUSIVE:
        ET.SubElement(case, "skipped", message=f"INCONCLUSIVE: {reason}")
    elif verdict is Verdict.WARN:
        ET.SubElement(case, "system-out").text = f"WARN: {reason}"


def _totals(suites: ET.Element) -> None:
    """The counts JUnit readers expect on each testsuite and on testsuites."""
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        cases = suite.findall("testcase")
        counts = {
            "tests": len(cases),
            "failures": sum(case.find("failure") is not None for case in cases),
            "errors": 0,
            "skipped": sum(case.find("skipped") is not None for case in cases),
        }
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        suites.set(key, str(value))
