"""verifier.aws.runstate: the crash-safe record of what a run created."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from verifier.aws import runstate
from verifier.errors import InputError, UsageError


def test_intent_is_on_disk_before_the_id_and_both_survive_a_reload(tmp_path: Path) -> None:
    state = runstate.start("run-1", tmp_path)
    state.intend("filter", "filter", "token-1", {"Description": "d"})
    on_disk = json.loads((tmp_path / "run-1.json").read_text())
    assert on_disk["steps"] == [
        {
            "role": "filter",
            "kind": "filter",
            "client_token": "token-1",
            "params": {"Description": "d"},
            "resource_id": None,
            "created_at": None,
        }
    ]
    before = datetime.now(UTC)
    state.created("filter", "tmf-0123")
    loaded = runstate.load("run-1", tmp_path)
    assert loaded.steps == state.steps
    assert loaded.steps[0].resource_id == "tmf-0123"
    created_at = datetime.fromisoformat(str(loaded.steps[0].created_at))
    assert before - timedelta(milliseconds=1) <= created_at <= datetime.now(UTC)
    assert not loaded.torn_down
    loaded.mark_torn_down()
    assert runstate.load("run-1", tmp_path).torn_down


def test_start_reuses_a_recorded_run(tmp_path: Path) -> None:
    first = runstate.start("run-1", tmp_path)
    first.intend("target", "target", "token-2", {})
    first.created("target", "tmt-1")
    again = runstate.start("run-1", tmp_path)
    again.intend("target", "target", "token-2", {"NetworkInterfaceId": "eni-1"})
    assert len(again.steps) == 1
    assert again.steps[0].resource_id == "tmt-1"
    assert again.steps[0].params == {"NetworkInterfaceId": "eni-1"}


def test_no_temporary_file_is_left_behind(tmp_path: Path) -> None:
    state = runstate.start("run-1", tmp_path)
    for number in range(3):
        state.intend(f"rule:ingress:{number}", "filter-rule", f"t{number}", {})
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run-1.json"]


def test_a_failed_write_keeps_the_previous_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = runstate.start("run-1", tmp_path)
    state.intend("filter", "filter", "token-1", {})

    def refuse(source: object, destination: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError):
        state.created("filter", "tmf-1")
    monkeypatch.undo()
    assert runstate.load("run-1", tmp_path).steps[0].resource_id is None
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run-1.json"]


def test_list_runs(tmp_path: Path) -> None:
    assert runstate.list_runs(tmp_path / "absent") == []
    for run_id in ("b-run", "a-run"):
        runstate.start(run_id, tmp_path).intend("filter", "filter", "t", {})
    (tmp_path / "notes.txt").write_text("not a run")
    assert runstate.list_runs(tmp_path) == ["a-run", "b-run"]


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no run state for run id 'missing'"):
        runstate.load("missing", tmp_path)
    (tmp_path / "broken.json").write_text('{"run_id": "broken", "steps": [')
    with pytest.raises(InputError, match="not a verifier run state"):
        runstate.load("broken", tmp_path)
    (tmp_path / "renamed.json").write_text('{"run_id": "other", "torn_down": false, "steps": []}')
    with pytest.raises(InputError, match="holds the state of run 'other'"):
        runstate.load("renamed", tmp_path)


@pytest.mark.parametrize("run_id", ["../escape", "a/b", "", ".hidden", "x" * 129])
def test_run_ids_that_are_no_file_name_are_refused(tmp_path: Path, run_id: str) -> None:
    with pytest.raises(UsageError):
        runstate.start(run_id, tmp_path)


def test_the_state_directory_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert runstate.runs_directory() == tmp_path / "state" / "verifier" / "runs"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert runstate.runs_directory() == tmp_path / "home" / ".local" / "state" / "verifier" / "runs"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert runstate.runs_directory() == tmp_path / "home" / ".local" / "state" / "verifier" / "runs"


def test_a_state_written_before_creation_times_were_recorded_still_loads(tmp_path: Path) -> None:
    step = {"role": "target", "kind": "target", "client_token": "t", "params": {}, "resource_id": "tmt-1"}
    (tmp_path / "run-1.json").write_text(json.dumps({"run_id": "run-1", "torn_down": False, "steps": [step]}))
    (loaded,) = runstate.load("run-1", tmp_path).steps
    assert (loaded.resource_id, loaded.created_at) == ("tmt-1", None)
