"""Terminal rendering of a Report with rich: verdict summary, the worst flows first, coverage."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from verifier.core.model import FlowRecord, Report, Verdict
from verifier.core.summary import NOT_OBSERVED

_STYLE = {
    Verdict.PASS: "bold green",
    Verdict.WARN: "bold yellow",
    Verdict.FAIL: "bold red",
    Verdict.INCONCLUSIVE: "bold magenta",
}


def render(report: Report, console: Console, worst_flows: list[FlowRecord], max_rows: int) -> None:
    """Summary, the worst flows (already selected, most severe first), coverage."""
    summary = report.summary
    sources = ", ".join(capture.path for capture in report.captures)
    console.print(f"[bold]verifier {report.tool_version}[/] analysed {escape(sources)}")
    verdict_line = "  ".join(
        f"[{_STYLE[Verdict(name)]}]{name}[/] {count}" for name, count in summary.by_verdict.items()
    )
    console.print(
        f"Overall: [{_STYLE[summary.verdict]}]{summary.verdict.value}[/]   "
        f"{summary.flows} flows   {verdict_line}"
    )
    if summary.by_category:
        categories = ", ".join(f"{escape(name)} {count}" for name, count in summary.by_category.items())
        console.print(f"Categories: {categories}")
    if any(name != NOT_OBSERVED for name in summary.by_identity):
        identities = ", ".join(f"{escape(name)} {count}" for name, count in summary.by_identity.items())
        console.print(f"Certificate chains against the given CA: {identities}")
    _flows_table(worst_flows, report.summary.flows, console, max_rows)
    _coverage(report, console)


def _flows_table(worst_flows: list[FlowRecord], total: int, console: Console, max_rows: int) -> None:
    if not total:
        console.print("No TCP flows found.")
        return
    ordered = worst_flows[:max_rows]
    table = Table(title="Flows (worst first)", title_justify="left", expand=False)
    table.add_column("verdict", no_wrap=True)
    table.add_column("client -> server", overflow="fold")
    table.add_column("vni", no_wrap=True)
    table.add_column("category", no_wrap=True)
    table.add_column("sni", overflow="fold", max_width=28)
    judged = any(flow.identity is not None for flow in ordered)
    if judged:
        table.add_column("chain", no_wrap=True)  # the certificate chain against the given CA
    table.add_column("reason", overflow="fold", ratio=1)
    for flow in ordered:
        cells = [
            f"[{_STYLE[flow.verdict]}]{flow.verdict.value}[/]",
            escape(f"{flow.client} -> {flow.server}"),
            "" if flow.vni is None else str(flow.vni),
            escape(flow.category),
            escape(flow.sni or ""),
        ]
        if judged:
            cells.append(f"[{_STYLE[flow.identity]}]{flow.identity.value}[/]" if flow.identity else "")
        table.add_row(*cells, escape(flow.reason))
    console.print(table)
    if total > len(ordered):
        console.print(f"... {total - len(ordered)} more flows; use --format json for all of them.")


def _coverage(report: Report, console: Console) -> None:
    coverage = report.coverage
    console.print("[bold]Coverage[/]")
    seen_from_start = coverage.flows - coverage.midstream_flows
    console.print(
        f"  frames {coverage.frames}, TCP segments {coverage.tcp_segments}; connections seen from their "
        f"start {seen_from_start} of {coverage.flows} (mid-stream: {coverage.midstream_flows}); "
        f"TLS handshakes visible in {coverage.flows_with_handshake}"
    )
    console.print(
        f"  gaps {coverage.gaps} ({coverage.gap_bytes} bytes lost), retransmissions "
        f"{coverage.retransmissions}, out of order {coverage.out_of_order}, truncated frames "
        f"{coverage.truncated_frames}, evidence truncated in {coverage.evidence_truncated_flows} flows"
    )
    if coverage.not_analysed:
        skipped = ", ".join(f"{reason} {count}" for reason, count in sorted(coverage.not_analysed.items()))
        console.print(f"  frames without an analysable TCP segment: {skipped}")
    if len(coverage.per_vni) > 1 or (coverage.per_vni and coverage.per_vni[0].vni is not None):
        for vni in coverage.per_vni:
            name = "no tunnel" if vni.vni is None else f"VNI {vni.vni}"
            console.print(
                f"  {name}: {vni.frames} TCP frames, {vni.flows} flows, {vni.flows_with_handshake} with "
                f"handshake, {vni.gaps} gaps"
            )
