"""Chains judged against the configured anchors, folded into each flow's verdict."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from tests import pki
from tests.conftest import REPO
from tests.records import make_record
from tests.traffic import make_pki
from verifier.analysis import Judging, analyze_files
from verifier.core.chains import TrustAnchors
from verifier.core.identity import IdentityJudge
from verifier.core.model import Verdict

CAPTURES = REPO / "captures"
OWN_ROOT = (CAPTURES / "pki" / "root-ca.pem").read_bytes()


def test_chain_from_the_configured_ca_keeps_the_channel_verdict() -> None:
    report = analyze_files(
        [CAPTURES / "vxlan-tls12-chain.pcap"], judging=Judging(anchors=TrustAnchors.from_pem_bundle(OWN_ROOT))
    )
    assert report.flows and all(flow.identity is Verdict.PASS for flow in report.flows)
    assert all(flow.verdict is Verdict.WARN for flow in report.flows)  # TLS 1.2: the channel's verdict
    assert {check.name for check in report.flows[0].identity_checks} >= {"chains_to_anchor", "san_matches"}


def test_chain_from_another_ca_fails_the_flow() -> None:
    foreign = TrustAnchors.from_pem_bundle(make_pki().root_pem)
    report = analyze_files([CAPTURES / "vxlan-tls12-chain.pcap"], judging=Judging(anchors=foreign))
    for flow in report.flows:
        assert (flow.identity, flow.verdict) == (Verdict.FAIL, Verdict.FAIL)
        assert "certificate:" in flow.reason
        failed = {check.name for check in flow.identity_checks if check.status.value == "FAIL"}
        assert "chains_to_anchor" in failed
    assert report.summary.by_verdict == {"FAIL": len(report.flows)}


def test_tls13_without_a_chain_is_not_judged_and_says_why() -> None:
    report = analyze_files(
        [CAPTURES / "vxlan-tls13-mixed.pcap"], judging=Judging(anchors=TrustAnchors.from_pem_bundle(OWN_ROOT))
    )
    tls13 = [flow for flow in report.flows if flow.category == "TLS1.3"]
    assert tls13 and all(flow.identity is None and flow.verdict is Verdict.PASS for flow in tls13)
    assert all("--keylog" in str(flow.chain_note) for flow in tls13)


def test_validity_is_judged_at_each_flows_own_moment() -> None:
    """A certificate issued seconds before the traffic (Service Connect rotates 7-day certificates) is valid
    for it; the same chain is judged again once a flow falls outside its validity."""
    chain = pki.hierarchy("rotation")
    issued_at = pki.T0 + timedelta(seconds=30)  # mid-minute, as a real issuance is
    leaf = pki.issue(pki.SERVICE_NAME, pki.ec_key("rotation-leaf"), chain.sub, ca=False, not_before=issued_at)
    certificates = {hashlib.sha256(cert.der).hexdigest(): cert.der for cert in (leaf, chain.sub)}
    anchors = TrustAnchors(roots=(chain.root.der,), intermediates=(chain.sub.der,))
    judge = IdentityJudge(anchors, certificates)

    def judged(moment: datetime) -> Verdict | None:
        record = make_record(
            first_seen=moment.timestamp(), sni=pki.SERVICE_NAME, server_certificates=tuple(certificates)
        )
        return judge.apply(record).identity

    assert judged(issued_at + timedelta(seconds=15)) is Verdict.PASS
    assert judged(issued_at - timedelta(seconds=10)) is Verdict.FAIL  # the same minute, before issuance
    assert judged(issued_at + timedelta(seconds=20)) is Verdict.PASS
    assert judged(issued_at + pki.SHORT + timedelta(seconds=1)) is Verdict.FAIL  # expired
