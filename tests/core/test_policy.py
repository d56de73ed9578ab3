"""The default policy (one verdict and reason per category, the overall verdict) and a policy file's rules."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from ipaddress import ip_network
from typing import Any

import pytest

from tests.pki import SERVICE_NAME, ec_key, issue
from tests.records import make_record
from verifier.core import model
from verifier.core.chains import CertificateSummary, summarize_certificate
from verifier.core.model import FlowRecord, Verdict
from verifier.core.policy import (
    DEFAULT_POLICY,
    ExceptionUse,
    Policy,
    PolicyException,
    PolicyJudge,
    PolicyOutcome,
    VersionRule,
    apply_policy,
    judge,
    worst,
)


@pytest.mark.parametrize(
    ("category", "cipher", "verdict", "reason_part"),
    [
        (model.TLS13, 0x1301, Verdict.PASS, "TLS_AES_128_GCM_SHA256"),
        (model.TLS12, 0xC02F, Verdict.WARN, "AEAD"),
        (model.TLS12, 0xC013, Verdict.WARN, "CBC"),
        (model.TLS12, 0x0004, Verdict.FAIL, "RC4"),  # TLS_RSA_WITH_RC4_128_MD5
        (model.TLS12, 0x0002, Verdict.FAIL, "NULL"),  # TLS_RSA_WITH_NULL_SHA
        (model.TLS12, 0x0003, Verdict.FAIL, "EXPORT"),  # TLS_RSA_EXPORT_WITH_RC4_40_MD5
        (model.TLS12, 0x0034, Verdict.FAIL, "anonymous"),  # TLS_DH_anon_WITH_AES_128_CBC_SHA
        (model.TLS12, 0x000A, Verdict.FAIL, "3DES"),  # TLS_RSA_WITH_3DES_EDE_CBC_SHA
        (model.TLS10_11, 0xC013, Verdict.FAIL, "RFC 8996"),
        (model.SSLV3, 0x0039, Verdict.FAIL, "SSLv3"),
        (model.SSLV2, None, Verdict.FAIL, "SSLv2"),
        ("plaintext(http)", None, Verdict.FAIL, "cleartext http"),
        (model.OTHER_ENCRYPTED_SSH, None, Verdict.WARN, "SSH"),
        (model.TLS_NO_HANDSHAKE, None, Verdict.INCONCLUSIVE, "before the capture"),
        (model.TLS_INCOMPLETE, None, Verdict.INCONCLUSIVE, "the evidence"),
        (model.UNKNOWN_DATA, None, Verdict.INCONCLUSIVE, "the evidence"),
        (model.NO_PAYLOAD, None, Verdict.INCONCLUSIVE, "no payload"),
    ],
)
def test_verdicts(category: str, cipher: int | None, verdict: Verdict, reason_part: str) -> None:
    got, reason = judge(category, cipher, "the evidence")
    assert got is verdict and reason_part in reason


def test_overall_verdict_is_the_worst() -> None:
    assert worst({"PASS": 3, "WARN": 1}) is Verdict.WARN
    assert worst({"PASS": 3, "INCONCLUSIVE": 1, "WARN": 2}) is Verdict.INCONCLUSIVE
    assert worst({"PASS": 1, "FAIL": 1, "INCONCLUSIVE": 4}) is Verdict.FAIL
    assert worst({"FAIL": 0, "PASS": 2}) is Verdict.PASS
    assert worst({}) is Verdict.INCONCLUSIVE


# ---------------------------------------------------------------------------------------------------------
# A policy file's rules, applied to records the default policy has judged.

AT = datetime(2026, 6, 1, tzinfo=UTC).timestamp()  # when exceptions are judged
TLS12_AEAD = {"category": model.TLS12, "tls_version": "TLS1.2", "cipher_suite": 0xC02F}


def judged(**overrides: Any) -> FlowRecord:
    """A record as the analyser hands it over: its verdict and reason from the default policy."""
    record = make_record(**overrides)
    verdict, reason = judge(record.category, record.cipher_suite, record.evidence)
    return replace(record, verdict=verdict, reason=reason)


def leaf_summary(
    lifetime: timedelta = timedelta(days=7), san: tuple[str, ...] = (SERVICE_NAME,)
) -> CertificateSummary:
    return summarize_certificate(
        issue("leaf", ec_key("policy-leaf"), None, ca=False, lifetime=lifetime, san=san).der
    )


def test_the_default_policy_changes_nothing() -> None:
    for record in (judged(), judged(**TLS12_AEAD), judged(category="plaintext(http)", tls_version=None)):
        outcome = apply_policy(record, DEFAULT_POLICY, None, AT, None)
        assert outcome == PolicyOutcome(record, None, ())


def test_a_minimum_of_tls_13_fails_tls_12() -> None:
    outcome = apply_policy(judged(**TLS12_AEAD), Policy(min_tls_version="1.3"), None, AT, None)
    assert outcome.record.verdict is Verdict.FAIL
    assert outcome.record.reason.endswith(
        "AEAD cipher (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256); TLS 1.3 is the target; "
        "policy: TLS 1.2 is below the minimum TLS 1.3 (the policy's default)"
    )
    assert (
        apply_policy(judged(), Policy(min_tls_version="1.3"), None, AT, None).record.verdict is Verdict.PASS
    )


def test_rules_that_match_replace_the_default_and_the_strictest_wins() -> None:
    policy = Policy(
        min_tls_version="1.3",
        rules=(
            VersionRule("1.2", port=5432),
            VersionRule("1.2", service="legacy"),
            VersionRule("1.3", service="payments", port=5432),
        ),
    )
    on_5432 = judged(**TLS12_AEAD, server="10.0.0.2:5432")
    assert apply_policy(on_5432, policy, None, AT, None).record.verdict is Verdict.WARN
    assert apply_policy(judged(**TLS12_AEAD), policy, "legacy", AT, None).record.verdict is Verdict.WARN
    failed = apply_policy(on_5432, policy, "payments", AT, None).record
    assert failed.verdict is Verdict.FAIL
    assert failed.reason.endswith("(the policy's rule for service payments, port 5432)")
    # The default applies where no rule matches.
    assert apply_policy(judged(**TLS12_AEAD), policy, "payments", AT, None).record.verdict is Verdict.FAIL


def test_certificate_lifetime() -> None:
    policy = Policy(max_certificate_lifetime_days=7)
    # AWS Private CA backdates notBefore by an hour: 7 days and 1 hour is a 7-day certificate.
    fits = leaf_summary(timedelta(days=7, hours=1))
    assert apply_policy(judged(), policy, None, AT, fits).record.verdict is Verdict.PASS
    too_long = apply_policy(judged(), policy, None, AT, leaf_summary(timedelta(days=30))).record
    assert too_long.verdict is Verdict.FAIL
    assert too_long.reason == (
        "TLS 1.3 (TLS_AES_128_GCM_SHA256); policy: the leaf certificate is valid for 30 days, "
        "longer than the maximum 7 days"
    )


@pytest.mark.parametrize(
    ("san", "patterns", "verdict"),
    [
        (("api.internal.example",), ("*.internal.example",), Verdict.PASS),
        (("API.Internal.Example",), ("*.internal.example",), Verdict.PASS),  # DNS names ignore case
        (("a.b.internal.example",), ("*.internal.example",), Verdict.PASS),  # a glob's * spans dots
        (("api.example.com", "api.internal.example"), ("*.internal.example",), Verdict.PASS),
        (("api.example.com",), ("*.internal.example", "db.*"), Verdict.FAIL),
        (("10.0.0.2",), ("10.0.0.*",), Verdict.PASS),  # iPAddress names too
        ((), ("*",), Verdict.FAIL),  # no subjectAltName at all
    ],
)
def test_san_patterns(san: tuple[str, ...], patterns: tuple[str, ...], verdict: Verdict) -> None:
    outcome = apply_policy(judged(), Policy(san_patterns=patterns), None, AT, leaf_summary(san=san))
    assert outcome.record.verdict is verdict
    if verdict is Verdict.FAIL:
        assert "policy: no subjectAltName of the leaf" in outcome.record.reason


def test_certificate_rules_say_when_they_could_not_be_checked() -> None:
    policy = Policy(san_patterns=("*.internal.example",))
    unseen = apply_policy(judged(), policy, None, AT, None).record
    assert unseen.verdict is Verdict.PASS
    assert unseen.reason.endswith("certificate rules were not checked: no server certificate was seen")
    unreadable = apply_policy(judged(server_certificates=("ab" * 32,)), policy, None, AT, None).record
    assert unreadable.reason.endswith(
        "certificate rules were not checked: the leaf certificate is unreadable"
    )
    cleartext = judged(category="plaintext(http)", tls_version=None)
    assert apply_policy(cleartext, policy, None, AT, None).record == cleartext


CLEARTEXT_REDIS = {
    "category": "plaintext(resp)",
    "tls_version": None,
    "client": "10.0.7.9:51000",
    "server": "10.0.42.5:6379",
    "evidence": "RESP command PING",
}


def exception(expires: date = date(2026, 12, 31), **selectors: Any) -> PolicyException:
    return PolicyException("cleartext Redis until OPS-123", expires, **selectors)


def test_an_exception_lowers_a_fail_to_warn_with_its_justification() -> None:
    waiver = exception(port=6379)
    outcome = apply_policy(judged(**CLEARTEXT_REDIS), Policy(exceptions=(waiver,)), None, AT, None)
    assert outcome.waived_by == 0 and outcome.expired == ()
    assert outcome.record.verdict is Verdict.WARN
    assert outcome.record.reason == (
        "cleartext resp: RESP command PING; exception: cleartext Redis until OPS-123 (until 2026-12-31)"
    )


def test_an_expired_exception_is_named_not_applied() -> None:
    waiver = exception(date(2026, 5, 31), port=6379)
    outcome = apply_policy(judged(**CLEARTEXT_REDIS), Policy(exceptions=(waiver,)), None, AT, None)
    assert outcome.waived_by is None and outcome.expired == (0,)
    assert outcome.record.verdict is Verdict.FAIL
    assert outcome.record.reason.endswith(
        "; exception expired on 2026-05-31, not applied: cleartext Redis until OPS-123"
    )


def test_an_exception_holds_to_the_end_of_its_day_utc() -> None:
    waiver = exception(date(2026, 5, 31), port=6379)
    policy = Policy(exceptions=(waiver,))
    assert apply_policy(judged(**CLEARTEXT_REDIS), policy, None, AT - 1, None).waived_by == 0
    assert apply_policy(judged(**CLEARTEXT_REDIS), policy, None, AT, None).waived_by is None


@pytest.mark.parametrize(
    ("selectors", "service", "applies"),
    [
        ({"peer": ip_network("10.0.42.0/24")}, None, True),  # the server's address
        ({"peer": ip_network("10.0.7.9/32")}, None, True),  # the client's
        ({"peer": ip_network("10.0.8.0/24")}, None, False),
        ({"peer": ip_network("2001:db8::/32")}, None, False),
        ({"port": 6380}, None, False),
        ({"port": 40000}, None, False),  # the client's port is no server port
        ({"service": "cache"}, "cache", True),
        ({"service": "cache"}, None, False),
        ({"peer": ip_network("10.0.42.0/24"), "port": 6379, "service": "cache"}, "cache", True),
        ({"peer": ip_network("10.0.42.0/24"), "port": 6379, "service": "cache"}, "web", False),  # every one
    ],
)
def test_exception_selectors(selectors: dict[str, Any], service: str | None, applies: bool) -> None:
    outcome = apply_policy(
        judged(**CLEARTEXT_REDIS), Policy(exceptions=(exception(**selectors),)), service, AT, None
    )
    assert (outcome.record.verdict is Verdict.WARN) is applies


def test_exceptions_match_ipv6_peers() -> None:
    record = judged(**CLEARTEXT_REDIS | {"client": "[2001:db8::7]:51000", "server": "[2001:db8::5]:6379"})
    policy = Policy(exceptions=(exception(peer=ip_network("2001:db8::/64")),))
    assert apply_policy(record, policy, None, AT, None).record.verdict is Verdict.WARN


def test_exceptions_waive_only_failures() -> None:
    policy = Policy(exceptions=(exception(port=443),))
    for record in (judged(), judged(**TLS12_AEAD), judged(category=model.UNKNOWN_DATA, tls_version=None)):
        assert apply_policy(record, policy, None, AT, None) == PolicyOutcome(record, None, ())


def test_an_exception_waives_what_the_policy_fails() -> None:
    policy = Policy(min_tls_version="1.3", exceptions=(exception(port=443),))
    record = apply_policy(judged(**TLS12_AEAD), policy, None, AT, None).record
    assert record.verdict is Verdict.WARN
    assert "policy: TLS 1.2 is below the minimum TLS 1.3" in record.reason
    assert record.reason.endswith("; exception: cleartext Redis until OPS-123 (until 2026-12-31)")


def test_the_first_exception_in_force_applies() -> None:
    old, first, second = (
        exception(date(2026, 1, 1), port=6379),
        exception(port=6379),
        exception(peer=ip_network("10.0.0.0/8")),
    )
    outcome = apply_policy(judged(**CLEARTEXT_REDIS), Policy(exceptions=(old, first, second)), None, AT, None)
    # The expired one is not worth a mention when another one applies.
    assert outcome.waived_by == 1 and outcome.expired == ()
    assert "expired" not in outcome.record.reason


def test_the_judge_finds_services_and_leaves_and_counts_exceptions() -> None:
    leaf = issue("leaf", ec_key("policy-leaf"), None, ca=False, lifetime=timedelta(days=90)).der
    digest = hashlib.sha256(leaf).hexdigest()
    waiver, lapsed, unused = (
        exception(port=6379),
        exception(date(2026, 1, 1), service="api"),
        exception(port=1),
    )
    policy = Policy(max_certificate_lifetime_days=30, exceptions=(waiver, lapsed, unused))
    judge_ = PolicyJudge(policy, {digest: leaf}, AT, services={"2001:db8:0::2": "api"})
    long_lived = judge_.apply(judged(server="[2001:db8::2]:443", server_certificates=(digest,)))
    assert long_lived.verdict is Verdict.FAIL
    assert "valid for 90 days" in long_lived.reason and "expired on 2026-01-01" in long_lived.reason
    assert judge_.apply(judged(**CLEARTEXT_REDIS)).verdict is Verdict.WARN
    assert judge_.apply(judged(**CLEARTEXT_REDIS)).verdict is Verdict.WARN
    assert judge_.exceptions() == (
        ExceptionUse(waiver, expired=False, flows=2),
        ExceptionUse(lapsed, expired=True, flows=1),
        ExceptionUse(unused, expired=False, flows=0),
    )


def test_the_judge_reads_an_unparseable_leaf_as_unreadable() -> None:
    judge_ = PolicyJudge(Policy(san_patterns=("*",)), {"ab" * 32: b"\x30\x03\x02\x01\x00"}, AT)
    record = judge_.apply(judged(server_certificates=("ab" * 32,)))
    assert record.verdict is Verdict.PASS and record.reason.endswith("the leaf certificate is unreadable")
