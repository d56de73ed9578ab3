"""Agreement with tshark's ground truth on captures other projects made (../shared/corpus).

TShark is a second opinion, not an oracle: where we believe it is wrong, the case is listed below with why.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import CORPUS, FIGURES
from verifier.analysis import analyze_files
from verifier.core.model import FlowRecord, Verdict

pytestmark = pytest.mark.corpus

TRUTH = sorted((CORPUS / "truth").glob("*.json")) if CORPUS.is_dir() else []
# Categories tshark names by dissector that our own names match one to one.
_DRAFT_TLS13 = {"TLS1.3"}


def _truth(path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads(path.read_text())
    return data


def _pair(flow: FlowRecord) -> frozenset[str]:
    return frozenset((flow.client, flow.server))


@pytest.fixture(scope="module")
def results() -> dict[str, tuple[dict[str, object], list[FlowRecord]]]:
    if not TRUTH:
        pytest.skip(f"corpus not found at {CORPUS}")
    out = {}
    for truth_path in TRUTH:
        truth = _truth(truth_path)
        report = analyze_files([CORPUS / "files" / str(truth["file"])])
        out[str(truth["file"])] = (truth, list(report.flows))
    return out


def _matched(results: dict[str, tuple[dict[str, object], list[FlowRecord]]]):  # type: ignore[no-untyped-def]
    """(file, truth stream, our flow or None) for every stream of the ground truth."""
    for name, (truth, flows) in results.items():
        by_pair: dict[frozenset[str], list[FlowRecord]] = {}
        for flow in flows:
            by_pair.setdefault(_pair(flow), []).append(flow)
        for stream in truth["tcp_streams_passive"]:  # type: ignore[attr-defined]
            candidates = by_pair.get(frozenset((stream["client"], stream["server"])), [])
            yield name, stream, (candidates.pop(0) if candidates else None)


def test_every_stream_is_found_with_the_same_roles(results) -> None:  # type: ignore[no-untyped-def]
    missing, roles = [], Counter()
    for name, stream, flow in _matched(results):
        if flow is None:
            missing.append((name, stream["stream"]))
            continue
        roles[flow.client == stream["client"]] += 1
    FIGURES.append(
        f"corpus: {roles[True]} streams with the same client as tshark, {roles[False]} swapped, "
        f"{len(missing)} not found"
    )
    assert not missing
    assert roles[False] == 0


def test_tls_version_cipher_and_sni_agree_where_tshark_saw_a_server_hello(results) -> None:  # type: ignore[no-untyped-def]
    compared = agreed = 0
    disagreements = []
    for name, stream, flow in _matched(results):
        hello = stream.get("server_hello")
        if not hello or flow is None:
            continue
        compared += 1
        ours = (
            flow.category,
            f"0x{flow.cipher_suite:04x}" if flow.cipher_suite is not None else None,
            flow.sni,
        )
        theirs = (stream["category"], stream["cipher_suite"], stream.get("sni"))
        if ours == theirs:
            agreed += 1
        else:
            disagreements.append((name, stream["stream"], ours, theirs))
    FIGURES.append(f"corpus: TLS version+cipher+SNI agree on {agreed}/{compared} streams with a ServerHello")
    assert not disagreements


def test_cleartext_streams_are_cleartext_with_the_right_protocol(results) -> None:  # type: ignore[no-untyped-def]
    compared = agreed = 0
    for name, stream, flow in _matched(results):
        if not str(stream["category"]).startswith("plaintext(") or flow is None:
            continue
        compared += 1
        assert flow.verdict is Verdict.FAIL, (name, stream["stream"], flow.category, flow.reason)
        assert flow.category == stream["category"], (name, stream["stream"], flow.category, flow.evidence)
        agreed += 1
    FIGURES.append(f"corpus: {agreed}/{compared} cleartext streams identified with tshark's protocol")
    assert compared > 0


def test_categories_agree_overall(results) -> None:  # type: ignore[no-untyped-def]
    confusion: Counter[tuple[str, str]] = Counter()
    for _name, stream, flow in _matched(results):
        if flow is not None:
            confusion[(str(stream["category"]), flow.category)] += 1
    total = sum(confusion.values())
    same = sum(count for (theirs, ours), count in confusion.items() if theirs == ours)
    FIGURES.append(f"corpus: category agrees on {same}/{total} streams")
    for (theirs, ours), count in sorted(confusion.items()):
        if theirs != ours:
            FIGURES.append(f"corpus:   tshark {theirs} -> ours {ours}: {count}")
    assert same == total, {k: v for k, v in confusion.items() if k[0] != k[1]}


# Where a truth file's manual note overrides tshark's default dissection, the note wins.
MANUAL_NOTES = {
    # TLS on port 80: tshark needed `-d tcp.port==80,tls`; we never decide by port.
    "ntop_nDPI__tests__cfgs__default__pcap__tls_port_80.pcapng": "TLS1.2",
    # Redis on port 10625: tshark needed `-d tcp.port==10625,resp`.
    "zeek_zeek__testing__btest__Traces__redis__django-cloud.pcapng": "plaintext(resp)",
    # Named ssl.v3, but an SSLv2-format ClientHello answered with TLS 1.0: not SSLv3.
    "zeek_zeek__testing__btest__Traces__tls__ssl.v3.pcap": "TLS1.0-1.1",
}


@pytest.mark.parametrize(("name", "category"), sorted(MANUAL_NOTES.items()))
def test_manual_notes_are_honoured(results, name: str, category: str) -> None:  # type: ignore[no-untyped-def]
    truth, flows = results[name]
    assert truth.get("manual_truth_and_notes"), "the note this test encodes is gone from the truth file"
    assert flows and {flow.category for flow in flows} == {category}


KEYLOG_TRUTH = [path for path in TRUTH if _truth(path)["source"]["keylog"]]  # type: ignore[index]


def test_keylog_recovers_the_tls13_server_chains_tshark_decrypted() -> None:
    """--keylog through the whole analyser: each TLS 1.3 server chain equals the one tshark decrypted."""
    if not KEYLOG_TRUTH:
        pytest.skip(f"corpus not found at {CORPUS}")
    compared = 0
    for truth_path in KEYLOG_TRUTH:
        truth = _truth(truth_path)
        keylog = CORPUS / "keys" / str(truth["source"]["keylog"])  # type: ignore[index]
        flows = analyze_files([CORPUS / "files" / str(truth["file"])], keylog=keylog).flows
        by_pair = {_pair(flow): flow for flow in flows}
        for stream in truth["tcp_streams_with_keylog"]:  # type: ignore[attr-defined]
            if stream["category"] != "TLS1.3":
                continue
            flow = by_pair[frozenset((stream["client"], stream["server"]))]
            expected = [cert["sha256"] for cert in stream["server_cert_chain"]]
            got = (list(flow.server_certificates), flow.chain_source)
            assert got == (expected, "keylog"), flow.chain_note
            assert len(flow.client_certificates) == stream["client_cert_count"]
            compared += 1
    FIGURES.append(
        f"corpus: --keylog recovered {compared}/{compared} TLS 1.3 server chains equal to tshark's"
    )
    assert compared == 5


def test_without_a_keylog_tls13_says_how_to_see_the_chain() -> None:
    if not KEYLOG_TRUTH:
        pytest.skip(f"corpus not found at {CORPUS}")
    name = "syncsynchalt_illustrated-tls13__captures__capture.pcap"
    (flow,) = analyze_files([CORPUS / "files" / name]).flows
    assert flow.server_certificates == () and flow.chain_source is None
    assert flow.chain_note is not None and "--keylog" in flow.chain_note
