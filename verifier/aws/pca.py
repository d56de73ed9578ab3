"""Trust anchors from an AWS Private CA (--pca-arn): the CA's own certificate and the chain above it.

The client is always made in the region of the ARN, whatever --region or the profile say: a CA lives in one
region and AWS answers ResourceNotFoundException for it anywhere else. --region and the profile's region
still apply to the other AWS calls; --profile chooses the credentials here too.
"""

from __future__ import annotations

import re

import boto3  # type: ignore[import-untyped]

from verifier.aws.calls import call, new_client
from verifier.core.chains import TrustAnchors
from verifier.errors import AwsError, InputError, UsageError

# arn:PARTITION:acm-pca:REGION:ACCOUNT:certificate-authority/UUID; the partition is aws, aws-cn, aws-us-gov...
_PCA_ARN = re.compile(
    r"arn:aws(?:-[a-z]+)*:acm-pca:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+):\d{12}:"
    r"certificate-authority/(?P<ca_id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
)
_SHORT_LIVED_MODE = "SHORT_LIVED_CERTIFICATE"


def parse_pca_arn(arn: str) -> tuple[str, str]:
    """The region and the CA id of a Private CA's ARN; UsageError for anything else (a certificate's ARN,
    a typo)."""
    match = _PCA_ARN.fullmatch(arn)
    if match is None:
        raise UsageError(
            f"--pca-arn '{arn}' is not the ARN of a Private CA "
            "(arn:aws:acm-pca:REGION:ACCOUNT:certificate-authority/ID)"
        )
    return match["region"], match["ca_id"]


def load_pca_anchors(session: boto3.session.Session, arn: str) -> TrustAnchors:
    """The CA's certificate and chain as trust anchors: self-signed ones are roots, the others (a subordinate
    CA and the CAs above it) intermediates; short-lived when the CA's usage mode is SHORT_LIVED_CERTIFICATE.
    The CA must be ACTIVE."""
    region, _ = parse_pca_arn(arn)
    client = new_client(session, "acm-pca", region)
    described = call(
        client,
        "DescribeCertificateAuthority",
        iam_action="acm-pca:DescribeCertificateAuthority",
        CertificateAuthorityArn=arn,
    )["CertificateAuthority"]
    status = described.get("Status", "in an unknown state")
    if status != "ACTIVE":
        raise AwsError(f"the Private CA {arn} is {status}, not ACTIVE, so it cannot anchor trust")
    # PEM text: the CA's certificate, and for a subordinate CA the chain up to its root (absent for a root).
    pem = call(
        client,
        "GetCertificateAuthorityCertificate",
        iam_action="acm-pca:GetCertificateAuthorityCertificate",
        CertificateAuthorityArn=arn,
    )
    bundle = "\n".join((pem.get("Certificate", ""), pem.get("CertificateChain", "")))
    try:
        return TrustAnchors.from_pem_bundle(
            bundle.encode(), short_lived=described.get("UsageMode") == _SHORT_LIVED_MODE
        )
    except InputError as exc:
        raise AwsError(
            f"the certificate and chain of the Private CA {arn} cannot anchor trust: {exc}"
        ) from exc
