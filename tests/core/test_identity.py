"""Chains judged against the configured anchors, folded into each flow's verdict."""

from __future__ import annotations

from tests.conftest import REPO
from tests.traffic import make_pki
from verifier.analysis import analyze_files
from verifier.core.chains import TrustAnchors
from verifier.core.model import Verdict

CAPTURES = REPO / "captures"
OWN_ROOT = (CAPTURES / "pki" / "root-ca.pem").read_bytes()


def test_chain_from_the_configured_ca_keeps_the_channel_verdict() -> None:
    report = analyze_files(
        [CAPTURES / "vxlan-tls12-chain.pcap"], anchors=TrustAnchors.from_pem_bundle(OWN_ROOT)
    )
    assert report.flows and all(flow.identity is Verdict.PASS for flow in report.flows)
    assert all(flow.verdict is Verdict.WARN for flow in report.flows)  # TLS 1.2: the channel's verdict
    assert {check.name for check in report.flows[0].identity_checks} >= {"chains_to_anchor", "san_matches"}


def test_chain_from_another_ca_fails_the_flow() -> None:
    foreign = TrustAnchors.from_pem_bundle(make_pki().root_pem)
    report = analyze_files([CAPTURES / "vxlan-tls12-chain.pcap"], anchors=foreign)
    for flow in report.flows:
        assert (flow.identity, flow.verdict) == (Verdict.FAIL, Verdict.FAIL)
        assert "certificate:" in flow.reason
        failed = {check.name for check in flow.identity_checks if check.status.value == "FAIL"}
        assert "chains_to_anchor" in failed
    assert report.summary.by_verdict == {"FAIL": len(report.flows)}


def test_tls13_without_a_chain_is_not_judged_and_says_why() -> None:
    report = analyze_files(
        [CAPTURES / "vxlan-tls13-mixed.pcap"], anchors=TrustAnchors.from_pem_bundle(OWN_ROOT)
    )
    tls13 = [flow for flow in report.flows if flow.category == "TLS1.3"]
    assert tls13 and all(flow.identity is None and flow.verdict is Verdict.PASS for flow in tls13)
    assert all("--keylog" in str(flow.chain_note) for flow in tls13)
