"""`verifier demo`: the main job on the embedded default, with no AWS account and no internet.

The control plane is moto (verifier.embedded completes it) served on 127.0.0.1 and seeded with an ECS shop
(verifier.embedded.demo_account); the data plane is the mirror lab (verifier.embedded.lab): network namespaces
whose veths are the tasks' ENIs, real TLS, HTTP, PostgreSQL and Redis servers and clients, and Linux's own
VXLAN and tc mirred copying an ENI's packets to the collector exactly while a Traffic Mirroring session for
that ENI exists in the embedded AWS. Between the two runs the same code path as `verifier run`: resolve,
plan, create, capture, teardown, analyse, declared vs observed.

The lab needs root (namespaces, VXLAN, tc); everything it makes is removed at the end, also on failure.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto.moto_api import state_manager
from moto.server import ThreadedMotoServer

from verifier.analysis import Judging
from verifier.aws.calls import new_client, new_session
from verifier.aws.pca import load_pca_anchors
from verifier.core.model import Report
from verifier.embedded.demo_account import (
    LEGACY_TLS_PORT,
    POSTGRES_PORT,
    REDIS_PORT,
    VXLAN_PORT,
    WEB_HTTP_PORT,
    WEB_HTTPS_PORT,
    WEB_NAME,
    DemoAccount,
    DemoTask,
    seed,
)
from verifier.embedded.lab import Lab, TrafficClient, open_udp_socket, socket_factory
from verifier.embedded.lab_adapter import MirrorLabAdapter
from verifier.embedded.moto_mirroring import install
from verifier.errors import UsageError
from verifier.run import AnalysisOptions, LocalCapture, Progress, RunRequest, run

REGION = "eu-west-1"
LAB_PREFIX = "vdemo"
LEGACY_NAME = "legacy.shop.local"
NEEDS_ROOT = (
    "verifier demo needs root: its data plane is Linux network namespaces, VXLAN and tc mirroring "
    "(run `sudo ./scripts/demo`, or `sudo .venv/bin/verifier demo`)"
)
# Clients repeat their exchange this often during the capture.
CLIENT_PAUSE = 0.5


@contextlib.contextmanager
def embedded_aws(state_directory: Path) -> Iterator[str]:
    """moto on 127.0.0.1 (a free port), completed by verifier.embedded, as this process's AWS endpoint.

    The environment points boto3 at it with throwaway credentials; run state files go under
    ``state_directory``, not the operator's own state. Everything is restored on exit."""
    install()
    # The server logs every request at INFO through werkzeug's logger: not the demo's output.
    werkzeug = logging.getLogger("werkzeug")
    werkzeug_level = werkzeug.level
    removed = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE")
    overridden = (
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "XDG_STATE_HOME",
    )
    saved = {name: os.environ.get(name) for name in (*overridden, *removed)}
    with contextlib.ExitStack() as undo:
        # Everything is undone in reverse, also when starting the server fails.
        undo.callback(werkzeug.setLevel, werkzeug_level)
        undo.callback(state_manager.unset_transition, model_name="ecs::task")
        undo.callback(_restore_environment, saved)
        werkzeug.setLevel(logging.WARNING)
        # ECS tasks stay RUNNING (moto otherwise moves them towards STOPPED on each DescribeTasks).
        state_manager.set_transition(
            model_name="ecs::task", transition={"progression": "manual", "times": 10**6}
        )
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        undo.callback(server.stop)
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "demo",
                "AWS_SECRET_ACCESS_KEY": "demo",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "XDG_STATE_HOME": str(state_directory),
            }
        )
        for name in removed:
            os.environ.pop(name, None)
        yield endpoint


def _restore_environment(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def other_ca_certificate(name: str) -> tuple[bytes, bytes]:
    """A server certificate for ``name`` from a CA that is not the account's Private CA (certificate then
    its CA's, and the key), as a service that brought its own certificates would present."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Somebody Else's CA")])
    now = datetime.now(UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return leaf.public_bytes(pem) + ca.public_bytes(pem), key_pem


def start_peers(lab: Lab, account: DemoAccount, keylog: Path, rounds: int) -> list[TrafficClient]:
    """The shop's servers in the task namespaces, and clients looping ``rounds`` times in their own."""
    legacy_chain, legacy_key = other_ca_certificate(LEGACY_NAME)
    lab.start_tls_server("web", WEB_HTTPS_PORT, account.web_certificate_pem, account.web_key_pem)
    lab.start_http_server("web", WEB_HTTP_PORT)
    lab.start_postgres("data", legacy_chain, legacy_key, port=POSTGRES_PORT)
    lab.start_redis("data", REDIS_PORT)
    lab.start_tls_server("data", LEGACY_TLS_PORT, legacy_chain, legacy_key)
    web, data = (_task(account, name).private_ip for name in ("web", "data"))
    pause = CLIENT_PAUSE
    return [
        lab.start_tls_client(
            "shop", web, WEB_HTTPS_PORT, keylog, server_name=WEB_NAME, count=rounds, pause=pause
        ),
        lab.start_http_client("shop", web, WEB_HTTP_PORT, count=rounds, pause=pause),
        lab.start_psql_client("orders", data, POSTGRES_PORT, sslmode="disable", count=rounds, pause=pause),
        lab.start_psql_client("orders", data, POSTGRES_PORT, sslmode="require", count=rounds, pause=pause),
        lab.start_redis_client("orders", data, REDIS_PORT, count=rounds, pause=pause),
        lab.start_tls_client(
            "orders", data, LEGACY_TLS_PORT, keylog, server_name=LEGACY_NAME, count=rounds, pause=pause
        ),
    ]


def _task(account: DemoAccount, service: str) -> DemoTask:
    return next(task for task in account.tasks if task.service == service)


@dataclass(frozen=True, slots=True)
class DemoWorld:
    """The embedded account with the lab as its data plane, peers talking, the mirror adapter watching."""

    session: Any  # a boto3 Session on the embedded endpoint
    account: DemoAccount
    lab: Lab
    keylog: Path
    traffic: tuple[TrafficClient, ...]  # the clients looping in the lab

    def request(self, duration: float) -> RunRequest:
        now = datetime.now(UTC)
        return RunRequest(
            run_id=f"verifier-demo-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}",
            region=REGION,
            collector=self.account.collector_instance_id,
            duration=duration,
            expires_at=now + timedelta(hours=1),
            cluster=self.account.cluster,
        )

    def options(self, *, probe: bool) -> AnalysisOptions:
        """Chains judged against the account's Private CA; TLS 1.3 chains from the clients' key log, and
        with ``probe`` from a handshake made in the shop client's namespace (a peer's vantage point)."""
        judging = Judging(
            anchors=load_pca_anchors(self.session, self.account.pca_arn),
            probe_timeout=3.0 if probe else None,
            probe_socket=socket_factory(self.lab.client_namespace("shop")),
        )
        return AnalysisOptions(keylog=self.keylog, judging=judging)

    def capture(self) -> LocalCapture:
        """The collector listens in the collector namespace, where the mirror target's address lives."""
        address = self.account.collector_ip
        return LocalCapture(lambda: open_udp_socket(self.lab.collector_namespace, address, VXLAN_PORT))


@contextlib.contextmanager
def demo_world(
    work: Path, traffic_seconds: float, progress: Progress, lab_prefix: str = LAB_PREFIX
) -> Iterator[DemoWorld]:
    """Seed the embedded account, build the lab and start its peers (clients loop for about
    ``traffic_seconds``); everything is taken down on exit. ``work`` receives the key log and run states;
    ``lab_prefix`` names the lab's namespaces (a lab with the same prefix left by a killed process goes).
    """
    if os.geteuid() != 0:
        raise UsageError(NEEDS_ROOT)
    work.mkdir(mode=0o700, parents=True, exist_ok=True)
    keylog = work / "demo-keys.log"
    keylog.unlink(missing_ok=True)
    keylog.touch(mode=0o600)  # TLS secrets: the clients append to it, and nobody else may read it
    with embedded_aws(work / "state"):
        session = new_session(None, REGION)
        progress.phase("seeding the embedded AWS account")
        account = seed(session, REGION)
        tasks = {task.service: f"{task.private_ip}/24" for task in account.tasks}
        free = account.free_task_subnet_addresses
        clients = {"shop": f"{free[0]}/24", "orders": f"{free[1]}/24"}
        progress.phase("building the mirror lab (namespaces, veth, VXLAN underlay, peers)")
        # One prefix for every demo: a demo killed with SIGKILL leaves namespaces the next one removes.
        with Lab(tasks, clients, f"{account.collector_ip}/24", prefix=lab_prefix) as lab:
            traffic = start_peers(lab, account, keylog, int(traffic_seconds / CLIENT_PAUSE) + 1)
            eni_to_task = {task.eni_id: task.service for task in account.tasks}
            try:
                with MirrorLabAdapter(new_client(session, "ec2", REGION), lab, eni_to_task):
                    yield DemoWorld(session, account, lab, keylog, tuple(traffic))
            finally:
                # Together, not one after the other: each stop waits out its client's pause.
                stopping = [threading.Thread(target=client.stop) for client in traffic]
                for thread in stopping:
                    thread.start()
                for thread in stopping:
                    thread.join()


def run_demo(duration: float, work: Path, progress: Progress, *, probe: bool = True) -> Report:
    """The whole demo: ``duration`` seconds of capture; the report of the run."""
    # Clients keep talking a little past the capture, so that it sees traffic from start to end.
    with demo_world(work, duration + 30, progress) as world:
        return run(
            world.session, world.request(duration), world.capture(), world.options(probe=probe), progress
        )
