"""Several report formats from one analysis: each flow goes, as it is judged, to every writer that wants it.

Memory: JSON streams flows out; the table keeps the worst rows; JUnit, SARIF, Markdown, ASFF and OCSF keep
one group per server and category (FlowGroups); only HTML keeps every flow record: its page holds them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TextIO

from rich.console import Console

from verifier.core.model import FlowRecord, Report
from verifier.core.summary import WorstFlows
from verifier.errors import UsageError
from verifier.report.findings import FlowGroup, FlowGroups, write_asff, write_ocsf
from verifier.report.html_report import write_html
from verifier.report.json_report import JsonReportWriter
from verifier.report.junit import write_junit
from verifier.report.markdown import write_markdown
from verifier.report.sarif import write_sarif
from verifier.report.terminal import render

# Each format and the file name it gets in an output directory.
FILE_NAMES = {
    "table": "report.txt",
    "json": "report.json",
    "html": "report.html",
    "junit": "report.junit.xml",
    "sarif": "report.sarif",
    "markdown": "report.md",
    "asff": "report.asff.json",
    "ocsf": "report.ocsf.json",
}
_GROUPED = frozenset({"junit", "sarif", "markdown", "asff", "ocsf"})


def parse_formats(text: str) -> tuple[str, ...]:
    """``json,html,junit`` -> the formats, each once, in the order given."""
    formats = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [name for name in formats if name not in FILE_NAMES]
    if not formats or unknown:
        raise UsageError(
            f"--format {text!r}: choose among {', '.join(FILE_NAMES)} (several separated by commas)"
        )
    return formats


class ReportOutputs:
    """The writers of one analysis. ``sink`` takes each flow as it is judged; ``finish`` writes the rest."""

    def __init__(
        self,
        targets: dict[str, TextIO],
        *,
        max_rows: int,
        schema_version: str,
        console: Callable[[TextIO], Console],
        grouped: bool = False,
    ) -> None:
        """``grouped``: fold flows into groups even when no format asks (Security Hub findings do)."""
        self._targets = targets
        self._max_rows = max_rows
        self._console = console
        self._json = JsonReportWriter(targets["json"], schema_version) if "json" in targets else None
        self._worst = WorstFlows(max_rows) if "table" in targets else None
        self._groups = FlowGroups() if grouped or not _GROUPED.isdisjoint(targets) else None
        self._kept: list[FlowRecord] | None = [] if "html" in targets else None

    def sink(self, record: FlowRecord) -> None:
        if self._json is not None:
            self._json.flow(record)
        if self._worst is not None:
            self._worst.add(record)
        if self._groups is not None:
            self._groups.add(record)
        if self._kept is not None:
            self._kept.append(record)

    def finish(self, report: Report) -> None:
        """Write every format; ``report.flows`` holds the flows not yet handed to ``sink`` (if any)."""
        for record in report.flows:
            self.sink(record)
        groups = self._groups.groups() if self._groups is not None else []
        for name, out in self._targets.items():
            if name == "json" and self._json is not None:
                self._json.finish(replace(report, flows=()))
            elif name == "table" and self._worst is not None:
                render(report, self._console(out), self._worst.flows(), self._max_rows)
            elif name == "html" and self._kept is not None:
                ordered = sorted(self._kept, key=lambda flow: (flow.first_seen, flow.client, flow.server))
                write_html(replace(report, flows=tuple(ordered)), out)
            elif name == "junit":
                write_junit(report, out, groups)
            elif name == "sarif":
                write_sarif(report, out, groups)
            elif name == "markdown":
                write_markdown(report, out, groups, max_rows=self._max_rows)
            elif name == "asff":
                # Findings belong to an account: the CLI offers ASFF only where a run record names it.
                run = report.run
                assert run is not None and run.account is not None
                write_asff(report, out, account=run.account, region=run.region, groups=groups)
            elif name == "ocsf":
                write_ocsf(report, out, groups)

    def flow_groups(self) -> list[FlowGroup]:
        return self._groups.groups() if self._groups is not None else []
