"""Capture on the collector instance from the operator's machine: check that SSM can reach the collector and
that the bucket takes encrypted objects, run ``verifier collect --upload`` there through SSM Run Command
(document AWS-RunShellScript), wait for it, and download the capture it uploaded to S3.

Facts from the AWS docs this module relies on:
  * DescribeInstanceInformation lists only instances whose SSM agent registered; PingStatus is Online,
    ConnectionLost or Inactive. SendCommand to an unregistered instance fails with InvalidInstanceId.
  * Right after SendCommand, GetCommandInvocation may answer InvocationDoesNotExist for a few seconds.
  * An invocation ends Success, Failed, TimedOut or Cancelled; StandardErrorContent holds at most the
    first 8000 characters of the script's stderr.
  * A single PutObject takes at most 5 GB; it authorizes as s3:PutObject (with SSE-KMS also
    kms:GenerateDataKey), GetObject as s3:GetObject (with SSE-KMS also kms:Decrypt). Without
    s3:ListBucket, S3 answers AccessDenied, not NoSuchKey, for a key that does not exist.
"""

from __future__ import annotations

import os
import re
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError  # type: ignore[import-untyped]

from verifier.aws.calls import call, new_client, new_session
from verifier.aws.imds import instance_identity
from verifier.errors import AwsError, InputError, UsageError

DOCUMENT = "AWS-RunShellScript"
LISTEN = "0.0.0.0:4789"  # where VPC Traffic Mirroring sends VXLAN on the collector
# Time the remote command gets beyond the capture itself: starting, the bucket check, the upload.
UPLOAD_ALLOWANCE = 600
_MAX_EXECUTION_TIMEOUT = 172800  # AWS-RunShellScript's executionTimeout is at most 48 hours
_DELIVERY_TIMEOUT = 120  # SendCommand's TimeoutSeconds: the agent must pick the command up by then (min 30)
_MAX_PUT_OBJECT = 5 * 1024**3
_POLL_INTERVAL = 3.0
_MISSING_INVOCATION_POLLS = 10  # ~30 s of InvocationDoesNotExist means SSM did not take the command
_STDERR_TAIL = 400
_CHUNK = 1024 * 1024
_COMMENT_MAX = 100
_WRITE_CHECK_NAME = ".verifier-write-check"
_DONE = frozenset({"Success", "Failed", "TimedOut", "Cancelled"})
# The same rule as run state files: the run id becomes a file name, an S3 key and part of a shell line.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# S3 bucket naming rules: 3-63 lowercase letters, digits, dots and hyphens, starting and ending alphanumeric.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_ADDRESS = re.compile(r"[0-9]+(\.[0-9]+){3}")

# With SSE-KMS, S3 asks KMS for a data key on PutObject and to decrypt it on GetObject in the caller's name.
SSE_KMS_PUT_IAM_ACTION = "kms:GenerateDataKey"
SSE_KMS_GET_IAM_ACTION = "kms:Decrypt"


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    key: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class RemoteCollectResult:
    """What the successful remote ``verifier collect`` printed (SSM keeps at most 24000 and 8000 chars)."""

    standard_output: str
    standard_error: str


def check_bucket_name(bucket: str) -> str:
    if not _BUCKET.fullmatch(bucket) or ".." in bucket or _IP_ADDRESS.fullmatch(bucket):
        raise UsageError(
            f"bucket '{bucket}': S3 bucket names are 3-63 lowercase letters, digits, '.' and '-', starting "
            "and ending with a letter or digit"
        )
    return bucket


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.fullmatch(run_id):
        raise UsageError(f"run id '{run_id}': use up to 128 letters, digits, '.', '_' or '-'")
    return run_id


def parse_s3_url(text: str) -> S3Location:
    """``s3://bucket/key`` as given to --upload."""
    bucket, _, key = text.removeprefix("s3://").partition("/")
    if not text.startswith("s3://") or not key or key.endswith("/"):
        raise UsageError(f"{text}: expected s3://BUCKET/KEY (an object, not a folder)")
    return S3Location(check_bucket_name(bucket), key)


def capture_key(prefix: str, run_id: str) -> str:
    """The S3 key the collector uploads a run's capture to."""
    name = f"{check_run_id(run_id)}.pcap"
    folder = prefix.strip("/")
    return f"{folder}/{name}" if folder else name


def sse_parameters(kms_key_id: str | None) -> dict[str, str]:
    """PutObject's server-side encryption: S3-managed keys (AES256), or the KMS key when one is named."""
    if kms_key_id is None:
        return {"ServerSideEncryption": "AES256"}
    if not kms_key_id.strip():
        raise UsageError("--sse-kms-key: empty key id")
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id}


@dataclass(frozen=True, slots=True)
class UploadDestination:
    """Where ``verifier collect --upload`` puts its capture, checked writable before the capture starts."""

    s3: Any
    location: S3Location
    kms_key_id: str | None


def upload_destination(url: str, kms_key_id: str | None) -> UploadDestination:
    """For ``verifier collect --upload``: an S3 client with this machine's credentials (on the collector,
    its instance role), in the configured region or else the instance's own, and the bucket checked."""
    location = parse_s3_url(url)
    sse_parameters(kms_key_id)
    session = new_session(None, None)
    identity = None if session.region_name else instance_identity()
    region = session.region_name or (identity.region if identity is not None else None)
    if not region:
        raise UsageError("--upload: no AWS region: set AWS_DEFAULT_REGION or one in the AWS config")
    s3 = new_client(session, "s3", region)
    check_bucket_writable(s3, location.bucket, location.key.rpartition("/")[0], kms_key_id)
    return UploadDestination(s3, location, kms_key_id)


def check_ssm_managed(ssm: Any, instance_id: str) -> None:
    """AwsError unless the collector's SSM agent is registered and online, so SendCommand can reach it."""
    try:
        answer = call(
            ssm,
            "DescribeInstanceInformation",
            iam_action="ssm:DescribeInstanceInformation",
            Filters=[{"Key": "InstanceIds", "Values": [instance_id]}],
        )
        found = [
            info
            for info in answer.get("InstanceInformationList", [])
            if info.get("InstanceId") == instance_id
        ]
    except AwsError as exc:
        if exc.code != "InvalidInstanceId":
            raise
        found = []
    ping = str(found[0].get("PingStatus", "unknown")) if found else "not registered"
    if ping != "Online":
        raise AwsError(
            f"{instance_id}: no SSM agent is online on the collector (SSM PingStatus: {ping}): install/start "
            "the SSM agent and give the instance role AmazonSSMManagedInstanceCore, or run verifier on the "
            "collector itself"
        )


def check_bucket_writable(s3: Any, bucket: str, prefix: str, kms_key_id: str | None) -> None:
    """Put a small encrypted marker under ``prefix`` and delete it: AwsError naming the bucket and the
    refused action when either is not allowed or the bucket does not exist."""
    key = f"{prefix.strip('/')}/{_WRITE_CHECK_NAME}" if prefix.strip("/") else _WRITE_CHECK_NAME
    location = S3Location(check_bucket_name(bucket), key)
    try:
        call(
            s3,
            "PutObject",
            iam_action="s3:PutObject",
            Bucket=bucket,
            Key=key,
            Body=b"verifier checks that it may write here\n",
            **sse_parameters(kms_key_id),
        )
    except AwsError as exc:
        raise _s3_refusal(exc, "PutObject", location) from exc.__cause__
    try:
        call(s3, "DeleteObject", iam_action="s3:DeleteObject", Bucket=bucket, Key=key)
    except AwsError as exc:
        raise _s3_refusal(exc, "DeleteObject", location) from exc.__cause__


def collect_command_line(
    run_id: str,
    bucket: str,
    prefix: str,
    duration_seconds: int,
    packets: int | None = None,
    kms_key_id: str | None = None,
    executable: str = "verifier",
) -> str:
    """The shell script SSM runs on the collector: capture into a fresh private directory, upload to
    s3://bucket/<capture_key>, and remove the local copy whatever happened (it may hold plaintext secrets)."""
    if duration_seconds <= 0:
        raise UsageError(f"capture duration {duration_seconds} s: must be positive")
    if packets is not None and packets <= 0:
        raise UsageError(f"--packets {packets}: must be positive")
    destination = S3Location(check_bucket_name(bucket), capture_key(prefix, run_id))
    arguments = [executable, "collect", "--listen", LISTEN, "--duration", f"{duration_seconds}s"]
    if packets is not None:
        arguments += ["--packets", str(packets)]
    collect = " ".join(shlex.quote(argument) for argument in arguments)
    collect += f' --out "$capture_dir"/{shlex.quote(f"{run_id}.pcap")}'
    collect += " " + " ".join(shlex.quote(argument) for argument in ["--upload", destination.url])
    if kms_key_id is not None:
        sse_parameters(kms_key_id)  # validates it
        collect += " " + " ".join(shlex.quote(argument) for argument in ["--sse-kms-key", kms_key_id])
    return "\n".join(
        [
            "capture_dir=$(mktemp -d) || exit 1",
            # The script's exit status stays collect's: a trap on EXIT does not change $?.
            "trap 'rm -rf \"$capture_dir\"' EXIT",
            collect,
        ]
    )


def start_remote_collect(
    ssm: Any, instance_id: str, command_line: str, duration_seconds: int, run_id: str
) -> str:
    """Send ``command_line`` to the collector with AWS-RunShellScript; the command id."""
    execution_timeout = duration_seconds + UPLOAD_ALLOWANCE
    if execution_timeout > _MAX_EXECUTION_TIMEOUT:
        raise UsageError(
            f"capture duration {duration_seconds} s: a remote capture may last at most "
            f"{_MAX_EXECUTION_TIMEOUT - UPLOAD_ALLOWANCE} s"
        )
    answer = call(
        ssm,
        "SendCommand",
        iam_action="ssm:SendCommand",
        InstanceIds=[instance_id],
        DocumentName=DOCUMENT,
        TimeoutSeconds=_DELIVERY_TIMEOUT,
        Comment=f"verifier run {check_run_id(run_id)}: capture mirrored traffic"[:_COMMENT_MAX],
        Parameters={"commands": [command_line], "executionTimeout": [str(execution_timeout)]},
    )
    return str(answer["Command"]["CommandId"])


def wait_remote_collect(
    ssm: Any,
    command_id: str,
    instance_id: str,
    deadline: float,
    sleep: Callable[[float], None] = time.sleep,
    on_poll: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> RemoteCollectResult:
    """Poll the invocation until it ends or ``deadline`` (a ``clock`` time) passes; its output on Success,
    else AwsError with the status and the end of what the script wrote to stderr."""
    missing = 0
    while True:
        try:
            invocation = call(
                ssm,
                "GetCommandInvocation",
                iam_action="ssm:GetCommandInvocation",
                CommandId=command_id,
                InstanceId=instance_id,
            )
        except AwsError as exc:
            if exc.code != "InvocationDoesNotExist":
                raise
            missing += 1
            if missing >= _MISSING_INVOCATION_POLLS:
                raise AwsError(
                    f"{instance_id}: SSM has no invocation of command {command_id} after {missing} polls: "
                    "check the collector's SSM agent"
                ) from exc
            status = "Pending"
        else:
            missing = 0
            status = str(invocation.get("Status", ""))
            if status == "Success":
                return RemoteCollectResult(
                    str(invocation.get("StandardOutputContent", "")),
                    str(invocation.get("StandardErrorContent", "")),
                )
            if status in _DONE:
                details = str(invocation.get("StatusDetails", "")) or status
                said = _tail(str(invocation.get("StandardErrorContent", "")))
                raise AwsError(
                    f"{instance_id}: the remote capture (SSM command {command_id}) ended {status} ({details})"
                    + (f": {said}" if said else ": it wrote nothing to stderr")
                )
        if on_poll is not None:
            on_poll(status)
        remaining = deadline - clock()
        if remaining <= 0:
            raise AwsError(
                f"{instance_id}: the remote capture (SSM command {command_id}) is still {status} past its "
                "deadline"
            )
        sleep(min(_POLL_INTERVAL, remaining))


def cancel_remote_collect(ssm: Any, command_id: str, instance_id: str) -> None:
    """Ask SSM to stop the remote capture (the operator pressed Ctrl-C); AWS does not promise it stops."""
    call(
        ssm, "CancelCommand", iam_action="ssm:CancelCommand", CommandId=command_id, InstanceIds=[instance_id]
    )


def upload_capture(
    s3: Any, paths: Sequence[Path], bucket: str, key: str, kms_key_id: str | None
) -> list[str]:
    """Upload the capture files, encrypted at rest: the first to ``key``, rotated ones to key.1, key.2...;
    the s3:// URL of each."""
    uploaded: list[str] = []
    for number, path in enumerate(paths):
        location = S3Location(check_bucket_name(bucket), f"{key}.{number}" if number else key)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise InputError(f"{path}: cannot upload it: {exc.strerror or exc}") from exc
        if size > _MAX_PUT_OBJECT:
            raise InputError(
                f"{path}: {size} bytes is more than one S3 PutObject takes (5 GiB): capture with "
                "--rotate-bytes to upload it in parts"
            )
        try:
            with path.open("rb") as body:
                call(
                    s3,
                    "PutObject",
                    iam_action="s3:PutObject",
                    Bucket=bucket,
                    Key=location.key,
                    Body=body,
                    **sse_parameters(kms_key_id),
                )
        except AwsError as exc:
            raise _s3_refusal(exc, "PutObject", location) from exc.__cause__
        except OSError as exc:
            raise InputError(f"{path}: cannot read it for upload: {exc.strerror or exc}") from exc
        uploaded.append(location.url)
    return uploaded


def download_capture(s3: Any, bucket: str, key: str, destination: Path) -> int:
    """Stream s3://bucket/key into ``destination`` (mode 0600; complete or absent); the bytes written."""
    location = S3Location(check_bucket_name(bucket), key)
    try:
        answer = call(s3, "GetObject", iam_action="s3:GetObject", Bucket=bucket, Key=key)
    except AwsError as exc:
        if exc.code == "NoSuchKey":
            raise AwsError(
                f"the collector reported success but uploaded nothing to {location.url} (NoSuchKey)"
            ) from exc.__cause__
        raise _s3_refusal(exc, "GetObject", location) from exc.__cause__
    partial = destination.with_name(destination.name + ".part")
    written = 0
    body = answer["Body"]
    try:
        # Mirrored traffic may carry plaintext secrets: readable by the owner only, even when overwriting.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as file:
            while chunk := body.read(_CHUNK):
                file.write(chunk)
                written += len(chunk)
        os.replace(partial, destination)
    except BotoCoreError as exc:
        partial.unlink(missing_ok=True)
        raise AwsError(f"{location.url}: the download broke off after {written} bytes: {exc}") from exc
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise InputError(f"{destination}: cannot write the capture: {exc.strerror or exc}") from exc
    finally:
        body.close()
    return written


def delete_capture(s3: Any, bucket: str, key: str) -> None:
    """Delete a downloaded capture from the bucket (a versioned bucket keeps its older versions, by its own
    lifecycle)."""
    call(s3, "DeleteObject", iam_action="s3:DeleteObject", Bucket=bucket, Key=key)


def _s3_refusal(error: AwsError, action: str, location: S3Location) -> AwsError:
    """One line naming the bucket and the refused action for the refusals an operator fixes in IAM or S3."""
    code = error.code
    if code == "NoSuchBucket":
        return AwsError(
            f"s3://{location.bucket}: no such bucket ({action} {location.key}): create it, or name another"
        )
    if code in ("AccessDenied", "AllAccessDisabled"):
        missing_key = (
            " (or the object does not exist: without s3:ListBucket S3 says AccessDenied for a missing key)"
            if action == "GetObject"
            else ""
        )
        return AwsError(
            f"{location.url}: {action} refused ({code}): the credentials need s3:{action} on "
            f"arn:aws:s3:::{location.bucket}/* and the bucket policy must allow it; with SSE-KMS also the "
            f"key's KMS permissions{missing_key}"
        )
    return error


def _tail(text: str) -> str:
    """The last lines of ``text`` as one line, at most _STDERR_TAIL characters: a failure's cause is last."""
    line = " | ".join(part.strip() for part in text.splitlines() if part.strip())
    if len(line) <= _STDERR_TAIL:
        return line
    return "..." + line[-_STDERR_TAIL:]
