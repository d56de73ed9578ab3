"""The default policy: one verdict and reason per category, and the overall verdict."""

from __future__ import annotations

import pytest

from verifier.core import model
from verifier.core.model import Verdict
from verifier.core.policy import judge, worst


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
