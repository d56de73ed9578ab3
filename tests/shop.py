"""The embedded AWS shop of verifier.embedded.demo_account, in-process (moto's mock_aws, completed by
verifier.embedded): the account `verifier run` tests run against. The ``shop`` fixture is registered in
tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.moto_api import state_manager

from tests.aws.test_pca import offline_environment
from verifier.embedded.demo_account import DemoAccount, seed
from verifier.embedded.moto_mirroring import install
from verifier.run import RunRequest

REGION = "us-east-1"


@dataclass(frozen=True)
class Shop:
    session: boto3.session.Session
    account: DemoAccount
    ec2: Any  # the test's own view of the account


@pytest.fixture
def shop(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Shop]:
    offline_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    install()
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 1000})
    with mock_aws():
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        yield Shop(session, seed(session, REGION), session.client("ec2"))
    state_manager.unset_transition(model_name="ecs::task")


def request(shop: Shop, **changes: Any) -> RunRequest:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "run_id": "run-test-1",
        "region": REGION,
        "collector": shop.account.collector_instance_id,
        "duration": 1.5,
        "expires_at": now + timedelta(hours=1),
        "cluster": shop.account.cluster,
    }
    return RunRequest(**{**fields, **changes})


def leftovers(ec2: Any) -> list[str]:
    """Every Traffic Mirroring resource and every tagged security-group rule still in the account."""
    found = [
        s["TrafficMirrorSessionId"] for s in ec2.describe_traffic_mirror_sessions()["TrafficMirrorSessions"]
    ]
    found += [
        t["TrafficMirrorTargetId"] for t in ec2.describe_traffic_mirror_targets()["TrafficMirrorTargets"]
    ]
    found += [
        f["TrafficMirrorFilterId"] for f in ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"]
    ]
    rules = ec2.describe_security_group_rules()["SecurityGroupRules"]
    found += [rule["SecurityGroupRuleId"] for rule in rules if rule.get("Tags")]
    return found
