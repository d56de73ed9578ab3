"""The analyser end to end on real TLS bytes: categories, verdicts, roles, loss, reordering, eviction."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.traffic import Endpoints, Frame, Message, tcp_frames, tls_conversation
from verifier.core import model
from verifier.core.flows import Analyzer, AnalyzerConfig
from verifier.core.model import FlowRecord, Verdict

HTTP_GET = b"GET /orders/42 HTTP/1.1\r\nHost: orders.internal\r\nAuthorization: Bearer s3cr3t\r\n\r\n"
HTTP_OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"id": 42}\n'


def analyse(frames: list[Frame], config: AnalyzerConfig | None = None) -> list[FlowRecord]:
    analyzer = Analyzer(config)
    analyzer.feed(frames)
    analyzer.finish()
    return analyzer.drain()


def only(records: list[FlowRecord]) -> FlowRecord:
    assert len(records) == 1, records
    return records[0]


@pytest.fixture(scope="module")
def tls13(tmp_path_factory: pytest.TempPathFactory) -> list[Message]:
    return tls_conversation(tmp_path_factory.mktemp("tls13"), alpn=["h2", "http/1.1"])


@pytest.fixture(scope="module")
def tls12(tmp_path_factory: pytest.TempPathFactory) -> list[Message]:
    return tls_conversation(
        tmp_path_factory.mktemp("tls12"), version=ssl.TLSVersion.TLSv1_2, alpn=["http/1.1"]
    )


def test_tls13_over_vxlan_passes(tls13: list[Message]) -> None:
    record = only(analyse(tcp_frames(tls13, Endpoints(vni=4242))))
    assert (record.category, record.verdict, record.tls_version) == (model.TLS13, Verdict.PASS, "TLS1.3")
    assert (record.client, record.server, record.vni) == ("10.1.0.5:40000", "10.1.0.9:443", 4242)
    assert record.sni == "api.internal.example"
    assert record.alpn_offered == ("h2", "http/1.1") and record.alpn is None  # TLS 1.3 encrypts the choice
    assert record.cipher_suite in (0x1301, 0x1302, 0x1303)
    assert record.role_rule == "SYN" and record.handshake_seen and not record.midstream
    assert record.ja4 is not None and record.ja4.startswith("t13d")
    assert record.server_certificates == ()  # encrypted in TLS 1.3


def test_tls12_warns_and_keeps_the_cleartext_chain(tls12: list[Message]) -> None:
    analyzer = Analyzer()
    analyzer.feed(tcp_frames(tls12, mss=200))  # the Certificate message spans many segments
    analyzer.finish()
    record = only(analyzer.drain())
    assert (record.category, record.verdict) == (model.TLS12, Verdict.WARN)
    assert "AEAD" in record.reason and record.alpn == "http/1.1"
    assert len(record.server_certificates) == 2  # leaf and intermediate
    assert set(record.server_certificates) == set(analyzer.certificates)


@pytest.mark.parametrize("port", [80, 443, 8443])
def test_cleartext_http_fails_whatever_the_port(port: int) -> None:
    frames = tcp_frames([(True, HTTP_GET), (False, HTTP_OK)], Endpoints(server=("10.1.0.9", port)))
    record = only(analyse(frames))
    assert (record.category, record.verdict, record.protocol) == ("plaintext(http)", Verdict.FAIL, "http")


def test_connection_without_visible_handshake_is_inconclusive(tls13: list[Message]) -> None:
    application_data = [message for message in tls13[-2:]]  # request and response records only
    record = only(analyse(tcp_frames(application_data, handshake=False)))
    assert (record.category, record.verdict) == (model.TLS_NO_HANDSHAKE, Verdict.INCONCLUSIVE)
    assert record.midstream and record.role_rule == "port" and record.server == "10.1.0.9:443"


def test_stream_picked_up_in_the_middle_of_a_record(tls13: list[Message]) -> None:
    # Capture starts 3 bytes into the client's record, after several server records.
    from_client, data = tls13[-2]
    frames = tcp_frames([(from_client, data[3:] + data), (False, tls13[-1][1] * 2)], handshake=False)
    record = only(analyse(frames))
    assert record.category == model.TLS_NO_HANDSHAKE


def test_server_picked_up_mid_record_and_client_on_a_record_boundary(tls13: list[Message]) -> None:
    request, response = tls13[-2][1], tls13[-1][1]
    frames = tcp_frames([(True, request), (False, response[7:] + response)], handshake=False)
    record = only(analyse(frames))
    assert (record.category, record.verdict) == (model.TLS_NO_HANDSHAKE, Verdict.INCONCLUSIVE)


def test_server_first_segment_is_only_the_tail_of_a_record(tls13: list[Message]) -> None:
    # The server's first bytes hold no record header at all, and by then the client has sent only part of
    # its first record: no side proves anything yet. The client's records must decide later.
    request, response = tls13[-2][1], tls13[-1][1]
    messages = [
        (True, request[:10]),
        (False, response[7:]),
        (True, request[10:] + request),
        (False, response),
    ]
    record = only(analyse(tcp_frames(messages, handshake=False)))
    assert (record.category, record.verdict) == (model.TLS_NO_HANDSHAKE, Verdict.INCONCLUSIVE)


def test_client_hello_reveals_the_client_when_ports_mislead(tls13: list[Message]) -> None:
    # No SYN, and the client's ephemeral port happens to be a well-known one.
    frames = tcp_frames(
        tls13, Endpoints(client=("10.1.0.5", 8080), server=("10.1.0.9", 61000)), handshake=False
    )
    record = only(analyse(frames))
    assert (record.client, record.server, record.role_rule) == (
        "10.1.0.5:8080",
        "10.1.0.9:61000",
        "ClientHello",
    )
    assert record.category == model.TLS13


def test_lost_segment_after_server_hello_is_a_gap_not_a_failure(tls12: list[Message]) -> None:
    # Segments 0-2 carry the ClientHello; drop the server's 3rd segment (inside the certificate chain).
    frames = tcp_frames(
        tls12, mss=200, keep=lambda index, from_client, _: not (not from_client and index == 5)
    )
    record = only(analyse(frames, AnalyzerConfig(max_pending=1024)))
    assert record.category == model.TLS12
    assert record.gaps >= 1 and record.gap_bytes >= 200


def test_reordered_and_retransmitted_segments_are_counted(tls12: list[Message]) -> None:
    frames = tcp_frames(tls12, mss=200)
    data_frames = [i for i, f in enumerate(frames) if len(f[2]) > 100]
    i, j = data_frames[2], data_frames[3]
    frames[i], frames[j] = (frames[j][0], *frames[i][1:]), (frames[i][0], *frames[j][1:])
    frames.insert(j + 1, (frames[j][0] + 0.0001, *frames[data_frames[5]][1:]))
    record = only(analyse(frames))
    assert record.category == model.TLS12 and len(record.server_certificates) == 2
    assert record.out_of_order >= 1 and record.retransmissions >= 1 and record.gaps == 0


def test_snaplen_truncation_is_marked_not_fatal(tls12: list[Message]) -> None:
    analyzer = Analyzer()
    analyzer.feed(tcp_frames(tls12, snaplen=120))
    analyzer.finish()
    record = only(analyzer.drain())
    assert record.truncated_frames > 0 and analyzer.coverage().truncated_frames == record.truncated_frames
    assert record.verdict in (Verdict.INCONCLUSIVE, Verdict.WARN)


def test_syn_only_flow_has_no_payload() -> None:
    record = only(analyse(tcp_frames([], close=False)))
    assert (record.category, record.verdict) == (model.NO_PAYLOAD, Verdict.INCONCLUSIVE)


def _ssh_kexinit() -> bytes:
    # RFC 4253 7.1: SSH_MSG_KEXINIT (20), 16-byte cookie, ten name-lists, first_kex_packet_follows, reserved;
    # framed as a binary packet: length, padding length, payload, padding (total a multiple of 8).
    names = [b"curve25519-sha256", b"ssh-ed25519"] + [b"aes128-ctr"] * 2 + [b"hmac-sha2-256"] * 2
    names += [b"none"] * 2 + [b""] * 2
    name_lists = b"".join(len(n).to_bytes(4) + n for n in names)
    payload = b"\x14" + bytes(range(16)) + name_lists + b"\x00" + bytes(4)
    padding = 8 - (5 + len(payload)) % 8 + 8
    return (1 + len(payload) + padding).to_bytes(4) + bytes([padding]) + payload + bytes(padding)


def test_ssh_is_other_encrypted() -> None:
    frames = tcp_frames(
        [
            (False, b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"),
            (True, b"SSH-2.0-OpenSSH_9.6\r\n" + _ssh_kexinit()),
            (False, _ssh_kexinit()),
        ],
        Endpoints(server=("10.1.0.9", 22)),
    )
    record = only(analyse(frames))
    assert (record.category, record.verdict) == (model.OTHER_ENCRYPTED_SSH, Verdict.WARN)


def test_postgres_ssl_request_upgrade_is_judged_by_what_follows(tls13: list[Message]) -> None:
    ssl_request = bytes.fromhex("00000008 04d2162f")  # length 8, code 80877103
    upgraded = [(True, ssl_request), (False, b"S"), *tls13]
    record = only(analyse(tcp_frames(upgraded, Endpoints(server=("10.1.0.9", 5432)))))
    assert (record.category, record.upgrade_from, record.verdict) == (model.TLS13, "pgsql", Verdict.PASS)
    refused = [(True, ssl_request), (False, b"N"), (True, _pg_startup())]
    record = only(analyse(tcp_frames(refused, Endpoints(server=("10.1.0.9", 5432)))))
    assert (record.category, record.verdict) == ("plaintext(pgsql)", Verdict.FAIL)


def _pg_startup() -> bytes:
    # StartupMessage: length, protocol 3.0, "user\0app\0database\0orders\0\0".
    body = (196608).to_bytes(4) + b"user\x00app\x00database\x00orders\x00\x00"
    return (len(body) + 4).to_bytes(4) + body


def test_idle_flows_are_evicted_during_the_capture(tls13: list[Message]) -> None:
    first = tcp_frames([(True, HTTP_GET)], close=False, start=1000.0)
    later = tcp_frames(tls13, Endpoints(client=("10.1.0.6", 40001)), start=1000.0 + 400)
    analyzer = Analyzer(AnalyzerConfig(idle_timeout=300))
    analyzer.feed(first)
    assert analyzer.open_flows == 1
    analyzer.feed(later[:1])
    assert [r.category for r in analyzer.drain()] == ["plaintext(http)"]
    assert analyzer.open_flows == 1


def test_closed_flows_leave_the_table_and_port_reuse_starts_a_new_flow(tls13: list[Message]) -> None:
    frames = tcp_frames([(True, HTTP_GET), (False, HTTP_OK)], start=10.0)
    frames += tcp_frames(tls13, start=11.0)  # same 5-tuple, new SYN
    records = analyse(frames)
    assert [r.category for r in records] == ["plaintext(http)", model.TLS13]


def test_fast_path_and_general_decoder_agree(tls12: list[Message]) -> None:
    """The inlined Ethernet/VXLAN fast path must produce exactly what the general decoder produces."""
    for vni in (None, 77):
        fast = tcp_frames(tls12, Endpoints(vni=vni), mss=300)
        # Linux cooked (SLL) framing takes the general path: same packets, other link layer.
        slow = [
            (ts, 113, b"\x00\x00\x00\x01\x00\x06" + frame[6:12] + b"\x00\x00" + frame[12:], n)
            for ts, _, frame, n in fast
        ]
        assert analyse(fast) == analyse(slow)


def test_fast_path_and_general_decoder_agree_on_the_outer_ip_length(tls12: list[Message]) -> None:
    """VXLAN frames whose outer IPv4 total length is below its header: malformed for both paths; 0 (TSO
    captures write it) is accepted by both."""
    for total in (0, 1, 19, 20):
        fast = [
            (ts, linktype, frame[:16] + total.to_bytes(2) + frame[18:], n)
            for ts, linktype, frame, n in tcp_frames(tls12, Endpoints(vni=77), mss=300)
        ]
        slow = [
            (ts, 113, b"\x00\x00\x00\x01\x00\x06" + frame[6:12] + b"\x00\x00" + frame[12:], n)
            for ts, _, frame, n in fast
        ]
        outcomes = []
        for frames in (fast, slow):
            analyzer = Analyzer()
            analyzer.feed(frames)
            analyzer.finish()
            outcomes.append((analyzer.drain(), analyzer.coverage().not_analysed))
        assert outcomes[0] == outcomes[1]
        assert bool(outcomes[0][1]) == (0 < total < 20), total


def test_batch_boundaries_do_not_change_the_result(tls12: list[Message], tls13: list[Message]) -> None:
    frames = sorted(tcp_frames(tls12) + tcp_frames(tls13, Endpoints(client=("10.1.0.7", 40002))))
    whole = analyse(frames)
    analyzer = Analyzer()
    for start in range(0, len(frames), 3):
        analyzer.feed(frames[start : start + 3])
    analyzer.finish()
    assert sorted(analyzer.drain(), key=lambda r: r.client) == sorted(whole, key=lambda r: r.client)


@settings(max_examples=150, deadline=None)
@given(frames=st.lists(st.tuples(st.sampled_from([1, 101, 113, 0]), st.binary(max_size=120)), max_size=30))
def test_arbitrary_frames_never_sink_the_analysis(frames: list[tuple[int, bytes]]) -> None:
    analyzer = Analyzer()
    analyzer.feed([(float(i), linktype, data, len(data)) for i, (linktype, data) in enumerate(frames)])
    analyzer.finish()
    records = analyzer.drain()
    coverage = analyzer.coverage()
    assert coverage.frames == len(frames) and coverage.flows == len(records)


def test_records_are_frozen(tls13: list[Message]) -> None:
    record = only(analyse(tcp_frames(tls13)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.verdict = Verdict.FAIL  # type: ignore[misc]


def test_plaintext_is_never_called_encrypted_on_any_port(tmp_path: Path) -> None:
    """The one unforgivable bug: cleartext protocols on TLS ports, with and without a visible handshake."""
    cleartext = [
        [(True, HTTP_GET), (False, HTTP_OK)],
        [(True, b"*3\r\n$3\r\nSET\r\n$5\r\ntoken\r\n$6\r\nsecret\r\n"), (False, b"+OK\r\n")],
        [(True, _pg_startup()), (False, b"R\x00\x00\x00\x08\x00\x00\x00\x00")],
    ]
    for messages in cleartext:
        for handshake in (True, False):
            record = only(analyse(tcp_frames(messages, handshake=handshake)))
            assert record.verdict is Verdict.FAIL, (messages, handshake, record.category, record.reason)


def test_protocol_greeting_reveals_the_client_when_ports_mislead() -> None:
    # No SYN; the client's ephemeral port is lower than the server's, so the port guess is wrong, but an
    # HTTP request can only come from a client.
    frames = tcp_frames(
        [(True, HTTP_GET), (False, HTTP_OK)],
        Endpoints(client=("10.1.0.5", 20000), server=("10.1.0.9", 30000)),
        handshake=False,
    )
    record = only(analyse(frames))
    assert (record.client, record.server, record.role_rule) == (
        "10.1.0.5:20000",
        "10.1.0.9:30000",
        "protocol greeting",
    )
    assert (record.category, record.protocol) == ("plaintext(http)", "http")


def test_the_time_range_covers_inputs_given_out_of_time_order() -> None:
    # Two captures analysed together, the later one first: the range is the earliest to the latest frame.
    http = [(True, b"GET / HTTP/1.1\r\n\r\n"), (False, b"HTTP/1.1 200 OK\r\n\r\n")]
    later = tcp_frames(http, Endpoints(client=("10.1.0.5", 40001)), start=2_000.0)
    earlier = tcp_frames(http, Endpoints(client=("10.1.0.5", 40002)), start=1_000.0)
    analyzer = Analyzer()
    analyzer.feed(later)
    analyzer.feed(earlier)
    analyzer.finish()
    coverage = analyzer.coverage()
    assert coverage.first_timestamp == earlier[0][0]
    assert coverage.last_timestamp == later[-1][0]


def test_empty_batches_leave_the_time_range_and_counts_alone() -> None:
    # The pipeline feeds an empty batch for a capture with no frames (and after an exact multiple of its
    # batch size): no frame, no time range.
    analyzer = Analyzer()
    analyzer.feed([])
    analyzer.feed(iter(()))
    empty = analyzer.coverage()
    assert analyzer.frames == 0
    assert empty.first_timestamp is None and empty.last_timestamp is None
    http = [(True, b"GET / HTTP/1.1\r\n\r\n"), (False, b"HTTP/1.1 200 OK\r\n\r\n")]
    frames = tcp_frames(http, Endpoints(client=("10.1.0.5", 40003)), start=1_000.0)
    analyzer.feed(frames)
    analyzer.feed([])
    analyzer.finish()
    coverage = analyzer.coverage()
    assert coverage.frames == len(frames)
    assert (coverage.first_timestamp, coverage.last_timestamp) == (frames[0][0], frames[-1][0])
