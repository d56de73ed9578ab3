"""`verifier cleanup`: find what earlier runs left behind, by tag and by run state file, and delete it.

Only resources tagged ``verifier:created-by = verifier`` are ever considered: untagged resources, or those
of other tools, are never touched. Safe to run at any time, and twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from verifier.aws.mirroring import TeardownReport, describe_tagged, teardown
from verifier.aws.runstate import RunState, list_runs, load, runs_directory
from verifier.aws.security_groups import tagged_rules
from verifier.aws.tags import CREATED_BY, TAG_CREATED_BY, TAG_EXPIRES_AT, TAG_RUN_ID

_RESOURCE_KINDS = (
    ("DescribeTrafficMirrorSessions", "TrafficMirrorSessionId"),
    ("DescribeTrafficMirrorTargets", "TrafficMirrorTargetId"),
    ("DescribeTrafficMirrorFilters", "TrafficMirrorFilterId"),
)


@dataclass(frozen=True, slots=True)
class Leftover:
    run_id: str
    resource_ids: tuple[str, ...]  # tagged resources still in EC2 and resources the run state recorded
    expires_at: datetime | None  # from the tags; None when no resource carries it


def leftovers(ec2: Any, state_base: Path | None = None) -> dict[str, Leftover]:
    """Every run with something left: tagged resources in EC2 (mirror resources, and security group rules
    --fix-sg added), or a run state not marked torn down."""
    found: dict[str, tuple[list[str], datetime | None]] = {}
    tagged = [
        (resource, id_name)
        for operation, id_name in _RESOURCE_KINDS
        for resource in describe_tagged(ec2, operation, {TAG_CREATED_BY: CREATED_BY})
    ]
    tagged += [(rule, "SecurityGroupRuleId") for rule in tagged_rules(ec2)]
    for resource, id_name in tagged:
        tags = {tag["Key"]: tag["Value"] for tag in resource.get("Tags", [])}
        run_id = tags.get(TAG_RUN_ID)
        if not run_id:
            continue
        ids, expires = found.setdefault(run_id, ([], None))
        ids.append(resource[id_name])
        found[run_id] = (ids, expires or _parse_time(tags.get(TAG_EXPIRES_AT)))
    for run_id in list_runs(state_base):
        state = load(run_id, state_base)
        recorded = [step.resource_id for step in state.steps if step.resource_id is not None]
        if not state.torn_down and recorded:
            ids, expires = found.setdefault(run_id, ([], None))
            ids.extend(resource_id for resource_id in recorded if resource_id not in ids)
    return {run_id: Leftover(run_id, tuple(ids), expires) for run_id, (ids, expires) in sorted(found.items())}


def expired(runs: dict[str, Leftover], now: datetime) -> list[str]:
    """Runs whose resources say they may be deleted by now. A run with no expiry tag (only a state file)
    is never expired: name it with --run-id."""
    return [run.run_id for run in runs.values() if run.expires_at is not None and run.expires_at <= now]


def clean(
    ec2: Any,
    run_ids: Sequence[str],
    *,
    state_base: Path | None = None,
    sleep: Callable[[float], None] | None = None,
) -> dict[str, TeardownReport]:
    """Tear down each run: what its state recorded and what EC2 lists with its tags, security group rules
    included."""
    reports = {}
    for run_id in run_ids:
        path = runs_directory(state_base) / f"{run_id}.json"
        state = load(run_id, state_base) if path.exists() else RunState(run_id, path)
        reports[run_id] = teardown(ec2, state) if sleep is None else teardown(ec2, state, sleep)
    return reports


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
