"""The offline analysis edge: files in, a report out; bad packets are counted, never fatal."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.traffic import Endpoints, make_pki, tcp_frames, tls_conversation, write_pcap, write_pcapng
from verifier.analysis import analyze_files
from verifier.core.decode import MALFORMED, NOT_IP, TRUNCATED
from verifier.errors import InputError

HTTP = [(True, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), (False, b"HTTP/1.1 204 No Content\r\n\r\n")]


def test_malformed_packets_inside_a_good_capture_are_counted(tmp_path: Path) -> None:
    good = tcp_frames(HTTP, Endpoints(vni=9))
    t = good[-1][0]
    bad = [
        (t + 0.1, 1, good[3][2][:30], 200),  # cut inside the outer IP header
        (t + 0.2, 1, good[3][2][:14] + b"\x44" + bytes(40), 60),  # IPv4 with a 16-byte header: impossible
        (t + 0.3, 1, b"\xff" * 12 + b"\x08\x06" + bytes(28), 42),  # ARP
    ]
    path = write_pcap(tmp_path / "mixed.pcap", good[:4] + bad + good[4:])
    report = analyze_files([path])
    assert report.summary.flows == 1 and report.flows[0].category == "plaintext(http)"
    assert report.coverage.frames == len(good) + 3
    assert report.coverage.tcp_segments == len(good)
    assert report.coverage.not_analysed == {TRUNCATED: 1, MALFORMED: 1, NOT_IP: 1}
    assert report.captures[0].frames == len(good) + 3


def test_progress_reaches_the_end_of_the_input(tmp_path: Path) -> None:
    paths = [write_pcap(tmp_path / f"{n}.pcap", tcp_frames(HTTP, start=100.0 * n)) for n in (1, 2)]
    seen: list[tuple[int, int, Path]] = []
    report = analyze_files(paths, progress=lambda done, total, path: seen.append((done, total, path)))
    assert report.summary.flows == 2
    assert seen[-1] == (sum(p.stat().st_size for p in paths),) * 2 + (Path("2 captures"),)
    single: list[tuple[int, int, Path]] = []
    analyze_files(paths[:1], progress=lambda done, total, path: single.append((done, total, path)))
    assert single[-1] == (paths[0].stat().st_size, paths[0].stat().st_size, paths[0])


def test_captures_are_merged_by_time_into_one_flow(tmp_path: Path) -> None:
    """Two collectors each saw part of one connection, at overlapping times (and, second case, a capture
    rotated mid-connection): one flow, nothing out of order, every frame counted once per file."""
    frames = tcp_frames(HTTP)
    split = [write_pcap(tmp_path / f"{half}.pcap", frames[half::2]) for half in (0, 1)]
    rotated = [
        write_pcap(tmp_path / "late.pcap", frames[4:]),
        write_pcap(tmp_path / "early.pcap", frames[:4]),
    ]
    for paths in (split, rotated):
        report = analyze_files(paths)
        (flow,) = report.flows
        assert (flow.category, flow.midstream, flow.out_of_order, flow.gaps) == (
            "plaintext(http)",
            False,
            0,
            0,
        )
        assert flow.packets_client + flow.packets_server == len(frames)
        assert sum(capture.frames for capture in report.captures) == len(frames)
        assert [capture.path for capture in report.captures] == [str(path) for path in paths]


def test_keylog_must_be_readable(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "a.pcap", tcp_frames(HTTP))
    with pytest.raises(InputError, match="key log"):
        analyze_files([path], keylog=tmp_path / "missing.keys")
    keys = tmp_path / "sslkeys.log"
    keys.write_text("# empty\n")
    assert analyze_files([path], keylog=keys).keylog == str(keys)


def test_tls13_chain_from_a_keylog_file_and_from_a_pcapng_secrets_block(tmp_path: Path) -> None:
    keys = tmp_path / "sslkeys.log"
    messages = tls_conversation(tmp_path, keylog=keys)
    frames = tcp_frames(messages, Endpoints(vni=42))
    expected = [hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest() for cert in
                x509.load_pem_x509_certificates(make_pki().chain_pem)]  # fmt: skip

    plain = analyze_files([write_pcap(tmp_path / "tls13.pcap", frames)])
    (flow,) = plain.flows
    assert flow.category == "TLS1.3" and flow.server_certificates == () and "--keylog" in str(flow.chain_note)

    (flow,) = analyze_files([write_pcap(tmp_path / "tls13.pcap", frames)], keylog=keys).flows
    assert (list(flow.server_certificates), flow.chain_source, flow.chain_note) == (expected, "keylog", None)

    embedded = write_pcapng(tmp_path / "tls13-dsb.pcapng", frames, tls_key_log=keys.read_bytes())
    report = analyze_files([embedded])
    (flow,) = report.flows
    assert (list(flow.server_certificates), flow.chain_source) == (expected, "keylog")
    assert set(expected) <= set(report.certificates)


def test_a_wrong_keylog_entry_is_a_note_not_a_failure(tmp_path: Path) -> None:
    keys = tmp_path / "sslkeys.log"
    frames = tcp_frames(tls_conversation(tmp_path, keylog=keys))
    # Same client random, every secret's bytes flipped: the right entry, the wrong keys.
    entries = [
        line.split(b" ") for line in keys.read_bytes().splitlines() if line and not line.startswith(b"#")
    ]
    flipped = [
        (label, random, bytes(b ^ 0xFF for b in bytes.fromhex(secret.decode())))
        for label, random, secret in entries
    ]
    wrong = b"".join(
        b"%s %s %s\n" % (label, random, secret.hex().encode()) for label, random, secret in flipped
    )
    keys.write_bytes(wrong)
    (flow,) = analyze_files([write_pcap(tmp_path / "a.pcap", frames)], keylog=keys).flows
    assert flow.category == "TLS1.3" and flow.verdict.value == "PASS"
    assert flow.server_certificates == () and "wrong key log entry" in str(flow.chain_note)


def test_many_rotated_captures_are_read_a_group_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import verifier.analysis

    monkeypatch.setattr(verifier.analysis, "_OPEN_CAPTURES", 2)  # as if thousands of files: groups of 2
    frames = tcp_frames(HTTP)
    paths = [write_pcap(tmp_path / f"rotated-{n}.pcap", frames[n * 3 : n * 3 + 3]) for n in range(4)]
    seen: list[tuple[int, int, Path]] = []
    report = analyze_files(paths, progress=lambda done, total, path: seen.append((done, total, path)))
    (flow,) = report.flows
    assert (flow.category, flow.gaps, flow.out_of_order) == ("plaintext(http)", 0, 0)
    assert [capture.frames for capture in report.captures] == [3, 3, 3, len(frames) - 9]
    assert seen[-1][0] == seen[-1][1] == sum(path.stat().st_size for path in paths)
