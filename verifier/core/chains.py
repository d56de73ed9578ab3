"""Judging a server's certificate chain against the configured trust anchors (the AWS Private CA).

Pure: DER certificates and the capture time in, a ChainJudgement out. Path building is cryptography's
``x509.verification`` (web PKI rules), which answers all or nothing. So the path is built with the leaf's
name, usage and validity period left aside, each of those is checked here under its own name, and a strict
run with the expected name at the capture time then catches anything the separate checks do not model.

Only the configured anchors count: a chain to any other CA, public or private, fails.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    ServerVerifier,
    Store,
    VerificationError,
)

from verifier.errors import InputError, ParseError


class CheckStatus(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"


# The order of verifier.core.policy.severity: PASS < WARN < INCONCLUSIVE < FAIL.
_SEVERITY = {CheckStatus.PASS: 0, CheckStatus.WARN: 1, CheckStatus.INCONCLUSIVE: 2, CheckStatus.FAIL: 3}

SHORT_LIVED_MAX = timedelta(days=7)
# AWS Private CA sets notBefore 60 minutes before issuance to absorb clock skew, so its 7-day certificates
# span 7 days and 1 hour.
PCA_BACKDATING = timedelta(minutes=60)
EXPIRY_WARNING = timedelta(hours=24)
# Certificates followed from the leaf towards an anchor when diagnosing a chain that does not verify.
_MAX_WALK = 10

_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_STRONG_CURVES = {"secp256r1", "secp384r1"}
_STRONG_HASHES = {"SHA256", "SHA384", "SHA512", "SHA3-256", "SHA3-384", "SHA3-512"}
_BROKEN_HASHES = {"SHA1", "MD5"}
_EDDSA = {SignatureAlgorithmOID.ED25519, SignatureAlgorithmOID.ED448}
_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}
# Words in the validator's refusals that mean it does not handle an algorithm, rather than that the
# chain is wrong.
_UNSUPPORTED_WORDS = ("forbidden", "unsupported")
# What cryptography raises, on loading or on first access to a part, for bytes that are no certificate it can
# read; Warning for what it only warns about (see _parse).
_MALFORMED: tuple[type[Exception], ...] = (
    Warning,
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)
_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: CheckStatus
    detail: str  # one sentence a person understands


@dataclass(frozen=True, slots=True)
class CertificateSummary:
    sha256: str
    subject: str  # RFC 4514
    issuer: str
    serial: str  # hex
    not_before: datetime
    not_after: datetime
    san_dns: tuple[str, ...]
    san_ip: tuple[str, ...]
    key: str  # "ECDSA P-256", "RSA 2048", ...
    signature_hash: str | None  # "SHA256"; None for EdDSA and unknown algorithms
    is_ca: bool
    self_signed: bool


@dataclass(frozen=True, slots=True)
class ChainJudgement:
    status: CheckStatus  # the worst of the checks
    checks: tuple[Check, ...]
    chain: tuple[CertificateSummary, ...]  # the parseable certificates as presented by the peer, leaf first
    path: tuple[str, ...]  # SHA-256 of each certificate of the verified path, leaf to anchor; () if none


@dataclass(frozen=True, slots=True)
class TrustAnchors:
    roots: tuple[bytes, ...]  # DER of the trust anchors: the PCA's root, or the PCA itself if it is a root
    intermediates: tuple[bytes, ...]  # DER of subordinate CAs known from the PCA chain or the bundle
    short_lived: bool = False  # the CA issues short-lived certificates: lifetimes of at most 7 days

    @classmethod
    def from_pem_bundle(cls, data: bytes, *, short_lived: bool = False) -> TrustAnchors:
        """Self-signed certificates of the bundle become roots, the others intermediates."""
        blocks = _PEM_CERTIFICATE.findall(data)
        if not blocks:
            raise InputError("the CA bundle holds no PEM certificate")
        roots: list[bytes] = []
        intermediates: list[bytes] = []
        for number, block in enumerate(blocks, 1):
            try:
                parsed = _parse(base64.b64decode(b"".join(block.split()), validate=True))
            except (binascii.Error, ParseError) as exc:
                raise InputError(f"certificate {number} of the CA bundle cannot be parsed: {exc}") from exc
            (roots if parsed.summary.self_signed else intermediates).append(parsed.der)
        if not roots:
            raise InputError("the CA bundle has no self-signed root certificate to anchor trust")
        return cls(tuple(roots), tuple(intermediates), short_lived)


# ---------------------------------------------------------------------------------------------------------
# Reading certificates


@dataclass(frozen=True, slots=True)
class _Cert:
    """A parsed certificate with the parts the checks read, extracted once (extensions parse lazily)."""

    der: bytes
    cert: x509.Certificate
    summary: CertificateSummary
    public_key: CertificatePublicKeyTypes | None  # None: an algorithm cryptography does not support
    eku: tuple[x509.ObjectIdentifier, ...] | None  # None: no extendedKeyUsage extension
    has_san: bool

    @property
    def name(self) -> str:
        return self.summary.subject or "(empty subject)"


_Extension = TypeVar("_Extension", bound=x509.ExtensionType)


def summarize_certificate(der: bytes) -> CertificateSummary:
    """The facts of one DER certificate; raises ParseError for bytes that are not one."""
    return _parse(der).summary


def _parse(der: bytes) -> _Cert:
    try:
        # cryptography only warns about a serial that is not positive (RFC 5280 forbids it; later versions
        # refuse it): as an error it becomes a ParseError instead of a warning printed from a pure module.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            cert = x509.load_der_x509_certificate(der)
        extensions = cert.extensions
        san = _extension(extensions, x509.SubjectAlternativeName)
        basic = _extension(extensions, x509.BasicConstraints)
        eku = _extension(extensions, x509.ExtendedKeyUsage)
        try:
            public_key: CertificatePublicKeyTypes | None = cert.public_key()
        except UnsupportedAlgorithm:
            public_key = None
        summary = CertificateSummary(
            sha256=hashlib.sha256(der).hexdigest(),
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            serial=format(cert.serial_number, "x"),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            san_dns=tuple(san.get_values_for_type(x509.DNSName)) if san else (),
            san_ip=tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress)) if san else (),
            key=_describe_key(public_key, cert),
            signature_hash=_signature_hash(cert),
            is_ca=basic is not None and basic.ca,
            self_signed=_is_self_signed(cert),
        )
    except _MALFORMED as exc:
        raise ParseError(f"not a parseable X.509 certificate: {exc}") from exc
    return _Cert(der, cert, summary, public_key, tuple(eku) if eku is not None else None, san is not None)


def _extension(extensions: x509.Extensions, kind: type[_Extension]) -> _Extension | None:
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _describe_key(key: CertificatePublicKeyTypes | None, cert: x509.Certificate) -> str:
    if key is None:
        return f"unsupported key algorithm {cert.public_key_algorithm_oid.dotted_string}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {_CURVE_NAMES.get(key.curve.name, key.curve.name)}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, x25519.X25519PublicKey):
        return "X25519"
    if isinstance(key, x448.X448PublicKey):
        return "X448"
    return type(key).__name__


def _signature_hash(cert: x509.Certificate) -> str | None:
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    return algorithm.name.upper() if algorithm is not None else None


def _is_self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except InvalidSignature:
        return False  # self-issued by another key of the same name
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return True  # the signature cannot be checked: the names decide
    return True


def _signed_by(cert: _Cert, issuer: _Cert) -> bool | None:
    """Whether ``issuer``'s key made ``cert``'s signature; None when cryptography cannot check (SHA-1...)."""
    try:
        cert.cert.verify_directly_issued_by(issuer.cert)
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return True


# ---------------------------------------------------------------------------------------------------------
# Path building


@dataclass(frozen=True, slots=True)
class _Path:
    certs: tuple[_Cert, ...]  # leaf to anchor; () when the validator found no path
    built_at: datetime | None
    error: str  # the validator's reason when it found no path
    unsupported: bool  # the validator failed on something it does not handle


@dataclass(frozen=True, slots=True)
class _Walk:
    """Issuers followed by name and signature from the leaf, to say why the validator found no path."""

    certs: tuple[_Cert, ...]  # the leaf and the issuers found for it
    anchor: _Cert | None  # the configured anchor reached, if one was
    problem: str  # why no anchor was reached
    missing_issuer: bool  # an issuer was neither presented nor configured
    unchecked: bool  # a signature on the way could not be checked: the issuer was taken on its name


def _relaxed_verifier(store: Store, at: datetime) -> ClientVerifier:
    # The client verifier is the one that needs no name. With every leaf extension permitted and the CAs'
    # extendedKeyUsage not held against clientAuth, it judges the path itself: signatures, algorithms, CA
    # constraints, validity periods. The leaf's name, usage and times have checks of their own.
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None
    )
    builder = PolicyBuilder().store(store).time(at)
    return builder.extension_policies(
        ca_policy=ca_policy, ee_policy=ExtensionPolicy.permit_all()
    ).build_client_verifier()


def _build_path(
    leaf: _Cert, intermediates: Sequence[_Cert], store: Store, at: datetime, known: dict[bytes, _Cert]
) -> _Path:
    # At the capture time first; then, if that fails, inside the leaf's validity period, so that an expired
    # chain is still told apart from a wrong one (valid_at_capture_time reports the dates).
    midpoint = leaf.summary.not_before + (leaf.summary.not_after - leaf.summary.not_before) / 2
    error, unsupported = "", False
    for when in (at, midpoint) if midpoint != at else (at,):
        try:
            verified = _relaxed_verifier(store, when).verify(leaf.cert, [c.cert for c in intermediates])
        except VerificationError as exc:
            error, unsupported = _reason(exc), False
            continue
        except (ValueError, TypeError, x509.UnsupportedGeneralNameType) as exc:
            if not error:
                error, unsupported = _reason(exc), True
            continue
        certs = tuple(known[c.public_bytes(Encoding.DER)] for c in verified.chain)
        return _Path(certs, when, "", False)
    return _Path((), None, error, unsupported)


def _walk(leaf: _Cert, pool: Sequence[_Cert], roots: Sequence[_Cert]) -> _Walk:
    root_ders = {root.der for root in roots}
    certs = [leaf]
    unchecked = False
    while True:
        current = certs[-1]
        if current.der in root_ders:
            return _Walk(tuple(certs), current, "", False, unchecked)
        if current.summary.self_signed:
            problem = f"the chain ends at '{current.name}', a self-signed certificate that is not an anchor"
            return _Walk(tuple(certs), None, problem, False, unchecked)
        if len(certs) >= _MAX_WALK:
            return _Walk(tuple(certs), None, f"no anchor within {_MAX_WALK} certificates", False, unchecked)
        used = {c.der for c in certs}
        named = [c for c in (*roots, *pool) if c.cert.subject == current.cert.issuer and c.der not in used]
        if not named:
            problem = (
                f"the issuer '{current.summary.issuer}' of '{current.name}' "
                "was neither presented nor configured"
            )
            return _Walk(tuple(certs), None, problem, True, unchecked)
        verdicts = [(_signed_by(current, c), c) for c in named]
        signer = next((c for signed, c in verdicts if signed), None)
        if signer is None:
            signer = next((c for signed, c in verdicts if signed is None), None)
            unchecked = unchecked or signer is not None
        if signer is None:
            problem = (
                f"the signature of '{current.name}' does not verify with the key of any "
                f"'{current.summary.issuer}' presented or configured: it comes from another CA of that name"
            )
            return _Walk(tuple(certs), None, problem, False, unchecked)
        certs.append(signer)


# ---------------------------------------------------------------------------------------------------------
# Judging


def judge_chain(
    chain: Sequence[bytes], anchors: TrustAnchors, *, at: datetime, expected_name: str | None
) -> ChainJudgement:
    """Judge the chain a server presented (leaf first) against the anchors as of the capture time ``at`` (a
    naive datetime is taken as UTC). Never raises: what cannot be judged is INCONCLUSIVE, with the reason."""
    at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    parsed: list[_Cert | None] = []
    unparseable: list[str] = []
    for position, der in enumerate(chain, 1):
        try:
            parsed.append(_parse(der))
        except ParseError as exc:
            parsed.append(None)
            unparseable.append(
                f"certificate {position} of {len(chain)} as presented cannot be parsed ({exc})"
            )
    presented = [c for c in parsed if c is not None]
    summaries = tuple(c.summary for c in presented)
    if not parsed or parsed[0] is None:
        reason = unparseable[0] if parsed else "the server presented no certificate"
        check = Check("chains_to_anchor", CheckStatus.INCONCLUSIVE, reason)
        return ChainJudgement(CheckStatus.INCONCLUSIVE, (check,), summaries, ())

    leaf = parsed[0]
    # Anchors come from from_pem_bundle, which refuses unparseable ones; any other bad entry can only take
    # trust away, never add it.
    roots = _parse_all(anchors.roots)
    pool = _unique([*presented[1:], *_parse_all(anchors.intermediates)])
    store = Store([root.cert for root in roots]) if roots else None
    if store is not None:
        known = {c.der: c for c in (leaf, *pool, *roots)}
        path = _build_path(leaf, pool, store, at, known)
    else:
        path = _Path((), None, "", False)
    walk = _walk(leaf, pool, roots) if store is not None and not path.certs else None
    judged = path.certs or (walk.certs if walk is not None else (leaf,))
    root_ders = {root.der for root in roots}
    issued = [c for c in judged if c.der not in root_ders]  # anchors' own signatures are not relied upon

    strict, name_problem = _strict_verifier(store, at, expected_name)
    others = (
        _validity_check(judged, at),
        _eku_check(leaf, issued),
        _san_check(leaf, expected_name, name_problem),
        _rate_all("key_strength", judged, _rate_key, "every key on the chain is strong"),
        _rate_all(
            "signature_hash", issued, _rate_signature, "every signature relied on uses SHA-256 or better"
        ),
        _lifetime_check(leaf, short_lived=anchors.short_lived),
        _expiry_check(judged, at),
        _self_signed_check(leaf),
        _intermediates_check(path, walk, presented, unparseable),
    )
    anchor = _anchor_check(path, walk, roots, others, at)
    if strict is not None and anchor.status == CheckStatus.PASS and not _any_fail(others):
        anchor = _strict_check(strict, leaf, pool, anchor)
    checks = (anchor, *others)
    status = max((check.status for check in checks), key=_SEVERITY.__getitem__)
    return ChainJudgement(status, checks, summaries, tuple(c.summary.sha256 for c in path.certs))


def _parse_all(ders: Sequence[bytes]) -> list[_Cert]:
    certs = []
    for der in ders:
        try:
            certs.append(_parse(der))
        except ParseError:
            continue
    return certs


def _unique(certs: Sequence[_Cert]) -> list[_Cert]:
    seen: dict[bytes, _Cert] = {}
    for cert in certs:
        seen.setdefault(cert.der, cert)
    return list(seen.values())


def _any_fail(checks: Sequence[Check]) -> bool:
    return any(check.status == CheckStatus.FAIL for check in checks)


def _strict_verifier(
    store: Store | None, at: datetime, expected_name: str | None
) -> tuple[ServerVerifier | None, str]:
    """The web PKI server verifier for the expected name at the capture time, or why there is none."""
    if store is None or expected_name is None:
        return None, ""
    try:
        verifier = PolicyBuilder().store(store).time(at).build_server_verifier(_subject(expected_name))
    except ValueError as exc:
        return None, f"'{expected_name}' is not a valid DNS name or IP address ({exc})"
    return verifier, ""


def _subject(name: str) -> x509.DNSName | x509.IPAddress:
    normal = _normal_name(name)
    try:
        return x509.IPAddress(ipaddress.ip_address(normal))
    except ValueError:
        return x509.DNSName(normal)  # ValueError too when not ASCII: names go as IDNA A-labels


def _strict_check(strict: ServerVerifier, leaf: _Cert, pool: Sequence[_Cert], passed: Check) -> Check:
    """The relaxed path passed and so did every separate check: the strict verifier must agree."""
    try:
        strict.verify(leaf.cert, [c.cert for c in pool])
    except (VerificationError, ValueError, TypeError) as exc:
        detail = (
            f"{passed.detail}, but strict path validation for the expected name at capture time failed: "
            f"{_reason(exc)}"
        )
        return Check("chains_to_anchor", CheckStatus.FAIL, detail)
    return passed


def _anchor_check(
    path: _Path, walk: _Walk | None, roots: Sequence[_Cert], others: Sequence[Check], at: datetime
) -> Check:
    name = "chains_to_anchor"
    if not roots:
        return Check(name, CheckStatus.INCONCLUSIVE, "no usable trust anchor is configured")
    if path.certs:
        anchor, length = path.certs[-1].name, len(path.certs)
        detail = f"the chain leads to the configured anchor '{anchor}' ({length} certificates)"
        if path.built_at is not None and path.built_at != at:
            detail += f", as of {_time(path.built_at)} when its certificates were valid"
        return Check(name, CheckStatus.PASS, detail)
    if walk is None or walk.anchor is None:
        anchors = ", ".join(f"'{root.name}'" for root in roots)
        problem = walk.problem if walk is not None else path.error
        return Check(name, CheckStatus.FAIL, f"no path to the configured anchors ({anchors}): {problem}")
    how = "by issuer name (a signature could not be checked)" if walk.unchecked else "by signature"
    lead = f"the certificates lead to the configured anchor '{walk.anchor.name}' {how}"
    # The validator forbids SHA-1 and small RSA keys: those are failures of the chain, which the
    # key_strength and signature_hash checks name. Other algorithms it refuses are beyond its judgement.
    weak = _any_fail([c for c in others if c.name in ("key_strength", "signature_hash")])
    unsupported = path.unsupported or any(word in path.error.lower() for word in _UNSUPPORTED_WORDS)
    if unsupported and not weak:
        detail = f"{lead}, but the path validator cannot judge them: {path.error}"
        return Check(name, CheckStatus.INCONCLUSIVE, detail)
    return Check(name, CheckStatus.FAIL, f"{lead}, but path validation rejected them: {path.error}")


def _validity_check(judged: Sequence[_Cert], at: datetime) -> Check:
    name = "valid_at_capture_time"
    for cert in judged:
        if at < cert.summary.not_before:
            start = _time(cert.summary.not_before)
            detail = f"'{cert.name}' is not valid before {start}, after the capture time {_time(at)}"
            return Check(name, CheckStatus.FAIL, detail)
        if at > cert.summary.not_after:
            end = _time(cert.summary.not_after)
            detail = f"'{cert.name}' expired at {end}, before the capture time {_time(at)}"
            return Check(name, CheckStatus.FAIL, detail)
    return Check(
        name, CheckStatus.PASS, f"every certificate on the chain is valid at the capture time {_time(at)}"
    )


def _eku_check(leaf: _Cert, issued: Sequence[_Cert]) -> Check:
    """An extendedKeyUsage, where present, must allow server authentication; CAs may allow any usage.
    ``issued``: the chain's certificates that are not anchors; the leaf is judged even if it is one."""
    name = "server_auth_eku"
    for cert in (leaf, *(c for c in issued if c is not leaf)):
        allowed = {ExtendedKeyUsageOID.SERVER_AUTH}
        if cert is not leaf:
            allowed.add(ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE)
        if cert.eku is not None and not allowed & set(cert.eku):
            usages = ", ".join(_EKU_NAMES.get(oid, oid.dotted_string) for oid in cert.eku) or "nothing"
            role = "the leaf" if cert is leaf else f"the CA '{cert.name}'"
            return Check(name, CheckStatus.FAIL, f"{role} is restricted to {usages}, without serverAuth")
    if leaf.eku is None:
        detail = "the leaf has no extendedKeyUsage, so server authentication is allowed"
        return Check(name, CheckStatus.PASS, detail)
    return Check(name, CheckStatus.PASS, "the leaf's extendedKeyUsage includes serverAuth")


def _san_check(leaf: _Cert, expected_name: str | None, name_problem: str) -> Check:
    name = "san_matches"
    if expected_name is None:
        return Check(name, CheckStatus.INCONCLUSIVE, "no name to match")
    if name_problem:
        return Check(name, CheckStatus.INCONCLUSIVE, name_problem)
    if not leaf.has_san:
        return Check(name, CheckStatus.FAIL, "the leaf has no subjectAltName, so it names no server")
    wanted = _normal_name(expected_name)
    match = _matching_san(leaf.summary, wanted)
    if match is not None:
        return Check(name, CheckStatus.PASS, f"'{expected_name}' matches the leaf's subjectAltName '{match}'")
    names = ", ".join((*leaf.summary.san_dns, *leaf.summary.san_ip)) or "no DNS name or IP address"
    return Check(
        name, CheckStatus.FAIL, f"'{expected_name}' is not among the leaf's subjectAltNames ({names})"
    )


def _normal_name(name: str) -> str:
    return name.removesuffix(".").lower()


def _matching_san(summary: CertificateSummary, wanted: str) -> str | None:
    """The subjectAltName entry that covers the name: an IP address equal to it, a DNS name equal to it, or a
    wildcard standing for its whole first label (RFC 6125 section 6.4.3, as web PKI applies it)."""
    try:
        address = ipaddress.ip_address(wanted)
    except ValueError:
        address = None
    if address is not None:
        return next((ip for ip in summary.san_ip if ipaddress.ip_address(ip) == address), None)
    first_label, _, parent = wanted.partition(".")
    for entry in summary.san_dns:
        pattern = _normal_name(entry)
        if pattern == wanted or (
            pattern.startswith("*.") and first_label and parent and pattern[2:] == parent
        ):
            return entry
    return None


def _rate_all(
    name: str, certs: Sequence[_Cert], rate: Callable[[_Cert], tuple[CheckStatus, str]], all_good: str
) -> Check:
    """The worst rating among the certificates, or all_good with what was seen."""
    ratings = [rate(cert) for cert in certs]
    worst = max(ratings, key=lambda rating: _SEVERITY[rating[0]], default=(CheckStatus.PASS, ""))
    if worst[0] != CheckStatus.PASS:
        return Check(name, worst[0], worst[1])
    seen = ", ".join(detail for _, detail in ratings) or "none on the chain"
    return Check(name, CheckStatus.PASS, f"{all_good}: {seen}")


def _rate_key(cert: _Cert) -> tuple[CheckStatus, str]:
    key, described = cert.public_key, cert.summary.key
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _STRONG_CURVES:
        return CheckStatus.PASS, described
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size >= 2048:
            return CheckStatus.PASS, described
        return CheckStatus.FAIL, f"the key of '{cert.name}' is {described}, below 2048 bits"
    return CheckStatus.WARN, f"the key of '{cert.name}' is {described}, not ECDSA P-256/P-384 or RSA >= 2048"


def _rate_signature(cert: _Cert) -> tuple[CheckStatus, str]:
    hash_name = cert.summary.signature_hash
    if hash_name in _STRONG_HASHES:
        return CheckStatus.PASS, hash_name
    if hash_name in _BROKEN_HASHES:
        return CheckStatus.FAIL, f"'{cert.name}' is signed with {hash_name}, which is broken"
    if hash_name is None:
        oid = cert.cert.signature_algorithm_oid
        if oid in _EDDSA:
            return CheckStatus.PASS, "EdDSA"
        return (
            CheckStatus.INCONCLUSIVE,
            f"'{cert.name}' has an unknown signature algorithm ({oid.dotted_string})",
        )
    return CheckStatus.WARN, f"'{cert.name}' is signed with {hash_name}, weaker than SHA-256"


def _lifetime_check(leaf: _Cert, *, short_lived: bool) -> Check:
    name = "lifetime"
    span = _span(leaf.summary.not_after - leaf.summary.not_before)
    if not short_lived:
        return Check(
            name, CheckStatus.PASS, f"the leaf is valid for {span} (the CA is not set as short-lived)"
        )
    if leaf.summary.not_after - leaf.summary.not_before <= SHORT_LIVED_MAX + PCA_BACKDATING:
        return Check(
            name, CheckStatus.PASS, f"the leaf is valid for {span}, within a short-lived CA's 7 days"
        )
    detail = f"long-lived certificate: the leaf is valid for {span}, where the short-lived CA issues 7 days"
    return Check(name, CheckStatus.WARN, detail)


def _expiry_check(judged: Sequence[_Cert], at: datetime) -> Check:
    name = "expiry_soon"
    first = min(judged, key=lambda cert: cert.summary.not_after)
    left = first.summary.not_after - at
    if left < timedelta(0):
        return Check(name, CheckStatus.WARN, f"'{first.name}' had already expired at the capture time")
    if left <= EXPIRY_WARNING:
        return Check(name, CheckStatus.WARN, f"'{first.name}' expires {_span(left)} after the capture time")
    return Check(
        name, CheckStatus.PASS, f"the first to expire, '{first.name}', had {_span(left)} left at capture"
    )


def _self_signed_check(leaf: _Cert) -> Check:
    name = "not_self_signed"
    if leaf.summary.self_signed:
        return Check(name, CheckStatus.FAIL, f"the leaf '{leaf.name}' is self-signed: no CA vouches for it")
    return Check(name, CheckStatus.PASS, f"the leaf is issued by '{leaf.summary.issuer}'")


def _intermediates_check(
    path: _Path, walk: _Walk | None, presented: Sequence[_Cert], unparseable: Sequence[str]
) -> Check:
    name = "intermediates_present"
    if walk is not None and walk.missing_issuer:
        return Check(name, CheckStatus.FAIL, f"missing intermediate: {walk.problem}")
    if unparseable:
        return Check(name, CheckStatus.INCONCLUSIVE, f"{unparseable[0]}, so the chain is judged without it")
    if walk is not None:
        return Check(name, CheckStatus.PASS, "every issuer named on the chain was presented or configured")
    if not path.certs:
        return Check(name, CheckStatus.INCONCLUSIVE, "no usable trust anchor is configured to reach")
    if len(path.certs) == 1:
        return Check(name, CheckStatus.PASS, "the leaf is itself a configured anchor")
    between = path.certs[1:-1]
    if not between:
        return Check(name, CheckStatus.PASS, "the leaf is issued directly by the anchor")
    shown = {c.der for c in presented}
    configured = sum(1 for c in between if c.der not in shown)
    detail = f"every intermediate CA on the path ({len(between)}) was available"
    if configured:
        detail += f", {configured} from the configured CA bundle rather than from the server"
    return Check(name, CheckStatus.PASS, detail)


def _reason(exc: Exception) -> str:
    """The validator's reason without its boilerplate around it."""
    reason = str(exc).removeprefix("validation failed: ")
    return reason.split(" (encountered processing <Certificate", 1)[0]


def _time(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _span(length: timedelta) -> str:
    """'7 days 1 h', '12 h 30 min', '45 min'."""
    minutes = int(length.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} days {hours} h" if hours else f"{days} days"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
