"""The one way verifier talks to AWS: sessions and clients are made here, and every operation goes through
``call``, which names the IAM action the operation needs and turns botocore's errors into one-line AwsErrors.

tests/aws/test_iam_policy.py reads every ``call(..., iam_action="...")`` in verifier/aws and holds
infra/iam/verifier-operator-policy.json to exactly those actions, so ``iam_action`` must be a literal.
"""

from __future__ import annotations

from typing import Any

import boto3  # type: ignore[import-untyped]
import botocore  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    ProfileNotFound,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.parsers import ResponseParserError  # type: ignore[import-untyped]

from verifier.errors import AwsError, UsageError

# Adaptive mode is standard mode (backoff with jitter on throttling and transient errors) plus a client-side
# rate limiter that slows down once AWS throttles. 10 attempts in all, where botocore's default is 3: a run
# that fails on a throttled describe call wastes the operator more time than waiting does.
CLIENT_CONFIG = Config(retries={"mode": "adaptive", "total_max_attempts": 10})

_ACCESS_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
_EXPIRED_TOKEN = frozenset({"ExpiredToken", "ExpiredTokenException"})
_BAD_CREDENTIALS = frozenset(
    {"UnrecognizedClientException", "InvalidClientTokenId", "AuthFailure", "InvalidSignatureException"}
)
# Codes AWS services use for request-rate throttling; quota errors such as LimitExceededException are not
# among them: waiting does not cure those.
_THROTTLED = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "EC2ThrottledException",
        "SlowDown",
    }
)


def new_session(profile: str | None, region: str | None) -> boto3.session.Session:
    """The session for --profile and --region (None: boto3's own lookup: environment, config files, role)."""
    try:
        return boto3.session.Session(profile_name=profile, region_name=region)
    except ProfileNotFound as exc:
        raise UsageError(f"--profile {profile}: no such profile in the AWS config files") from exc


def new_client(session: boto3.session.Session, service: str, region: str) -> Any:
    """A client of ``service`` in ``region`` with verifier's retry policy."""
    return session.client(service, region_name=region, config=CLIENT_CONFIG)


def call(client: Any, operation: str, iam_action: str, **params: Any) -> dict[str, Any]:
    """Invoke ``operation`` (its API name, e.g. "GetCertificateAuthorityCertificate") on ``client`` with
    ``params``; ``iam_action`` is the permission it needs ("acm-pca:GetCertificateAuthorityCertificate").
    Every botocore error becomes an AwsError with one line saying what to do."""
    method = getattr(client, botocore.xform_name(operation))
    region = client.meta.region_name
    # The ARN among the parameters names the resource in messages (AWS names ARN parameters "...Arn").
    resource = next((str(v) for k, v in params.items() if k.endswith("Arn") and v), "")
    subject = f"{operation} on {resource}" if resource else f"{operation} in {region}"
    try:
        response: dict[str, Any] = method(**params)
    except ClientError as exc:
        line = _client_error_line(exc, operation, iam_action, subject, resource, region)
        raise AwsError(line, code=str(exc.response.get("Error", {}).get("Code", ""))) from exc
    except NoCredentialsError as exc:
        raise AwsError(
            f"{operation}: no AWS credentials found: pass --profile, set AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an instance or task role"
        ) from exc
    except (BotoConnectionError, HTTPClientError) as exc:
        raise AwsError(
            f"{operation}: cannot reach AWS in {region}: {_one_line(str(exc))}; check the network, the "
            "region and any proxy settings"
        ) from exc
    except BotoCoreError as exc:
        raise AwsError(f"{subject} failed: {_one_line(str(exc))}") from exc
    except ResponseParserError as exc:  # not a BotoCoreError: an endpoint answering HTML (a proxy, a 500)
        raise AwsError(
            f"{subject}: the endpoint's answer is not an AWS API response ({_one_line(str(exc))[:200]})"
        ) from exc
    return response


def paginate(client: Any, operation: str, iam_action: str, key: str, **params: Any) -> list[Any]:
    """``call`` for every page (NextToken) of a list operation; the items under ``key`` of all pages."""
    items: list[Any] = []
    while True:
        page = call(client, operation, iam_action=iam_action, **params)
        items += page.get(key, [])
        if not page.get("NextToken"):
            return items
        params["NextToken"] = page["NextToken"]


def _client_error_line(
    exc: ClientError, operation: str, iam_action: str, subject: str, resource: str, region: str
) -> str:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "")) or "an unnamed error"
    said = _one_line(str(error.get("Message", ""))) or "no message"
    if code in _ACCESS_DENIED:
        return f"{subject} is not allowed: missing IAM permission {iam_action} (AWS: {code}: {said})"
    if code in _EXPIRED_TOKEN:
        return (
            f"{operation}: the AWS credentials have expired ({code}): refresh them (for example aws sso "
            "login, or new session credentials) and run again"
        )
    if code in _BAD_CREDENTIALS:
        return f"{operation}: AWS does not accept the credentials ({code}: {said})"
    if code == "ResourceNotFoundException":
        missing = resource or "the resource"
        return (
            f"{operation}: {missing} does not exist in {region} for this account ({code}): check the ARN and "
            "which account the credentials belong to"
        )
    if code == "InvalidArnException":
        return f"{operation}: AWS rejects {resource or 'the ARN'} as malformed ({code}: {said})"
    if code in _THROTTLED:
        retries = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
        return (
            f"{subject}: AWS kept throttling the request ({code}) after {retries} retries: try again later, "
            "or ask for a higher request-rate quota"
        )
    return f"{subject} failed: {code}: {said}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
