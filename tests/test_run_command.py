"""`verifier run` as a process, against the embedded AWS served over HTTP (moto's ThreadedMotoServer in this
process): signals tear down, and a run killed with SIGKILL after any create is finished by `verifier cleanup`.

What is left is read from moto's state through the test's own client, never from the verifier's output.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.core.responses import BaseResponse
from moto.moto_api import state_manager

from tests.aws.test_pca import offline_environment
from tests.moto_server import moto_endpoint
from tests.report_schema import valid_report
from tests.shop import leftovers
from verifier.embedded.demo_account import DemoAccount, seed
from verifier.embedded.moto_mirroring import install

REGION = "us-east-1"
RUN_ID = "run-signals-1"
SAFETY = 60.0  # seconds any wait may take at most
VERIFIER = [sys.executable, "-c", "from verifier.cli import main; main()"]
CREATES = frozenset(
    {
        "CreateTrafficMirrorFilter",
        "CreateTrafficMirrorFilterRule",
        "CreateTrafficMirrorTarget",
        "CreateTrafficMirrorSession",
    }
)


@dataclass(frozen=True)
class Embedded:
    endpoint: str
    account: DemoAccount
    ec2: Any
    environment: dict[str, str]  # for the verifier processes


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Embedded]:
    offline_environment(monkeypatch, tmp_path)
    install()
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**6})
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    try:
        with moto_endpoint() as endpoint:
            for name, value in {"AWS_ENDPOINT_URL": endpoint, **credentials}.items():
                monkeypatch.setenv(name, value)
            session = boto3.session.Session(region_name=REGION)
            account = seed(session, REGION)
            environment = {
                **os.environ,
                "AWS_DEFAULT_REGION": REGION,
                "XDG_STATE_HOME": str(tmp_path / "state"),
            }
            yield Embedded(endpoint, account, session.client("ec2"), environment)
    finally:
        state_manager.unset_transition(model_name="ecs::task")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_run(embedded: Embedded, stderr: Path, *extra: str) -> subprocess.Popen[str]:
    """The verifier's stderr goes to a file, where the test watches its progress lines."""
    command = [
        *VERIFIER,
        "run",
        "--collector",
        embedded.account.collector_instance_id,
        "--cluster",
        embedded.account.cluster,
        "--placement",
        "collector",
        "--listen",
        f"127.0.0.1:{free_udp_port()}",
        "--run-id",
        RUN_ID,
        "--format",
        "json",
        *extra,
    ]
    with stderr.open("w") as errors:
        return subprocess.Popen(
            command, env=embedded.environment, stdout=subprocess.PIPE, stderr=errors, text=True
        )


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + SAFETY
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def sessions(ec2: Any) -> list[dict[str, Any]]:
    return list(ec2.describe_traffic_mirror_sessions()["TrafficMirrorSessions"])


@pytest.mark.parametrize(
    ("signum", "exit_code"),
    [(signal.SIGINT, 0), (signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGHUP, 128 + signal.SIGHUP)],
)
def test_a_signal_mid_capture_tears_everything_down(
    embedded: Embedded, tmp_path: Path, signum: int, exit_code: int
) -> None:
    errors = tmp_path / "stderr.txt"
    with start_run(embedded, errors, "--duration", "60s") as run:
        try:
            # The progress line, printed once the sessions exist and the capture has begun.
            wait_for(lambda: "capturing on" in errors.read_text() or run.poll() is not None, "the capture")
            if run.poll() is None:
                run.send_signal(signum)
            stdout, _ = run.communicate(timeout=SAFETY)
        finally:
            run.kill()
    stderr = errors.read_text()
    assert run.returncode == exit_code, stderr
    assert leftovers(embedded.ec2) == []
    if signum == signal.SIGINT:
        # Ctrl-C ends the capture early; the report still comes, with its run record.
        report = valid_report(stdout)
        assert report["run"]["teardown_complete"] is True
        assert report["coverage"]["collector"]["stop_reason"] == "stopped"
    else:
        assert f"{signal.Signals(signum).name}: stopped; the run's AWS resources were torn down" in stderr


class CreateGate:
    """Holds the n-th create call the embedded AWS receives until released: the run is caught right after
    the call before it was answered, and can be killed there."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, hold: int) -> None:
        self.received = 0
        self.released = threading.Event()
        original = BaseResponse.call_action
        gate = self

        def call_action(response: BaseResponse) -> Any:
            if response._get_action() in CREATES:
                gate.received += 1
                if gate.received == hold:
                    gate.released.wait(SAFETY)
            return original(response)

        monkeypatch.setattr(BaseResponse, "call_action", call_action)


@pytest.mark.parametrize("k", range(1, 7))
def test_sigkill_after_any_create_is_cleaned_up_by_run_id(
    embedded: Embedded, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, k: int
) -> None:
    # Creates: the filter, two rules, the target, two sessions. After the last one the run is capturing.
    gate = CreateGate(monkeypatch, hold=k + 1)
    with start_run(embedded, tmp_path / "stderr.txt", "--duration", "60s") as run:
        try:
            if k < 6:
                wait_for(lambda: gate.received == k + 1 or run.poll() is not None, f"create call {k + 1}")
            else:
                wait_for(lambda: len(sessions(embedded.ec2)) == 2 or run.poll() is not None, "the sessions")
            assert run.poll() is None, "the run ended before it could be killed"
            run.kill()
            run.wait(SAFETY)
        finally:
            gate.released.set()  # the held call completes in the embedded AWS: nobody records its id
            run.kill()
            run.communicate(timeout=SAFETY)
    assert leftovers(embedded.ec2), "the killed run left nothing: the test did not kill it mid-run"

    cleanup = subprocess.run(
        [*VERIFIER, "cleanup", "--run-id", RUN_ID, "--region", REGION],
        env=embedded.environment,
        capture_output=True,
        text=True,
        timeout=SAFETY,
    )
    assert cleanup.returncode == 0, cleanup.stderr
    assert leftovers(embedded.ec2) == []
