"""docs/report.schema.json holds every JSON report the tool writes, and a report reads back as the Report it
was written from."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import date
from ipaddress import ip_network
from typing import Any

import jsonschema
import pytest

from tests.conftest import REPO
from tests.records import make_record
from tests.report.samples import as_run
from tests.report_schema import VALIDATOR
from verifier.analysis import SCHEMA_VERSION, Judging, analyze_files
from verifier.core.chains import Check, CheckStatus, TrustAnchors
from verifier.core.model import Report, Verdict
from verifier.core.policy import Policy, PolicyException
from verifier.errors import InputError
from verifier.report.json_report import JsonReportWriter, report_from_dict, report_to_dict

CAPTURES = sorted((REPO / "captures").glob("*.pcap"))


# TLS 1.3 required: the captures' TLS 1.2 flows FAIL; one exception in force and one expired match them.
POLICY_WITH_EXCEPTIONS = Policy(
    min_tls_version="1.3",
    exceptions=(
        PolicyException("legacy client, ticket OPS-1", date(2999, 12, 31), port=8443),
        PolicyException("old waiver", date(2020, 1, 31), peer=ip_network("10.77.0.0/16")),
    ),
)


def _reports() -> dict[str, Report]:
    anchors = TrustAnchors.from_pem_bundle((REPO / "captures" / "pki" / "root-ca.pem").read_bytes())
    every_capture = analyze_files(CAPTURES)
    judged = analyze_files([REPO / "captures" / "vxlan-tls12-chain.pcap"], judging=Judging(anchors=anchors))
    checked = make_record(
        server="[fd00::2]:8443",
        client="[fd00::1]:51000",
        vni=None,
        identity=Verdict.FAIL,
        identity_checks=(Check("chains_to_anchor", CheckStatus.FAIL, "no path to the configured CA"),),
        verdict=Verdict.FAIL,
    )
    return {
        "captures": every_capture,
        "each capture": analyze_files(CAPTURES[:1]),
        "judged chains": judged,
        "run": as_run(every_capture),
        "run left resources": as_run(judged, teardown_left=True),
        "no flows": analyze_files(CAPTURES, sink=lambda record: None),
        "empty": analyze_files([]),
        "ipv6 and checks": replace(every_capture, flows=(checked,)),
        "policy exceptions": analyze_files(CAPTURES, judging=Judging(policy=POLICY_WITH_EXCEPTIONS)),
    }


REPORTS = _reports()


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_report_is_valid_and_reads_back(name: str) -> None:
    report = REPORTS[name]
    document = json.loads(json.dumps(report_to_dict(report)))
    VALIDATOR.validate(document)
    assert report_from_dict(document) == report


def test_the_judged_report_exercises_identity() -> None:
    document = report_to_dict(REPORTS["judged chains"])
    assert {flow["identity"] for flow in document["flows"]} - {None}
    assert document["certificates"] and all("subject" in entry for entry in document["certificates"])


@pytest.mark.parametrize("name", ["captures", "run", "no flows"])
def test_the_streamed_document_is_valid(name: str) -> None:
    out = io.StringIO()
    JsonReportWriter(out, SCHEMA_VERSION).finish(REPORTS[name])
    VALIDATOR.validate(json.loads(out.getvalue()))


def _document() -> dict[str, Any]:
    return json.loads(json.dumps(report_to_dict(REPORTS["run"])))


def test_the_schema_is_closed() -> None:
    extra = _document()
    extra["flows"][0]["surprise"] = 1
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(extra)
    wrong = _document()
    wrong["declared_vs_observed"][0]["verdict"] = "OK"
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(wrong)
    missing = _document()
    del missing["run"]["teardown_complete"]
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(missing)


def test_a_document_that_is_no_report_is_an_input_error() -> None:
    document = _document()
    del document["summary"]
    with pytest.raises(InputError, match="not a verifier JSON report"):
        report_from_dict(document)
    document = _document()
    document["flows"][0]["verdict"] = "OK"
    with pytest.raises(InputError):
        report_from_dict(document)


def test_the_policy_exceptions_say_what_each_did() -> None:
    document = report_to_dict(REPORTS["policy exceptions"])
    in_force, expired = document["policy_exceptions"]
    assert (in_force["expired"], in_force["port"], in_force["expires"]) == (False, 8443, "2999-12-31")
    assert (expired["expired"], expired["peer"]) == (True, "10.77.0.0/16")
    assert in_force["flows"] > 0 and expired["flows"] > 0
