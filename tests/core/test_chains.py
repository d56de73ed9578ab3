"""Tests of verifier.core.chains on CA hierarchies built by tests/pki.py, on the chain in the project's own
TLS 1.2 capture, and on garbage (hypothesis)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.pki import (
    SERVICE_NAME,
    T0,
    Hierarchy,
    Issued,
    PrivateKey,
    ec_key,
    ed25519_key,
    hierarchy,
    issue,
    make_ca,
    rsa_key,
    sha1_signed,
)
from verifier.analysis import analyze_files
from verifier.core.chains import (
    ChainJudgement,
    Check,
    CheckStatus,
    TrustAnchors,
    judge_chain,
    summarize_certificate,
)
from verifier.errors import InputError, ParseError

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
FUZZ = settings(max_examples=150, deadline=None)

AT = T0 + timedelta(days=1)  # the capture time: a day into the 7-day leaf
CHECK_NAMES = (
    "chains_to_anchor",
    "valid_at_capture_time",
    "server_auth_eku",
    "san_matches",
    "key_strength",
    "signature_hash",
    "lifetime",
    "expiry_soon",
    "not_self_signed",
    "intermediates_present",
)
PASS, WARN, FAIL, INCONCLUSIVE = (
    CheckStatus.PASS,
    CheckStatus.WARN,
    CheckStatus.FAIL,
    CheckStatus.INCONCLUSIVE,
)
SEVERITY = [PASS, WARN, INCONCLUSIVE, FAIL]


def anchors_of(pki: Hierarchy, *, with_sub: bool = False, short_lived: bool = True) -> TrustAnchors:
    return TrustAnchors((pki.root.der,), (pki.sub.der,) if with_sub else (), short_lived)


def judge(
    chain: Sequence[Issued | bytes],
    anchors: TrustAnchors | None = None,
    *,
    at: datetime = AT,
    name: str | None = SERVICE_NAME,
) -> ChainJudgement:
    ders = [c.der if isinstance(c, Issued) else c for c in chain]
    return judge_chain(ders, anchors or anchors_of(hierarchy()), at=at, expected_name=name)


def check(judgement: ChainJudgement, name: str) -> Check:
    return next(c for c in judgement.checks if c.name == name)


def not_passing(judgement: ChainJudgement) -> dict[str, CheckStatus]:
    return {c.name: c.status for c in judgement.checks if c.status != PASS}


def leaf_with(key: PrivateKey | None = None, **options: Any) -> Issued:
    """A leaf of the default hierarchy, issued by its subordinate CA, with some options changed."""
    pki = hierarchy()
    return issue(SERVICE_NAME, key or pki.leaf.key, pki.sub, ca=False, **options)


def ed25519_hierarchy() -> Hierarchy:
    root = make_ca("ed root CA", ed25519_key("root"), None)
    sub = make_ca("ed subordinate CA", ed25519_key("sub"), root)
    return Hierarchy(root, sub, issue(SERVICE_NAME, ed25519_key("leaf"), sub, ca=False))


# ---------------------------------------------------------------------------------------------------------
# The good chain


def test_a_service_connect_chain_passes_every_check() -> None:
    pki = hierarchy()
    judgement = judge([pki.leaf, pki.sub])
    assert [c.name for c in judgement.checks] == list(CHECK_NAMES)
    assert not_passing(judgement) == {}
    assert judgement.status == PASS
    assert judgement.path == tuple(summarize_certificate(c.der).sha256 for c in (pki.leaf, pki.sub, pki.root))
    assert [s.subject for s in judgement.chain] == [
        pki.leaf.cert.subject.rfc4514_string(),
        "CN=pca subordinate CA,O=verifier tests",
    ]
    assert "'CN=pca root CA,O=verifier tests'" in check(judgement, "chains_to_anchor").detail


def test_summary_of_a_leaf_and_a_root() -> None:
    pki = hierarchy()
    leaf = summarize_certificate(pki.leaf.der)
    assert leaf.subject == "CN=api.internal.example,O=verifier tests"
    assert leaf.issuer == "CN=pca subordinate CA,O=verifier tests"
    assert (leaf.not_before, leaf.not_after) == (T0, T0 + timedelta(days=7))
    assert (leaf.san_dns, leaf.san_ip) == ((SERVICE_NAME,), ())
    assert (leaf.key, leaf.signature_hash, leaf.is_ca, leaf.self_signed) == (
        "ECDSA P-256",
        "SHA256",
        False,
        False,
    )
    root = summarize_certificate(pki.root.der)
    assert (root.is_ca, root.self_signed) == (True, True)


def test_summary_names_other_keys_and_ip_addresses() -> None:
    rsa_leaf = summarize_certificate(
        leaf_with(key=rsa_key("leaf", 1024), san=("10.77.0.2", "db.internal.example"), serial=0xC0FFEE).der
    )
    assert rsa_leaf.serial == "c0ffee"
    assert (rsa_leaf.key, rsa_leaf.san_ip, rsa_leaf.san_dns) == (
        "RSA 1024",
        ("10.77.0.2",),
        ("db.internal.example",),
    )
    p384 = summarize_certificate(leaf_with(key=ec_key("leaf", "secp384r1")).der)
    assert p384.key == "ECDSA P-384"
    ed = ed25519_hierarchy()
    assert (summarize_certificate(ed.leaf.der).key, summarize_certificate(ed.leaf.der).signature_hash) == (
        "Ed25519",
        None,
    )


# ---------------------------------------------------------------------------------------------------------
# Wrong CA, missing and configured intermediates


def test_a_chain_from_another_ca_fails() -> None:
    other = hierarchy("other")
    judgement = judge([other.leaf, other.sub])
    assert judgement.status == FAIL
    assert judgement.path == ()
    anchor = check(judgement, "chains_to_anchor")
    assert anchor.status == FAIL
    assert "'CN=pca root CA,O=verifier tests'" in anchor.detail  # the anchor it should have reached
    assert "'CN=other root CA,O=verifier tests'" in anchor.detail  # the issuer it names instead


def test_a_chain_up_to_another_root_fails_even_when_complete() -> None:
    """A server sending a whole chain of its own, root included, as a public CA's chain would be."""
    other = hierarchy("other")
    judgement = judge([other.leaf, other.sub, other.root])
    anchor = check(judgement, "chains_to_anchor")
    assert anchor.status == FAIL
    assert "ends at 'CN=other root CA,O=verifier tests'" in anchor.detail
    assert check(judgement, "intermediates_present").status == PASS


def test_a_ca_of_the_same_name_with_another_key_fails() -> None:
    impostor_root = make_ca("pca root CA", ec_key("impostor-root"), None)
    impostor_sub = make_ca("pca subordinate CA", ec_key("impostor-sub"), impostor_root)
    leaf = issue(SERVICE_NAME, ec_key("impostor-leaf"), impostor_sub, ca=False)
    judgement = judge([leaf, impostor_sub])
    anchor = check(judgement, "chains_to_anchor")
    assert anchor.status == FAIL
    assert "does not verify with the key of any 'CN=pca root CA,O=verifier tests'" in anchor.detail


def test_a_leaf_presented_alone_without_its_intermediate_fails_naming_the_issuer() -> None:
    judgement = judge([hierarchy().leaf])
    assert judgement.status == FAIL
    present = check(judgement, "intermediates_present")
    assert present.status == FAIL
    assert "'CN=pca subordinate CA,O=verifier tests'" in present.detail
    assert "neither presented nor configured" in present.detail
    assert check(judgement, "chains_to_anchor").status == FAIL


def test_an_intermediate_known_only_from_the_configured_bundle_is_enough() -> None:
    pki = hierarchy()
    judgement = judge([pki.leaf], anchors_of(pki, with_sub=True))
    assert judgement.status == PASS, not_passing(judgement)
    assert len(judgement.path) == 3
    assert "from the configured CA bundle" in check(judgement, "intermediates_present").detail


# ---------------------------------------------------------------------------------------------------------
# Time


def test_an_expired_leaf_fails_validity_but_still_chains() -> None:
    pki = hierarchy()
    judgement = judge([pki.leaf, pki.sub], at=T0 + timedelta(days=7, hours=1))
    assert judgement.status == FAIL
    validity = check(judgement, "valid_at_capture_time")
    assert validity.status == FAIL
    assert "expired at 2025-06-09 12:00:00 UTC" in validity.detail
    # Built inside the leaf's validity period, the path tells an expired chain from a wrong one.
    assert check(judgement, "chains_to_anchor").status == PASS
    assert "as of" in check(judgement, "chains_to_anchor").detail
    assert check(judgement, "expiry_soon").status == WARN


def test_a_leaf_not_yet_valid_fails() -> None:
    pki = hierarchy()
    judgement = judge([pki.leaf, pki.sub], at=T0 - timedelta(hours=1))
    validity = check(judgement, "valid_at_capture_time")
    assert validity.status == FAIL
    assert "not valid before 2025-06-02 12:00:00 UTC" in validity.detail
    assert check(judgement, "chains_to_anchor").status == PASS


def test_an_expired_intermediate_fails_validity() -> None:
    pki = hierarchy()
    # valid from 30 days before T0 until T0 + 12 h, half a day before the capture
    old_sub = make_ca("pca subordinate CA", pki.sub.key, pki.root, lifetime=timedelta(days=30, hours=12))
    judgement = judge([pki.leaf, old_sub])
    validity = check(judgement, "valid_at_capture_time")
    assert (validity.status, validity.detail.startswith("'CN=pca subordinate CA")) == (FAIL, True)


def test_expiry_within_a_day_of_the_capture_warns() -> None:
    pki = hierarchy()
    judgement = judge([pki.leaf, pki.sub], at=T0 + timedelta(days=7) - timedelta(hours=12))
    assert not_passing(judgement) == {"expiry_soon": WARN}
    assert judgement.status == WARN
    assert "expires 12 h 0 min after the capture time" in check(judgement, "expiry_soon").detail


def test_a_naive_capture_time_is_taken_as_utc() -> None:
    pki = hierarchy()
    naive = judge([pki.leaf, pki.sub], at=AT.replace(tzinfo=None))
    assert naive == judge([pki.leaf, pki.sub])


@pytest.mark.parametrize(
    ("lifetime", "short_lived", "status"),
    [
        (timedelta(days=397), True, WARN),
        (timedelta(days=397), False, PASS),
        (timedelta(days=7, hours=1), True, PASS),  # AWS Private CA backdates notBefore by 60 minutes
        (timedelta(days=7, hours=2), True, WARN),
    ],
)
def test_lifetime_against_a_short_lived_ca(
    lifetime: timedelta, short_lived: bool, status: CheckStatus
) -> None:
    pki = hierarchy()
    judgement = judge([leaf_with(lifetime=lifetime), pki.sub], anchors_of(pki, short_lived=short_lived))
    assert not_passing(judgement) == ({} if status == PASS else {"lifetime": status})
    if status == WARN:
        assert check(judgement, "lifetime").detail.startswith("long-lived certificate")


# ---------------------------------------------------------------------------------------------------------
# Names and usage


def test_a_name_the_leaf_does_not_carry_fails() -> None:
    pki = hierarchy()
    judgement = judge([pki.leaf, pki.sub], name="db.internal.example")
    assert not_passing(judgement) == {"san_matches": FAIL}
    assert "(api.internal.example)" in check(judgement, "san_matches").detail


def test_no_name_to_match_is_inconclusive_and_the_rest_still_judged() -> None:
    pki = hierarchy()
    judgement = judge([pki.leaf, pki.sub], name=None)
    assert not_passing(judgement) == {"san_matches": INCONCLUSIVE}
    assert check(judgement, "san_matches").detail == "no name to match"
    assert judgement.status == INCONCLUSIVE
    assert len(judgement.path) == 3


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("api.internal.example", PASS),
        ("API.Internal.Example.", PASS),  # DNS names compare without case or the root's dot
        ("a.b.internal.example", FAIL),  # a wildcard stands for one label
        ("internal.example", FAIL),
        ("10.77.0.2", PASS),
        ("10.77.0.3", FAIL),
    ],
)
def test_wildcard_and_ip_address_names(name: str, status: CheckStatus) -> None:
    pki = hierarchy()
    leaf = leaf_with(san=("*.internal.example", "10.77.0.2"))
    judgement = judge([leaf, pki.sub], name=name)
    assert not_passing(judgement) == ({} if status == PASS else {"san_matches": status})


def test_a_name_that_is_no_dns_name_cannot_be_matched() -> None:
    pki = hierarchy()
    judgement = judge([pki.leaf, pki.sub], name="not a host name")
    assert not_passing(judgement) == {"san_matches": INCONCLUSIVE}


def test_a_leaf_without_subject_alt_name_fails_the_name_check() -> None:
    pki = hierarchy()
    judgement = judge([leaf_with(san=()), pki.sub])
    assert not_passing(judgement) == {"san_matches": FAIL}


def test_a_leaf_restricted_to_client_auth_fails() -> None:
    pki = hierarchy()
    judgement = judge([leaf_with(eku=(ExtendedKeyUsageOID.CLIENT_AUTH,)), pki.sub])
    assert not_passing(judgement) == {"server_auth_eku": FAIL}
    assert "clientAuth, without serverAuth" in check(judgement, "server_auth_eku").detail


def test_a_leaf_without_extended_key_usage_is_not_restricted() -> None:
    pki = hierarchy()
    judgement = judge([leaf_with(eku=None), pki.sub])
    assert judgement.status == PASS, not_passing(judgement)


@pytest.mark.parametrize("name", [SERVICE_NAME, None])
def test_an_intermediate_restricted_to_client_auth_fails(name: str | None) -> None:
    pki = hierarchy()
    client_sub = issue(
        "pca subordinate CA",
        pki.sub.key,
        pki.root,
        ca=True,
        not_before=T0 - timedelta(days=1),
        san=(),
        eku=(ExtendedKeyUsageOID.CLIENT_AUTH,),
    )
    judgement = judge([pki.leaf, client_sub], name=name)
    eku = check(judgement, "server_auth_eku")
    assert (eku.status, eku.detail) == (
        FAIL,
        "the CA 'CN=pca subordinate CA,O=verifier tests' is restricted to clientAuth, without serverAuth",
    )


def test_a_ca_certificate_as_leaf_is_caught_by_the_strict_validator() -> None:
    """Nothing the separate checks look at is wrong; web PKI rules refuse a CA certificate as end entity."""
    pki = hierarchy()
    leaf = issue(SERVICE_NAME, pki.leaf.key, pki.sub, ca=True)
    judgement = judge([leaf, pki.sub])
    assert not_passing(judgement) == {"chains_to_anchor": FAIL}
    assert "strict path validation" in check(judgement, "chains_to_anchor").detail


# ---------------------------------------------------------------------------------------------------------
# Self-signed leaves, keys and signatures


def test_a_self_signed_leaf_fails() -> None:
    leaf = issue(SERVICE_NAME, ec_key("self-signed"), None, ca=False)
    judgement = judge([leaf])
    assert check(judgement, "not_self_signed").status == FAIL
    assert check(judgement, "chains_to_anchor").status == FAIL
    assert judgement.status == FAIL


def test_a_self_signed_leaf_fails_even_when_configured_as_anchor() -> None:
    leaf = issue(SERVICE_NAME, ec_key("self-signed"), None, ca=False)
    judgement = judge([leaf], TrustAnchors((leaf.der,), ()))
    assert not_passing(judgement) == {"not_self_signed": FAIL}
    assert check(judgement, "intermediates_present").detail == "the leaf is itself a configured anchor"


def test_without_a_usable_anchor_the_chain_cannot_be_judged() -> None:
    pki = hierarchy()
    judgement = judge([pki.leaf, pki.sub], TrustAnchors((b"not a certificate",), ()))
    assert not_passing(judgement) == {"chains_to_anchor": INCONCLUSIVE, "intermediates_present": INCONCLUSIVE}
    assert check(judgement, "chains_to_anchor").detail == "no usable trust anchor is configured"


def test_an_rsa_1024_leaf_fails_key_strength() -> None:
    pki = hierarchy()
    judgement = judge([leaf_with(key=rsa_key("leaf", 1024)), pki.sub])
    assert not_passing(judgement) == {"key_strength": FAIL}
    assert "is RSA 1024, below 2048 bits" in check(judgement, "key_strength").detail


def test_an_rsa_1024_intermediate_fails_and_the_validator_refuses_the_path() -> None:
    pki = hierarchy()
    weak_sub = make_ca("weak subordinate CA", rsa_key("sub", 1024), pki.root)
    leaf = issue(SERVICE_NAME, pki.leaf.key, weak_sub, ca=False)
    judgement = judge([leaf, weak_sub])
    assert not_passing(judgement) == {"key_strength": FAIL, "chains_to_anchor": FAIL}
    assert "rejected" in check(judgement, "chains_to_anchor").detail


def test_other_key_types_warn() -> None:
    pki = hierarchy()
    judgement = judge([leaf_with(key=ec_key("leaf", "secp384r1")), pki.sub])
    assert judgement.status == PASS
    judgement = judge([leaf_with(key=ed25519_key("leaf")), pki.sub])
    assert not_passing(judgement) == {"key_strength": WARN}


def test_a_sha1_signed_leaf_fails() -> None:
    pki = hierarchy()
    leaf = sha1_signed(pki.leaf.cert, ec_key("pca-sub"))  # the subordinate's key
    assert summarize_certificate(leaf).signature_hash == "SHA1"
    judgement = judge([leaf, pki.sub])
    assert not_passing(judgement) == {"signature_hash": FAIL, "chains_to_anchor": FAIL}
    assert "signed with SHA1" in check(judgement, "signature_hash").detail


def test_algorithms_the_validator_does_not_handle_are_inconclusive() -> None:
    """cryptography's web PKI validator forbids Ed25519: the chain is sound, but it cannot say so."""
    ed = ed25519_hierarchy()
    judgement = judge([ed.leaf, ed.sub], anchors_of(ed))
    assert not_passing(judgement) == {"chains_to_anchor": INCONCLUSIVE, "key_strength": WARN}
    assert "cannot judge" in check(judgement, "chains_to_anchor").detail
    assert judgement.status == INCONCLUSIVE


# ---------------------------------------------------------------------------------------------------------
# Malformed input


def test_an_unparseable_leaf_is_inconclusive() -> None:
    pki = hierarchy()
    judgement = judge([pki.leaf.der[:-1], pki.sub])
    assert judgement.status == INCONCLUSIVE
    assert [(c.name, c.status) for c in judgement.checks] == [("chains_to_anchor", INCONCLUSIVE)]
    assert judgement.checks[0].detail.startswith("certificate 1 of 2 as presented cannot be parsed")
    assert len(judgement.chain) == 1  # the intermediate is still summarised


def test_no_certificate_is_inconclusive() -> None:
    judgement = judge([])
    assert (judgement.status, judgement.checks[0].detail) == (
        INCONCLUSIVE,
        "the server presented no certificate",
    )


def test_an_unparseable_intermediate_is_inconclusive_when_the_path_holds_without_it() -> None:
    pki = hierarchy()
    not_a_certificate = b"\x30\x03\x02\x01\x01"  # SEQUENCE { INTEGER 1 }: DER, but no certificate
    judgement = judge([pki.leaf, not_a_certificate], anchors_of(pki, with_sub=True))
    assert not_passing(judgement) == {"intermediates_present": INCONCLUSIVE}
    assert "certificate 2 of 2" in check(judgement, "intermediates_present").detail


def test_an_unparseable_intermediate_that_was_needed_fails() -> None:
    pki = hierarchy()
    judgement = judge([pki.leaf, pki.sub.der[:-1]])
    assert check(judgement, "intermediates_present").status == FAIL
    assert judgement.status == FAIL


def test_a_duplicate_extension_is_malformed() -> None:
    # extnID subjectKeyIdentifier (2.5.29.14) renamed keyUsage (2.5.29.15): two keyUsage extensions
    duplicate = hierarchy().leaf.der.replace(bytes.fromhex("0603551d0e"), bytes.fromhex("0603551d0f"), 1)
    with pytest.raises(ParseError, match="Duplicate"):
        summarize_certificate(duplicate)
    assert judge([duplicate, hierarchy().sub]).status == INCONCLUSIVE


def test_a_serial_that_is_not_positive_is_malformed() -> None:
    leaf = leaf_with(serial=0x0102).der
    # serialNumber INTEGER 0x0102 -> 0x8102, negative in two's complement
    negative = leaf.replace(bytes.fromhex("02020102"), bytes.fromhex("02028102"), 1)
    with pytest.raises(ParseError, match="serial"):
        summarize_certificate(negative)


# ---------------------------------------------------------------------------------------------------------
# Anchors from a PEM bundle


def test_a_bundle_splits_into_roots_and_intermediates() -> None:
    pki = hierarchy()
    bundle = b"subordinate first, with text around\n" + pki.sub.pem + pki.root.pem + b"\n"
    anchors = TrustAnchors.from_pem_bundle(bundle, short_lived=True)
    assert anchors == TrustAnchors((pki.root.der,), (pki.sub.der,), short_lived=True)


@pytest.mark.parametrize(
    ("bundle", "message"),
    [
        (b"", "holds no PEM certificate"),
        (b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "certificate 1 of the CA bundle"),
        (
            b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n",
            "certificate 1 of the CA bundle",
        ),
        (hierarchy().sub.pem, "no self-signed root certificate"),
    ],
)
def test_an_unusable_bundle_is_an_input_error(bundle: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        TrustAnchors.from_pem_bundle(bundle)


# ---------------------------------------------------------------------------------------------------------
# The project's own capture


def test_the_chain_in_the_tls12_capture_verifies_against_the_capture_root() -> None:
    capture, root = CAPTURES / "vxlan-tls12-chain.pcap", CAPTURES / "pki" / "root-ca.pem"
    if not capture.exists() or not root.exists():
        pytest.skip("captures/vxlan-tls12-chain.pcap or captures/pki/root-ca.pem is missing")
    report = analyze_files([capture])
    anchors = TrustAnchors.from_pem_bundle(root.read_bytes())
    flows = [flow for flow in report.flows if flow.server_certificates]
    assert len(flows) == 2
    for flow in flows:
        chain = [report.certificates[digest] for digest in flow.server_certificates]
        at = datetime.fromtimestamp(flow.first_seen, UTC)
        judgement = judge_chain(chain, anchors, at=at, expected_name=flow.sni)
        assert judgement.status == PASS, not_passing(judgement)
        assert judgement.path[:2] == flow.server_certificates
        assert len(judgement.path) == 3


# ---------------------------------------------------------------------------------------------------------
# Fuzzing: only a summary or ParseError; judge_chain never raises


@FUZZ
@given(st.binary(max_size=600))
@example(b"")
@example(b"\x30\x80")
def test_summarize_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        summarize_certificate(data)


def mutated(der: bytes) -> st.SearchStrategy[bytes]:
    """The certificate with one byte changed, a slice cut out, or cut short."""
    position = st.integers(0, len(der) - 1)
    return st.one_of(
        st.tuples(position, st.integers(0, 255)).map(lambda m: der[: m[0]] + bytes([m[1]]) + der[m[0] + 1 :]),
        st.tuples(position, st.integers(1, 8)).map(lambda m: der[: m[0]] + der[m[0] + m[1] :]),
        position.map(lambda end: der[:end]),
    )


@FUZZ
@given(mutated(hierarchy().leaf.der))
def test_summarize_mutated_certificates(data: bytes) -> None:
    try:
        summary = summarize_certificate(data)
    except ParseError:
        return
    assert summary.sha256 and summary.key


@FUZZ
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=64),
            mutated(hierarchy().leaf.der),
            mutated(hierarchy().sub.der),
            st.sampled_from([hierarchy().leaf.der, hierarchy().sub.der, hierarchy().root.der]),
        ),
        max_size=4,
    ),
    st.sampled_from([SERVICE_NAME, None, "", "10.77.0.2", "*.internal.example"]),
)
def test_judge_chain_never_raises(chain: list[bytes], name: str | None) -> None:
    judgement = judge_chain(chain, anchors_of(hierarchy(), with_sub=True), at=AT, expected_name=name)
    assert judgement.status == max((c.status for c in judgement.checks), key=SEVERITY.index)
