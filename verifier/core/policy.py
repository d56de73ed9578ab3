"""The default policy: one verdict, with its reason, per flow.

PASS  TLS 1.3.
WARN  TLS 1.2 with an acceptable cipher (TLS 1.3 is the target), or encryption that is not TLS (SSH).
FAIL  any cleartext, SSL 2/3, TLS 1.0/1.1, and TLS 1.2 with NULL, EXPORT, RC4, anonymous or (3)DES ciphers.
INCONCLUSIVE  what the wire did not show well enough to judge: TLS without a visible handshake, an
      unfinished handshake, unrecognised data, no payload.
"""

from __future__ import annotations

from collections.abc import Mapping

from verifier.core import model
from verifier.core.model import Verdict
from verifier.core.tls import cipher_suite_class, cipher_suite_name

_FORBIDDEN_CIPHER_CLASSES = {
    "null": "a NULL cipher (no encryption)",
    "export": "an EXPORT-grade cipher",
    "rc4": "RC4",
    "anon": "an anonymous (unauthenticated) key exchange",
    "des": "single DES",
    "3des": "3DES (64-bit block, Sweet32)",
}

_INCONCLUSIVE_REASONS = {
    model.TLS_NO_HANDSHAKE: "TLS records but no handshake: the connection began before the capture, so the "
    "version and cipher cannot be seen",
    model.NO_PAYLOAD: "no payload: nothing was exchanged that could be judged",
}


def judge(category: str, cipher_suite: int | None, evidence: str) -> tuple[Verdict, str]:
    """Verdict and reason for one flow under the default policy."""
    if category == model.TLS13:
        return Verdict.PASS, f"TLS 1.3 ({cipher_suite_name(cipher_suite)})" if cipher_suite else "TLS 1.3"
    if category == model.TLS12:
        if cipher_suite is None:
            return Verdict.WARN, "TLS 1.2 (cipher not seen)"
        name = cipher_suite_name(cipher_suite)
        cipher_class = cipher_suite_class(cipher_suite)
        if cipher_class in _FORBIDDEN_CIPHER_CLASSES:
            return Verdict.FAIL, f"TLS 1.2 with {_FORBIDDEN_CIPHER_CLASSES[cipher_class]}: {name}"
        if cipher_class == "aead":
            return Verdict.WARN, f"TLS 1.2 with an AEAD cipher ({name}); TLS 1.3 is the target"
        if cipher_class == "cbc":
            return Verdict.WARN, f"TLS 1.2 with a CBC cipher ({name}); prefer AEAD or TLS 1.3"
        return Verdict.WARN, f"TLS 1.2 with an unrecognised cipher suite ({name})"
    if category == model.TLS10_11:
        return Verdict.FAIL, "TLS 1.0/1.1 is deprecated (RFC 8996)"
    if category in (model.SSLV3, model.SSLV2):
        return Verdict.FAIL, f"{category} is broken and prohibited"
    if category.startswith("plaintext("):
        return Verdict.FAIL, f"cleartext {category[len('plaintext(') : -1]}: {evidence}"
    if category == model.OTHER_ENCRYPTED_SSH:
        return Verdict.WARN, "encrypted with SSH, not TLS: outside what this policy can verify"
    if category in _INCONCLUSIVE_REASONS:
        return Verdict.INCONCLUSIVE, _INCONCLUSIVE_REASONS[category]
    # TLS-incomplete, unknown(data): the classifier's evidence says what was and was not seen.
    return Verdict.INCONCLUSIVE, evidence


_SEVERITY = {Verdict.PASS: 0, Verdict.WARN: 1, Verdict.INCONCLUSIVE: 2, Verdict.FAIL: 3}


def severity(verdict: Verdict) -> int:
    """PASS < WARN < INCONCLUSIVE < FAIL."""
    return _SEVERITY[verdict]


def worst(verdicts: Mapping[str, int]) -> Verdict:
    """The overall verdict of a set of flows (counts by verdict); no flows at all is INCONCLUSIVE."""
    present = [Verdict(name) for name, count in verdicts.items() if count]
    if not present:
        return Verdict.INCONCLUSIVE
    return max(present, key=severity)
