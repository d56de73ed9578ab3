"""Command line: parse, wire the edges, run, render, exit code. The only module that imports typer.

Exit codes: 0 compliant (every flow PASS or WARN), 1 findings (a FAIL flow or declared port), 2 usage or input
error, 3 AWS or infrastructure error (a teardown that left something included), 4 inconclusive (only with
--fail-on inconclusive), 128+n a run stopped by signal n (after its teardown), 130 an interrupted analysis.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from verifier import __version__
from verifier.analysis import SCHEMA_VERSION, FlowSink, Judging, Pipeline, analyze_files
from verifier.core import flows as flows_module
from verifier.core.chains import TrustAnchors, judge_chain
from verifier.core.declared import worst_declared
from verifier.core.flows import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_BUFFER, AnalyzerConfig
from verifier.core.model import Report, Verdict
from verifier.core.policy import Policy
from verifier.core.selection import FlowSelection
from verifier.core.summary import SummaryBuilder, WorstFlows
from verifier.errors import InputError, UsageError, VerifierError
from verifier.policy_file import default_policy_toml, load_policy
from verifier.probe import ProbeTarget, parse_endpoint
from verifier.probe import probe as run_probe
from verifier.report.findings import FlowGroup
from verifier.report.json_report import JsonReportWriter
from verifier.report.outputs import FILE_NAMES, ReportOutputs, parse_formats
from verifier.report.probe_report import probe_to_dict, render_probe
from verifier.report.terminal import render
from verifier.sources.collector import Collector, CollectorLimits

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2  # typer exits 2 on usage errors itself; kept here to document the code
EXIT_AWS = 3
EXIT_INCONCLUSIVE = 4
EXIT_INTERNAL = 70  # EX_SOFTWARE (sysexits.h): a bug, not the input or the account
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


class FailOn(StrEnum):
    fail = "fail"
    inconclusive = "inconclusive"


FormatsOption = Annotated[
    str,
    typer.Option(
        "--format",
        help=f"Report formats, comma-separated: {', '.join(FILE_NAMES)}. Several need --output-dir.",
    ),
]
OutputOption = Annotated[
    str | None,
    typer.Option("--output", "-o", help="Write the (one) report here: a file, or s3://BUCKET/KEY (SSE)."),
]
OutputDirOption = Annotated[
    Path | None, typer.Option("--output-dir", help="Write each format here, as report.<format>.")
]
SecurityHubOption = Annotated[
    bool, typer.Option("--security-hub", help="File the findings in AWS Security Hub (BatchImportFindings).")
]
PolicyOption = Annotated[
    Path | None,
    typer.Option("--policy", help="Policy file (TOML; `verifier policy show` prints the default one)."),
]
FailOnOption = Annotated[
    FailOn,
    typer.Option("--fail-on", help="inconclusive: exit 4 when nothing FAILs but something was not judged."),
]


class Placement(StrEnum):
    auto = "auto"
    collector = "collector"
    ssm = "ssm"


CaOption = Annotated[
    Path | None,
    typer.Option("--ca", help="PEM bundle of the only CAs server chains may lead to (roots, intermediates)."),
]
PcaOption = Annotated[
    str | None, typer.Option("--pca-arn", help="AWS Private CA whose certificate and chain are the anchors.")
]
ShortLivedOption = Annotated[
    bool, typer.Option("--short-lived", help="The CA issues short-lived certificates: flag any over 7 days.")
]
ClusterOption = Annotated[str | None, typer.Option("--cluster", help="ECS cluster.")]
ServiceOption = Annotated[list[str] | None, typer.Option("--service", help="ECS service (repeatable).")]
TaskOption = Annotated[list[str] | None, typer.Option("--task", help="ECS task ARN or id (repeatable).")]
EniOption = Annotated[list[str] | None, typer.Option("--eni", help="A network interface (repeatable).")]
RdsOption = Annotated[
    list[str] | None, typer.Option("--rds", help="An RDS DB instance id: mirror its ENI (repeatable).")
]
ElastiCacheOption = Annotated[
    list[str] | None,
    typer.Option("--elasticache", help="An ElastiCache cluster id: mirror its nodes' ENIs (repeatable)."),
]
PortsOption = Annotated[
    str | None, typer.Option("--ports", help="Only TCP connections to or from these ports, e.g. 443,5432.")
]
SnaplenOption = Annotated[
    int | None, typer.Option("--snaplen", help="Mirror only this many bytes per packet.")
]
SessionNumberOption = Annotated[
    int | None,
    typer.Option("--session-number", help="Our sessions' number (default: above every existing one)."),
]
RunIdOption = Annotated[str | None, typer.Option("--run-id", help="Run id (default: a new one).")]
ExpiresInOption = Annotated[
    int, typer.Option("--expires-in", help="Minutes after which `verifier cleanup --expired` may delete.")
]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="Only flows active at or after: ISO 8601 time or epoch seconds.")
]
UntilOption = Annotated[str | None, typer.Option("--until", help="Only flows active at or before this time.")]
VniOption = Annotated[list[int] | None, typer.Option("--vni", help="Only flows of this VNI (repeatable).")]
AddressOption = Annotated[
    list[str] | None,
    typer.Option(
        "--address", help="Only flows with a client or server in this address or CIDR (repeatable)."
    ),
]
PortOption = Annotated[
    list[int] | None, typer.Option("--port", help="Only flows with this client or server port (repeatable).")
]
ProfileOption = Annotated[str | None, typer.Option("--profile", help="AWS profile (default: boto3's chain).")]
RegionOption = Annotated[str | None, typer.Option("--region", help="AWS region (the PCA ARN's wins).")]
ProbeTimeoutOption = Annotated[
    float, typer.Option("--probe-timeout", help="Seconds for each probe's connect and handshake.", min=0.1)
]


def _version(value: bool) -> None:
    if value:
        # setup.py's VERIFIER_COMPILE=1 build turns the engine's modules into C extensions.
        build = "pure Python" if flows_module.__file__.endswith(".py") else "compiled with mypyc"
        print(f"verifier {__version__} ({build})")
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
    formats: FormatsOption = "table",
    output: OutputOption = None,
    output_dir: OutputDirOption = None,
    fail_on: FailOnOption = FailOn.fail,
    policy_file: PolicyOption = None,
    security_hub: SecurityHubOption = False,
    keylog: Annotated[
        Path | None, typer.Option("--keylog", help="NSS key log (TLS 1.3 certificate recovery).")
    ] = None,
    ca: CaOption = None,
    pca_arn: PcaOption = None,
    short_lived: ShortLivedOption = False,
    profile: ProfileOption = None,
    region: RegionOption = None,
    probe: Annotated[
        bool,
        typer.Option(
            "--probe",
            help="Handshake once with each TLS server whose chain the capture did not show (from here).",
        ),
    ] = False,
    probe_timeout: ProbeTimeoutOption = 5.0,
    expect_name: Annotated[
        list[str] | None,
        typer.Option(
            "--expect-name",
            help="HOST:PORT=NAME: that server's certificate must carry NAME (default: the SNI). Repeatable.",
        ),
    ] = None,
    max_buffer: Annotated[
        int, typer.Option(help="Bytes per direction kept for classifying a flow.", min=1024)
    ] = DEFAULT_MAX_BUFFER,
    idle_timeout: Annotated[
        float, typer.Option(help="Seconds of capture time after which an idle flow ends.", min=1)
    ] = DEFAULT_IDLE_TIMEOUT,
    max_rows: Annotated[int, typer.Option(help="Flows shown in the terminal table.", min=0)] = 40,
    since: SinceOption = None,
    until: UntilOption = None,
    vni: VniOption = None,
    address: AddressOption = None,
    port: PortOption = None,
) -> None:
    """Analyse captures offline: classify every TCP flow and judge its encryption.

    Several captures are merged by time into one body of traffic; --since/--until/--vni/--address/--port
    select the flows reported (coverage still counts the whole input).
    """
    config = AnalyzerConfig(max_buffer=max_buffer, max_pending=max_buffer, idle_timeout=idle_timeout)
    policy, anchors = _policy_and_anchors(policy_file, ca, pca_arn, short_lived, profile, region)
    judging = Judging(
        anchors=anchors,
        expected_names=_expected_names(expect_name or []),
        probe_timeout=probe_timeout if probe else None,
        policy=policy,
        selection=_selection(since, until, vni or [], address or [], port or []),
    )
    chosen = parse_formats(formats)
    if "asff" in chosen:
        raise UsageError("--format asff needs the AWS account of a run: use it with `verifier run`")
    with _interruptible(), _paced_gc(), _output_file(output, profile, region) as local_output:
        report = _write_reports(
            chosen,
            local_output,
            output_dir,
            max_rows,
            lambda sink: _run(files, config, keylog, judging, sink),
            _analysis_security_hub(profile, region) if security_hub else None,
        )
    raise typer.Exit(exit_code(report, fail_on))


def _write_reports(
    formats: tuple[str, ...],
    output: Path | None,
    output_dir: Path | None,
    max_rows: int,
    produce: Callable[[FlowSink], Report],
    security_hub: Callable[[Report, list[FlowGroup]], None] | None = None,
) -> Report:
    """Run ``produce`` with a sink feeding every chosen format, then finish each document. One format goes to
    --output or stdout; several go to --output-dir as report.<format>, the table also to stdout.
    ``security_hub`` then gets the report and its flow groups (the findings it files)."""
    if output is not None and output_dir is not None:
        raise UsageError("--output is for one format, --output-dir for several: give one of them")
    if len(formats) > 1 and output_dir is None:
        raise UsageError(f"{len(formats)} formats need --output-dir DIR (one file each)")
    with contextlib.ExitStack() as files:
        targets: dict[str, TextIO] = {}
        for name in formats:
            if output_dir is None:
                targets[name] = files.enter_context(_report_file(output))
            elif name == "table" and len(formats) > 1:
                targets[name] = sys.stdout
            else:
                output_dir.mkdir(parents=True, exist_ok=True)
                targets[name] = files.enter_context(_report_file(output_dir / FILE_NAMES[name]))
        outputs = ReportOutputs(
            targets,
            max_rows=max_rows,
            schema_version=SCHEMA_VERSION,
            console=_console,
            grouped=security_hub is not None,
        )
        report = produce(outputs.sink)
        outputs.finish(report)
    if security_hub is not None:
        security_hub(report, outputs.flow_groups())
    return report


@contextmanager
def _output_file(
    output: str | None, profile: str | None, region: str | None, kms_key_id: str | None = None
) -> Iterator[Path | None]:
    """Where --output writes: the file named, or for s3://BUCKET/KEY a private temporary file uploaded there
    (server-side encrypted: SSE-S3, or SSE-KMS with the key) once the report is complete."""
    if output is None or not output.startswith("s3://"):
        yield Path(output) if output is not None else None
        return
    from verifier.aws.calls import new_client  # boto3 loads only when AWS is used
    from verifier.aws.remote_capture import parse_s3_url, upload_capture

    location = parse_s3_url(output)
    session, aws_region = _aws(profile, region)
    with tempfile.TemporaryDirectory(prefix="verifier-report-") as directory:
        local = Path(directory) / location.key.rpartition("/")[2]
        yield local
        upload_capture(
            new_client(session, "s3", aws_region), [local], location.bucket, location.key, kms_key_id
        )
        print(f"verifier: report uploaded to {location.url}", file=sys.stderr)


def _analysis_security_hub(
    profile: str | None, region: str | None
) -> Callable[[Report, list[FlowGroup]], None]:
    return _security_hub(*_aws(profile, region))


def _security_hub(session: Any, region: str) -> Callable[[Report, list[FlowGroup]], None]:
    """Files the findings in Security Hub (BatchImportFindings); a refused finding is named, not fatal."""
    from verifier.aws.security_hub import send_to_security_hub

    def send(report: Report, groups: list[FlowGroup]) -> None:
        outcome = send_to_security_hub(session, report, region, groups)
        print(f"verifier: Security Hub: {outcome.imported} findings imported in {region}", file=sys.stderr)
        for refused in outcome.refused:
            print(f"verifier: Security Hub refused {refused}", file=sys.stderr)

    return send


def exit_code(report: Report, fail_on: FailOn) -> int:
    """1 when a flow or a declared port FAILs; with --fail-on inconclusive, 4 when nothing FAILs but something
    could not be judged (or nothing was seen at all)."""
    if _has_findings(report):
        return EXIT_FINDINGS
    if fail_on is FailOn.inconclusive and (
        report.summary.verdict is Verdict.INCONCLUSIVE
        or report.summary.by_verdict.get(Verdict.INCONCLUSIVE.value)
        or worst_declared(report.declared) is Verdict.INCONCLUSIVE
    ):
        return EXIT_INCONCLUSIVE
    return EXIT_OK


def _console(handle: TextIO) -> Console:
    # A pipe or file gets 120 columns (rich would assume 80); a terminal keeps its own width.
    console = Console(file=handle)
    return console if console.is_terminal else Console(file=handle, width=120)


def _has_findings(report: Report) -> bool:
    return bool(report.summary.by_verdict.get(Verdict.FAIL.value)) or worst_declared(report.declared) is (
        Verdict.FAIL
    )


@app.command("probe")
def probe_command(
    endpoint: Annotated[str, typer.Argument(help="HOST:PORT to handshake with once (IPv6 in brackets).")],
    sni: Annotated[str | None, typer.Option("--sni", help="Server name to send.")] = None,
    ca: CaOption = None,
    pca_arn: PcaOption = None,
    short_lived: ShortLivedOption = False,
    profile: ProfileOption = None,
    region: RegionOption = None,
    timeout: ProbeTimeoutOption = 5.0,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Report format.")
    ] = OutputFormat.table,
) -> None:
    """One TLS handshake with a server (no application data): version, cipher and the chain it presents."""
    host, port = parse_endpoint(endpoint)
    anchors = _anchors(ca, pca_arn, short_lived, profile, region)
    with _interruptible():
        result = run_probe(ProbeTarget(host, port, sni), timeout=timeout)
    judgement = None
    if anchors is not None and result.certificates:
        judgement = judge_chain(result.certificates, anchors, at=datetime.now(UTC), expected_name=sni)
    if output_format is OutputFormat.json:
        print(json.dumps(probe_to_dict(result, judgement), indent=2))
    else:
        render_probe(result, judgement, Console())
    failed = judgement is not None and judgement.status.value == Verdict.FAIL.value
    raise typer.Exit(EXIT_FINDINGS if failed else EXIT_OK)


@app.command("collect")
def collect_command(
    listen: Annotated[
        str, typer.Option("--listen", help="ADDRESS:PORT to receive mirrored VXLAN on.")
    ] = "0.0.0.0:4789",
    duration: Annotated[
        str | None, typer.Option("--duration", help="Stop after this long: 120, 120s, 5m, 1h.")
    ] = None,
    packets: Annotated[
        int | None, typer.Option("--packets", help="Stop after this many datagrams.", min=1)
    ] = None,
    max_bytes: Annotated[
        int | None, typer.Option("--max-bytes", help="Stop after this many bytes.", min=1)
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="pcap to write (mode 0600).")] = None,
    rotate_bytes: Annotated[
        int | None, typer.Option("--rotate-bytes", help="Start a new file past this size.", min=4096)
    ] = None,
    no_pcap: Annotated[
        bool, typer.Option("--no-pcap", help="Write nothing to disk (needs --analyze).")
    ] = False,
    analyze: Annotated[bool, typer.Option("--analyze", help="Analyse the traffic as it arrives.")] = False,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Report format (with --analyze).")
    ] = OutputFormat.table,
    upload: Annotated[
        str | None, typer.Option("--upload", help="Then upload the pcap(s) to s3://BUCKET/KEY, encrypted.")
    ] = None,
    sse_kms_key: Annotated[
        str | None, typer.Option("--sse-kms-key", help="With --upload: SSE-KMS with this key, not AES256.")
    ] = None,
) -> None:
    """Receive mirrored traffic (VXLAN on UDP) on this machine; write a pcap and/or analyse it live."""
    if no_pcap and not analyze:
        raise UsageError("--no-pcap without --analyze would keep nothing")
    if not no_pcap and out is None:
        raise UsageError("name the capture with --out FILE, or pass --no-pcap --analyze")
    if no_pcap and out is not None:
        raise UsageError("--out and --no-pcap contradict each other")
    if (no_pcap and upload) or (sse_kms_key and not upload):
        raise UsageError("--upload needs a pcap (--out), --sse-kms-key needs --upload")
    if upload is not None:
        from verifier.aws.remote_capture import upload_capture, upload_destination  # boto3 only when used

        # Checked before capturing: a refused upload should fail in seconds, not after the capture.
        destination = upload_destination(upload, sse_kms_key)
    limits = CollectorLimits(_seconds(duration) if duration else None, packets, max_bytes)
    host, port = parse_endpoint(listen)
    worst = WorstFlows(40)
    writer = (
        JsonReportWriter(sys.stdout, SCHEMA_VERSION)
        if analyze and output_format is OutputFormat.json
        else None
    )
    pipeline = Pipeline(sink=writer.flow if writer is not None else worst.add) if analyze else None
    try:
        collector = Collector(
            (host, port),
            out=out,
            rotate_bytes=rotate_bytes,
            on_frame=(lambda *frame: pipeline.feed((frame,))) if pipeline is not None else None,
        )
    except OSError as exc:
        raise InputError(f"{listen}: cannot listen there: {exc.strerror or exc}") from exc
    stop = threading.Event()
    previous = {
        number: signal.signal(number, lambda *_: stop.set()) for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        stats = collector.run(limits, stop)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    drops = f"kernel drops {stats.kernel_drops}" if stats.drops_counted else "kernel drops not reported here"
    files = f"; wrote {', '.join(stats.files)}" if stats.files else ""
    print(
        f"collected {stats.datagrams} datagrams, {stats.bytes} bytes in {stats.ended - stats.started:.1f} s "
        f"({stats.stop_reason}), {drops}, from {stats.started:.6f} to {stats.ended:.6f}{files}",
        file=sys.stderr,
    )
    if upload is not None:
        paths = [Path(name) for name in stats.files]
        where = destination.location
        for url in upload_capture(destination.s3, paths, where.bucket, where.key, destination.kms_key_id):
            print(f"uploaded {url}", file=sys.stderr)
    if pipeline is None:
        raise typer.Exit(EXIT_OK)
    report = pipeline.report(())
    report = replace(report, coverage=replace(report.coverage, collector=stats.coverage()))
    if writer is not None:
        writer.finish(report)
    else:
        render(report, _console(sys.stdout), worst.flows(), 40)
    raise typer.Exit(EXIT_FINDINGS if report.summary.by_verdict.get(Verdict.FAIL.value) else EXIT_OK)


def _seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 1)
    try:
        seconds = float(number) * unit
    except ValueError:
        raise UsageError(f"--duration {text!r}: expected a number of seconds, or 30s, 5m, 1h") from None
    if seconds <= 0:
        raise UsageError(f"--duration {text!r}: must be positive")
    return seconds


@app.command("plan")
def plan_command(
    cluster: ClusterOption = None,
    service: ServiceOption = None,
    task: TaskOption = None,
    eni: EniOption = None,
    rds: RdsOption = None,
    elasticache: ElastiCacheOption = None,
    collector_eni: Annotated[
        str | None, typer.Option("--collector-eni", help="Mirror target: the collector instance's ENI.")
    ] = None,
    nlb_arn: Annotated[
        str | None, typer.Option("--nlb-arn", help="Mirror target: a Network Load Balancer.")
    ] = None,
    gwlb_endpoint: Annotated[
        str | None, typer.Option("--gwlb-endpoint", help="Mirror target: a Gateway Load Balancer endpoint.")
    ] = None,
    ports: PortsOption = None,
    snaplen: SnaplenOption = None,
    vni: Annotated[int | None, typer.Option("--vni", help="First VNI (default: AWS picks).")] = None,
    batch: Annotated[
        bool, typer.Option("--batch", help="Split sources an instance target cannot take.")
    ] = False,
    session_number: SessionNumberOption = None,
    run_id: RunIdOption = None,
    expires_in: ExpiresInOption = 60,
    profile: ProfileOption = None,
    region: RegionOption = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Report format.")
    ] = OutputFormat.table,
) -> None:
    """Show what a run would mirror and every AWS call it would make, with parameters; make none of them."""
    from verifier.aws.mirroring import Target
    from verifier.aws.planning import plan_run
    from verifier.report.plan_report import plan_to_dict, render_plan

    targets = [
        Target("network-interface", collector_eni) if collector_eni else None,
        Target("network-load-balancer", nlb_arn) if nlb_arn else None,
        Target("gateway-load-balancer-endpoint", gwlb_endpoint) if gwlb_endpoint else None,
    ]
    chosen = [target for target in targets if target is not None]
    if len(chosen) != 1:
        raise UsageError("name exactly one mirror target: --collector-eni, --nlb-arn or --gwlb-endpoint")
    session, aws_region = _aws(profile, region)
    now = datetime.now(UTC)
    outcome = plan_run(
        session,
        region=aws_region,
        run_id=run_id or new_run_id(now),
        target=chosen[0],
        expires_at=now + timedelta(minutes=expires_in),
        cluster=cluster,
        services=service or [],
        tasks=task or [],
        enis=eni or [],
        rds=rds or [],
        elasticache=elasticache or [],
        ports=_ports(ports) if ports else None,
        snaplen=snaplen,
        vni=vni,
        batch=batch,
        session_number=session_number,
    )
    if output_format is OutputFormat.json:
        print(json.dumps(plan_to_dict(outcome), indent=2, default=str))
    else:
        render_plan(outcome, Console())


@app.command("run")
def run_command(
    collector: Annotated[
        str, typer.Option("--collector", help="The collector EC2 instance (i-...): the mirror target.")
    ],
    cluster: ClusterOption = None,
    service: ServiceOption = None,
    task: TaskOption = None,
    eni: EniOption = None,
    rds: RdsOption = None,
    elasticache: ElastiCacheOption = None,
    duration: Annotated[str, typer.Option("--duration", help="How long to capture: 120s, 5m, 1h.")] = "120s",
    ca: CaOption = None,
    pca_arn: PcaOption = None,
    short_lived: ShortLivedOption = False,
    probe: Annotated[
        bool,
        typer.Option(
            "--probe", help="After the capture, handshake once with each TLS server seen (from here)."
        ),
    ] = False,
    probe_timeout: ProbeTimeoutOption = 5.0,
    keylog: Annotated[
        Path | None,
        typer.Option("--keylog", help="NSS key log written by clients during the capture (read after it)."),
    ] = None,
    ports: PortsOption = None,
    snaplen: SnaplenOption = None,
    session_number: SessionNumberOption = None,
    fix_sg: Annotated[
        bool,
        typer.Option("--fix-sg", help="Let the sources send VXLAN to the collector for this run only."),
    ] = False,
    batch: Annotated[
        bool,
        typer.Option("--batch", help="More sources than the collector takes: mirror them a batch at a time."),
    ] = False,
    listen: Annotated[
        str, typer.Option("--listen", help="ADDRESS:PORT this machine receives the VXLAN on.")
    ] = "0.0.0.0:4789",
    placement: Annotated[
        Placement,
        typer.Option(
            "--placement",
            help="Where the capture runs: here (this machine is the collector), or on the collector through "
            "SSM (needs --bucket); auto: here when EC2 metadata says this is the collector, else SSM.",
        ),
    ] = Placement.auto,
    bucket: Annotated[
        str | None, typer.Option("--bucket", help="S3 bucket the collector uploads the capture to (SSM).")
    ] = None,
    prefix: Annotated[str, typer.Option("--prefix", help="Key prefix in --bucket.")] = "verifier/captures",
    sse_kms_key: Annotated[
        str | None, typer.Option("--sse-kms-key", help="KMS key for the upload (default: SSE-S3, AES256).")
    ] = None,
    keep_capture: Annotated[
        Path | None,
        typer.Option(
            "--keep-capture",
            help="Keep the pcap in this private directory (SSM: in the bucket too); default: deleted.",
        ),
    ] = None,
    run_id: RunIdOption = None,
    expires_in: ExpiresInOption = 60,
    profile: ProfileOption = None,
    region: RegionOption = None,
    formats: FormatsOption = "table",
    output: OutputOption = None,
    output_dir: OutputDirOption = None,
    fail_on: FailOnOption = FailOn.fail,
    policy_file: PolicyOption = None,
    security_hub: SecurityHubOption = False,
    max_rows: Annotated[int, typer.Option(help="Flows shown in the terminal table.", min=0)] = 40,
) -> None:
    """Mirror ECS tasks' traffic to the collector, capture, tear everything down, and judge every flow."""
    from verifier.run import AnalysisOptions, RunInterrupted, RunRequest, run, terminating_signals

    seconds = _seconds(duration)
    policy, anchors = _policy_and_anchors(policy_file, ca, pca_arn, short_lived, profile, region)
    session, aws_region = _aws(profile, region)
    now = datetime.now(UTC)
    request = RunRequest(
        run_id=run_id or new_run_id(now),
        region=aws_region,
        collector=collector,
        duration=seconds,
        expires_at=now + timedelta(minutes=expires_in),
        cluster=cluster,
        services=tuple(service or ()),
        tasks=tuple(task or ()),
        enis=tuple(eni or ()),
        rds=tuple(rds or ()),
        elasticache=tuple(elasticache or ()),
        ports=tuple(_ports(ports)) if ports else None,
        snaplen=snaplen,
        session_number=session_number,
        fix_sg=fix_sg,
        batch=batch,
    )
    judging = Judging(anchors=anchors, probe_timeout=probe_timeout if probe else None, policy=policy)
    options = AnalysisOptions(keylog=keylog, judging=judging)
    capture = _capture(
        placement, session, request, listen, bucket, prefix, sse_kms_key, keep_remote=keep_capture is not None
    )
    try:
        with (
            _interruptible(),
            terminating_signals(),
            _output_file(output, profile, region, sse_kms_key) as local_output,
            _run_progress(request.run_id) as progress,
        ):
            report = _write_reports(
                parse_formats(formats),
                local_output,
                output_dir,
                max_rows,
                lambda sink: run(
                    session, request, capture, options, progress, sink=sink, keep_capture=keep_capture
                ),
                _security_hub(session, request.region) if security_hub else None,
            )
    except RunInterrupted as exc:
        # A teardown that left something raises TeardownIncomplete (exit 3) instead.
        print(f"verifier: {exc}: stopped; the run's AWS resources were torn down", file=sys.stderr)
        raise typer.Exit(128 + exc.signum) from None
    finish_run(report, fail_on)


@app.command("demo")
def demo_command(
    duration: Annotated[str, typer.Option("--duration", help="How long to capture: 10s, 1m.")] = "10s",
    out: Annotated[
        Path, typer.Option("--out", help="Directory for the JSON report, the key log and run states.")
    ] = Path("verifier-demo"),
    probe: Annotated[
        bool, typer.Option("--probe/--no-probe", help="Probe TLS servers whose chain the capture hides.")
    ] = True,
    max_rows: Annotated[int, typer.Option(help="Flows shown in the terminal table.", min=0)] = 40,
) -> None:
    """The main job on an embedded AWS (moto) with a Linux mirror lab as data plane: no account needed.

    Needs root (network namespaces, VXLAN, tc). Findings are expected: the demo shop leaves plaintext open on
    purpose; the exit code is 0 unless the demo itself failed.
    """
    from verifier.embedded.demo import run_demo  # moto and the lab load only for the demo
    from verifier.run import RunInterrupted, terminating_signals

    seconds = _seconds(duration)
    try:
        with _interruptible(), terminating_signals(), _run_progress("demo") as progress:
            report = run_demo(seconds, out, progress, probe=probe)
    except RunInterrupted as exc:
        print(f"verifier: {exc}: demo stopped; its lab and embedded AWS were taken down", file=sys.stderr)
        raise typer.Exit(128 + exc.signum) from None
    json_path, html_path = out / FILE_NAMES["json"], out / FILE_NAMES["html"]
    with _report_file(json_path) as json_file, _report_file(html_path) as html_file:
        targets = {"table": sys.stdout, "json": json_file, "html": html_file}
        ReportOutputs(targets, max_rows=max_rows, schema_version=SCHEMA_VERSION, console=_console).finish(
            report
        )
    print(f"JSON report: {json_path}\nHTML report: {html_path}\nkey log: {out / 'demo-keys.log'}")
    record = report.run
    if record is not None and not record.teardown_complete:
        finish_run(report, FailOn.fail)
    raise typer.Exit(EXIT_OK)


def _capture(
    placement: Placement,
    session: Any,
    request: Any,
    listen: str,
    bucket: str | None,
    prefix: str,
    sse_kms_key: str | None,
    keep_remote: bool,
) -> Any:
    """The capture of a run: here, or on the collector through SSM Run Command and S3."""
    from verifier.aws.calls import new_client
    from verifier.aws.imds import instance_identity
    from verifier.run import LocalCapture, SsmCapture

    if placement is Placement.auto:
        here = instance_identity()
        if here is not None and here.instance_id == request.collector:
            placement = Placement.collector
        elif bucket is not None:
            placement = Placement.ssm
        else:
            where = f"instance {here.instance_id}" if here is not None else "not an EC2 instance"
            raise UsageError(
                f"this machine ({where}) is not the collector {request.collector}: run verifier on the "
                "collector, or pass --bucket to drive it through SSM from here"
            )
    if placement is Placement.collector:
        return LocalCapture(parse_endpoint(listen))
    if bucket is None:
        raise UsageError("--placement ssm needs --bucket: the collector uploads the capture there")
    return SsmCapture(
        new_client(session, "ssm", request.region),
        new_client(session, "s3", request.region),
        instance_id=request.collector,
        bucket=bucket,
        prefix=prefix,
        run_id=request.run_id,
        kms_key_id=sse_kms_key,
        keep_remote=keep_remote,
    )


def new_run_id(now: datetime) -> str:
    return f"verifier-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def finish_run(report: Report, fail_on: FailOn) -> None:
    """The exit of a run: 3 when the teardown left something behind (said loudly), else findings or not."""
    record = report.run
    if record is not None and not record.teardown_complete:
        left = [
            event.resource_id
            for event in record.resources
            if event.outcome not in ("deleted", "already gone")
        ]
        print(
            f"verifier: error: the teardown left {', '.join(left)}: run `verifier cleanup --run-id "
            f"{record.run_id}`",
            file=sys.stderr,
        )
        raise typer.Exit(EXIT_AWS)
    raise typer.Exit(exit_code(report, fail_on))


class _PhaseLines:
    """Progress for logs and pipes: one line per phase, with the time since the start."""

    def __init__(self, run_id: str) -> None:
        self._run_id = run_id
        self._started = time.monotonic()

    def phase(self, name: str) -> None:
        print(f"verifier: {self._run_id}: {time.monotonic() - self._started:6.1f} s  {name}", file=sys.stderr)

    def packets(self, received: int) -> None:
        pass


class _PhaseStatus:
    """Progress on a terminal: one live line naming the phase, the elapsed time and the packets received."""

    def __init__(self, run_id: str, status: Any) -> None:
        self._run_id = run_id
        self._status = status
        self._started = time.monotonic()
        self._phase = "starting"
        self._packets: int | None = None

    def phase(self, name: str) -> None:
        self._phase = name
        self._show()

    def packets(self, received: int) -> None:
        self._packets = received
        self._show()

    def _show(self) -> None:
        packets = f" · {self._packets} packets" if self._packets is not None else ""
        elapsed = time.monotonic() - self._started
        self._status.update(f"{self._run_id} · {self._phase} · {elapsed:.0f} s{packets}")


@contextmanager
def _run_progress(run_id: str) -> Iterator[_PhaseLines | _PhaseStatus]:
    stderr = Console(stderr=True)
    if not stderr.is_terminal:
        yield _PhaseLines(run_id)
        return
    with stderr.status(run_id) as status:
        yield _PhaseStatus(run_id, status)


@app.command("cleanup")
def cleanup_command(
    run_id: Annotated[
        list[str] | None, typer.Option("--run-id", help="A run to tear down (repeatable).")
    ] = None,
    expired: Annotated[
        bool, typer.Option("--expired", help="Every run whose verifier:expires-at tag has passed.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be deleted; delete nothing.")
    ] = False,
    profile: ProfileOption = None,
    region: RegionOption = None,
) -> None:
    """Delete what earlier runs left (found by tag and by run state file); never an untagged one."""
    from verifier.aws.calls import new_client  # boto3 loads only when AWS is used
    from verifier.aws.cleanup import clean, leftovers
    from verifier.aws.cleanup import expired as expired_runs

    if not run_id and not expired:
        raise UsageError("name runs with --run-id, or pass --expired")
    session, aws_region = _aws(profile, region)
    ec2 = new_client(session, "ec2", aws_region)
    found = leftovers(ec2)
    chosen = list(
        dict.fromkeys([*(run_id or []), *(expired_runs(found, datetime.now(UTC)) if expired else [])])
    )
    if dry_run:
        for name in chosen:
            ids = found[name].resource_ids if name in found else ()
            print(f"{name}: would delete {', '.join(ids) if ids else 'nothing (none left)'}")
        raise typer.Exit(EXIT_OK)
    left = False
    for name, report in clean(ec2, chosen).items():
        print(f"{name}: deleted {len(report.deleted)}, already gone {len(report.already_gone)}")
        for resource_id, why in report.left:
            left = True
            print(f"{name}: still there: {resource_id}: {why}")
    if not chosen:
        print("nothing to clean up")
    raise typer.Exit(EXIT_AWS if left else EXIT_OK)


def _aws(profile: str | None, region: str | None) -> tuple[Any, str]:
    """The boto3 session of --profile/--region and its region (boto3 loads only when AWS is used)."""
    from verifier.aws.calls import new_session

    session = new_session(profile, region)
    aws_region = region or session.region_name
    if not aws_region:
        raise UsageError("no AWS region: pass --region or set one in the AWS config")
    return session, str(aws_region)


def _ports(text: str) -> list[int]:
    try:
        ports = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise UsageError(f"--ports {text!r}: expected numbers separated by commas") from exc
    if not ports or any(not 0 < port < 65536 for port in ports):
        raise UsageError(f"--ports {text!r}: ports are 1 to 65535")
    return ports


def _selection(
    since: str | None, until: str | None, vnis: list[int], addresses: list[str], ports: list[int]
) -> FlowSelection | None:
    if not (since or until or vnis or addresses or ports):
        return None
    networks = []
    for text in addresses:
        try:
            networks.append(ip_network(text, strict=False))
        except ValueError:
            raise UsageError(f"--address {text!r}: expected an address or a CIDR block") from None
    if any(not 0 < port < 65536 for port in ports):
        raise UsageError("--port: ports are 1 to 65535")
    if any(not 0 <= vni < 1 << 24 for vni in vnis):
        raise UsageError("--vni: VNIs are 24-bit numbers")
    return FlowSelection(
        since=_moment("--since", since) if since else None,
        until=_moment("--until", until) if until else None,
        vnis=frozenset(vnis),
        networks=tuple(networks),
        ports=frozenset(ports),
    )


def _moment(option: str, text: str) -> float:
    """Epoch seconds, or an ISO 8601 time (UTC when it names no zone)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected an ISO 8601 time or epoch seconds") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _policy_and_anchors(
    policy_file: Path | None,
    bundle: Path | None,
    pca_arn: str | None,
    short_lived: bool,
    profile: str | None,
    region: str | None,
) -> tuple[Policy | None, TrustAnchors | None]:
    """The policy of --policy, and the anchors: the CA the policy requires, else --ca and --pca-arn."""
    if policy_file is None:
        return None, _anchors(bundle, pca_arn, short_lived, profile, region)
    policy = load_policy(policy_file)
    required = policy.required_pca_arn or policy.required_ca_pem
    if required and (bundle is not None or pca_arn is not None):
        raise UsageError(
            f"{policy_file} requires the CA {required}: --ca and --pca-arn would let other CAs anchor chains"
        )
    if required:
        pem = Path(policy.required_ca_pem) if policy.required_ca_pem else None
        return policy, _anchors(pem, policy.required_pca_arn, short_lived, profile, region)
    return policy, _anchors(bundle, pca_arn, short_lived, profile, region)


collector_app = typer.Typer(
    help="The collector's CloudFormation stacks: instance, evidence bucket, scheduled spot check.",
    no_args_is_help=True,
)
app.add_typer(collector_app, name="collector")
StackNameOption = Annotated[str, typer.Option("--name", help="Stack name prefix.")]


def _cloudformation(profile: str | None, region: str | None) -> Any:
    from verifier.aws.calls import new_client  # boto3 loads only when AWS is used

    session, aws_region = _aws(profile, region)
    return new_client(session, "cloudformation", aws_region)


def _stack_progress(line: str) -> None:
    print(f"verifier: {line}", file=sys.stderr)


@collector_app.command("deploy")
def collector_deploy(
    vpc: Annotated[str, typer.Option("--vpc", help="The VPC of the collector.")],
    subnet: Annotated[str, typer.Option("--subnet", help="A private subnet for the collector.")],
    package: Annotated[
        str, typer.Option("--package", help="What pip installs on the collector (a requirement or URL).")
    ],
    mirror_source_sg: Annotated[
        str | None, typer.Option("--mirror-source-sg", help="Security group of the mirror sources.")
    ] = None,
    mirror_source_cidr: Annotated[
        str | None, typer.Option("--mirror-source-cidr", help="CIDR block of the mirror sources.")
    ] = None,
    instance_type: Annotated[str, typer.Option("--instance-type", help="A Nitro type.")] = "m5.large",
    retention_days: Annotated[
        int, typer.Option("--retention-days", help="Evidence kept this long.", min=1)
    ] = 90,
    cluster: Annotated[
        str | None, typer.Option("--cluster", help="Schedule a spot check of this cluster.")
    ] = None,
    service: Annotated[list[str] | None, typer.Option("--service", help="Spot-checked service.")] = None,
    duration: Annotated[str, typer.Option("--duration", help="Each spot check's capture.")] = "300s",
    schedule: Annotated[
        str, typer.Option("--schedule", help="EventBridge Scheduler expression.")
    ] = "rate(1 day)",
    run_args: Annotated[str, typer.Option("--run-args", help="More `verifier run` options.")] = "",
    alarm_topic_arn: Annotated[
        str | None, typer.Option("--alarm-topic-arn", help="SNS topic for findings (default: a new one).")
    ] = None,
    templates: Annotated[
        Path | None, typer.Option("--templates", help="Directory of the templates (default: infra/).")
    ] = None,
    name: StackNameOption = "verifier",
    profile: ProfileOption = None,
    region: RegionOption = None,
) -> None:
    """Create or update the collector, evidence bucket and (with --cluster) scheduled spot-check stacks."""
    from verifier.aws import collector_stack as stacks

    settings = stacks.CollectorSettings(
        vpc,
        subnet,
        package,
        mirror_source_security_group=mirror_source_sg,
        mirror_source_cidr=mirror_source_cidr,
        instance_type=instance_type,
        retention_days=retention_days,
    )
    spot_check = (
        stacks.SpotCheckSettings(cluster, tuple(service or ()), duration, schedule, run_args, alarm_topic_arn)
        if cluster
        else None
    )
    cfn = _cloudformation(profile, region)
    states = stacks.deploy(
        cfn,
        templates or stacks.default_templates(),
        settings,
        spot_check,
        name=name,
        progress=_stack_progress,
    )
    print("\n".join(stacks.status_lines([(state.name, state) for state in states])))


@collector_app.command("status")
def collector_status(
    name: StackNameOption = "verifier", profile: ProfileOption = None, region: RegionOption = None
) -> None:
    """Each stack's status and outputs."""
    from verifier.aws import collector_stack as stacks

    print("\n".join(stacks.status_lines(stacks.status(_cloudformation(profile, region), name))))


@collector_app.command("destroy")
def collector_destroy(
    evidence: Annotated[
        bool, typer.Option("--evidence", help="Also the evidence stack (its bucket and key are kept).")
    ] = False,
    name: StackNameOption = "verifier",
    profile: ProfileOption = None,
    region: RegionOption = None,
) -> None:
    """Delete the stacks (the spot check and the collector; with --evidence the evidence stack too)."""
    from verifier.aws import collector_stack as stacks

    deleted = stacks.destroy(
        _cloudformation(profile, region), name, evidence=evidence, progress=_stack_progress
    )
    print("deleted: " + (", ".join(deleted) if deleted else "nothing (no stack was there)"))


@app.command("report")
def report_command(
    report_file: Annotated[Path, typer.Argument(help="A JSON report verifier wrote.")],
    formats: FormatsOption = "table",
    output: OutputOption = None,
    output_dir: OutputDirOption = None,
    fail_on: FailOnOption = FailOn.fail,
    max_rows: Annotated[int, typer.Option(help="Flows shown in the terminal table.", min=0)] = 40,
    since: SinceOption = None,
    until: UntilOption = None,
    vni: VniOption = None,
    eni: Annotated[
        list[str] | None,
        typer.Option("--eni", help="Only flows mirrored from this ENI (the run record maps it to its VNI)."),
    ] = None,
    address: AddressOption = None,
    port: PortOption = None,
) -> None:
    """Render a saved JSON report again, in other formats (html, junit, sarif, markdown, ...).

    With --since/--until/--vni/--eni/--address/--port, for a selection of its flows: the summary is
    recounted; declared vs observed and coverage stay the run's.
    """
    from verifier.report.json_report import report_from_dict

    try:
        data = json.loads(report_file.read_bytes())
    except OSError as exc:
        raise InputError(f"{report_file}: cannot read the report: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise InputError(f"{report_file}: not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{report_file}: not a verifier JSON report")
    try:
        saved = report_from_dict(data)
    except InputError as exc:
        raise InputError(f"{report_file}: {exc}") from exc
    vnis = list(vni or [])
    for wanted in eni or []:
        mirrored = [
            source.vni for source in (saved.run.sources if saved.run else ()) if source.eni_id == wanted
        ]
        if not mirrored or mirrored[0] is None:
            raise UsageError(f"--eni {wanted}: the report's run record has no VNI for this ENI")
        vnis.append(mirrored[0])
    selection = _selection(since, until, vnis, address or [], port or [])
    if selection is not None:
        kept = tuple(flow for flow in saved.flows if selection.matches(flow))
        summary = SummaryBuilder()
        for flow in kept:
            summary.add(flow)
        saved = replace(saved, flows=kept, summary=summary.build())
    chosen = parse_formats(formats)
    if "asff" in chosen and (saved.run is None or saved.run.account is None):
        raise UsageError("--format asff needs the AWS account of a run: this report holds no run record")
    with _output_file(output, None, None) as local_output:
        report = _write_reports(chosen, local_output, output_dir, max_rows, lambda sink: saved)
    raise typer.Exit(exit_code(report, fail_on))


policy_app = typer.Typer(help="The policy flows are judged by.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


@policy_app.command("show")
def policy_show() -> None:
    """Print the default policy, as a policy file to start from."""
    print(default_policy_toml(), end="")


def _anchors(
    bundle: Path | None, pca_arn: str | None, short_lived: bool, profile: str | None, region: str | None
) -> TrustAnchors | None:
    """The trust anchors from --ca and/or --pca-arn (both: either may anchor a chain)."""
    found: list[TrustAnchors] = []
    if bundle is not None:
        try:
            data = bundle.read_bytes()
        except OSError as exc:
            raise InputError(f"{bundle}: cannot read the CA bundle: {exc.strerror or exc}") from exc
        try:
            found.append(TrustAnchors.from_pem_bundle(data, short_lived=short_lived))
        except InputError as exc:
            raise InputError(f"{bundle}: {exc}") from exc
    if pca_arn is not None:
        from verifier.aws.calls import new_session  # boto3 loads only when AWS is used
        from verifier.aws.pca import load_pca_anchors

        found.append(load_pca_anchors(new_session(profile, region), pca_arn))
    if not found:
        return None
    return TrustAnchors(
        roots=tuple(der for anchors in found for der in anchors.roots),
        intermediates=tuple(der for anchors in found for der in anchors.intermediates),
        short_lived=short_lived or any(anchors.short_lived for anchors in found),
    )


def _expected_names(pairs: list[str]) -> dict[str, str]:
    """--expect-name HOST:PORT=NAME values, keyed as flow records spell servers ("ip:port", "[v6]:port")."""
    names = {}
    for pair in pairs:
        endpoint, separator, name = pair.rpartition("=")
        if not separator or not name:
            raise UsageError(f"--expect-name {pair!r}: expected HOST:PORT=NAME")
        host, port = parse_endpoint(endpoint)
        names[f"[{host}]:{port}" if ":" in host else f"{host}:{port}"] = name
    return names


def _run(
    files: list[Path], config: AnalyzerConfig, keylog: Path | None, judging: Judging, sink: FlowSink
) -> Report:
    stderr = Console(stderr=True)
    if not stderr.is_terminal:
        return analyze_files(files, config, keylog=keylog, sink=sink, judging=judging)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task("reading", total=None)

        def update(done: int, total: int, path: Path) -> None:
            progress.update(task, completed=done, total=total, description=path.name)

        return analyze_files(files, config, keylog=keylog, progress=update, sink=sink, judging=judging)


@contextmanager
def _interruptible() -> Iterator[None]:
    # Typer turns Ctrl-C into exit 1, which here means "findings"; a user's interrupt is 130, as in shells.
    try:
        yield
    except KeyboardInterrupt:
        print("verifier: interrupted", file=sys.stderr)
        raise typer.Exit(EXIT_INTERRUPTED) from None


@contextmanager
def _paced_gc() -> Iterator[None]:
    """The analysis of a file allocates millions of short-lived objects and leaves no reference cycle
    behind, so the garbage collector's default pace (a pass every 700 allocations) cost about a tenth of the
    run for nothing. Startup objects (modules, classes) are frozen out of its passes altogether."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@contextmanager
def _report_file(output: Path | None) -> Iterator[TextIO]:
    """stdout, or a temporary file beside OUTPUT renamed into place only when the report is complete."""
    if output is None:
        yield sys.stdout
        return
    partial = output.with_name(f".{output.name}.partial")
    try:
        # A large buffer: a report of many flows is tens of MB, written a flow at a time.
        handle = partial.open("w", encoding="utf-8", buffering=1 << 20)
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
    except Exception as exc:
        # A bug: still one line for the user, the traceback for whoever reports it.
        if os.environ.get("VERIFIER_DEBUG"):
            raise
        print(
            f"verifier: internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]} "
            "(VERIFIER_DEBUG=1 shows the traceback; please report it)",
            file=sys.stderr,
        )
        sys.exit(EXIT_INTERNAL)
