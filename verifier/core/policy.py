"""The policy: one verdict, with its reason, per flow.

The default policy:

PASS  TLS 1.3.
WARN  TLS 1.2 with an acceptable cipher (TLS 1.3 is the target), or encryption that is not TLS (SSH).
FAIL  any cleartext, SSL 2/3, TLS 1.0/1.1, and TLS 1.2 with NULL, EXPORT, RC4, anonymous or (3)DES ciphers.
INCONCLUSIVE  what the wire did not show well enough to judge: TLS without a visible handshake, an
      unfinished handshake, unrecognised data, no payload.

A policy file tightens it and may waive findings, with a justification, until a date: see ``Policy`` and
``apply_policy`` below, and docs/policy.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from fnmatch import fnmatchcase
from ipaddress import IPv4Network, IPv6Network, ip_address

from verifier.core import model
from verifier.core.chains import PCA_BACKDATING, CertificateSummary, summarize_certificate
from verifier.core.model import ExceptionOutcome, FlowRecord, Verdict
from verifier.core.tls import cipher_suite_class, cipher_suite_name
from verifier.errors import ParseError

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


# ---------------------------------------------------------------------------------------------------------
# A policy file (verifier/policy_file.py reads it; docs/policy.md describes it) tightens the default policy
# and may waive findings by exception. It never loosens the default: the minimum version is 1.2 or 1.3, and
# an exception lowers a FAIL to WARN at most, so cleartext can never PASS.

TLS_VERSIONS = ("1.2", "1.3")  # what a minimum TLS version may be, lowest first
_CATEGORY_VERSION = {model.TLS12: "1.2", model.TLS13: "1.3"}  # older versions fail whatever the policy


@dataclass(frozen=True, slots=True)
class VersionRule:
    """The minimum TLS version for the flows to a port and/or a service (their server side)."""

    min_tls_version: str
    port: int | None = None
    service: str | None = None


@dataclass(frozen=True, slots=True)
class PolicyException:
    """A documented waiver: FAIL flows it matches become WARN until the end of ``expires`` (UTC).

    Every selector given must match; at least one is given. ``peer`` matches the client or the server address.
    """

    justification: str
    expires: date
    peer: IPv4Network | IPv6Network | None = None
    port: int | None = None  # the server port
    service: str | None = None  # the server's service


@dataclass(frozen=True, slots=True)
class Policy:
    min_tls_version: str = "1.2"  # for flows no rule covers
    rules: tuple[VersionRule, ...] = ()  # the rules that match a flow replace the default; the strictest wins
    required_pca_arn: str | None = None  # the chain must lead to this AWS Private CA (the CLI loads it)
    required_ca_pem: str | None = None  # ... or to a CA of this PEM bundle (an absolute path)
    max_certificate_lifetime_days: int | None = None  # of the server's leaf certificate
    san_patterns: tuple[str, ...] = ()  # globs: the leaf must carry a subjectAltName matching one of them
    exceptions: tuple[PolicyException, ...] = ()


DEFAULT_POLICY = Policy()


@dataclass(frozen=True, slots=True)
class PolicyOutcome:
    record: FlowRecord  # the record judged again under the policy
    # Exceptions by their index in Policy.exceptions (two may be alike):
    waived_by: int | None  # the one that lowered its FAIL to WARN
    expired: tuple[int, ...]  # those that matched its FAIL but had expired


@dataclass(frozen=True, slots=True)
class ExceptionUse:
    """What one exception of the policy did over a whole analysis."""

    exception: PolicyException
    expired: bool  # at the time of the evaluation
    flows: int  # FAIL flows it matched: waived (to WARN) if it was in force, left failing if it had expired


def apply_policy(
    record: FlowRecord, policy: Policy, service: str | None, at: float, leaf: CertificateSummary | None
) -> PolicyOutcome:
    """Judge a record (already judged by the default policy and the chain check) again under ``policy``.

    ``service`` is the service of the flow's server, if known; ``at`` the moment exceptions are judged against
    (POSIX time); ``leaf`` the server's leaf certificate, when it was seen and could be read.
    """
    findings = []
    minimum, source = _minimum_version(policy, _port(record.server), service)
    version = _CATEGORY_VERSION.get(record.category)
    if version is not None and TLS_VERSIONS.index(version) < TLS_VERSIONS.index(minimum):
        findings.append(f"TLS {version} is below the minimum TLS {minimum} ({source})")
    notes = []
    if policy.max_certificate_lifetime_days is not None or policy.san_patterns:
        unchecked = "the policy's certificate rules were not checked"
        if leaf is not None:
            findings.extend(_certificate_findings(policy, leaf))
        elif record.server_certificates:
            notes.append(f"{unchecked}: the leaf certificate is unreadable")
        elif record.tls_version is not None:
            notes.append(f"{unchecked}: no server certificate was seen")
    verdict = Verdict.FAIL if findings else record.verdict
    reason = "; ".join((record.reason, *(f"policy: {finding}" for finding in findings), *notes))
    waived_by = None
    expired: list[int] = []
    if verdict is Verdict.FAIL:
        for index, exception in enumerate(policy.exceptions):
            if not _matches(exception, record, service):
                continue
            if at >= _end_of(exception.expires):
                expired.append(index)
            elif waived_by is None:
                waived_by = index
        if waived_by is not None:
            waiver = policy.exceptions[waived_by]
            verdict = Verdict.WARN
            reason += f"; exception: {waiver.justification} (until {waiver.expires.isoformat()})"
        else:
            for index in expired:
                lapsed = policy.exceptions[index]
                reason += f"; exception expired on {lapsed.expires.isoformat()}, not applied: "
                reason += lapsed.justification
    if verdict is not record.verdict or reason != record.reason:
        record = replace(record, verdict=verdict, reason=reason)
    return PolicyOutcome(record, waived_by, tuple(expired) if waived_by is None else ())


class PolicyJudge:
    """``apply_policy`` over a stream of records: finds each server's service and leaf certificate (each
    certificate read once) and counts what every exception did."""

    def __init__(
        self,
        policy: Policy,
        certificates: Mapping[str, bytes],
        at: float,
        services: Mapping[str, str] | None = None,
    ) -> None:
        self.policy = policy
        self.at = at
        self.certificates = certificates  # SHA-256 -> DER, as the analyser registers them
        # server address -> its service (awsvpc: one address per task)
        self.services = {_address(address): service for address, service in (services or {}).items()}
        self._leaves: dict[str, CertificateSummary | None] = {}
        self._flows = [0] * len(policy.exceptions)  # FAIL flows each exception matched

    def apply(self, record: FlowRecord) -> FlowRecord:
        service = self.services.get(_address(_host(record.server)))
        outcome = apply_policy(record, self.policy, service, self.at, self._leaf(record))
        for index in (outcome.waived_by, *outcome.expired):
            if index is not None:
                self._flows[index] += 1
        return outcome.record

    def outcomes(self) -> tuple[ExceptionOutcome, ...]:
        """``exceptions`` as the report holds them."""
        return tuple(
            ExceptionOutcome(
                justification=use.exception.justification,
                expires=use.exception.expires.isoformat(),
                peer=str(use.exception.peer) if use.exception.peer is not None else None,
                port=use.exception.port,
                service=use.exception.service,
                expired=use.expired,
                flows=use.flows,
            )
            for use in self.exceptions()
        )

    def exceptions(self) -> tuple[ExceptionUse, ...]:
        """Every exception of the policy, in the policy's order, with what it did."""
        return tuple(
            ExceptionUse(exception, self.at >= _end_of(exception.expires), flows)
            for exception, flows in zip(self.policy.exceptions, self._flows, strict=True)
        )

    def _leaf(self, record: FlowRecord) -> CertificateSummary | None:
        if not record.server_certificates:
            return None
        digest = record.server_certificates[0]
        if digest not in self._leaves:
            der = self.certificates.get(digest)
            try:
                self._leaves[digest] = summarize_certificate(der) if der is not None else None
            except ParseError:
                self._leaves[digest] = None
        return self._leaves[digest]


def _minimum_version(policy: Policy, port: int | None, service: str | None) -> tuple[str, str]:
    """The minimum version for a flow, and where it comes from."""
    matching = [
        rule for rule in policy.rules if rule.port in (None, port) and rule.service in (None, service)
    ]
    if not matching:
        return policy.min_tls_version, "the policy's default"
    rule = max(matching, key=lambda rule: TLS_VERSIONS.index(rule.min_tls_version))
    scope = [f"service {rule.service}"] if rule.service is not None else []
    scope += [f"port {rule.port}"] if rule.port is not None else []
    return rule.min_tls_version, f"the policy's rule for {', '.join(scope)}"


def _certificate_findings(policy: Policy, leaf: CertificateSummary) -> list[str]:
    findings = []
    limit = policy.max_certificate_lifetime_days
    lifetime = leaf.not_after - leaf.not_before
    # AWS Private CA backdates notBefore: a certificate issued for exactly the limit must not fail it.
    if limit is not None and lifetime > timedelta(days=limit) + PCA_BACKDATING:
        findings.append(
            f"the leaf certificate is valid for {lifetime.days} days, longer than the maximum {limit} days"
        )
    if policy.san_patterns:
        names = [name.lower() for name in (*leaf.san_dns, *leaf.san_ip)]
        if not any(fnmatchcase(name, pattern.lower()) for name in names for pattern in policy.san_patterns):
            shown = ", ".join(names) or "none"
            wanted = ", ".join(policy.san_patterns)
            findings.append(
                f"no subjectAltName of the leaf ({shown}) matches the policy's patterns ({wanted})"
            )
    return findings


def _matches(exception: PolicyException, record: FlowRecord, service: str | None) -> bool:
    if exception.port is not None and exception.port != _port(record.server):
        return False
    if exception.service is not None and exception.service != service:
        return False
    if exception.peer is not None:
        return _in_network(record.client, exception.peer) or _in_network(record.server, exception.peer)
    return True


def _end_of(day: date) -> float:
    """The moment an exception stops applying: the end of its expiry date, UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() + 86400


def _host(endpoint: str) -> str:
    """The address of "ip:port" or "[v6]:port"."""
    return endpoint.rpartition(":")[0].removeprefix("[").removesuffix("]")


def _port(endpoint: str) -> int | None:
    port = endpoint.rpartition(":")[2]
    return int(port) if port.isascii() and port.isdigit() else None


def _address(text: str) -> str:
    # One spelling per address, so an IPv6 server matches however it is written.
    try:
        return ip_address(text).compressed
    except ValueError:
        return text


def _in_network(endpoint: str, network: IPv4Network | IPv6Network) -> bool:
    try:
        return ip_address(_host(endpoint)) in network
    except ValueError:
        return False
