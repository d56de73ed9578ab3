"""Offline analysis: capture files -> the core analyser -> a Report. The edge that reads files.

Flow records are handed to a sink as flows finish, so that a writer can stream them out and memory stays
bounded by the open flows; without a sink they are collected into the report.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import chain, islice
from operator import itemgetter
from pathlib import Path

from verifier import __version__
from verifier.core.chains import TrustAnchors
from verifier.core.flows import Analyzer, AnalyzerConfig
from verifier.core.identity import IdentityJudge
from verifier.core.keylog import KeyLog, parse_keylog
from verifier.core.model import CaptureSource, FlowRecord, Report
from verifier.core.policy import Policy, PolicyJudge
from verifier.core.selection import FlowSelection
from verifier.core.summary import SummaryBuilder
from verifier.errors import InputError
from verifier.probe import ProbeResult, ProbeTarget, SocketFactory, parse_endpoint, probe
from verifier.sources.capture_file import CaptureReader, open_capture

SCHEMA_VERSION = "1.0"
PROBE_CONCURRENCY = 8
# Captures open at once when several are merged (well under the usual limit of 1024 open files).
_OPEN_CAPTURES = 256
# Frames handed to the core per call: small enough for lively progress, large enough to cost nothing.
_BATCH = 65536

# (bytes read so far in this file, file size, path) -> None
ProgressCallback = Callable[[int, int, Path], None]
FlowSink = Callable[[FlowRecord], None]
Frame = tuple[float, int, bytes, int]  # timestamp, link type, frame bytes, original length


@dataclass(frozen=True, slots=True)
class Judging:
    """What flows are judged by, beyond the default policy, and which flows the report is about."""

    anchors: TrustAnchors | None = None  # every server chain seen is judged against them
    expected_names: Mapping[str, str] | None = None  # server "ip:port" -> the name its certificate must carry
    # Each TLS server whose chain the capture did not show is probed once (verifier.probe), from where
    # probe_socket makes its sockets, and its flows carry the chain it presents.
    probe_timeout: float | None = None
    probe_socket: SocketFactory = socket.socket
    policy: Policy | None = None  # judged after the chain, with the exceptions in force now
    services: Mapping[str, str] | None = None  # server address -> ECS service, for the policy's rules
    selection: FlowSelection | None = None  # the flows the report is about; the others are dropped


class Pipeline:
    """The analyser and what follows it: chain judgement, probes, summary, and where records go.

    Frames go in (``feed``, any number at a time); ``report`` finishes the flows and builds the Report.
    Used for capture files and for frames arriving live from the collector.
    """

    def __init__(
        self,
        config: AnalyzerConfig | None = None,
        *,
        keylog: KeyLog | None = None,
        sink: FlowSink | None = None,
        judging: Judging | None = None,
    ) -> None:
        judging = judging or Judging()
        self.analyzer = Analyzer(config, keylog=keylog)
        self._selection = judging.selection
        self._collected: list[FlowRecord] = []
        self._deliver = sink or self._collected.append
        self._summary = SummaryBuilder()
        certificates = self.analyzer.certificates
        self._identity = (
            IdentityJudge(judging.anchors, certificates, judging.expected_names)
            if judging.anchors is not None
            else None
        )
        self.policy = (
            PolicyJudge(judging.policy, certificates, time.time(), judging.services)
            if judging.policy is not None
            else None
        )
        self._prober = (
            _Prober(judging.probe_timeout, certificates, self._emit, judging.probe_socket)
            if judging.probe_timeout is not None
            else None
        )

    def feed(self, frames: Iterable[tuple[float, int, bytes, int]]) -> None:
        self.analyzer.feed(frames)
        self._drain(final=False)

    def report(self, captures: Sequence[CaptureSource], keylog: Path | None = None) -> Report:
        self.analyzer.finish()
        self._drain(final=True)
        self._collected.sort(key=lambda flow: (flow.first_seen, flow.client, flow.server))
        return Report(
            schema_version=SCHEMA_VERSION,
            tool_version=__version__,
            captures=tuple(captures),
            keylog=str(keylog) if keylog is not None else None,
            flows=tuple(self._collected),
            certificates=dict(self.analyzer.certificates),
            summary=self._summary.build(),
            coverage=self.analyzer.coverage(),
            policy_exceptions=self.policy.outcomes() if self.policy is not None else (),
        )

    def _emit(self, record: FlowRecord, at: float | None = None) -> None:
        if self._identity is not None:
            record = self._identity.apply(record, at)
        if self.policy is not None:
            record = self.policy.apply(record)
        self._summary.add(record)
        self._deliver(record)

    def _drain(self, *, final: bool) -> None:
        for record in self.analyzer.drain():
            if self._selection is not None and not self._selection.matches(record):
                continue
            if self._prober is not None:
                self._prober.take(record)
            else:
                self._emit(record)
        if self._prober is not None:
            self._prober.release(wait=final)


def analyze_files(
    paths: Sequence[Path],
    config: AnalyzerConfig | None = None,
    *,
    keylog: Path | None = None,
    progress: ProgressCallback | None = None,
    sink: FlowSink | None = None,
    judging: Judging | None = None,
) -> Report:
    """Analyse capture files as one body of traffic and return the report. Several captures are merged by
    time (each in its own order), so a connection seen by several collectors, or cut across rotated files,
    is one flow.

    With a ``sink``, every flow record goes to it as its flow ends and ``Report.flows`` is empty; the summary
    still counts every flow (every selected one, see Judging.selection), coverage every frame.
    """
    given_secrets = _read_keylog(keylog) if keylog is not None else b""
    pipeline = Pipeline(
        config,
        keylog=parse_keylog(given_secrets) if given_secrets else None,
        sink=sink,
        judging=judging,
    )
    analyzer = pipeline.analyzer
    sources: list[CaptureSource] = []
    embedded: dict[Path, bytes] = {}  # each capture's Decryption Secrets Blocks so far
    done, total = 0, sum(_size(path) for path in paths)
    # Merged in groups of files open together, one group after the other: thousands of rotated files never
    # hit the limit on open files, and rotated files follow each other in time anyway.
    for start in range(0, len(paths), _OPEN_CAPTURES):
        group = paths[start : start + _OPEN_CAPTURES]
        with contextlib.ExitStack() as opened:
            captures = [opened.enter_context(open_capture(path)) for path in group]
            frames, counts = _merged(captures)
            frames_before = analyzer.frames
            # Reading the first frame reads the blocks before it: pcapng puts Decryption Secrets Blocks ahead
            # of the packets they decrypt (and the merge reads the first frame of every capture).
            first = list(islice(frames, 1))
            while True:
                if any(
                    embedded.get(path, b"") != c.tls_key_log for path, c in zip(group, captures, strict=True)
                ):
                    embedded.update((path, c.tls_key_log) for path, c in zip(group, captures, strict=True))
                    analyzer.keylog = parse_keylog(b"\n".join((given_secrets, *embedded.values())))
                count = analyzer.frames
                pipeline.feed(chain(first, islice(frames, _BATCH - len(first))))
                first = []
                if progress is not None:
                    label = paths[0] if len(paths) == 1 else Path(f"{len(paths)} captures")
                    progress(done + sum(capture.bytes_read for capture in captures), total, label)
                if analyzer.frames - count < _BATCH:
                    break
            done += sum(capture.size for capture in captures)
            sources += [
                CaptureSource(
                    path=str(path),
                    format=capture.format,
                    compressed=capture.compressed,
                    size=capture.size,
                    sha256=capture.sha256,
                    frames=counts[index] if len(captures) > 1 else analyzer.frames - frames_before,
                )
                for index, (path, capture) in enumerate(zip(group, captures, strict=True))
            ]
    return pipeline.report(sources, keylog)


class _Prober:
    """Probe each TLS server whose chain the capture did not show, once, in the background.

    Records wait (in order) only until their own server's probe is done, so the analysis still streams.
    """

    def __init__(
        self,
        timeout: float,
        certificates: dict[str, bytes],
        emit: Callable[[FlowRecord, float | None], None],
        make_socket: SocketFactory,
    ) -> None:
        self._timeout = timeout
        self._make_socket = make_socket
        self._certificates = certificates
        self._emit = emit
        self._pool = ThreadPoolExecutor(max_workers=PROBE_CONCURRENCY, thread_name_prefix="probe")
        self._probes: dict[ProbeTarget, Future[tuple[ProbeResult, float]]] = {}
        self._waiting: deque[tuple[FlowRecord, Future[tuple[ProbeResult, float]] | None]] = deque()

    def take(self, record: FlowRecord) -> None:
        future = None
        if record.tls_version is not None and not record.server_certificates:
            host, port = parse_endpoint(record.server)
            target = ProbeTarget(host, port, record.sni, record.upgrade_from)
            future = self._probes.get(target)
            if future is None:
                future = self._pool.submit(_timed_probe, target, self._timeout, self._make_socket)
                self._probes[target] = future
        self._waiting.append((record, future))

    def release(self, *, wait: bool) -> None:
        while self._waiting:
            record, future = self._waiting[0]
            if future is not None and not future.done() and not wait:
                return
            self._waiting.popleft()
            if future is None:
                self._emit(record, None)
            else:
                result, probed_at = future.result()
                self._emit(self._with_probe(record, result), probed_at)
        if wait:
            self._pool.shutdown()

    def _with_probe(self, record: FlowRecord, result: ProbeResult) -> FlowRecord:
        if not result.certificates:
            return replace(record, chain_note=f"{record.chain_note}; probe: {result.error}")
        digests = []
        for der in result.certificates:
            digest = hashlib.sha256(der).hexdigest()
            self._certificates.setdefault(digest, der)
            digests.append(digest)
        seen = f"{result.tls_version or 'no completed handshake'}, {result.cipher_suite or 'no cipher'}"
        note = f"presented to a probe from this machine ({seen}), not necessarily to this connection"
        if not result.chain_complete:
            note += "; leaf only: this Python cannot read the rest of the chain"
        return replace(record, server_certificates=tuple(digests), chain_source="probe", chain_note=note)


def _timed_probe(
    target: ProbeTarget, timeout: float, make_socket: SocketFactory
) -> tuple[ProbeResult, float]:
    result = probe(target, timeout=timeout, make_socket=make_socket)
    return result, time.time()


def _merged(captures: Sequence[CaptureReader]) -> tuple[Iterator[Frame], list[int]]:
    """The frames of every capture in time order, and the frames taken from each so far (several captures
    only: one capture is read as it is, at no cost per frame)."""
    counts = [0] * len(captures)
    if len(captures) == 1:
        return captures[0].frames(), counts

    def counted(index: int, frames: Iterator[Frame]) -> Iterator[Frame]:
        for frame in frames:
            counts[index] += 1
            yield frame

    streams = [counted(index, capture.frames()) for index, capture in enumerate(captures)]
    return heapq.merge(*streams, key=itemgetter(0)), counts


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # open_capture says what is wrong with it


def _read_keylog(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the key log: {exc.strerror or exc}") from exc
