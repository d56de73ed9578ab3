"""verifier.aws.pca: trust anchors from AWS Private CA, end to end against moto's acm-pca and, for what moto
cannot be made to answer (refusals, throttling, expired tokens), against botocore's Stubber.

What moto 5.2.5's acm-pca does that shapes these tests (moto/acmpca/models.py):
  * every CA reports UsageMode SHORT_LIVED_CERTIFICATE whatever was asked (AWS's default is GENERAL_PURPOSE):
    create_ca sets the asked mode in moto's model; moto makes every certificate valid for 365 days whatever
    Validity says, which verifier.embedded's install() corrects (the session fixture installs it);
  * its subordinate-CA templates add no extension at all, so a certificate issued with them is no CA; the
    RootCACertificate/V1 template (basicConstraints CA, keyCertSign) stands in for them here;
  * the CA's key stays inside moto, as in AWS: a root CA's certificate is issued by the CA itself from its own
    CSR with the RootCACertificate/V1 template and then imported, which is how AWS installs a root CA.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from moto import mock_aws
from moto.acmpca.models import acmpca_backends
from moto.core import DEFAULT_ACCOUNT_ID

from tests import pki
from verifier.aws.calls import CLIENT_CONFIG
from verifier.aws.pca import load_pca_anchors, parse_pca_arn
from verifier.core.chains import CheckStatus, TrustAnchors, judge_chain
from verifier.embedded.moto_mirroring import install
from verifier.errors import AwsError, UsageError

CA_REGION = "eu-west-1"
SESSION_REGION = "us-east-1"  # the profile's or --region's region, which the CA's ARN overrides
ROOT_TEMPLATE = "arn:aws:acm-pca:::template/RootCACertificate/V1"
END_ENTITY_TEMPLATE = "arn:aws:acm-pca:::template/EndEntityCertificate/V1"


def offline_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials anywhere botocore looks, and no instance metadata service to ask (no network)."""
    for variable in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


# ---------------------------------------------------------------------------------------------------------
# End to end with moto


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[boto3.session.Session]:
    """A session in another region than the CA's, with moto answering every AWS call."""
    offline_environment(monkeypatch, tmp_path)
    install()  # IssueCertificate honours Validity, as AWS does
    with mock_aws():
        yield boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=SESSION_REGION
        )


@pytest.fixture
def pca(session: boto3.session.Session) -> Any:
    """The operator's acm-pca client that builds the CAs, in the CAs' region."""
    return session.client("acm-pca", region_name=CA_REGION)


def create_ca(pca: Any, common_name: str, ca_type: str, usage_mode: str = "GENERAL_PURPOSE") -> str:
    arn = str(
        pca.create_certificate_authority(
            CertificateAuthorityConfiguration={
                "KeyAlgorithm": "RSA_2048",
                "SigningAlgorithm": "SHA256WITHRSA",
                "Subject": {"Organization": "verifier tests", "CommonName": common_name},
            },
            CertificateAuthorityType=ca_type,
            UsageMode=usage_mode,
        )["CertificateAuthorityArn"]
    )
    # moto ignores UsageMode and reports SHORT_LIVED_CERTIFICATE for every CA: set what AWS would report.
    acmpca_backends[DEFAULT_ACCOUNT_ID][CA_REGION].certificate_authorities[arn].usage_mode = usage_mode
    return arn


def issue(pca: Any, ca_arn: str, csr_pem: bytes, template: str, days: int = 3650) -> tuple[str, str]:
    """The PEM certificate ``ca_arn`` issues for the CSR, and the chain AWS returns with it ("" if none)."""
    certificate_arn = pca.issue_certificate(
        CertificateAuthorityArn=ca_arn,
        Csr=csr_pem,
        SigningAlgorithm="SHA256WITHRSA",
        TemplateArn=template,
        Validity={"Value": days, "Type": "DAYS"},
    )["CertificateArn"]
    got = pca.get_certificate(CertificateAuthorityArn=ca_arn, CertificateArn=certificate_arn)
    return got["Certificate"], got.get("CertificateChain", "")


def csr_of(pca: Any, ca_arn: str) -> bytes:
    return str(pca.get_certificate_authority_csr(CertificateAuthorityArn=ca_arn)["Csr"]).encode()


def install_root(pca: Any, common_name: str, usage_mode: str = "GENERAL_PURPOSE") -> tuple[str, str]:
    """An ACTIVE root CA: its ARN and its self-signed certificate (PEM)."""
    arn = create_ca(pca, common_name, "ROOT", usage_mode)
    certificate, _ = issue(pca, arn, csr_of(pca, arn), ROOT_TEMPLATE)
    pca.import_certificate_authority_certificate(
        CertificateAuthorityArn=arn, Certificate=certificate.encode()
    )
    return arn, certificate


@dataclass(frozen=True)
class Leaf:
    der: bytes
    chain: tuple[bytes, ...]  # the CertificateChain GetCertificate returns with it, as DER
    cert: x509.Certificate


def issue_leaf(pca: Any, ca_arn: str, days: int = 7) -> Leaf:
    """A server certificate for SERVICE_NAME, from an ECDSA P-256 key as ECS Service Connect's are."""
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(pki.name(pki.SERVICE_NAME))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(pki.SERVICE_NAME)]), critical=False)
        .sign(pki.ec_key("pca-e2e-leaf"), hashes.SHA256())
    )
    certificate, chain = issue(pca, ca_arn, request.public_bytes(Encoding.PEM), END_ENTITY_TEMPLATE, days)
    cert = x509.load_pem_x509_certificate(certificate.encode())
    return Leaf(cert.public_bytes(Encoding.DER), ders(chain), cert)


def ders(pem: str) -> tuple[bytes, ...]:
    if not pem.strip():
        return ()
    return tuple(c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(pem.encode()))


def judge(leaf: Leaf, presented: tuple[bytes, ...], anchors: TrustAnchors) -> dict[str, CheckStatus]:
    """Each check's status for the chain a server would present, an hour into the leaf's life (moto issues
    from the current time)."""
    at = leaf.cert.not_valid_before_utc + timedelta(hours=1)
    judgement = judge_chain(presented, anchors, at=at, expected_name=pki.SERVICE_NAME)
    return {check.name: check.status for check in judgement.checks}


def all_pass(statuses: dict[str, CheckStatus]) -> bool:
    return set(statuses.values()) == {CheckStatus.PASS}


def test_a_root_ca_anchors_the_certificates_it_issues(pca: Any, session: boto3.session.Session) -> None:
    arn, root = install_root(pca, "pca root CA")
    anchors = load_pca_anchors(session, arn)
    assert anchors == TrustAnchors(ders(root), (), short_lived=False)

    leaf = issue_leaf(pca, arn)
    assert all_pass(judge(leaf, (leaf.der,), anchors))
    assert all_pass(judge(leaf, (leaf.der, *leaf.chain), anchors))


def test_a_short_lived_ca_is_marked_so(pca: Any, session: boto3.session.Session) -> None:
    arn, _ = install_root(pca, "pca root CA", "SHORT_LIVED_CERTIFICATE")
    anchors = load_pca_anchors(session, arn)
    assert anchors.short_lived
    week = issue_leaf(pca, arn, days=7)
    assert all_pass(judge(week, (week.der,), anchors))
    # A 30-day leaf from a short-lived CA: only the lifetime check objects.
    leaf = issue_leaf(pca, arn, days=30)
    assert leaf.cert.not_valid_after_utc - leaf.cert.not_valid_before_utc == timedelta(days=30)
    statuses = judge(leaf, (leaf.der,), anchors)
    assert statuses.pop("lifetime") == CheckStatus.WARN
    assert all_pass(statuses)


def test_a_subordinate_ca_brings_its_chain(pca: Any, session: boto3.session.Session) -> None:
    root_arn, root = install_root(pca, "pca root CA")
    sub_arn = create_ca(pca, "pca subordinate CA", "SUBORDINATE")
    sub, _ = issue(pca, root_arn, csr_of(pca, sub_arn), ROOT_TEMPLATE)  # signed by the root's key
    pca.import_certificate_authority_certificate(
        CertificateAuthorityArn=sub_arn, Certificate=sub.encode(), CertificateChain=root.encode()
    )
    anchors = load_pca_anchors(session, sub_arn)
    assert anchors == TrustAnchors(ders(root), ders(sub), short_lived=False)

    leaf = issue_leaf(pca, sub_arn)
    assert leaf.chain == ders(sub)
    # Servers that send only their leaf rely on the subordinate CA known from the PCA chain.
    assert all_pass(judge(leaf, (leaf.der,), anchors))
    assert all_pass(judge(leaf, (leaf.der, *leaf.chain), anchors))
    # Without the subordinate CA the leaf does not reach the root.
    root_only = TrustAnchors(anchors.roots, ())
    assert judge(leaf, (leaf.der,), root_only)["chains_to_anchor"] == CheckStatus.FAIL


def sign_ca_request(csr_pem: bytes, issuer: pki.Issued, not_before: datetime) -> str:
    """The CA certificate an external CA (``issuer``) makes from a Private CA's CSR."""
    request = x509.load_pem_x509_csr(csr_pem)
    public_key = request.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(request.subject)
        .issuer_name(issuer.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=730))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        # keyCertSign and cRLSign
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .sign(issuer.key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM).decode()


def test_a_subordinate_of_an_external_hierarchy(pca: Any, session: boto3.session.Session) -> None:
    # External root -> external intermediate -> the Private CA: AWS returns the two external certificates as
    # the CertificateChain, and only the external root is self-signed.
    not_before = datetime.now(UTC) - timedelta(days=1)
    ten_years = timedelta(days=3650)
    root = pki.issue(
        "external root",
        pki.ec_key("external-root"),
        None,
        ca=True,
        not_before=not_before,
        lifetime=ten_years,
        san=(),
        eku=None,
    )
    middle = pki.issue(
        "external intermediate",
        pki.ec_key("external-middle"),
        root,
        ca=True,
        not_before=not_before,
        lifetime=ten_years,
        san=(),
        eku=None,
    )
    arn = create_ca(pca, "pca subordinate CA", "SUBORDINATE")
    sub = sign_ca_request(csr_of(pca, arn), middle, not_before)
    chain = middle.pem + root.pem
    pca.import_certificate_authority_certificate(
        CertificateAuthorityArn=arn, Certificate=sub.encode(), CertificateChain=chain
    )
    anchors = load_pca_anchors(session, arn)
    assert anchors == TrustAnchors((root.der,), (*ders(sub), middle.der), short_lived=False)

    leaf = issue_leaf(pca, arn)
    assert all_pass(judge(leaf, (leaf.der,), anchors))


def test_a_ca_without_its_certificate_is_refused(pca: Any, session: boto3.session.Session) -> None:
    arn = create_ca(pca, "pca root CA", "ROOT")
    with pytest.raises(AwsError, match=f"^the Private CA {arn} is PENDING_CERTIFICATE, not ACTIVE") as caught:
        load_pca_anchors(session, arn)
    assert caught.value.exit_code == 3


def test_the_ca_is_looked_up_in_the_arn_region(pca: Any, session: boto3.session.Session) -> None:
    arn, _ = install_root(pca, "pca root CA")
    # Neither the CA's region nor the session's: only the ARN can have sent the call there.
    elsewhere = arn.replace(f":{CA_REGION}:", ":eu-north-1:")
    with pytest.raises(AwsError, match=f"{elsewhere} does not exist in eu-north-1"):
        load_pca_anchors(session, elsewhere)


# ---------------------------------------------------------------------------------------------------------
# What moto cannot be made to answer: botocore's Stubber

ARN = "arn:aws:acm-pca:ap-southeast-2:111122223333:certificate-authority/5e0f7a1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b"
BY_ARN = {"CertificateAuthorityArn": ARN}


class StubbedSession:
    """Stands in for a boto3 session: hands out one stubbed client and records what was asked for."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.asked: list[tuple[str, str | None, object]] = []

    def client(self, service_name: str, region_name: str | None = None, config: object = None) -> Any:
        self.asked.append((service_name, region_name, config))
        return self._client


@pytest.fixture
def stubbed() -> Iterator[tuple[StubbedSession, Stubber]]:
    real = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="ap-southeast-2"
    )
    client = real.client("acm-pca")
    with Stubber(client) as stubber:
        yield StubbedSession(client), stubber
        stubber.assert_no_pending_responses()


def describes(stubber: Stubber, status: str = "ACTIVE", usage_mode: str | None = "GENERAL_PURPOSE") -> None:
    authority = {"Arn": ARN, "Type": "SUBORDINATE", "Status": status}
    if usage_mode is not None:
        authority["UsageMode"] = usage_mode
    stubber.add_response("describe_certificate_authority", {"CertificateAuthority": authority}, BY_ARN)


def answers_certificate(stubber: Stubber, certificate: bytes, chain: bytes | None) -> None:
    response = {"Certificate": certificate.decode()}
    if chain is not None:
        response["CertificateChain"] = chain.decode()
    stubber.add_response("get_certificate_authority_certificate", response, BY_ARN)


def test_the_client_is_made_in_the_arn_region_with_adaptive_retries(
    stubbed: tuple[StubbedSession, Stubber],
) -> None:
    session, stubber = stubbed
    hierarchy = pki.hierarchy()
    describes(stubber)
    answers_certificate(stubber, hierarchy.sub.pem, hierarchy.root.pem)
    anchors = load_pca_anchors(session, ARN)
    assert anchors == TrustAnchors((hierarchy.root.der,), (hierarchy.sub.der,), short_lived=False)
    assert session.asked == [("acm-pca", "ap-southeast-2", CLIENT_CONFIG)]
    assert CLIENT_CONFIG.retries["mode"] == "adaptive"


@pytest.mark.parametrize(
    ("usage_mode", "short_lived"),
    [("SHORT_LIVED_CERTIFICATE", True), ("GENERAL_PURPOSE", False), (None, False)],
)
def test_usage_mode(
    stubbed: tuple[StubbedSession, Stubber], usage_mode: str | None, short_lived: bool
) -> None:
    session, stubber = stubbed
    root = pki.hierarchy().root
    describes(stubber, usage_mode=usage_mode)
    answers_certificate(stubber, root.pem, None)  # a root CA: no CertificateChain
    anchors = load_pca_anchors(session, ARN)
    assert anchors == TrustAnchors((root.der,), (), short_lived=short_lived)


def test_access_denied_names_the_action_and_the_arn(stubbed: tuple[StubbedSession, Stubber]) -> None:
    session, stubber = stubbed
    describes(stubber)
    stubber.add_client_error(
        "get_certificate_authority_certificate",
        service_error_code="AccessDeniedException",
        service_message=(
            "User: arn:aws:sts::111122223333:assumed-role/verifier/ops is not authorized to perform this "
            "operation because no identity-based policy allows it"
        ),
        http_status_code=400,
        expected_params=BY_ARN,
    )
    with pytest.raises(AwsError) as caught:
        load_pca_anchors(session, ARN)
    assert str(caught.value).startswith(
        f"GetCertificateAuthorityCertificate on {ARN} is not allowed: "
        "missing IAM permission acm-pca:GetCertificateAuthorityCertificate"
    )
    assert caught.value.exit_code == 3


def test_an_unknown_ca(stubbed: tuple[StubbedSession, Stubber]) -> None:
    session, stubber = stubbed
    stubber.add_client_error(
        "describe_certificate_authority",
        service_error_code="ResourceNotFoundException",
        service_message=f"Could not find certificate authority {ARN}",
        expected_params=BY_ARN,
    )
    with pytest.raises(
        AwsError, match=f"^DescribeCertificateAuthority: {ARN} does not exist in ap-southeast-2"
    ):
        load_pca_anchors(session, ARN)


@pytest.mark.parametrize("status", ["PENDING_CERTIFICATE", "DISABLED", "EXPIRED", "DELETED"])
def test_only_an_active_ca_is_used(stubbed: tuple[StubbedSession, Stubber], status: str) -> None:
    session, stubber = stubbed
    describes(stubber, status=status)  # and no certificate queued: asking for it would fail differently
    with pytest.raises(AwsError, match=f"^the Private CA {ARN} is {status}, not ACTIVE"):
        load_pca_anchors(session, ARN)


def test_throttling_beyond_the_retries(stubbed: tuple[StubbedSession, Stubber]) -> None:
    session, stubber = stubbed
    stubber.add_client_error(
        "describe_certificate_authority",
        service_error_code="ThrottlingException",
        service_message="Rate exceeded",
        response_meta={"RetryAttempts": 9},
    )
    with pytest.raises(
        AwsError, match=r"kept throttling the request \(ThrottlingException\) after 9 retries"
    ):
        load_pca_anchors(session, ARN)


def test_expired_token(stubbed: tuple[StubbedSession, Stubber]) -> None:
    session, stubber = stubbed
    stubber.add_client_error(
        "describe_certificate_authority",
        service_error_code="ExpiredTokenException",
        service_message="The security token included in the request is expired",
    )
    with pytest.raises(AwsError, match=r"the AWS credentials have expired \(ExpiredTokenException\)"):
        load_pca_anchors(session, ARN)


def test_a_chain_without_a_root(stubbed: tuple[StubbedSession, Stubber]) -> None:
    session, stubber = stubbed
    hierarchy = pki.hierarchy()
    describes(stubber)
    answers_certificate(stubber, hierarchy.sub.pem, None)
    with pytest.raises(
        AwsError, match=f"^the certificate and chain of the Private CA {ARN} cannot anchor trust"
    ):
        load_pca_anchors(session, ARN)


def test_no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    offline_environment(monkeypatch, tmp_path)
    with pytest.raises(AwsError, match="no AWS credentials found") as caught:
        load_pca_anchors(boto3.session.Session(region_name=SESSION_REGION), ARN)
    assert caught.value.exit_code == 3


# ---------------------------------------------------------------------------------------------------------
# ARNs


@pytest.mark.parametrize(
    ("arn", "region"),
    [
        (ARN, "ap-southeast-2"),
        (
            "arn:aws-cn:acm-pca:cn-north-1:111122223333:certificate-authority/5e0f7a1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b",
            "cn-north-1",
        ),
        (
            "arn:aws-us-gov:acm-pca:us-gov-west-1:111122223333:certificate-authority/"
            "5e0f7a1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b",
            "us-gov-west-1",
        ),
    ],
)
def test_parse_pca_arn(arn: str, region: str) -> None:
    assert parse_pca_arn(arn) == (region, "5e0f7a1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b")


@pytest.mark.parametrize(
    "arn",
    [
        "",
        "5e0f7a1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b",
        # a certificate the CA issued, not the CA
        f"{ARN}/certificate/0123456789abcdef0123456789abcdef",
        ARN.replace("acm-pca", "acm"),
        ARN.replace(":111122223333:", ":1111:"),
        ARN.replace("ap-southeast-2", ""),
        ARN.upper(),
        f" {ARN}",
    ],
)
def test_malformed_arns_are_usage_errors(arn: str) -> None:
    with pytest.raises(UsageError, match="is not the ARN of a Private CA") as caught:
        parse_pca_arn(arn)
    assert caught.value.exit_code == 2


def test_analyze_with_pca_arn_holds_chains_to_that_ca(pca: Any, session: boto3.session.Session) -> None:
    """The CLI wiring: --pca-arn anchors judge the capture's chains (issued by another CA here: FAIL)."""
    from typer.testing import CliRunner

    from verifier.cli import app

    arn, _ = install_root(pca, "Service Connect Root")
    capture = Path(__file__).resolve().parents[2] / "captures" / "vxlan-tls12-chain.pcap"
    result = CliRunner().invoke(app, ["analyze", str(capture), "--pca-arn", arn, "--format", "json"])
    assert result.exit_code == 1, result.output
    flows = json.loads(result.output)["flows"]
    assert flows and {flow["identity"] for flow in flows} == {"FAIL"}
    assert all(
        "chains_to_anchor" in {c["name"] for c in flow["identity_checks"] if c["status"] == "FAIL"}
        for flow in flows
    )


def test_probe_a_server_presenting_a_pca_issued_chain(
    pca: Any, session: boto3.session.Session, tmp_path: Path
) -> None:
    """End to end: moto's Private CA issues a leaf, a real OpenSSL server on 127.0.0.1 presents it, and
    `verifier probe --pca-arn` judges the chain it sees against that CA."""
    import socket
    import ssl
    import threading

    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat
    from typer.testing import CliRunner

    from verifier.cli import app

    arn, _ = install_root(pca, "Service Connect Root")
    leaf = issue_leaf(pca, arn)
    (tmp_path / "chain.pem").write_bytes(leaf.cert.public_bytes(Encoding.PEM))
    key = pki.ec_key("pca-e2e-leaf").private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    (tmp_path / "key.pem").write_bytes(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve_once() -> None:
        try:
            connection, _ = listener.accept()
            connection.settimeout(5)
            with context.wrap_socket(connection, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError):
            pass

    server = threading.Thread(target=serve_once, daemon=True)
    server.start()
    try:
        port = listener.getsockname()[1]
        arguments = [
            "probe",
            f"127.0.0.1:{port}",
            "--sni",
            pki.SERVICE_NAME,
            "--pca-arn",
            arn,
            "--format",
            "json",
        ]
        result = CliRunner().invoke(app, arguments)
    finally:
        server.join(15)
        listener.close()
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["tls_version"], report["identity"]) == ("TLS1.3", "PASS"), report["identity_checks"]
    statuses = {check["name"]: check["status"] for check in report["identity_checks"]}
    assert statuses["chains_to_anchor"] == "PASS" and statuses["san_matches"] == "PASS"
