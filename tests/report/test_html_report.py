"""The HTML report: its numbers are the report's, everything taken from packets stays text, and a real browser
(headless Chromium) renders the flows from the data island without running anything a packet carried."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
from dataclasses import replace
from functools import cache
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.records import make_record
from tests.report.samples import DECLARED, RUN, as_run
from verifier.analysis import analyze_files
from verifier.core.model import ExceptionOutcome, FlowRecord, Report, Verdict
from verifier.core.summary import SummaryBuilder
from verifier.report.html_report import CONTENT_SECURITY_POLICY, write_html
from verifier.report.json_report import flow_to_dict, report_to_dict

CAPTURES = sorted((REPO / "captures").glob("*.pcap"))
# Escaping failures would show: the SNI would add an element with id "injected", the reason would end the
# <script> of the data island (or a table cell) and set the page title.
HOSTILE_SNI = '"><script>document.title="pwned"</script><b id="injected">x</b>'
HOSTILE_REASON = "</script><script>document.title='pwned'</script><b id=\"injected\">y</b>"
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian package chromium; scripts/test installs it)"
)


class _Page(HTMLParser):
    """Every element of a document with its attributes and its text (scripts' text included)."""

    _VOID = frozenset({"meta", "input", "br", "img", "link", "hr"})

    def __init__(self, document: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None], str]] = []
        self._open: list[tuple[str, dict[str, str | None], list[str]]] = []
        self.feed(document)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._VOID:
            self.elements.append((tag, dict(attrs), ""))
        else:
            self._open.append((tag, dict(attrs), []))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs), ""))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            name, attrs, text = self._open.pop()
            self.elements.append((name, attrs, "".join(text)))
            if name == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, _, text in self._open:
            text.append(data)

    def having(
        self, attribute: str, value: str | None = None
    ) -> list[tuple[str, dict[str, str | None], str]]:
        return [
            element
            for element in self.elements
            if attribute in element[1] and (value is None or element[1][attribute] == value)
        ]

    def text(self, attribute: str, value: str | None = None) -> str:
        (element,) = self.having(attribute, value)
        return element[2]

    def title(self) -> str:
        """The document's title (the first <title>: the chart's bars have titles of their own)."""
        return next(text for tag, _, text in self.elements if tag == "title")


def _with_summary(report: Report, flows: tuple[FlowRecord, ...]) -> Report:
    builder = SummaryBuilder()
    for flow in flows:
        builder.add(flow)
    return replace(report, flows=flows, summary=builder.build())


@cache
def _hostile_report() -> Report:
    """The sample captures as a run, with packet-borne hostile text in a flow that has a certificate chain
    (so its SNI appears in the chains section too), in a run risk and in a declared row."""
    report = as_run(analyze_files(CAPTURES), teardown_left=True)
    flows = tuple(
        replace(flow, sni=HOSTILE_SNI, reason=HOSTILE_REASON) if flow.server_certificates else flow
        for flow in report.flows
    )
    run = replace(report.run or RUN, risks=(*RUN.risks, HOSTILE_REASON))
    declared = (replace(DECLARED[0], reason=HOSTILE_REASON), *DECLARED[1:])
    return replace(_with_summary(report, flows), run=run, declared=declared)


def _render(report: Report) -> str:
    out = io.StringIO()
    write_html(report, out)
    return out.getvalue()


def _island(page: _Page) -> list[dict[str, object]]:
    document = json.loads(page.text("id", "flow-data"))
    return [dict(zip(document["columns"], row, strict=True)) for row in document["flows"]]


def test_summary_numbers_are_the_reports() -> None:
    report = _hostile_report()
    page = _Page(_render(report))
    shown = {
        attrs["data-summary-verdict"]: int(text) for _, attrs, text in page.having("data-summary-verdict")
    }
    assert shown == {verdict.value: report.summary.by_verdict.get(verdict.value, 0) for verdict in Verdict}
    assert int(page.text("data-summary-flows")) == report.summary.flows == 10
    assert page.elements[-1][0] == "html"
    assert page.title() == "Encryption evidence: FAIL"


def test_chart_counts_every_flow_under_its_verdict() -> None:
    report = _hostile_report()
    charted: dict[str, int] = {}
    for tag, attrs, _ in _Page(_render(report)).having("data-flows"):
        assert tag == "rect"
        verdict = str(attrs["data-verdict"])
        charted[verdict] = charted.get(verdict, 0) + int(str(attrs["data-flows"]))
    assert charted == report.summary.by_verdict


def test_data_island_holds_every_flow_as_the_json_report_does() -> None:
    report = _hostile_report()
    island = _island(_Page(_render(report)))
    assert len(island) == len(report.flows)
    for row, flow in zip(island, report.flows, strict=True):
        record = flow_to_dict(flow)
        assert row == {name: record[name] for name in row}
    assert any(row["sni"] == HOSTILE_SNI and row["reason"] == HOSTILE_REASON for row in island)


def test_text_from_packets_never_becomes_markup() -> None:
    document = _render(_hostile_report())
    page = _Page(document)
    assert HOSTILE_SNI not in document and HOSTILE_REASON not in document
    assert not page.having("id", "injected")
    scripts = [attrs for tag, attrs, _ in page.elements if tag == "script"]
    assert scripts == [{"type": "application/json", "id": "flow-data"}, {}]
    # The island has no "<" at all, so nothing in it can close its <script> element.
    assert "<" not in page.text("id", "flow-data")
    # Where the values are markup (chains section, run risks, declared rows), they are text.
    cells = [text for tag, _, text in page.elements if tag in ("p", "li", "td")]
    assert any(HOSTILE_SNI in text for text in cells)
    assert sum(text == HOSTILE_REASON for text in cells) == 2  # the run risk and the declared row


def test_line_separators_are_escaped_in_the_island() -> None:
    report = _with_summary(_hostile_report(), (make_record(reason="a\u2028b\u2029c"),))
    document = _render(report)
    assert "\u2028" not in document and "\u2029" not in document
    assert _island(_Page(document))[0]["reason"] == "a\u2028b\u2029c"


def test_policy_fetches_nothing_and_runs_only_the_reports_own_script_and_style() -> None:
    page = _Page(_render(_hostile_report()))
    ((_, meta, _),) = page.having("http-equiv", "Content-Security-Policy")
    assert meta["content"] == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    for tag in ("script", "style"):
        (source,) = (text for name, attrs, text in page.elements if name == tag and not attrs)
        digest = base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}'" in CONTENT_SECURITY_POLICY
    assert not page.having("src")
    links = [str(attrs["href"]) for _, attrs, _ in page.having("href")]
    assert links and all(link.startswith("#cert-") for link in links)


def test_run_record_shows_who_when_what_was_created_and_the_captures() -> None:
    report = _hostile_report()
    assert report.run is not None
    page = _Page(_render(report))
    run = page.text("id", "run")
    assert RUN.caller_arn is not None and RUN.caller_arn in run
    assert RUN.started_at in run and RUN.ended_at in run
    for event in report.run.resources:
        assert event.resource_id in run and event.outcome in run
        assert event.created_at is not None and event.created_at in run
    assert "2026-11-22T17:05:29Z" in run  # the filter's deletion
    assert "INCOMPLETE" in run and "TEARDOWN INCOMPLETE" in page.text("id", "summary")
    captures = page.text("id", "captures")
    assert all(capture.sha256 in captures for capture in report.captures)


def test_chains_show_each_certificate() -> None:
    report = _hostile_report()
    page = _Page(_render(report))
    chains = page.text("id", "certificates")
    assert "Server chain presented by 10.77.0.2:8443" in chains
    assert "CN=api.internal.example,O=verifier test PKI" in chains
    assert "api.internal.example, db.internal.example" in chains  # the leaf's SANs
    assert "2036-11-19T14:56:31+00:00" in chains  # notAfter
    assert {
        str(attrs["id"]) for _, attrs, _ in page.having("id") if str(attrs["id"]).startswith("cert-")
    } == {f"cert-{digest}" for digest in report.certificates}


def test_confidence_names_risks_and_flows_mirrored_twice() -> None:
    report = _hostile_report()
    copy = replace(report.flows[0], vni=9999)  # the same connection from a second mirror session
    page = _Page(_render(_with_summary(report, (*report.flows, copy))))
    coverage = page.text("id", "coverage")
    assert RUN.risks[0] in coverage
    assert "1 connections were seen on more than one VNI" in coverage
    assert "did not report whether the kernel dropped" in coverage
    assert "5 of 10 flows show no TLS handshake" in coverage


def test_a_report_whose_flows_were_not_kept_says_so() -> None:
    report = _hostile_report()
    page = _Page(_render(replace(report, flows=())))
    assert "This file holds 0 of the 10 flows analysed" in page.text("id", "flows")
    assert "No flows to chart." in page.text("id", "timeline")
    assert _island(page) == []


def _dump_dom(path: Path, profile: Path, fragment: str = "") -> _Page:
    assert CHROMIUM is not None
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # as root, Chromium refuses to start with its sandbox
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--dump-dom",
            path.as_uri() + fragment,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return _Page(result.stdout)


@pytest.fixture(scope="module")
def hostile_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("html") / "report.html"
    path.write_text(_render(_hostile_report()), encoding="utf-8")
    return path


@needs_chromium
def test_browser_shows_the_counts_of_the_json_report(hostile_file: Path, tmp_path: Path) -> None:
    page = _dump_dom(hostile_file, tmp_path)
    summary = report_to_dict(_hostile_report())["summary"]
    # Filled in by the script from the data island: the placeholders are gone only if it ran.
    counted = {str(attrs["data-island-count"]): text for _, attrs, text in page.having("data-island-count")}
    assert counted == {"all": str(summary["flows"])} | {
        verdict.value: str(summary["by_verdict"].get(verdict.value, 0)) for verdict in Verdict
    }
    rows = [attrs for tag, attrs, _ in page.elements if tag == "tr" and attrs.get("class") == "flow"]
    assert len(rows) == summary["flows"]
    assert page.text("id", "flow-shown") == "Showing 10 of 10 matching flows (10 in all)."


@needs_chromium
def test_browser_runs_nothing_that_came_from_packets(hostile_file: Path, tmp_path: Path) -> None:
    page = _dump_dom(hostile_file, tmp_path)
    assert page.title() == "Encryption evidence: FAIL"
    assert not page.having("id", "injected")
    assert len([tag for tag, _, _ in page.elements if tag == "script"]) == 2
    cells = [text for tag, _, text in page.elements if tag == "td"]
    assert cells.count(HOSTILE_SNI) == 2 and cells.count(HOSTILE_REASON) == 3  # table rows, declared row


@needs_chromium
def test_browser_filters_and_sorts_as_the_address_says(hostile_file: Path, tmp_path: Path) -> None:
    page = _dump_dom(hostile_file, tmp_path, "#verdict=FAIL&sort=-client")
    rows = [attrs for tag, attrs, _ in page.elements if tag == "tr" and attrs.get("class") == "flow"]
    assert [row["data-verdict"] for row in rows] == ["FAIL"] * 5
    flows = [flow for flow in _hostile_report().flows if flow.verdict is Verdict.FAIL]
    clients = [text for tag, _, text in page.elements if tag == "td" and text in {f.client for f in flows}]
    assert clients == sorted((flow.client for flow in flows), reverse=True)
    ((_, header, _),) = page.having("data-column", "client")
    assert header["aria-sort"] == "descending"

    page = _dump_dom(hostile_file, tmp_path, "#q=db.internal")
    assert page.text("id", "flow-shown") == "Showing 1 of 1 matching flows (10 in all)."


@needs_chromium
def test_browser_shows_thousands_of_flows_a_page_at_a_time(tmp_path: Path) -> None:
    flows = tuple(
        make_record(client=f"10.0.{index // 250}.{index % 250}:40000", first_seen=1_700_000_000.0 + index)
        for index in range(3000)
    )
    path = tmp_path / "large.html"
    path.write_text(_render(_with_summary(_hostile_report(), flows)), encoding="utf-8")
    page = _dump_dom(path, tmp_path / "profile")
    assert page.text("id", "flow-shown") == "Showing 500 of 3000 matching flows (3000 in all)."
    assert page.text("data-island-count", "PASS") == "3000"
    ((_, more, _),) = page.having("id", "flow-more")
    assert "hidden" not in more


def test_policy_exceptions_are_listed_as_text() -> None:
    outcome = ExceptionOutcome(HOSTILE_REASON, "2999-12-31", "10.0.0.0/8", 8443, None, expired=True, flows=3)
    document = _render(replace(_hostile_report(), policy_exceptions=(outcome,)))
    page = _Page(document)
    row = [text for tag, attrs, text in page.elements if tag == "td"]
    assert HOSTILE_REASON in row and "expired: not applied" in row and "peer 10.0.0.0/8, port 8443" in row
    assert not page.having("id", "injected")
