"""Command line: parse, wire the edges, run, render, exit code. The only module that imports typer.

Exit codes: 0 every flow PASS or WARN (or inconclusive), 1 at least one FAIL, 2 usage or input error.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from verifier import __version__
from verifier.analysis import SCHEMA_VERSION, FlowSink, analyze_files
from verifier.core.chains import TrustAnchors
from verifier.core.flows import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_BUFFER, AnalyzerConfig
from verifier.core.model import Report, Verdict
from verifier.core.summary import WorstFlows
from verifier.errors import InputError, UsageError, VerifierError
from verifier.report.json_report import JsonReportWriter
from verifier.report.terminal import render

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2  # typer exits 2 on usage errors itself; kept here to document the code
EXIT_INTERRUPTED = 130

app = typer.Typer(
    help="Prove from the wire whether the traffic of AWS ECS workloads is encrypted.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


def _version(value: bool) -> None:
    if value:
        print(f"verifier {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """verifier: encryption evidence for ECS traffic."""


@app.command()
def analyze(
    files: Annotated[list[Path], typer.Argument(help="pcap or pcapng files (optionally gzip-compressed).")],
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Report format.")
    ] = OutputFormat.table,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report here.")] = None,
    keylog: Annotated[
        Path | None, typer.Option("--keylog", help="NSS key log (TLS 1.3 certificate recovery).")
    ] = None,
    ca: Annotated[
        Path | None,
        typer.Option(
            "--ca", help="PEM bundle of the only CAs server chains may lead to (root and intermediates)."
        ),
    ] = None,
    short_lived: Annotated[
        bool,
        typer.Option("--short-lived", help="The CA issues short-lived certificates: flag any over 7 days."),
    ] = False,
    max_buffer: Annotated[
        int, typer.Option(help="Bytes per direction kept for classifying a flow.", min=1024)
    ] = DEFAULT_MAX_BUFFER,
    idle_timeout: Annotated[
        float, typer.Option(help="Seconds of capture time after which an idle flow ends.", min=1)
    ] = DEFAULT_IDLE_TIMEOUT,
    max_rows: Annotated[int, typer.Option(help="Flows shown in the terminal table.", min=0)] = 40,
) -> None:
    """Analyse captures offline: classify every TCP flow and judge its encryption."""
    config = AnalyzerConfig(max_buffer=max_buffer, max_pending=max_buffer, idle_timeout=idle_timeout)
    anchors = _anchors(ca, short_lived) if ca is not None else None
    with _interruptible(), _report_file(output) as handle:
        if output_format is OutputFormat.json:
            writer = JsonReportWriter(handle, SCHEMA_VERSION)
            report = _run(files, config, keylog, anchors, writer.flow)
            writer.finish(report)
        else:
            worst = WorstFlows(max_rows)
            report = _run(files, config, keylog, anchors, worst.add)
            # A pipe or file gets 120 columns (rich would assume 80); a terminal keeps its own width.
            console = Console(file=handle)
            if not console.is_terminal:
                console = Console(file=handle, width=120)
            render(report, console, worst.flows(), max_rows)
    raise typer.Exit(EXIT_FINDINGS if report.summary.by_verdict.get(Verdict.FAIL.value) else EXIT_OK)


def _anchors(bundle: Path, short_lived: bool) -> TrustAnchors:
    try:
        data = bundle.read_bytes()
    except OSError as exc:
        raise InputError(f"{bundle}: cannot read the CA bundle: {exc.strerror or exc}") from exc
    try:
        return TrustAnchors.from_pem_bundle(data, short_lived=short_lived)
    except InputError as exc:
        raise InputError(f"{bundle}: {exc}") from exc


def _run(
    files: list[Path],
    config: AnalyzerConfig,
    keylog: Path | None,
    anchors: TrustAnchors | None,
    sink: FlowSink,
) -> Report:
    stderr = Console(stderr=True)
    if not stderr.is_terminal:
        return analyze_files(files, config, keylog=keylog, sink=sink, anchors=anchors)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task("reading", total=None)

        def update(done: int, total: int, path: Path) -> None:
            progress.update(task, completed=done, total=total, description=path.name)

        return analyze_files(files, config, keylog=keylog, progress=update, sink=sink, anchors=anchors)


@contextmanager
def _interruptible() -> Iterator[None]:
    # Typer turns Ctrl-C into exit 1, which here means "findings"; a user's interrupt is 130, as in shells.
    try:
        yield
    except KeyboardInterrupt:
        print("verifier: interrupted", file=sys.stderr)
        raise typer.Exit(EXIT_INTERRUPTED) from None


@contextmanager
def _report_file(output: Path | None) -> Iterator[TextIO]:
    """stdout, or a temporary file beside OUTPUT renamed into place only when the report is complete."""
    if output is None:
        yield sys.stdout
        return
    partial = output.with_name(f".{output.name}.partial")
    try:
        handle = partial.open("w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{output}: cannot write the report: {exc.strerror or exc}") from exc
    try:
        with handle:
            yield handle
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)


def main() -> None:
    """Console entry point: every failure the user can act on is one line on stderr and an exit code.

    Typer reports usage errors itself (exit 2); our own errors come out of the command as VerifierError.
    """
    try:
        app()
    except VerifierError as exc:
        print(f"verifier: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
