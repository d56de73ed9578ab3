"""`verifier collect` as a user runs it: a real process receiving VXLAN on loopback, writing and analysing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.report_schema import valid_report
from tests.traffic import tcp_frames
from verifier.analysis import analyze_files
from verifier.run import remote_collector_coverage

LISTEN = ("127.0.0.77", 4789)  # the analyser decodes VXLAN on its IANA port
HTTP = [
    (True, b"GET /card HTTP/1.1\r\nHost: pay\r\n\r\n"),
    (False, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
]


def _port_free() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(LISTEN)
        except OSError:
            return False
    return True


def test_collect_writes_a_private_pcap_and_analyses_live(tmp_path: Path) -> None:
    if not _port_free():
        pytest.skip(f"{LISTEN} is in use")
    out = tmp_path / "run.pcap"
    frames = [frame for _, _, frame, _ in tcp_frames(HTTP)]
    command = [sys.executable, "-c", "from verifier.cli import main; main()", "collect"]
    arguments = ["--listen", f"{LISTEN[0]}:{LISTEN[1]}", "--packets", str(len(frames)), "--out", str(out)]
    process = subprocess.Popen(
        [*command, *arguments, "--analyze", "--format", "json", "--duration", "20s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for _ in range(100):  # bounded: wait up to ~10 s for the collector to bind
                if _bound():
                    break
                time.sleep(0.1)
            for frame in frames:  # VXLAN: flags with I set, VNI 77, then the mirrored Ethernet frame
                sender.sendto(b"\x08\x00\x00\x00" + (77).to_bytes(3) + b"\x00" + frame, LISTEN)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 1, stderr  # cleartext seen: findings
    assert f"collected {len(frames)} datagrams" in stderr and "(packets)" in stderr
    # What `verifier run` reads back from a collector run through SSM (its stderr is all SSM returns).
    counted = remote_collector_coverage(stderr)
    assert counted is not None and (counted.datagrams, counted.stop_reason) == (len(frames), "packets")
    assert counted.started <= counted.ended <= time.time()
    report = valid_report(stdout)
    (flow,) = report["flows"]
    assert (flow["category"], flow["vni"], flow["verdict"]) == ("plaintext(http)", 77, "FAIL")
    received = report["coverage"]["collector"]
    assert (received["datagrams"], received["stop_reason"]) == (len(frames), "packets")
    assert os.stat(out).st_mode & 0o777 == 0o600
    (from_file,) = analyze_files([out]).flows
    assert (from_file.category, from_file.vni) == ("plaintext(http)", 77)


def _bound() -> bool:
    return not _port_free()


def test_collect_refuses_contradictions() -> None:
    command = [sys.executable, "-c", "from verifier.cli import main; main()", "collect"]
    for arguments, message in (
        (["--no-pcap"], "--no-pcap without --analyze"),
        ([], "--out"),
        (["--out", "x.pcap", "--duration", "soon"], "--duration"),
    ):
        result = subprocess.run([*command, *arguments], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and message in result.stderr, result.stderr
