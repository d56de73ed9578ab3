"""The run state: one JSON file per run id recording every AWS resource a run intends to create and, once it
exists, its id, so that a run killed at any moment can still be torn down later (``load`` + teardown).

Every change is written atomically (temporary file, fsync, rename, fsync of the directory): after a crash the
file holds either the state before the change or the state after it, never a torn mix.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from verifier.errors import InputError, UsageError

# Run ids become file names: nothing that could climb out of the runs directory.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def runs_directory(base: Path | None = None) -> Path:
    """``base`` (tests), else $XDG_STATE_HOME/verifier/runs, else ~/.local/state/verifier/runs."""
    if base is not None:
        return base
    state_home = os.environ.get("XDG_STATE_HOME")
    # The XDG spec says a relative path in the variable is invalid and must be ignored.
    root = Path(state_home) if state_home and Path(state_home).is_absolute() else Path.home() / ".local/state"
    return root / "verifier" / "runs"


def _check_run_id(run_id: str) -> str:
    if not _RUN_ID.fullmatch(run_id):
        raise UsageError(f"run id '{run_id}': use up to 128 letters, digits, '.', '_' or '-'")
    return run_id


@dataclass(slots=True)
class Step:
    """One resource of the run: written before its create call (intent), completed after it (resource_id)."""

    role: str  # unique within the run: "filter", "rule:ingress:100", "target", "session:eni-..."
    kind: str  # "filter", "filter-rule", "target", "session"
    client_token: str
    params: dict[str, Any]
    resource_id: str | None = None
    created_at: str | None = None  # ISO 8601 UTC, when the id was recorded (the report's run record)


@dataclass(slots=True)
class RunState:
    run_id: str
    path: Path
    steps: list[Step] = field(default_factory=list)
    torn_down: bool = False

    def step(self, role: str) -> Step | None:
        return next((step for step in self.steps if step.role == role), None)

    def intend(self, role: str, kind: str, client_token: str, params: dict[str, Any]) -> None:
        """Record a create call about to be made (again: a retry keeps the step, with the new params)."""
        known = self.step(role)
        if known is None:
            self.steps.append(Step(role, kind, client_token, params))
        else:
            known.params = params
        self.torn_down = False
        self._write()

    def created(self, role: str, resource_id: str) -> None:
        """Record the id AWS gave the resource of ``role``."""
        known = self.step(role)
        if known is None:
            raise ValueError(f"no intent recorded for {role}")
        known.resource_id = resource_id
        known.created_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        self._write()

    def mark_torn_down(self) -> None:
        self.torn_down = True
        self._write()

    def _write(self) -> None:
        document = {
            "run_id": self.run_id,
            "torn_down": self.torn_down,
            "steps": [
                {
                    "role": step.role,
                    "kind": step.kind,
                    "client_token": step.client_token,
                    "params": step.params,
                    "resource_id": step.resource_id,
                    "created_at": step.created_at,
                }
                for step in self.steps
            ],
        }
        _write_atomically(self.path, json.dumps(document, indent=2, sort_keys=True).encode())


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    # The rename is durable only once the directory entry is.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _path(run_id: str, base: Path | None) -> Path:
    return runs_directory(base) / f"{_check_run_id(run_id)}.json"


def start(run_id: str, base: Path | None = None) -> RunState:
    """The state of ``run_id``: the recorded one when the run id was used before (a retried create then
    reuses its client tokens), else a new, empty one (written at its first intent)."""
    if _path(run_id, base).exists():
        return load(run_id, base)
    return RunState(run_id, _path(run_id, base))


def load(run_id: str, base: Path | None = None) -> RunState:
    """The recorded state of ``run_id``; InputError when there is none or it cannot be read."""
    path = _path(run_id, base)
    try:
        document = json.loads(path.read_bytes())
        state = RunState(
            run_id=str(document["run_id"]),
            path=path,
            steps=[
                Step(
                    role=str(step["role"]),
                    kind=str(step["kind"]),
                    client_token=str(step["client_token"]),
                    params=dict(step["params"]),
                    resource_id=None if step["resource_id"] is None else str(step["resource_id"]),
                    # Absent from the files of earlier versions.
                    created_at=None if step.get("created_at") is None else str(step["created_at"]),
                )
                for step in document["steps"]
            ],
            torn_down=bool(document["torn_down"]),
        )
    except FileNotFoundError:
        raise InputError(f"no run state for run id '{run_id}' in {path.parent}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the run state: {exc.strerror}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a verifier run state ({exc!r})") from exc
    if state.run_id != run_id:
        raise InputError(f"{path}: holds the state of run '{state.run_id}', not '{run_id}'")
    return state


def list_runs(base: Path | None = None) -> list[str]:
    """The run ids that have a state file, sorted."""
    directory = runs_directory(base)
    if not directory.is_dir():
        return []
    return sorted(path.stem for path in directory.glob("*.json") if _RUN_ID.fullmatch(path.stem))
