"""A Markdown summary for a pull-request comment: the verdict, the counts, declared vs observed, the worst
flow groups. Bounded in size whatever the capture held (GitHub refuses comments over 65,536 characters).

Text from the wire (SNI, the evidence in reasons) goes into code spans, where Markdown, HTML, links and
@mentions are inert; every other text has its Markdown punctuation escaped.
"""

from __future__ import annotations

import re
from typing import TextIO

from verifier.core.model import Report
from verifier.report.findings import FlowGroup, flow_count, group_flows, safe_text, service_port

CELL_LIMIT = 200
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_TLS_DECLARED = {True: "TLS", False: "no TLS", None: "nothing"}


def write_markdown(
    report: Report,
    out: TextIO,
    groups: list[FlowGroup] | None = None,
    *,
    max_rows: int = 20,
    max_declared: int = 50,
) -> None:
    """``groups``: the flows folded by FlowGroups while they streamed; by default, those of ``report``."""
    flow_groups = group_flows(report.flows) if groups is None else groups
    summary = report.summary
    out.write(f"## verifier: {summary.verdict.value}\n\n")
    counts = ", ".join(f"{count} {verdict}" for verdict, count in summary.by_verdict.items()) or "none"
    out.write(f"**{flow_count(summary.flows)}**: {counts}\n\n")
    if summary.by_category:
        categories = ", ".join(f"{_text(name)} {count}" for name, count in summary.by_category.items())
        out.write(f"By category: {categories}\n\n")
    if report.run is not None:
        run = report.run
        teardown = "teardown complete" if run.teardown_complete else "**resources left in the account**"
        out.write(
            f"Run {_text(run.run_id)} in {_text(run.region)} (account {_text(run.account or 'unknown')}), "
            f"{_text(run.started_at)} to {_text(run.ended_at)}; {teardown}\n\n"
        )
    if report.declared:
        out.write("### Declared vs observed\n\n")
        out.write("| service port | declared | flows | observed | verdict | reason |\n")
        out.write("|---|---|---:|---|---|---|\n")
        for row in report.declared[:max_declared]:
            observed = ", ".join(f"{category} {count}" for category, count in row.by_category) or "nothing"
            out.write(
                f"| {_text(service_port(row))} | {_TLS_DECLARED[row.tls_declared]} | {row.flows} "
                f"| {_text(observed)} | {row.verdict.value} | {_code(row.reason)} |\n"
            )
        _more(out, len(report.declared) - max_declared, "declared rows")
    shown = [group for group in flow_groups if group.kind is not None][:max_rows]
    if shown:
        out.write("\n### Worst flows\n\n")
        out.write("| verdict | server | category | flows | SNI | reason |\n")
        out.write("|---|---|---|---:|---|---|\n")
        for group in shown:
            out.write(
                f"| {group.verdict.value} | {_text(group.server)} | {_text(group.category)} | {group.flows} "
                f"| {_code(group.sni or '')} | {_code(group.reason)} |\n"
            )
        failing = sum(group.kind is not None for group in flow_groups)
        _more(out, failing - len(shown), "groups of flows that do not pass")
    elif flow_groups:
        out.write("\nEvery flow passes.\n")
    out.write("\nThe JSON report (`--format json`) has every flow.\n")


def _more(out: TextIO, hidden: int, what: str) -> None:
    if hidden > 0:
        out.write(f"\n... and {hidden} more {what}.\n")


def _text(text: str) -> str:
    """Plain text in Markdown: one bounded line with every ASCII punctuation character escaped."""
    return _PUNCTUATION.sub(r"\\\1", safe_text(text, CELL_LIMIT))


def _code(text: str) -> str:
    """A code span holding ``text`` within a table cell (GFM: a pipe in a cell is escaped even in code)."""
    body = safe_text(text, CELL_LIMIT).replace("|", "\\|")
    if not body:
        return ""
    fence = "`" * (max((len(run) for run in re.findall("`+", body)), default=0) + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"
