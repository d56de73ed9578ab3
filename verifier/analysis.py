"""Offline analysis: capture files -> the core analyser -> a Report. The edge that reads files.

Flow records are handed to a sink as flows finish, so that a writer can stream them out and memory stays
bounded by the open flows; without a sink they are collected into the report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain, islice
from pathlib import Path

from verifier import __version__
from verifier.core.chains import TrustAnchors
from verifier.core.flows import Analyzer, AnalyzerConfig
from verifier.core.identity import IdentityJudge
from verifier.core.keylog import parse_keylog
from verifier.core.model import CaptureSource, FlowRecord, Report
from verifier.core.summary import SummaryBuilder
from verifier.errors import InputError
from verifier.sources.capture_file import open_capture

SCHEMA_VERSION = "1.0"
# Frames handed to the core per call: small enough for lively progress, large enough to cost nothing.
_BATCH = 65536

# (bytes read so far in this file, file size, path) -> None
ProgressCallback = Callable[[int, int, Path], None]
FlowSink = Callable[[FlowRecord], None]


def analyze_files(
    paths: Sequence[Path],
    config: AnalyzerConfig | None = None,
    *,
    keylog: Path | None = None,
    progress: ProgressCallback | None = None,
    sink: FlowSink | None = None,
    anchors: TrustAnchors | None = None,
) -> Report:
    """Analyse capture files as one body of traffic and return the report.

    With a ``sink``, every flow record goes to it as its flow ends and ``Report.flows`` is empty; the summary
    and coverage still count every flow. With ``anchors``, every server chain seen is judged against them.
    """
    given_secrets = _read_keylog(keylog) if keylog is not None else b""
    analyzer = Analyzer(config, keylog=parse_keylog(given_secrets) if given_secrets else None)
    embedded_secrets = b""
    collected: list[FlowRecord] = []
    deliver = sink or collected.append
    summary = SummaryBuilder()
    identity = IdentityJudge(anchors, analyzer.certificates) if anchors is not None else None

    def drain() -> None:
        for record in analyzer.drain():
            if identity is not None:
                record = identity.apply(record)
            summary.add(record)
            deliver(record)

    sources = []
    for path in paths:
        with open_capture(path) as capture:
            frames = capture.frames()
            frames_before = analyzer.frames
            # Reading the first frame reads the blocks before it: pcapng puts Decryption Secrets Blocks
            # ahead of the packets they decrypt.
            first = list(islice(frames, 1))
            while True:
                if capture.tls_key_log and not embedded_secrets.endswith(capture.tls_key_log):
                    embedded_secrets += b"\n" + capture.tls_key_log
                    analyzer.keylog = parse_keylog(given_secrets + embedded_secrets)
                count = analyzer.frames
                analyzer.feed(chain(first, islice(frames, _BATCH - len(first))))
                first = []
                drain()
                if progress is not None:
                    progress(capture.bytes_read, capture.size, path)
                if analyzer.frames - count < _BATCH:
                    break
            sources.append(
                CaptureSource(
                    path=str(path),
                    format=capture.format,
                    compressed=capture.compressed,
                    size=capture.size,
                    sha256=capture.sha256,
                    frames=analyzer.frames - frames_before,
                )
            )
    analyzer.finish()
    drain()
    collected.sort(key=lambda flow: (flow.first_seen, flow.client, flow.server))
    return Report(
        schema_version=SCHEMA_VERSION,
        tool_version=__version__,
        captures=tuple(sources),
        keylog=str(keylog) if keylog is not None else None,
        flows=tuple(collected),
        certificates=dict(analyzer.certificates),
        summary=summary.build(),
        coverage=analyzer.coverage(),
    )


def _read_keylog(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the key log: {exc.strerror or exc}") from exc
