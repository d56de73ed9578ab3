"""Certificate hierarchies for tests, made with cryptography at test time.

Keys are generated once per label (functools.cache) and every date derives from the fixed T0, so tests never
depend on the clock. The default hierarchy mirrors ECS Service Connect: root -> subordinate CA -> a 7-day
ECDSA P-256 leaf with serverAuth and a DNS subjectAltName.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

T0 = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)  # the leaves' notBefore
SERVICE_NAME = "api.internal.example"
SHORT = timedelta(days=7)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: PrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(Encoding.PEM)


@functools.cache
def ec_key(label: str, curve: str = "secp256r1") -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1() if curve == "secp384r1" else ec.SECP256R1())


@functools.cache
def rsa_key(label: str, bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@functools.cache
def ed25519_key(label: str) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "verifier tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def issue(
    common_name: str,
    key: PrivateKey,
    issuer: Issued | None,
    *,
    ca: bool,
    not_before: datetime = T0,
    lifetime: timedelta = SHORT,
    san: Sequence[str] = (SERVICE_NAME,),
    eku: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.SERVER_AUTH,),
    serial: int | None = None,
) -> Issued:
    """A certificate for ``key`` signed by ``issuer`` (self-signed when None). ``san`` entries that are IP
    addresses become iPAddress names, the others dNSName; an empty ``san`` or a None ``eku`` leaves the
    extension out."""
    signer = issuer.key if issuer is not None else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(common_name))
        .issuer_name(issuer.cert.subject if issuer is not None else name(common_name))
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + lifetime)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    )
    if ca:
        # keyCertSign and cRLSign
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        # digitalSignature, what (EC)DHE-signing TLS servers need
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(e) for e in san]), critical=False
        )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return Issued(builder.sign(signer, algorithm), key)


def _general_name(entry: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(entry))
    except ValueError:
        return x509.DNSName(entry)


def make_ca(
    common_name: str, key: PrivateKey, issuer: Issued | None, *, lifetime: timedelta = timedelta(days=730)
) -> Issued:
    """A CA certificate, valid from 30 days before T0, with no subjectAltName and no extendedKeyUsage."""
    not_before = T0 - timedelta(days=30)
    return issue(
        common_name, key, issuer, ca=True, not_before=not_before, lifetime=lifetime, san=(), eku=None
    )


@dataclass(frozen=True)
class Hierarchy:
    root: Issued
    sub: Issued
    leaf: Issued


@functools.cache
def hierarchy(label: str = "pca") -> Hierarchy:
    """root -> subordinate -> 7-day leaf (from T0) named SERVICE_NAME; keys are per label."""
    root = make_ca(f"{label} root CA", ec_key(f"{label}-root"), None, lifetime=timedelta(days=3650))
    sub = make_ca(f"{label} subordinate CA", ec_key(f"{label}-sub"), root)
    leaf = issue(SERVICE_NAME, ec_key(f"{label}-leaf"), sub, ca=False)
    return Hierarchy(root, sub, leaf)


# ---------------------------------------------------------------------------------------------------------
# SHA-1: cryptography's CertificateBuilder refuses to sign with SHA-1 ("not supported for signatures"), but a
# raw ECDSA signature over SHA-1 is still allowed. So a SHA-256 certificate is taken apart, its signature
# AlgorithmIdentifier swapped for ecdsa-with-SHA1, and the new TBSCertificate signed and wrapped by hand.

# AlgorithmIdentifier SEQUENCE { OID 1.2.840.10045.4.3.2 ecdsa-with-SHA256 }, no parameters (RFC 5758)
ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
# AlgorithmIdentifier SEQUENCE { OID 1.2.840.10045.4.1 ecdsa-with-SHA1 }, no parameters (RFC 3279)
ECDSA_WITH_SHA1 = bytes.fromhex("300906072a8648ce3d0401")


def der_tlv(tag: int, content: bytes) -> bytes:
    """One DER element: tag, definite length (short or long form), content."""
    if len(content) < 0x80:
        return bytes([tag, len(content)]) + content
    length = len(content).to_bytes((len(content).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def der_content(element: bytes) -> bytes:
    """The content of one DER element (the inverse of der_tlv)."""
    first = element[1]
    if first < 0x80:
        return element[2 : 2 + first]
    size = first & 0x7F
    length = int.from_bytes(element[2 : 2 + size], "big")
    return element[2 + size : 2 + size + length]


def sha1_signed(cert: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey) -> bytes:
    """DER of ``cert`` re-signed by ``issuer_key`` with ecdsa-with-SHA1."""
    tbs_content = der_content(cert.tbs_certificate_bytes)
    # The only place the signature algorithm appears in a TBSCertificate is its `signature` field.
    assert tbs_content.count(ECDSA_WITH_SHA256) == 1
    tbs = der_tlv(0x30, tbs_content.replace(ECDSA_WITH_SHA256, ECDSA_WITH_SHA1))
    signature = issuer_key.sign(tbs, ec.ECDSA(hashes.SHA1()))
    # Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }; the
    # BIT STRING content starts with its count of unused bits, 0
    return der_tlv(0x30, tbs + ECDSA_WITH_SHA1 + der_tlv(0x03, b"\x00" + signature))
