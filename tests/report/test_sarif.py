"""SARIF 2.1.0, validated against the standard's JSON schema.

tests/report/sarif-2.1.0-rtm.5.json is the SARIF 2.1.0 schema (OASIS; rtm.5, the revision published with the
standard), copied unchanged from the npm package @microsoft/jest-sarif 1.0.0-beta.0 (MIT).
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any

import jsonschema
import pytest

from tests.conftest import REPO
from tests.records import make_record
from tests.report.samples import as_run
from tests.report.test_findings import hostile_report
from verifier.analysis import analyze_files
from verifier.core.model import Report, Verdict
from verifier.report.sarif import write_sarif

CAPTURES = sorted((REPO / "captures").glob("*.pcap"))
SARIF_SCHEMA = json.loads((REPO / "tests" / "report" / "sarif-2.1.0-rtm.5.json").read_text())
VALIDATOR = jsonschema.Draft4Validator(SARIF_SCHEMA, format_checker=jsonschema.FormatChecker())


def sarif(report: Report) -> dict[str, Any]:
    out = io.StringIO()
    write_sarif(report, out)
    document: dict[str, Any] = json.loads(out.getvalue())
    VALIDATOR.validate(document)
    return document


REPORTS = {
    "run": lambda: as_run(analyze_files(CAPTURES)),
    "empty": lambda: analyze_files([]),
    "hostile": hostile_report,
    "chains": lambda: replace(
        analyze_files([]),
        flows=(
            make_record(identity=Verdict.FAIL, verdict=Verdict.FAIL, reason="no path to the CA"),
            make_record(
                category="unknown(data)", verdict=Verdict.INCONCLUSIVE, reason="no protocol recognised"
            ),
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_every_report_is_valid_sarif(name: str) -> None:
    document = sarif(REPORTS[name]())
    (run,) = document["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert [rule["id"] for rule in rules] == [
        "plaintext",
        "weak-tls",
        "chain-failure",
        "declared-tls-violated",
        "inconclusive",
    ]
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        (location,) = result["locations"]
        assert set(location) == {"logicalLocations"}


def test_results_of_a_run() -> None:
    (run,) = sarif(REPORTS["run"]())["runs"]
    results = {
        result["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]: result
        for result in run["results"]
    }
    assert set(results) == {
        "prod/api:8080",
        "10.77.0.2:6379 plaintext(resp)",
        "10.77.0.2:80 plaintext(http)",
        "10.77.0.2:5432 plaintext(pgsql)",
        "10.77.0.2:8443 TLS1.2",
    }
    assert (results["prod/api:8080"]["ruleId"], results["prod/api:8080"]["level"]) == (
        "declared-tls-violated",
        "error",
    )
    weak = results["10.77.0.2:8443 TLS1.2"]
    assert (weak["ruleId"], weak["level"], weak["properties"]["sni"]) == (
        "weak-tls",
        "warning",
        "api.internal.example",
    )
    assert run["automationDetails"]["id"] == "verifier/vrf-20261122-1700-ab12"
    assert run["properties"]["verdict"] == "FAIL"


def test_chain_failures_and_inconclusive_flows_have_their_rules() -> None:
    (run,) = sarif(REPORTS["chains"]())["runs"]
    assert sorted((result["ruleId"], result["level"]) for result in run["results"]) == [
        ("chain-failure", "error"),
        ("inconclusive", "warning"),
    ]


def test_nothing_to_report_is_no_result() -> None:
    (run,) = sarif(REPORTS["empty"]())["runs"]
    assert run["results"] == [] and run["properties"]["verdict"] == "INCONCLUSIVE"


def test_what_the_wire_controls_is_bounded() -> None:
    (run,) = sarif(REPORTS["hostile"]())["runs"]
    for result in run["results"]:
        assert len(result["message"]["text"]) < 800
        assert "\u202e" not in json.dumps(result, ensure_ascii=False)
