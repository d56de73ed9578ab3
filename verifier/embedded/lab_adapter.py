"""Plays AWS's Traffic Mirroring data plane for the mirror lab: sessions in the (embedded) EC2 API become
mirrors in the lab.

A thread polls DescribeTrafficMirrorSessions on the EC2 client it is given (boto3 is the caller's business)
and, for each session whose source ENI stands for a lab task, installs the lab mirror with the session's VNI
when the session appears and removes it when the session is gone. Filter rules and packet truncation are
not applied: the lab mirrors every frame of the ENI.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

from verifier.embedded.lab import Lab

MAX_PAGES = 100  # bounds one poll; the lab never has anywhere near 100 pages of sessions
KEPT_ERRORS = 100
# One poll runs a few lab commands, each bounded by the lab's own timeout.
STOP_TIMEOUT_S = 120


class MirrorLabAdapter:
    def __init__(
        self, ec2_client: Any, lab: Lab, eni_to_task: Mapping[str, str], poll_interval: float = 0.2
    ) -> None:
        self._ec2 = ec2_client
        self._lab = lab
        self._eni_to_task = dict(eni_to_task)
        self._poll_interval = poll_interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # Failures of recent polls, newest last; the thread keeps polling, as a transient one may pass.
        self.errors: deque[str] = deque(maxlen=KEPT_ERRORS)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="mirror-lab-adapter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops polling; mirrors stay as they are (Lab.down() removes them)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
            self._thread = None

    def __enter__(self) -> MirrorLabAdapter:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        while True:
            try:
                self.poll_once()
            except Exception as exc:  # the API or the lab failing once must not end the data plane
                self.errors.append(f"{type(exc).__name__}: {exc}")
            if self._stopping.wait(self._poll_interval):
                return

    def poll_once(self) -> None:
        """Makes the lab's mirrors match the sessions the EC2 API has now."""
        wanted = self._wanted_vnis()
        for task, vni in wanted.items():
            self._lab.install_mirror(task, vni)  # a no-op when already mirrored with this VNI
        ours = set(self._eni_to_task.values())
        for task in [task for task in self._lab.mirrors if task in ours and task not in wanted]:
            self._lab.remove_mirror(task)

    def _wanted_vnis(self) -> dict[str, int]:
        """Task -> VNI of its session; with several sessions on one ENI, the lowest session number wins,
        as it does in AWS for a packet that several sessions accept."""
        best: dict[str, tuple[int, int]] = {}
        request: dict[str, str] = {}
        for _ in range(MAX_PAGES):
            page = self._ec2.describe_traffic_mirror_sessions(**request)
            for session in page.get("TrafficMirrorSessions", []):
                task = self._eni_to_task.get(session.get("NetworkInterfaceId", ""))
                vni = session.get("VirtualNetworkId")
                if task is None or vni is None:
                    continue
                candidate = (int(session.get("SessionNumber", 0)), int(vni))
                if task not in best or candidate < best[task]:
                    best[task] = candidate
            if not page.get("NextToken"):
                break
            request = {"NextToken": page["NextToken"]}
        return {task: vni for task, (_, vni) in best.items()}
