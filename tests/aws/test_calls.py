"""verifier.aws.calls: botocore's errors become one-line AwsErrors, clients get adaptive retries, and
--profile and --region reach the session."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.stub import Stubber

from verifier.aws.calls import CLIENT_CONFIG, call, new_client, new_session
from verifier.errors import AwsError, UsageError

REGION = "eu-central-1"
ARN = "arn:aws:acm-pca:eu-central-1:111122223333:certificate-authority/0b4f1d2e-3c5a-4b6d-8e9f-0a1b2c3d4e5f"
DESCRIBE = "DescribeCertificateAuthority"
DESCRIBE_ACTION = "acm-pca:DescribeCertificateAuthority"


@pytest.fixture
def stubbed() -> Any:
    """A real acm-pca client whose answers are queued by the test (no network, no credential lookup)."""
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    client = session.client("acm-pca")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


class RaisingClient:
    """A client whose describe call raises what botocore raises before any answer (credentials, network)."""

    meta = SimpleNamespace(region_name=REGION)

    def __init__(self, error: Exception) -> None:
        self.error = error

    def describe_certificate_authority(self, **params: Any) -> dict[str, Any]:
        raise self.error


def describe_error(
    stubbed: Any, code: str, message: str = "refused", retries: int = 0, params: dict[str, str] | None = None
) -> AwsError:
    client, stubber = stubbed
    stubber.add_client_error(
        "describe_certificate_authority",
        service_error_code=code,
        service_message=message,
        http_status_code=400,
        response_meta={"RetryAttempts": retries},
    )
    with pytest.raises(AwsError) as caught:
        call(client, DESCRIBE, iam_action=DESCRIBE_ACTION, **(params or {"CertificateAuthorityArn": ARN}))
    error = caught.value
    assert isinstance(error.__cause__, ClientError)
    assert error.code == code  # what callers tell errors apart by
    assert error.exit_code == 3
    assert "\n" not in str(error)
    return error


def test_the_operation_name_selects_the_method_and_the_answer_comes_back(stubbed: Any) -> None:
    client, stubber = stubbed
    answer = {"CertificateAuthority": {"Arn": ARN, "Status": "ACTIVE"}}
    stubber.add_response("describe_certificate_authority", answer, {"CertificateAuthorityArn": ARN})
    response = call(client, DESCRIBE, iam_action=DESCRIBE_ACTION, CertificateAuthorityArn=ARN)
    assert response["CertificateAuthority"] == answer["CertificateAuthority"]


@pytest.mark.parametrize("code", ["AccessDenied", "AccessDeniedException", "UnauthorizedOperation"])
def test_access_denied_names_the_missing_permission_and_the_resource(stubbed: Any, code: str) -> None:
    error = describe_error(
        stubbed, code, "User: arn:aws:sts::111122223333:assumed-role/ops/me is not\nauthorized"
    )
    assert str(error).startswith(
        f"DescribeCertificateAuthority on {ARN} is not allowed: missing IAM permission {DESCRIBE_ACTION}"
    )
    # AWS's own words follow: they tell an explicit deny (SCP, boundary) from a missing allow.
    assert "assumed-role/ops/me is not authorized" in str(error)


@pytest.mark.parametrize("code", ["ExpiredToken", "ExpiredTokenException"])
def test_expired_credentials(stubbed: Any, code: str) -> None:
    error = describe_error(stubbed, code, "The security token included in the request is expired")
    assert f"the AWS credentials have expired ({code})" in str(error)


def test_credentials_aws_does_not_know(stubbed: Any) -> None:
    error = describe_error(stubbed, "UnrecognizedClientException", "The security token is invalid.")
    assert "AWS does not accept the credentials (UnrecognizedClientException" in str(error)


def test_resource_not_found_names_the_arn_and_the_region(stubbed: Any) -> None:
    error = describe_error(stubbed, "ResourceNotFoundException", "Could not find the CA")
    assert f"{ARN} does not exist in {REGION}" in str(error)


def test_invalid_arn_names_the_arn(stubbed: Any) -> None:
    error = describe_error(stubbed, "InvalidArnException", "The ARN is malformed")
    assert f"AWS rejects {ARN} as malformed (InvalidArnException: The ARN is malformed)" in str(error)


@pytest.mark.parametrize("code", ["ThrottlingException", "Throttling", "TooManyRequestsException"])
def test_throttling_that_outlasted_the_retries(stubbed: Any, code: str) -> None:
    error = describe_error(stubbed, code, "Rate exceeded", retries=9)
    assert f"AWS kept throttling the request ({code}) after 9 retries" in str(error)


def test_other_refusals_keep_aws_code_and_message(stubbed: Any) -> None:
    error = describe_error(stubbed, "InvalidStateException", "The CA is in a state that does not allow this")
    assert str(error) == (
        f"DescribeCertificateAuthority on {ARN} failed: InvalidStateException: "
        "The CA is in a state that does not allow this"
    )


def test_without_an_arn_parameter_the_region_says_where() -> None:
    client = RaisingClient(ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, DESCRIBE))
    with pytest.raises(AwsError, match=f"^DescribeCertificateAuthority in {REGION} is not allowed"):
        call(client, DESCRIBE, iam_action=DESCRIBE_ACTION)


def test_no_credentials() -> None:
    cause = NoCredentialsError()
    with pytest.raises(AwsError, match="no AWS credentials found: pass --profile") as caught:
        call(RaisingClient(cause), DESCRIBE, iam_action=DESCRIBE_ACTION, CertificateAuthorityArn=ARN)
    assert caught.value.__cause__ is cause
    assert caught.value.exit_code == 3


@pytest.mark.parametrize(
    "cause",
    [
        EndpointConnectionError(endpoint_url="https://acm-pca.eu-central-1.amazonaws.com/"),
        ConnectTimeoutError(endpoint_url="https://acm-pca.eu-central-1.amazonaws.com/"),
        ReadTimeoutError(endpoint_url="https://acm-pca.eu-central-1.amazonaws.com/"),
    ],
)
def test_network_failures(cause: Exception) -> None:
    with pytest.raises(AwsError) as caught:
        call(RaisingClient(cause), DESCRIBE, iam_action=DESCRIBE_ACTION, CertificateAuthorityArn=ARN)
    message = str(caught.value)
    assert message.startswith(f"DescribeCertificateAuthority: cannot reach AWS in {REGION}: ")
    assert "https://acm-pca.eu-central-1.amazonaws.com/" in message
    assert caught.value.__cause__ is cause


def test_other_botocore_errors() -> None:
    cause = PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY")
    with pytest.raises(AwsError, match=f"^DescribeCertificateAuthority on {ARN} failed: Partial credentials"):
        call(RaisingClient(cause), DESCRIBE, iam_action=DESCRIBE_ACTION, CertificateAuthorityArn=ARN)


def test_clients_use_adaptive_retries_in_the_region_asked() -> None:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    client = new_client(session, "acm-pca", "ap-northeast-1")
    assert client.meta.region_name == "ap-northeast-1"
    assert client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 10}
    assert CLIENT_CONFIG.retries["mode"] == "adaptive"


@pytest.fixture
def aws_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """AWS config files that hold one profile, 'ops' in eu-north-1, and nothing from the environment."""
    config = tmp_path / "config"
    config.write_text("[profile ops]\nregion = eu-north-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    for variable in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.usefixtures("aws_config")
def test_profile_and_region_reach_the_session() -> None:
    assert new_session("ops", None).region_name == "eu-north-1"
    explicit = new_session("ops", "us-west-2")
    assert (explicit.profile_name, explicit.region_name) == ("ops", "us-west-2")
    assert new_session(None, "sa-east-1").region_name == "sa-east-1"


@pytest.mark.usefixtures("aws_config")
def test_an_unknown_profile_is_a_usage_error() -> None:
    with pytest.raises(
        UsageError, match=r"^--profile prod: no such profile in the AWS config files$"
    ) as caught:
        new_session("prod", None)
    assert caught.value.exit_code == 2
