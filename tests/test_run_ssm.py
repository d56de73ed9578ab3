"""verifier.run with the capture on the collector through SSM Run Command and S3 (the operator's-machine
placement). EC2, ECS, ACM PCA and S3 are moto; SSM is botocore's Stubber, because moto has no
DescribeInstanceInformation and no agent to run the command: the stubbed SSM answers as AWS does, and the
capture the collector would upload is put into the (moto) bucket under the key the run will read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from tests.shop import Shop, leftovers, request
from tests.traffic import Endpoints, tcp_frames, write_pcap
from verifier.aws.remote_capture import DOCUMENT, capture_key
from verifier.core.model import Verdict
from verifier.embedded.demo_account import WEB_HTTP_PORT
from verifier.errors import AwsError
from verifier.run import AnalysisOptions, SilentProgress, SsmCapture, run

BUCKET = "verifier-evidence-test"
PREFIX = "captures"
# What `verifier collect` prints at its end (tests/test_collect_command.py reads the real one back).
SUMMARY = (
    "collected 12 datagrams, 1900 bytes in 2.0 s (duration), kernel drops 0, "
    "from 1795000000.250000 to 1795000002.250000; wrote /tmp/x/run.pcap\n"
)


def uploaded_capture(shop: Shop, tmp_path: Path) -> bytes:
    """What the collector would upload: the web task's plaintext HTTP, mirrored (VXLAN on UDP 4789)."""
    (web,) = [task for task in shop.account.tasks if task.service == "web"]
    messages = [(True, b"GET /cart HTTP/1.1\r\nHost: web\r\n\r\n"), (False, b"HTTP/1.1 200 OK\r\n\r\n")]
    ends = Endpoints(client=("10.0.1.200", 41000), server=(web.private_ip, WEB_HTTP_PORT), vni=4242)
    return write_pcap(tmp_path / "uploaded.pcap", tcp_frames(messages, ends)).read_bytes()


def stubbed_ssm(shop: Shop, final_status: str) -> tuple[Any, Stubber]:
    ssm = shop.session.client("ssm")
    stubber = Stubber(ssm)
    instance = shop.account.collector_instance_id
    stubber.add_response(
        "describe_instance_information",
        {"InstanceInformationList": [{"InstanceId": instance, "PingStatus": "Online"}]},
    )
    stubber.add_response(
        "send_command",
        {"Command": {"CommandId": "c0ffee00-0000-4000-8000-000000000001", "DocumentName": DOCUMENT}},
    )
    stubber.add_response(
        "get_command_invocation",
        {
            "CommandId": "c0ffee00-0000-4000-8000-000000000001",
            "InstanceId": instance,
            "Status": final_status,
            "StatusDetails": final_status,
            "StandardOutputContent": "",
            "StandardErrorContent": SUMMARY if final_status == "Success" else "verifier: error: disk full\n",
        },
    )
    stubber.activate()
    return ssm, stubber


def ssm_capture(shop: Shop, ssm: Any, s3: Any, run_id: str) -> SsmCapture:
    return SsmCapture(
        ssm,
        s3,
        instance_id=shop.account.collector_instance_id,
        bucket=BUCKET,
        prefix=PREFIX,
        run_id=run_id,
        kms_key_id=None,
    )


def bucket(session: boto3.session.Session) -> Any:
    s3 = session.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    return s3


def test_a_capture_made_on_the_collector_is_fetched_and_judged(shop: Shop, tmp_path: Path) -> None:
    s3 = bucket(shop.session)
    run_request = request(shop, duration=2.0)
    s3.put_object(
        Bucket=BUCKET, Key=capture_key(PREFIX, run_request.run_id), Body=uploaded_capture(shop, tmp_path)
    )
    ssm, stubber = stubbed_ssm(shop, "Success")
    capture = ssm_capture(shop, ssm, s3, run_request.run_id)
    report = run(shop.session, run_request, capture, AnalysisOptions(), SilentProgress())
    stubber.assert_no_pending_responses()
    (flow,) = report.flows
    assert (flow.category, flow.vni, flow.verdict) == ("plaintext(http)", 4242, Verdict.FAIL)
    assert report.run is not None and report.run.placement == "ssm" and report.run.teardown_complete
    collector = report.coverage.collector
    assert collector is not None and (collector.datagrams, collector.bytes, collector.kernel_drops) == (
        12,
        1900,
        0,
    )
    assert leftovers(shop.ec2) == []


def test_a_failed_remote_capture_still_tears_down(shop: Shop) -> None:
    s3 = bucket(shop.session)
    run_request = request(shop, duration=2.0)
    ssm, _ = stubbed_ssm(shop, "Failed")
    capture = ssm_capture(shop, ssm, s3, run_request.run_id)
    with pytest.raises(AwsError, match=r"ended Failed.*disk full"):
        run(shop.session, run_request, capture, AnalysisOptions(), SilentProgress())
    assert leftovers(shop.ec2) == []


def test_a_collector_without_an_agent_is_refused_before_anything_is_made(shop: Shop) -> None:
    ssm = shop.session.client("ssm")
    with Stubber(ssm) as stubber:
        stubber.add_response("describe_instance_information", {"InstanceInformationList": []})
        capture = ssm_capture(shop, ssm, bucket(shop.session), "run-test-1")
        with pytest.raises(AwsError, match="SSM"):
            run(shop.session, request(shop), capture, AnalysisOptions(), SilentProgress())
    assert leftovers(shop.ec2) == []
    assert shop.ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"] == []
