"""Terminal rendering of a Report with rich: verdict summary, the run, declared vs observed, the worst flows
first, coverage."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from verifier.core.model import DeclaredPort, FlowRecord, Report, RunRecord, Verdict
from verifier.core.summary import NOT_OBSERVED

_STYLE = {
    Verdict.PASS: "bold green",
    Verdict.WARN: "bold yellow",
    Verdict.FAIL: "bold red",
    Verdict.INCONCLUSIVE: "bold magenta",
}

# ResourceEvent outcomes that mean the resource is no longer in the account; any other outcome says why it is.
_GONE = ("deleted", "already gone")


def render(report: Report, console: Console, worst_flows: list[FlowRecord], max_rows: int) -> None:
    """Summary, the run, declared vs observed, the worst flows (already selected, most severe first),
    coverage."""
    summary = report.summary
    sources = ", ".join(capture.path for capture in report.captures) or "live capture"
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
    if report.run is not None:
        _run(report.run, console)
    if report.declared:
        _declared_table(report.declared, console)
    for outcome in report.policy_exceptions:
        state = "[red]expired, not applied[/]" if outcome.expired else "in force"
        console.print(
            f"Policy exception ({state}, last day {outcome.expires}): {escape(outcome.justification)}: "
            f"{outcome.flows} FAIL flows matched"
        )
    _flows_table(worst_flows, report.summary.flows, console, max_rows)
    _coverage(report, console)


def _run(run: RunRecord, console: Console) -> None:
    console.print(
        f"[bold]Run {escape(run.run_id)}[/] in {escape(run.region)}, "
        f"collector placement: {escape(run.placement)}"
    )
    account = f" (account {run.account})" if run.account else ""
    console.print(f"  by {escape(run.caller_arn or 'an unknown caller')}{escape(account)}")
    services = ", ".join(run.services) or "none named"
    console.print(
        f"  {run.started_at} -> {run.ended_at} ({run.duration_seconds:.0f} s captured); cluster "
        f"{escape(run.cluster or '-')}; services {escape(services)}"
    )
    console.print(f"  mirror target: {escape(run.target)}")
    mirrored = [source for source in run.sources if source.session_id is not None]
    console.print(f"  Sources: {len(mirrored)} mirrored, {len(run.sources) - len(mirrored)} not mirrored")
    for source in run.sources:
        what = ", ".join(filter(None, (source.kind, source.service, source.private_ip)))
        if source.session_id is not None:
            console.print(
                f"    mirrored {escape(source.eni_id)} ({escape(what)}): {escape(source.session_id)}, "
                f"VNI {source.vni}"
            )
            continue
        why = source.refused or f"{source.eligibility}: {source.eligibility_reason}"
        console.print(
            f"    [bold red]not mirrored[/] {escape(source.eni_id)} ({escape(what)}): {escape(why)}"
        )
        for fallback in source.fallbacks:
            console.print(f"      instead: {escape(fallback)}")
    for risk in run.risks:
        console.print(f"  [bold yellow]risk[/]: {escape(risk)}")
    deleted = sum(event.outcome in _GONE for event in run.resources)
    console.print(f"  AWS resources: {len(run.resources)} created, {deleted} deleted or already gone")
    if run.teardown_complete:
        console.print("  Teardown complete: nothing the run created is left in the account.")
        return
    console.print("  [bold red]TEARDOWN INCOMPLETE: resources the run created are still in the account[/]")
    for event in run.resources:
        if event.outcome not in _GONE:
            console.print(
                f"    [bold red]left[/] {escape(event.kind)} {escape(event.resource_id)}: "
                f"{escape(event.outcome)}"
            )


def _declared_table(rows: tuple[DeclaredPort, ...], console: Console) -> None:
    table = Table(title="Declared vs observed (Service Connect)", title_justify="left", expand=False)
    table.add_column("service", overflow="fold", max_width=18)
    table.add_column("port name", overflow="fold", max_width=14)
    table.add_column("port", no_wrap=True)
    table.add_column("TLS", no_wrap=True)  # declared
    table.add_column("PCA", no_wrap=True)
    table.add_column("flows", no_wrap=True, justify="right")
    table.add_column("wire showed", overflow="fold", max_width=24)
    table.add_column("verdict", no_wrap=True)
    table.add_column("reason", overflow="fold", ratio=1)
    for row in rows:
        tls = {True: "yes", False: "no", None: "-"}[row.tls_declared]
        table.add_row(
            escape(row.service or "(no service)"),
            escape(row.port_name or "-"),
            "?" if row.port is None else str(row.port),
            tls,
            escape(_short_arn(row.pca_declared)),
            str(row.flows),
            escape(", ".join(f"{category} {count}" for category, count in row.by_category) or "nothing"),
            f"[{_STYLE[row.verdict]}]{row.verdict.value}[/]",
            escape(row.reason),
        )
    console.print(table)


def _short_arn(arn: str | None) -> str:
    """The start of a PCA's id (arn:...:certificate-authority/ID): enough to tell CAs apart in a table."""
    if arn is None:
        return "-"
    tail = arn.rsplit("/", 1)[-1]
    return tail if len(tail) <= 12 else f"{tail[:8]}..."


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
    collector = coverage.collector
    if collector is not None:
        drops = "not reported by the OS" if collector.kernel_drops is None else str(collector.kernel_drops)
        style = "bold red" if collector.kernel_drops else "default"
        console.print(
            f"  collector: {collector.datagrams} datagrams, {collector.bytes} bytes in "
            f"{collector.ended - collector.started:.0f} s, [{style}]kernel drops {drops}[/], "
            f"stopped: {escape(collector.stop_reason)}"
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
