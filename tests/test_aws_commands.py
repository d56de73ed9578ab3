"""Commands that talk to AWS, as processes, against the embedded AWS served over HTTP: `verifier collector
deploy|status|destroy` (moto's CloudFormation creates what it models of the stacks;
tests/aws/test_collector_stack.py covers the rest) and `--security-hub` (moto's Security Hub)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.aws.test_pca import offline_environment
from tests.conftest import REPO
from tests.moto_server import moto_endpoint

REGION = "us-east-1"
# moto warns about each resource type it cannot create, in this process (its server is a thread here), where
# pytest turns warnings into errors.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
VERIFIER = [sys.executable, "-c", "from verifier.cli import main; main()"]


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    offline_environment(monkeypatch, tmp_path)
    with moto_endpoint() as url:
        for name, value in {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "t",
            "AWS_SECRET_ACCESS_KEY": "t",
        }.items():
            monkeypatch.setenv(name, value)
        yield url


def verifier(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VERIFIER, *args, "--region", REGION],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )


def test_deploy_status_destroy(endpoint: str) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.2.0/24")["Subnet"]["SubnetId"]

    deployed = verifier(
        *("collector", "deploy", "--vpc", vpc, "--subnet", subnet, "--package", "verifier"),
        *("--mirror-source-cidr", "10.0.1.0/24"),
    )
    assert deployed.returncode == 0, deployed.stderr
    assert "verifier-evidence: CREATE_COMPLETE" in deployed.stdout
    assert "verifier-collector: CREATE_COMPLETE" in deployed.stdout

    status = verifier("collector", "status")
    assert status.returncode == 0, status.stderr
    assert "verifier-collector: CREATE_COMPLETE" in status.stdout
    assert "verifier-spot-check: not deployed" in status.stdout

    destroyed = verifier("collector", "destroy", "--evidence")
    assert destroyed.returncode == 0, destroyed.stderr
    assert "verifier-collector" in destroyed.stdout and "verifier-evidence" in destroyed.stdout
    assert "not deployed" in verifier("collector", "status").stdout


def test_deploy_needs_exactly_one_mirror_source(endpoint: str) -> None:
    refused = verifier(
        "collector", "deploy", "--vpc", "vpc-1", "--subnet", "subnet-1", "--package", "verifier"
    )
    assert refused.returncode == 2
    assert refused.stderr.startswith("verifier: error: ") and len(refused.stderr.strip().splitlines()) == 1


def test_security_hub_gets_the_findings_of_an_analysis(endpoint: str) -> None:
    capture = REPO / "captures" / "vxlan-tls13-mixed.pcap"
    result = subprocess.run(
        [*VERIFIER, "analyze", str(capture), "--security-hub", "--region", REGION, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert result.returncode == 1, result.stderr  # the capture holds cleartext flows
    imported = int(result.stderr.split("Security Hub: ", 1)[1].split(" ", 1)[0])
    findings = boto3.client("securityhub", region_name=REGION).get_findings()["Findings"]
    assert imported == len(findings) > 0
    assert any(finding["Severity"]["Label"] in ("HIGH", "CRITICAL") for finding in findings)


def test_a_report_goes_to_s3_encrypted(endpoint: str) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="verifier-evidence-test")
    capture = REPO / "captures" / "vxlan-tls13-mixed.pcap"
    url = "s3://verifier-evidence-test/spot/run-1.json"
    result = subprocess.run(
        [*VERIFIER, "analyze", str(capture), "--format", "json", "--output", url, "--region", REGION],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert result.returncode == 1, result.stderr
    assert f"report uploaded to {url}" in result.stderr
    stored = s3.get_object(Bucket="verifier-evidence-test", Key="spot/run-1.json")
    assert stored["ServerSideEncryption"] == "AES256"
    assert json.loads(stored["Body"].read())["summary"]["flows"] > 0
