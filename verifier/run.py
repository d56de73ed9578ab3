"""`verifier run`: resolve -> plan -> create -> capture -> teardown -> analyse -> declared vs observed.

The one promise that outranks the report: everything the run creates in the account is deleted before the
process ends, on success, on an error, on Ctrl-C (SIGINT), SIGTERM and SIGHUP. Every create is recorded in
the run state before it is made (verifier.aws.runstate), so even SIGKILL leaves something `verifier cleanup
--run-id` can finish.

Signals: during the capture, SIGINT ends the capture early and the run goes on to teardown and the report
(the operator has seen enough); SIGTERM and SIGHUP end the capture, tear down and stop with exit 128+n.
Outside the capture every one of them aborts what is in progress (RunInterrupted), and the teardown runs.
While the teardown runs, signals are noted and ignored: half a teardown is the outcome to avoid.

The capture is written to a pcap in a private directory (mode 0700, file 0600) and analysed after the
teardown, so mirroring stops as early as possible, a key log written during the capture can be used, and
both placements (here, or on the collector through SSM) end in the same analysis. The pcap is deleted after
the analysis unless the operator asked to keep it.
"""

from __future__ import annotations

import contextlib
import math
import re
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from verifier.analysis import FlowSink, Judging, analyze_files
from verifier.aws.caller import caller_identity
from verifier.aws.calls import new_client
from verifier.aws.collector_instance import CollectorInstance, describe_collector
from verifier.aws.mirroring import Created, MirrorPlan, Target, TeardownReport, create, teardown
from verifier.aws.planning import PlanOutcome, plan_run
from verifier.aws.remote_capture import (
    UPLOAD_ALLOWANCE,
    cancel_remote_collect,
    capture_key,
    check_bucket_writable,
    check_ssm_managed,
    collect_command_line,
    delete_capture,
    download_capture,
    start_remote_collect,
    wait_remote_collect,
)
from verifier.aws.runstate import RunState, start
from verifier.aws.security_groups import fix_vxlan_ingress
from verifier.core.declared import DeclaredVsObserved
from verifier.core.flows import AnalyzerConfig
from verifier.core.model import CollectorCoverage, FlowRecord, Report, ResourceEvent, RunRecord, SourceOutcome
from verifier.core.targets import MirrorSource
from verifier.errors import AwsError, UsageError
from verifier.sources.collector import Collector, CollectorLimits, CollectorStats

VXLAN_PORT = 4789
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class RunInterrupted(BaseException):  # not an error: the operator or a scheduler asked
    """A signal ended the run; the teardown has run (or is running) by the time anyone sees this."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class TeardownIncomplete(AwsError):
    """The teardown left resources in the account (or could not even look for them). Raised instead of what
    ended the run (a failure or a signal), which it names: the leftovers matter more."""

    def __init__(self, run_id: str, left: Sequence[str], why: str, failure: BaseException | None) -> None:
        what = ", ".join(left) if left else "what the run created"
        after = f" (the run had stopped: {_describe(failure)})" if failure is not None else ""
        super().__init__(
            f"the teardown left {what} in the account: {why}{after}; "
            f"run `verifier cleanup --run-id {run_id}` to finish it"
        )


def _describe(failure: BaseException) -> str:
    if isinstance(failure, RunInterrupted):
        return f"{failure} received"
    return f"{type(failure).__name__}: {' '.join(str(failure).split())[:200]}"


@dataclass(frozen=True, slots=True)
class RunRequest:
    run_id: str
    region: str
    collector: str  # the collector's instance id: its primary ENI is the mirror target
    duration: float  # seconds of capture
    expires_at: datetime  # after this, `verifier cleanup --expired` may delete what the run left
    cluster: str | None = None
    services: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    enis: tuple[str, ...] = ()
    rds: tuple[str, ...] = ()  # DB instance ids: their ENIs, so that connections into the database are seen
    elasticache: tuple[str, ...] = ()  # cache cluster ids
    ports: tuple[int, ...] | None = None
    snaplen: int | None = None
    session_number: int | None = None
    fix_sg: bool = False
    batch: bool = False  # more sources than the collector takes: mirror them a batch at a time


@dataclass(frozen=True, slots=True)
class AnalysisOptions:
    config: AnalyzerConfig | None = None
    keylog: Path | None = None  # read after the capture: a client may write it while traffic flows
    judging: Judging = field(default_factory=Judging)  # the run adds the mirrored services


@dataclass(frozen=True, slots=True)
class CaptureResult:
    files: tuple[Path, ...]
    stats: CollectorCoverage | None  # None: the placement cannot say (the analysis still counts frames)
    complete: bool = True  # False: the capture was cancelled and holds nothing to judge


class Capture(Protocol):
    """Where the mirrored VXLAN is received: on this machine, or on the collector through SSM."""

    placement: str  # "collector" or "ssm"

    def check(self) -> None:
        """Fail now, before any AWS resource exists, if the capture cannot happen."""
        ...

    def close(self) -> None:
        """Release what ``check`` took, if ``run`` did not."""
        ...

    def run(self, duration: float, out: Path, stop: threading.Event, progress: Progress) -> CaptureResult:
        """Capture for ``duration`` seconds (less when ``stop`` is set) into the pcap ``out`` (rotation may
        add more files beside it: the result names them all)."""
        ...


class Progress(Protocol):
    def phase(self, name: str) -> None: ...

    def packets(self, received: int) -> None: ...


class LocalCapture:
    """This machine is the collector: listen for VXLAN here (UDP 4789 on every address by default)."""

    placement = "collector"

    def __init__(self, listen: tuple[str, int] | Callable[[], Any] = ("0.0.0.0", VXLAN_PORT)) -> None:
        # A callable opens a bound UDP socket itself (the mirror lab opens it in its collector namespace).
        self._listen = listen
        self._socket: socket.socket | None = None

    def check(self) -> None:
        """Bind the socket now: a port already in use is found before anything is created."""
        if callable(self._listen):
            self._socket = self._listen()
            return
        family = socket.AF_INET6 if ":" in self._listen[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind(self._listen)
        except OSError as exc:
            sock.close()
            host, port = self._listen
            raise UsageError(f"cannot listen for VXLAN on {host}:{port}: {exc.strerror or exc}") from exc
        self._socket = sock

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()

    def run(self, duration: float, out: Path, stop: threading.Event, progress: Progress) -> CaptureResult:
        received = [0]

        def count(_timestamp: float, _link_type: int, _frame: bytes, _length: int) -> None:
            received[0] += 1

        if self._socket is None:
            self.check()
        assert self._socket is not None
        collector = Collector(self._socket, out=out, on_frame=count)
        self._socket = None  # the collector's now: its run closes it
        outcome: list[CollectorStats] = []
        failure: list[BaseException] = []

        def receive() -> None:
            try:
                outcome.append(collector.run(CollectorLimits(duration, None, None), stop))
            except BaseException as exc:  # handed to the main thread, which reports it
                failure.append(exc)

        # The main thread stays free for signals and the progress display.
        worker = threading.Thread(target=receive, name="collector", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.25)
                progress.packets(received[0])
        finally:
            stop.set()
            worker.join()
        if failure:
            raise failure[0]
        stats = outcome[0]
        progress.packets(stats.datagrams)
        return CaptureResult(files=tuple(Path(name) for name in stats.files), stats=stats.coverage())


class _Stopped(Exception):
    """A signal asked the capture to end while it was waiting on the remote collector."""


# The summary `verifier collect` prints at its end (verifier.cli.collect_command), as SSM returns it.
_COLLECTED = re.compile(
    r"collected (?P<datagrams>\d+) datagrams, (?P<bytes>\d+) bytes in [\d.]+ s "
    r"\((?P<reason>[a-z]+)\), kernel drops (?P<drops>\d+|not reported here), "
    r"from (?P<started>[\d.]+) to (?P<ended>[\d.]+)"
)


def remote_collector_coverage(standard_error: str) -> CollectorCoverage | None:
    """The remote collector's counts and time window from its summary line; None when the line is not there
    (SSM keeps only the last 8000 characters of stderr)."""
    summaries = list(_COLLECTED.finditer(standard_error))
    if not summaries:
        return None
    found = summaries[-1]
    drops = found["drops"]
    return CollectorCoverage(
        datagrams=int(found["datagrams"]),
        bytes=int(found["bytes"]),
        kernel_drops=int(drops) if drops.isdigit() else None,
        started=float(found["started"]),
        ended=float(found["ended"]),
        stop_reason=found["reason"],
    )


class SsmCapture:
    """From an operator's machine: `verifier collect` runs on the collector through SSM Run Command, uploads
    the pcap to S3 (server-side encrypted) and this machine downloads it. ``check`` runs before anything is
    created, so a collector without an SSM agent or an unwritable bucket costs no mirror session."""

    placement = "ssm"

    def __init__(
        self,
        ssm: Any,
        s3: Any,
        *,
        instance_id: str,
        bucket: str,
        prefix: str,
        run_id: str,
        kms_key_id: str | None,
        keep_remote: bool = False,
    ) -> None:
        """``keep_remote``: leave the uploaded capture in the bucket (else it is deleted once downloaded)."""
        self._ssm, self._s3 = ssm, s3
        self._instance_id, self._bucket, self._prefix = instance_id, bucket, prefix
        self._run_id, self._kms_key_id, self._keep_remote = run_id, kms_key_id, keep_remote

    def check(self) -> None:
        check_ssm_managed(self._ssm, self._instance_id)
        check_bucket_writable(self._s3, self._bucket, self._prefix, self._kms_key_id)

    def close(self) -> None:
        pass

    def run(self, duration: float, out: Path, stop: threading.Event, progress: Progress) -> CaptureResult:
        seconds = max(1, math.ceil(duration))
        line = collect_command_line(
            self._run_id, self._bucket, self._prefix, seconds, kms_key_id=self._kms_key_id
        )
        command_id = start_remote_collect(self._ssm, self._instance_id, line, seconds, self._run_id)

        def sleep(interval: float) -> None:
            if stop.wait(interval):
                raise _Stopped

        try:
            result = wait_remote_collect(
                self._ssm,
                command_id,
                self._instance_id,
                time.monotonic() + seconds + UPLOAD_ALLOWANCE,
                sleep=sleep,
                on_poll=lambda status: progress.phase(f"remote capture on {self._instance_id}: {status}"),
            )
        except _Stopped:
            # collect has no way to be told "stop early and upload": cancelling it loses the capture.
            cancel_remote_collect(self._ssm, command_id, self._instance_id)
            progress.phase("remote capture cancelled: nothing to analyse")
            return CaptureResult((), None, complete=False)
        progress.phase("downloading the capture")
        key = capture_key(self._prefix, self._run_id)
        download_capture(self._s3, self._bucket, key, out)
        if not self._keep_remote:  # it may hold plaintext secrets: it lives on here, or nowhere
            delete_capture(self._s3, self._bucket, key)
        return CaptureResult((out,), remote_collector_coverage(result.standard_error))


@dataclass(slots=True)
class _Signals:
    """What the signal handlers do, by phase (see the module doc)."""

    stop_capture: threading.Event
    phase: str = "prepare"
    received: int | None = None  # the first signal that asked the run to end

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is None or signum != signal.SIGINT:  # SIGTERM and SIGHUP outrank a Ctrl-C
            self.received = signum
        if self.phase == "teardown":
            return  # noted, acted on once the teardown is over: half a teardown is the outcome to avoid
        if self.phase == "capture":
            self.stop_capture.set()
            return
        raise RunInterrupted(signum)


@contextlib.contextmanager
def _signal_handlers(signals: _Signals) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may install signal handlers: elsewhere the embedding program does
        return
    previous = {number: signal.signal(number, signals.handle) for number in _SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def terminating_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise RunInterrupted (as Ctrl-C raises KeyboardInterrupt), so that the cleanups of
    what surrounds a run (the demo's lab, an embedded AWS) run on them too. run() handles them itself."""

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise RunInterrupted(signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, interrupt) for number in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def run(
    session: Any,  # a boto3 Session (only verifier.aws imports boto3)
    request: RunRequest,
    capture: Capture,
    analysis: AnalysisOptions,
    progress: Progress,
    *,
    sink: FlowSink | None = None,
    keep_capture: Path | None = None,
) -> Report:
    """The whole run; returns the report (flows go to ``sink`` as they are judged, when given). Raises
    RunInterrupted when SIGTERM or SIGHUP (any of the three outside the capture) ended it, after the
    teardown. ``keep_capture``: a directory to keep the pcap in, else it is deleted after the analysis."""
    started_at = _now()
    stop = threading.Event()
    signals = _Signals(stop)
    ec2 = new_client(session, "ec2", request.region)
    with (
        _signal_handlers(signals),
        _capture_directory(keep_capture) as directory,
        contextlib.closing(capture),
    ):
        progress.phase("resolving targets")
        caller = caller_identity(new_client(session, "sts", request.region))
        collector = describe_collector(ec2, request.collector)
        outcome = plan_run(
            session,
            region=request.region,
            run_id=request.run_id,
            target=Target("network-interface", collector.eni_id),
            expires_at=request.expires_at,
            cluster=request.cluster,
            services=request.services,
            tasks=request.tasks,
            enis=request.enis,
            rds=request.rds,
            elasticache=request.elasticache,
            ports=request.ports,
            snaplen=request.snaplen,
            session_number=request.session_number,
            batch=request.batch,
        )
        _refuse_what_cannot_work(outcome, collector, request.fix_sg)
        capture.check()
        batches: list[_Batch] = []
        for number, plan in enumerate(outcome.plans, start=1):
            if len(outcome.plans) > 1:
                progress.phase(f"batch {number} of {len(outcome.plans)}: {len(plan.sessions)} sources")
            batches.append(
                _mirror_and_capture(ec2, plan, outcome, request, capture, directory, signals, progress)
            )
            if signals.received is not None:
                break  # Ctrl-C ended this batch's capture: enough; the report says which sources were seen
        progress.phase("analysing")
        declared = DeclaredVsObserved(outcome.declarations, outcome.sources)

        def judged(record: FlowRecord) -> None:
            declared.add(record)
            (sink or collected.append)(record)

        collected: list[FlowRecord] = []
        report = analyze_files(
            [path for batch in batches for path in batch.captured.files],
            analysis.config,
            keylog=analysis.keylog,
            sink=judged,
            judging=replace(analysis.judging, services=_services(outcome.sources)),
        )
        received = _combined([batch.captured.stats for batch in batches])
        record = RunRecord(
            run_id=request.run_id,
            region=request.region,
            caller_arn=caller.arn,
            account=caller.account,
            started_at=started_at,
            ended_at=_now(),
            placement=capture.placement,
            cluster=request.cluster,
            services=tuple(sorted({s.service_name for s in outcome.sources if s.service_name})),
            target=f"network-interface {collector.eni_id} ({collector.instance_id})",
            duration_seconds=(
                received.ended - received.started if received is not None else request.duration * len(batches)
            ),
            sources=_source_outcomes(outcome, batches),
            risks=tuple(risk for batch in batches for risk in batch.plan.risks),
            resources=tuple(event for batch in batches for event in batch.resources()),
            teardown_complete=not any(batch.torn.left for batch in batches),
        )
        return replace(
            report,
            flows=tuple(sorted(collected, key=lambda flow: (flow.first_seen, flow.client, flow.server))),
            coverage=replace(report.coverage, collector=received),
            run=record,
            declared=declared.rows(),
        )


@dataclass(slots=True)
class _Batch:
    """One plan's mirror, created, captured and torn down (several when --batch splits the sources)."""

    plan: MirrorPlan
    state: RunState
    created: Created | None
    captured: CaptureResult
    torn: TeardownReport
    deleted_at: dict[str, str]

    def resources(self) -> tuple[ResourceEvent, ...]:
        left = dict(self.torn.left)
        return tuple(
            ResourceEvent(
                resource_id=step.resource_id,
                kind=step.kind,
                created_at=step.created_at,
                deleted_at=self.deleted_at.get(step.resource_id),
                outcome=_outcome(step.resource_id, self.torn.deleted, self.torn.already_gone, left),
            )
            for step in self.state.steps
            if step.resource_id is not None
        )


def _mirror_and_capture(
    ec2: Any,
    plan: MirrorPlan,
    outcome: PlanOutcome,
    request: RunRequest,
    capture: Capture,
    directory: Path,
    signals: _Signals,
    progress: Progress,
) -> _Batch:
    """Create the plan's mirror, capture, and tear it down whatever happens; raise what ended it early."""
    state = start(plan.run_id)
    created: Created | None = None
    deleted_at: dict[str, str] = {}
    captured: CaptureResult | None = None
    failure: BaseException | None = None
    signals.stop_capture.clear()
    try:
        progress.phase("creating the mirror")
        if outcome.vxlan_ingress is not None and outcome.vxlan_ingress.missing:
            fix_vxlan_ingress(
                ec2, outcome.vxlan_ingress, run_id=plan.run_id, expires_at=request.expires_at, state=state
            )
        created = create(ec2, plan, state)
        if not created.mirrored:
            raise UsageError(
                "AWS mirrors none of the sources: "
                + "; ".join(f"{eni}: {why}" for eni, why in created.not_mirrorable)
            )
        signals.phase = "capture"  # before saying so: a Ctrl-C on seeing the line ends the capture
        progress.phase(f"capturing on {request.collector} ({capture.placement})")
        captured = capture.run(
            request.duration, directory / f"{plan.run_id}.pcap", signals.stop_capture, progress
        )
    except BaseException as exc:  # the teardown runs first; then it is raised again
        failure = exc
    signals.phase = "teardown"
    progress.phase("tearing down")
    try:
        torn = teardown(ec2, state, on_deleted=lambda resource_id: deleted_at.update({resource_id: _now()}))
    except AwsError as exc:
        raise TeardownIncomplete(plan.run_id, [], str(exc), failure) from exc
    signals.phase = "prepare"
    if torn.left and (failure is not None or signals.received not in (None, signal.SIGINT)):
        raise TeardownIncomplete(
            plan.run_id, [resource for resource, _ in torn.left], torn.left[0][1], failure
        )
    if failure is not None:
        raise failure
    if signals.received is not None and signals.received != signal.SIGINT:
        raise RunInterrupted(signals.received)
    assert captured is not None  # the try block ran to its end
    if not captured.complete:  # the remote capture was cancelled: there is nothing to judge
        raise RunInterrupted(signals.received or signal.SIGINT)
    return _Batch(plan, state, created, captured, torn, deleted_at)


def _combined(received: Sequence[CollectorCoverage | None]) -> CollectorCoverage | None:
    """What the collector received over every batch; None when a placement could not say for one."""
    if not received or any(stats is None for stats in received):
        return None
    known = [stats for stats in received if stats is not None]
    if len(known) == 1:
        return known[0]
    drops = [stats.kernel_drops for stats in known]
    return CollectorCoverage(
        datagrams=sum(stats.datagrams for stats in known),
        bytes=sum(stats.bytes for stats in known),
        kernel_drops=None if None in drops else sum(drop for drop in drops if drop is not None),
        started=min(stats.started for stats in known),
        ended=max(stats.ended for stats in known),
        stop_reason=known[-1].stop_reason,
    )


def _services(sources: Sequence[MirrorSource]) -> dict[str, str]:
    """Server address -> ECS service, for the policy's rules and exceptions that name a service."""
    return {
        source.private_ip: source.service_name
        for source in sources
        if source.private_ip and source.service_name
    }


def _refuse_what_cannot_work(outcome: PlanOutcome, collector: CollectorInstance, fix_sg: bool) -> None:
    if not outcome.sources:
        raise UsageError("nothing to mirror: the cluster, services or tasks named have no running task")
    reachability = outcome.vxlan_ingress
    if reachability is not None and reachability.missing and not fix_sg:
        raise UsageError(
            f"the security groups of the collector {collector.instance_id} "
            f"({', '.join(reachability.groups)}) drop VXLAN (UDP {VXLAN_PORT}) from "
            f"{', '.join(reachability.missing)}: allow it, or pass --fix-sg to add a rule for this run only"
        )


def _outcome(resource_id: str, deleted: Sequence[str], gone: Sequence[str], left: dict[str, str]) -> str:
    if resource_id in deleted:
        return "deleted"
    if resource_id in gone:
        return "already gone"
    return left.get(resource_id, "not deleted: run `verifier cleanup --run-id` for this run")


def _source_outcomes(outcome: PlanOutcome, batches: Sequence[_Batch]) -> tuple[SourceOutcome, ...]:
    created = [batch.created for batch in batches if batch.created is not None]
    sessions = {eni: session for done in created for eni, session in done.mirrored}
    vnis = {session: vni for done in created for session, vni in done.vni_of_session}
    refused = {eni: why for plan in outcome.plans for eni, why in plan.unmirrorable}
    refused.update((eni, why) for done in created for eni, why in done.not_mirrorable)
    return tuple(
        SourceOutcome(
            eni_id=source.eni_id,
            kind=source.kind,
            service=source.service_name,
            task_arn=source.task_arn,
            private_ip=source.private_ip,
            eligibility=source.eligibility,
            eligibility_reason=source.eligibility_reason,
            session_id=sessions.get(source.eni_id),
            vni=vnis.get(sessions.get(source.eni_id, "")),
            refused=refused.get(source.eni_id),
            fallbacks=source.fallbacks,
        )
        for source in outcome.sources
    )


@contextlib.contextmanager
def _capture_directory(keep: Path | None) -> Iterator[Path]:
    """Where the capture is written: ``keep`` (created 0700), or a private temporary directory deleted after
    the analysis: the pcap may hold plaintext secrets."""
    if keep is not None:
        keep.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = keep.stat().st_mode & 0o777
        if mode & 0o077:
            raise UsageError(
                f"--keep-capture {keep}: others may read this directory (mode {mode:o}); captures may hold "
                "plaintext secrets: give a private (0700) directory"
            )
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="verifier-run-") as name:
        yield Path(name)


class SilentProgress:
    def phase(self, name: str) -> None:
        pass

    def packets(self, received: int) -> None:
        pass
