"""The terminal report: the run, declared vs observed and the collector appear for `verifier run`, and only
then."""

from __future__ import annotations

import io
from dataclasses import replace

from rich.console import Console

from tests.conftest import REPO
from tests.report.samples import COLLECTOR, as_run
from verifier.analysis import analyze_files
from verifier.core.model import Report
from verifier.report.terminal import render

CAPTURE = REPO / "captures" / "vxlan-tls12-chain.pcap"
WIDTH = 120


def rendered(report: Report) -> str:
    console = Console(file=io.StringIO(), width=WIDTH, record=True, color_system=None)
    render(report, console, list(report.flows), 40)
    return console.export_text()


def flat(text: str) -> str:
    """The text with line breaks and runs of spaces as single spaces: long lines wrap at the width."""
    return " ".join(text.split())


def test_a_run_shows_who_what_and_a_complete_teardown() -> None:
    text = flat(rendered(as_run(analyze_files([CAPTURE]))))
    assert "Run vrf-20261122-1700-ab12 in eu-west-1, collector placement: collector" in text
    assert "by arn:aws:sts::111122223333:assumed-role/auditor/alice (account 111122223333)" in text
    assert "Sources: 1 mirrored, 1 not mirrored" in text
    assert "mirrored eni-0a1b2c3d4e5f60718 (task, api, 10.0.1.10): tms-0123456789abcdef0, VNI 4242" in text
    assert "InvalidParameterValue: eni-0fedcba9876543210 is not a valid mirror source" in text
    assert "instead: run the service on the EC2 launch type" in text
    assert "risk: eni-0a1b2c3d4e5f60718 has session tms-0aaa with a lower number" in text
    assert "AWS resources: 2 created, 2 deleted or already gone" in text
    assert "Teardown complete" in text and "TEARDOWN INCOMPLETE" not in text


def test_a_teardown_that_left_something_names_it() -> None:
    text = flat(rendered(as_run(analyze_files([CAPTURE]), teardown_left=True)))
    assert "TEARDOWN INCOMPLETE" in text
    assert "left target tmt-0123456789abcdef0: DeleteTrafficMirrorTarget: AccessDenied" in text
    assert "AWS resources: 3 created, 2 deleted or already gone" in text


def test_declared_vs_observed_table() -> None:
    text = rendered(as_run(analyze_files([CAPTURE])))
    assert "Declared vs observed" in text
    lines = text.splitlines()
    declared = next(line for line in lines if "api-http" in line)
    for cell in ("8443", "yes", "0f1e2d3c...", "12", "TLS1.3 12", "PASS"):
        assert cell in declared, cell
    undeclared = next(line for line in lines if "8080" in line)
    for cell in ("plaintext(http) 3", "FAIL", "plaintext on a port no"):
        assert cell in undeclared, cell


def test_collector_line_says_when_drops_are_not_reported() -> None:
    text = flat(rendered(as_run(analyze_files([CAPTURE]))))
    assert (
        "collector: 1520 datagrams, 1843200 bytes in 300 s, kernel drops not reported by the OS, "
        "stopped: duration reached"
    ) in text
    report = as_run(analyze_files([CAPTURE]))
    dropped = replace(
        report, coverage=replace(report.coverage, collector=replace(COLLECTOR, kernel_drops=17))
    )
    assert "kernel drops 17," in rendered(dropped)


def test_an_analysis_of_files_shows_none_of_it() -> None:
    text = rendered(analyze_files([CAPTURE]))
    assert "Declared vs observed" not in text and "Run " not in text and "collector:" not in text


def test_fits_in_120_columns() -> None:
    text = rendered(as_run(analyze_files([CAPTURE]), teardown_left=True))
    assert max(len(line) for line in text.splitlines()) <= WIDTH
