"""verifier.aws.remote_capture: the SSM command and the S3 round trip against moto, what moto cannot answer
(refusals, an agent offline, an invocation that fails) against botocore's Stubber, the generated shell script
run by sh, and ``verifier collect --upload`` as a process uploading to a moto server.

What moto 5.2.5 does that shapes these tests: SendCommand records the command and every invocation answers
Success at once; DescribeInstanceInformation and CancelCommand are not implemented.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws
from urllib3.exceptions import ReadTimeoutError

from tests.aws.test_pca import offline_environment
from tests.moto_server import moto_endpoint
from tests.traffic import tcp_frames
from verifier.analysis import analyze_files
from verifier.aws.remote_capture import (
    UPLOAD_ALLOWANCE,
    capture_key,
    check_bucket_writable,
    check_ssm_managed,
    collect_command_line,
    download_capture,
    parse_s3_url,
    start_remote_collect,
    upload_capture,
    wait_remote_collect,
)
from verifier.aws.remote_capture import cancel_remote_collect as cancel
from verifier.errors import AwsError, InputError, UsageError

REGION = "eu-west-1"
BUCKET = "verifier-captures-test"
RUN = "run-20261122-a"
INSTANCE = "i-0123456789abcdef0"
COMMAND = "3f1a9c2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"  # SSM command ids are UUIDs (36 characters)
KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
# A pcap header (nanosecond magic, 2.4, snaplen 262144, Ethernet) and one record of 4 bytes.
PCAP = (
    bytes.fromhex("4d3cb2a1 0200 0400 00000000 00000000 00000400 01000000")
    + bytes.fromhex("00000000 00000000 04000000 04000000")
    + b"\xde\xad\xbe\xef"
)
HTTP = [
    (True, b"GET /card HTTP/1.1\r\nHost: pay\r\n\r\n"),
    (False, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
]


def _session() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[boto3.session.Session]:
    offline_environment(monkeypatch, tmp_path)
    with mock_aws():
        session = _session()
        session.client("s3").create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield session


@pytest.fixture
def stubbed_ssm() -> Iterator[tuple[Any, Stubber]]:
    client = _session().client("ssm")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def stubbed_s3() -> Iterator[tuple[Any, Stubber]]:
    client = _session().client("s3")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


# --- S3 -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kms_key_id", [None, KMS_KEY])
def test_the_bucket_check_writes_an_encrypted_marker_and_removes_it(
    aws: boto3.session.Session, kms_key_id: str | None
) -> None:
    s3 = aws.client("s3")
    written: list[dict[str, Any]] = []
    s3.meta.events.register("before-call.s3.PutObject", lambda params, **_: written.append(params["headers"]))
    check_bucket_writable(s3, BUCKET, "captures/", kms_key_id)
    (headers,) = written
    assert headers["x-amz-server-side-encryption"] == ("aws:kms" if kms_key_id else "AES256")
    assert headers.get("x-amz-server-side-encryption-aws-kms-key-id") == kms_key_id
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0


def test_the_bucket_check_names_a_missing_bucket(aws: boto3.session.Session) -> None:
    with pytest.raises(AwsError, match=r"^s3://verifier-nobody: no such bucket \(PutObject captures/"):
        check_bucket_writable(aws.client("s3"), "verifier-nobody", "captures", None)


def test_the_bucket_check_names_the_refused_action(stubbed_s3: tuple[Any, Stubber]) -> None:
    s3, stubber = stubbed_s3
    marker = {"Bucket": BUCKET, "Key": "captures/.verifier-write-check"}
    stubber.add_client_error("put_object", "AccessDenied", "Access Denied", 403)
    with pytest.raises(AwsError) as refused:
        check_bucket_writable(s3, BUCKET, "captures", None)
    assert str(refused.value).startswith(
        f"s3://{BUCKET}/captures/.verifier-write-check: PutObject refused (AccessDenied): the credentials "
        f"need s3:PutObject on arn:aws:s3:::{BUCKET}/*"
    )
    stubber.add_response("put_object", {}, None)
    stubber.add_client_error("delete_object", "AccessDenied", "Access Denied", 403, expected_params=marker)
    with pytest.raises(AwsError, match=r": DeleteObject refused \(AccessDenied\): .* s3:DeleteObject on"):
        check_bucket_writable(s3, BUCKET, "captures", None)


def test_upload_and_download_round_trip_encrypted_and_private(
    aws: boto3.session.Session, tmp_path: Path
) -> None:
    s3 = aws.client("s3")
    first, rotated = tmp_path / "run-0001.pcap", tmp_path / "run-0002.pcap"
    first.write_bytes(PCAP)
    rotated.write_bytes(PCAP[:24])
    key = capture_key("captures", RUN)
    assert upload_capture(s3, [first, rotated], BUCKET, key, None) == [
        f"s3://{BUCKET}/captures/{RUN}.pcap",
        f"s3://{BUCKET}/captures/{RUN}.pcap.1",
    ]
    assert s3.head_object(Bucket=BUCKET, Key=key)["ServerSideEncryption"] == "AES256"
    destination = tmp_path / "downloaded.pcap"
    destination.write_bytes(b"an older, longer file that is overwritten whole" * 10)
    destination.chmod(0o644)
    assert download_capture(s3, BUCKET, key, destination) == len(PCAP)
    assert destination.read_bytes() == PCAP
    assert stat.S_IMODE(destination.stat().st_mode) == 0o600
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "downloaded.pcap",
        *sorted([first.name, rotated.name]),
    ]


def test_upload_with_a_kms_key(aws: boto3.session.Session, tmp_path: Path) -> None:
    s3 = aws.client("s3")
    capture = tmp_path / "run.pcap"
    capture.write_bytes(PCAP)
    upload_capture(s3, [capture], BUCKET, "run.pcap", KMS_KEY)
    head = s3.head_object(Bucket=BUCKET, Key="run.pcap")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", KMS_KEY)


def test_upload_refuses_what_one_put_cannot_take(tmp_path: Path) -> None:
    huge = tmp_path / "huge.pcap"
    with huge.open("wb") as file:
        file.truncate(5 * 1024**3 + 1)  # sparse: no disk used
    with pytest.raises(InputError, match="more than one S3 PutObject takes"):
        upload_capture(object(), [huge], BUCKET, "run.pcap", None)


def test_download_of_a_missing_capture(aws: boto3.session.Session, tmp_path: Path) -> None:
    with pytest.raises(
        AwsError,
        match=rf"^the collector reported success but uploaded nothing to s3://{BUCKET}/captures/{RUN}\.pcap",
    ):
        download_capture(aws.client("s3"), BUCKET, f"captures/{RUN}.pcap", tmp_path / "run.pcap")
    assert list(tmp_path.iterdir()) == []


def test_download_refused_says_a_missing_key_looks_the_same(
    stubbed_s3: tuple[Any, Stubber], tmp_path: Path
) -> None:
    s3, stubber = stubbed_s3
    stubber.add_client_error("get_object", "AccessDenied", "Access Denied", 403)
    with pytest.raises(AwsError, match=r"GetObject refused \(AccessDenied\).*without s3:ListBucket"):
        download_capture(s3, BUCKET, "run.pcap", tmp_path / "run.pcap")


def test_a_download_that_breaks_off_leaves_no_file(stubbed_s3: tuple[Any, Stubber], tmp_path: Path) -> None:
    class Stalling:
        """A socket file that delivers the header, then times out."""

        def __init__(self) -> None:
            self.parts = [PCAP[:24]]

        def read(self, amount: int | None = None) -> bytes:
            if self.parts:
                return self.parts.pop()
            raise ReadTimeoutError(None, "/run.pcap", "Read timed out.")  # type: ignore[arg-type]

        def close(self) -> None:
            pass

    s3, stubber = stubbed_s3
    stubber.add_response("get_object", {"Body": StreamingBody(Stalling(), len(PCAP))})
    with pytest.raises(AwsError, match=r"^s3://.*/run.pcap: the download broke off after 24 bytes"):
        download_capture(s3, BUCKET, "run.pcap", tmp_path / "run.pcap")
    assert list(tmp_path.iterdir()) == []


def test_s3_urls() -> None:
    assert parse_s3_url(f"s3://{BUCKET}/captures/run.pcap").key == "captures/run.pcap"
    for wrong in ("verifier/run.pcap", f"s3://{BUCKET}", f"s3://{BUCKET}/captures/", "s3://Bad_Bucket/x"):
        with pytest.raises(UsageError):
            parse_s3_url(wrong)
    assert capture_key("", RUN) == f"{RUN}.pcap"
    assert capture_key("/a/b/", RUN) == f"a/b/{RUN}.pcap"


# --- SSM ------------------------------------------------------------------------------------------------


def _instance_information(ping: str) -> dict[str, Any]:
    return {"InstanceInformationList": [{"InstanceId": INSTANCE, "PingStatus": ping}]}


BY_INSTANCE = {"Filters": [{"Key": "InstanceIds", "Values": [INSTANCE]}]}


def test_an_online_agent_passes(stubbed_ssm: tuple[Any, Stubber]) -> None:
    ssm, stubber = stubbed_ssm
    stubber.add_response("describe_instance_information", _instance_information("Online"), BY_INSTANCE)
    check_ssm_managed(ssm, INSTANCE)


@pytest.mark.parametrize(
    ("answer", "ping"),
    [
        (_instance_information("ConnectionLost"), "ConnectionLost"),
        ({"InstanceInformationList": []}, "not registered"),
        (None, "not registered"),  # InvalidInstanceId
    ],
)
def test_an_agent_not_online_is_one_clear_line(
    stubbed_ssm: tuple[Any, Stubber], answer: dict[str, Any] | None, ping: str
) -> None:
    ssm, stubber = stubbed_ssm
    if answer is None:
        stubber.add_client_error("describe_instance_information", "InvalidInstanceId", "not valid", 400)
    else:
        stubber.add_response("describe_instance_information", answer, BY_INSTANCE)
    with pytest.raises(AwsError) as refused:
        check_ssm_managed(ssm, INSTANCE)
    assert str(refused.value) == (
        f"{INSTANCE}: no SSM agent is online on the collector (SSM PingStatus: {ping}): install/start the "
        "SSM agent and give the instance role AmazonSSMManagedInstanceCore, or run verifier on the collector "
        "itself"
    )


def test_send_and_wait_against_moto(aws: boto3.session.Session) -> None:
    ec2 = aws.client("ec2")
    instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ssm = aws.client("ssm")
    script = collect_command_line(RUN, BUCKET, "captures", 120)
    command_id = start_remote_collect(ssm, instance, script, 120, RUN)
    (sent,) = ssm.list_commands(CommandId=command_id)["Commands"]
    assert sent["DocumentName"] == "AWS-RunShellScript"
    assert sent["InstanceIds"] == [instance]
    assert sent["Parameters"] == {"commands": [script], "executionTimeout": [str(120 + UPLOAD_ALLOWANCE)]}
    assert RUN in sent["Comment"]
    slept: list[float] = []
    result = wait_remote_collect(ssm, command_id, instance, time.monotonic() + 60, sleep=slept.append)
    assert (result.standard_error, slept) == ("", [])


def test_wait_retries_a_missing_invocation_then_reports_the_failure(stubbed_ssm: tuple[Any, Stubber]) -> None:
    ssm, stubber = stubbed_ssm
    asked = {"CommandId": COMMAND, "InstanceId": INSTANCE}
    stubber.add_client_error(
        "get_command_invocation", "InvocationDoesNotExist", "", 400, expected_params=asked
    )
    stubber.add_response("get_command_invocation", {"Status": "InProgress"}, asked)
    stderr = "starting\n" + "x" * 1000 + "\nverifier: error: s3://verifier-c/r.pcap: PutObject refused\n\n"
    failed = {"Status": "Failed", "StatusDetails": "Failed", "StandardErrorContent": stderr}
    stubber.add_response("get_command_invocation", failed, asked)
    slept: list[float] = []
    polled: list[str] = []
    with pytest.raises(AwsError) as failure:
        wait_remote_collect(ssm, COMMAND, INSTANCE, 1e9, sleep=slept.append, on_poll=polled.append)
    line = str(failure.value)
    assert line.startswith(
        f"{INSTANCE}: the remote capture (SSM command {COMMAND}) ended Failed (Failed): ..."
    )
    assert line.endswith("x | verifier: error: s3://verifier-c/r.pcap: PutObject refused")
    assert "\n" not in line and "starting" not in line
    assert (polled, slept) == (["Pending", "InProgress"], [3.0, 3.0])


def test_wait_gives_up_at_the_deadline(stubbed_ssm: tuple[Any, Stubber]) -> None:
    ssm, stubber = stubbed_ssm
    for _ in range(3):
        stubber.add_response("get_command_invocation", {"Status": "InProgress"})
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    with pytest.raises(AwsError, match=r"is still InProgress past its deadline$"):
        wait_remote_collect(ssm, COMMAND, INSTANCE, 104.0, sleep=sleep, clock=lambda: now[0])
    assert slept == [3.0, 1.0]


def test_wait_gives_up_when_ssm_never_creates_the_invocation(stubbed_ssm: tuple[Any, Stubber]) -> None:
    ssm, stubber = stubbed_ssm
    for _ in range(10):
        stubber.add_client_error("get_command_invocation", "InvocationDoesNotExist", "", 400)
    with pytest.raises(AwsError, match=r"SSM has no invocation of command .* after 10 polls"):
        wait_remote_collect(ssm, COMMAND, INSTANCE, 1e9, sleep=lambda _: None)


def test_cancel(stubbed_ssm: tuple[Any, Stubber]) -> None:
    ssm, stubber = stubbed_ssm
    stubber.add_response("cancel_command", {}, {"CommandId": COMMAND, "InstanceIds": [INSTANCE]})
    cancel(ssm, COMMAND, INSTANCE)


def test_a_duration_past_the_execution_limit_is_refused() -> None:
    with pytest.raises(UsageError, match="at most 172200 s"):
        start_remote_collect(object(), INSTANCE, "true", 172201, RUN)


# --- the script SSM runs --------------------------------------------------------------------------------


def test_the_script_passes_every_value_intact_and_removes_the_capture(tmp_path: Path) -> None:
    """Run the script with sh, a stand-in for verifier recording its arguments and failing with status 3."""
    arguments = tmp_path / "arguments.json"
    stand_in = tmp_path / "verifier stand-in"
    stand_in.write_text(
        f"#!{sys.executable}\nimport json, pathlib, sys\n"
        "out = sys.argv[sys.argv.index('--out') + 1]\n"
        "pathlib.Path(out).write_bytes(b'pcap')\n"
        f"pathlib.Path({str(arguments)!r}).write_text(json.dumps(sys.argv[1:]))\n"
        "sys.exit(3)\n"
    )
    stand_in.chmod(0o700)
    kms_key = "alias/it's $(not) `run`"
    script = collect_command_line(
        RUN, BUCKET, "a b/", 90, packets=5, kms_key_id=kms_key, executable=str(stand_in)
    )
    finished = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert finished.returncode == 3, finished.stderr
    given = json.loads(arguments.read_text())
    out = Path(given[given.index("--out") + 1])
    assert given == [
        "collect",
        *("--listen", "0.0.0.0:4789", "--duration", "90s", "--packets", "5", "--out", str(out)),
        *("--upload", f"s3://{BUCKET}/a b/{RUN}.pcap", "--sse-kms-key", kms_key),
    ]
    assert out.name == f"{RUN}.pcap" and not out.parent.exists()


def test_the_script_refuses_values_that_are_not_names() -> None:
    for run_id, bucket in ((RUN, "verifier;reboot"), ("$(reboot)", BUCKET), ("../x", BUCKET)):
        with pytest.raises(UsageError):
            collect_command_line(run_id, bucket, "", 60)


# --- verifier collect --upload, as a process ------------------------------------------------------------

LISTEN = ("127.0.0.78", 4789)  # not the address tests/test_collect_command.py uses
COLLECT = [sys.executable, "-c", "from verifier.cli import main; main()", "collect"]


@pytest.fixture
def moto_server() -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


def _collect_environment(endpoint: str, tmp_path: Path) -> dict[str, str]:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_") and name != "HTTP_PROXY"
    }
    return {
        **environment,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _listening() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(LISTEN)
        except OSError:
            return True
    return False


def test_collect_uploads_its_capture_encrypted(moto_server: str, tmp_path: Path) -> None:
    if _listening():
        pytest.skip(f"{LISTEN} is in use")
    s3 = _session().client("s3", endpoint_url=moto_server)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    frames = [frame for _, _, frame, _ in tcp_frames(HTTP)]
    key = f"captures/{RUN}.pcap"
    process = subprocess.Popen(
        [
            *COLLECT,
            *("--listen", f"{LISTEN[0]}:{LISTEN[1]}", "--packets", str(len(frames)), "--duration", "20s"),
            *("--out", str(tmp_path / "run.pcap"), "--upload", f"s3://{BUCKET}/{key}"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_collect_environment(moto_server, tmp_path),
    )
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for _ in range(200):  # bounded: wait up to ~20 s for the bucket check and the bind
                if _listening() or process.poll() is not None:
                    break
                time.sleep(0.1)
            for frame in frames:  # VXLAN: flags with I set, VNI 78, then the mirrored Ethernet frame
                sender.sendto(b"\x08\x00\x00\x00" + (78).to_bytes(3) + b"\x00" + frame, LISTEN)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert stderr.rstrip().endswith(f"uploaded s3://{BUCKET}/{key}")
    assert [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == [key]
    assert s3.head_object(Bucket=BUCKET, Key=key)["ServerSideEncryption"] == "AES256"
    download_capture(s3, BUCKET, key, tmp_path / "downloaded.pcap")
    (flow,) = analyze_files([tmp_path / "downloaded.pcap"]).flows
    assert (flow.category, flow.vni) == ("plaintext(http)", 78)


def test_collect_refuses_an_unusable_bucket_before_capturing(moto_server: str, tmp_path: Path) -> None:
    finished = subprocess.run(
        [
            *COLLECT,
            *("--listen", "127.0.0.1:0", "--duration", "1h", "--out", str(tmp_path / "run.pcap")),
            *("--upload", "s3://verifier-nobody/run.pcap"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=_collect_environment(moto_server, tmp_path),
    )
    assert finished.returncode == 3, finished.stderr
    assert "s3://verifier-nobody: no such bucket (PutObject .verifier-write-check)" in finished.stderr
    assert not (tmp_path / "run.pcap").exists()


def test_collect_upload_options_need_each_other(tmp_path: Path) -> None:
    for arguments in (
        ["--no-pcap", "--analyze", "--upload", f"s3://{BUCKET}/run.pcap"],
        ["--out", str(tmp_path / "run.pcap"), "--sse-kms-key", KMS_KEY],
    ):
        finished = subprocess.run([*COLLECT, *arguments], capture_output=True, text=True, timeout=60)
        assert finished.returncode == 2 and "--upload needs a pcap" in finished.stderr, finished.stderr
