"""--security-hub: the report's ASFF findings go to Security Hub through BatchImportFindings, 100 a call."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from tests.aws.test_pca import offline_environment
from tests.conftest import REPO
from tests.records import make_record
from tests.report.samples import as_run
from verifier.analysis import analyze_files
from verifier.aws.security_hub import BATCH_SIZE, import_findings, send_to_security_hub
from verifier.core.model import Verdict
from verifier.errors import AwsError

REGION = "eu-west-1"
CAPTURES = sorted((REPO / "captures").glob("*.pcap"))


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[boto3.session.Session]:
    offline_environment(monkeypatch, tmp_path)
    with mock_aws():
        yield boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )


def test_the_findings_of_a_run_land_in_security_hub(session: boto3.session.Session) -> None:
    report = as_run(analyze_files(CAPTURES))
    outcome = send_to_security_hub(session, report, REGION)
    stored = session.client("securityhub", region_name=REGION).get_findings()["Findings"]
    # 2 declared rows (the passing one filed as PASSED), 4 flow groups that do not pass (3 cleartext, TLS 1.2)
    assert outcome.imported == len(stored) == 6 and outcome.refused == ()
    by_title = {finding["Title"]: finding for finding in stored}
    cleartext = by_title["FAIL plaintext(http) to 10.77.0.2:80"]
    assert cleartext["AwsAccountId"] == DEFAULT_ACCOUNT_ID
    assert cleartext["ProductArn"] == (
        f"arn:aws:securityhub:{REGION}:{DEFAULT_ACCOUNT_ID}:product/{DEFAULT_ACCOUNT_ID}/default"
    )
    assert cleartext["Compliance"]["Status"] == "FAILED" and cleartext["Severity"]["Label"] == "HIGH"
    assert cleartext["Network"]["DestinationPort"] == 80
    compliant = by_title["PASS prod/api:8443: TLS declared"]
    assert compliant["Compliance"]["Status"] == "PASSED"
    assert compliant["Resources"][0] == {
        "Type": "AwsEcsService",
        "Id": f"arn:aws:ecs:{REGION}:{DEFAULT_ACCOUNT_ID}:service/prod/api",
        "Partition": "aws",
        "Region": REGION,
    }


def test_a_second_run_updates_the_same_findings(session: boto3.session.Session) -> None:
    report = analyze_files(CAPTURES)
    send_to_security_hub(session, report, REGION)
    send_to_security_hub(session, report, REGION)
    assert len(session.client("securityhub", region_name=REGION).get_findings()["Findings"]) == 4


class _Recorder:
    """A securityhub client that records each BatchImportFindings and refuses one finding id."""

    def __init__(self, refuse: str) -> None:
        self.batches: list[int] = []
        self.refuse = refuse
        self.meta = type("Meta", (), {"region_name": REGION})()

    def batch_import_findings(self, Findings: list[dict[str, Any]]) -> dict[str, Any]:
        self.batches.append(len(Findings))
        failed = [
            {"Id": item["Id"], "ErrorCode": "InvalidInput", "ErrorMessage": "bad"}
            for item in Findings
            if item["Id"] == self.refuse
        ]
        return {
            "SuccessCount": len(Findings) - len(failed),
            "FailedCount": len(failed),
            "FailedFindings": failed,
        }


def test_findings_go_in_batches_of_100_and_refusals_are_named() -> None:
    findings = [{"Id": f"finding-{index}"} for index in range(2 * BATCH_SIZE + 1)]
    client = _Recorder(refuse="finding-150")
    outcome = import_findings(client, findings)
    assert client.batches == [100, 100, 1]
    assert outcome.imported == 200 and outcome.refused == ("finding-150: InvalidInput: bad",)


def test_many_groups_go_in_several_calls_through_moto(session: boto3.session.Session) -> None:
    flows = tuple(
        make_record(server=f"10.1.0.{index}:80", category="plaintext(http)", verdict=Verdict.FAIL)
        for index in range(230)
    )
    batches: list[int] = []

    def count(params: dict[str, Any], **kwargs: Any) -> None:
        batches.append(len(params["Findings"]))

    session.events.register("provide-client-params.securityhub.BatchImportFindings", count)
    report = replace(analyze_files([]), flows=flows)
    assert send_to_security_hub(session, report, REGION).imported == 230
    assert batches == [100, 100, 30]
    pages = session.client("securityhub", region_name=REGION).get_paginator("get_findings").paginate()
    assert sum(len(page["Findings"]) for page in pages) == 230


def test_access_denied_names_the_permission(session: boto3.session.Session) -> None:
    client = session.client("securityhub", region_name=REGION)

    def denied(**params: Any) -> dict[str, Any]:
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "BatchImportFindings"
        )

    client.batch_import_findings = denied
    with pytest.raises(AwsError, match="securityhub:BatchImportFindings"):
        import_findings(client, [{"Id": "x"}])
