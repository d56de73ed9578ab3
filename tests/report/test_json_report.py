"""The JSON report: streamed and collected output are the same document, and it parses back."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime

from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import REPO
from tests.report.samples import PCA, as_run
from verifier.analysis import SCHEMA_VERSION, Judging, analyze_files
from verifier.core.chains import Check, CheckStatus
from verifier.core.model import FlowRecord, Verdict
from verifier.core.policy import Policy, PolicyException
from verifier.report.json_report import JsonReportWriter, _iso, flow_json, flow_to_dict, report_to_dict

CAPTURE = REPO / "captures" / "vxlan-tls12-chain.pcap"


def test_streamed_report_equals_the_collected_one() -> None:
    collected = analyze_files([CAPTURE])
    out = io.StringIO()
    writer = JsonReportWriter(out, SCHEMA_VERSION)
    streamed: list[FlowRecord] = []

    def sink(record: FlowRecord) -> None:
        streamed.append(record)
        writer.flow(record)

    report = analyze_files([CAPTURE], sink=sink)
    writer.finish(report)
    assert report.flows == () and len(streamed) == report.summary.flows == 2
    document = json.loads(out.getvalue())
    expected = report_to_dict(collected)
    assert sorted(document["flows"], key=str) == sorted(expected["flows"], key=str)
    for key in (
        "schema_version",
        "tool",
        "captures",
        "summary",
        "coverage",
        "certificates",
        "keylog",
        "run",
        "declared_vs_observed",
    ):
        assert document[key] == expected[key], key


def test_flow_fields_are_plain_json() -> None:
    record = analyze_files([CAPTURE]).flows[0]
    flow = flow_to_dict(record)
    assert flow["cipher_suite"] == "0xc02b"
    assert flow["verdict"] == "WARN"
    assert flow["first_seen"].endswith("Z") and "T" in flow["first_seen"]
    assert json.loads(json.dumps(flow)) == flow


def test_a_report_with_no_flows_is_still_a_document() -> None:
    out = io.StringIO()
    writer = JsonReportWriter(out, SCHEMA_VERSION)
    report = analyze_files([CAPTURE], sink=lambda record: None)
    writer.finish(report)
    assert json.loads(out.getvalue())["flows"] == []


def test_an_analysis_of_files_has_no_run_and_no_collector() -> None:
    document = report_to_dict(analyze_files([CAPTURE]))
    assert document["run"] is None
    assert document["declared_vs_observed"] == []
    assert document["coverage"]["collector"] is None


def test_run_declared_rows_and_collector_are_plain_json() -> None:
    out = io.StringIO()
    writer = JsonReportWriter(out, SCHEMA_VERSION)
    writer.finish(as_run(analyze_files([CAPTURE]), teardown_left=True))
    document = json.loads(out.getvalue())
    run = document["run"]
    assert run["teardown_complete"] is False
    assert [event["outcome"] for event in run["resources"]][-1] == "DeleteTrafficMirrorTarget: AccessDenied"
    assert run["sources"][1]["refused"].startswith("InvalidParameterValue")
    assert run["services"] == ["api", "web"]
    rows = document["declared_vs_observed"]
    assert rows[0]["pca_declared"] == PCA and rows[0]["by_category"] == {"TLS1.3": 12}
    assert (rows[1]["port"], rows[1]["tls_declared"], rows[1]["verdict"]) == (8080, None, "FAIL")
    collector = document["coverage"]["collector"]
    assert collector["started"] == "2023-11-14T22:13:20.000000Z" and collector["kernel_drops"] is None
    assert document == json.loads(
        json.dumps(report_to_dict(as_run(analyze_files([CAPTURE]), teardown_left=True)))
    )


def test_every_member_is_documented() -> None:
    """docs/report-json.md is the schema's documentation: a member it does not name is a defect."""
    text = (REPO / "docs" / "report-json.md").read_text()
    waiver = PolicyException("documented", date(2999, 12, 31), port=8443)
    document = report_to_dict(
        as_run(analyze_files([CAPTURE], judging=Judging(policy=Policy(exceptions=(waiver,)))))
    )
    run = document["run"]
    members = (
        set(document)
        | set(document["flows"][0])
        | set(document["coverage"])
        | set(document["coverage"]["collector"])
        | set(document["summary"])
        | set(document["declared_vs_observed"][0])
        | set(run)
        | set(run["sources"][0])
        | set(run["resources"][0])
        | set(document["policy_exceptions"][0])
    )
    missing = sorted(name for name in members if f"`{name}`" not in text)
    assert not missing


# From 0001-01-01 (a pcapng if_tsoffset is signed: a capture can claim any year) to the year 3058.
_ANY_TIME = st.floats(min_value=-62135596800, max_value=2**35, allow_nan=False, allow_infinity=False)


@given(_ANY_TIME)
def test_timestamps_are_written_as_datetime_writes_them(timestamp: float) -> None:
    expected = (
        datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )
    assert _iso(timestamp) == expected


def test_timestamps_round_half_to_even_at_the_microsecond() -> None:
    assert _iso(0.0000005) == "1970-01-01T00:00:00.000000Z"
    assert _iso(0.0000015) == "1970-01-01T00:00:00.000002Z"
    assert _iso(1.9999996) == "1970-01-01T00:00:02.000000Z"  # the carry reaches the seconds
    assert _iso(-40e9) == "0702-06-15T00:53:20.000000Z"  # four-digit years, as report_from_dict reads them
    assert _iso(None) is None


def _flow_json_as_the_encoder_writes_it(record: FlowRecord) -> None:
    assert flow_json(record) == json.JSONEncoder(separators=(", ", ": ")).encode(flow_to_dict(record))


def test_flow_json_is_the_encoders_text_for_every_flow_of_the_projects_captures() -> None:
    records = analyze_files(sorted((REPO / "captures").glob("*.pcap"))).flows
    assert len(records) >= 10
    for record in records:
        _flow_json_as_the_encoder_writes_it(record)


# Any code point: escapes, control characters, non-ASCII, and lone surrogates (which hypothesis leaves out
# unless asked).
_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
_MAYBE_TEXT = st.none() | _TEXT
_COUNT = st.integers(min_value=0, max_value=2**63)


@given(
    st.builds(
        FlowRecord,
        client=_TEXT,
        server=_TEXT,
        vni=st.none() | st.integers(min_value=0, max_value=2**24 - 1),
        first_seen=_ANY_TIME,
        last_seen=_ANY_TIME,
        role_rule=_TEXT,
        midstream=st.booleans(),
        handshake_seen=st.booleans(),
        category=_TEXT,
        protocol=_MAYBE_TEXT,
        upgrade_from=_MAYBE_TEXT,
        tls_version=_MAYBE_TEXT,
        cipher_suite=st.none() | st.integers(min_value=0, max_value=0xFFFF),
        cipher_suite_name=_MAYBE_TEXT,
        sni=_MAYBE_TEXT,
        alpn=_MAYBE_TEXT,
        alpn_offered=st.lists(_TEXT, max_size=3).map(tuple),
        ja4=_MAYBE_TEXT,
        hello_retry_request=st.booleans(),
        server_certificates=st.lists(_TEXT, max_size=3).map(tuple),
        client_certificates=st.lists(_TEXT, max_size=2).map(tuple),
        chain_source=_MAYBE_TEXT,
        chain_note=_MAYBE_TEXT,
        alerts=st.lists(_TEXT, max_size=2).map(tuple),
        evidence=_TEXT,
        evidence_truncated=st.booleans(),
        identity=st.none() | st.sampled_from(Verdict),
        identity_checks=st.lists(
            st.builds(Check, name=_TEXT, status=st.sampled_from(CheckStatus), detail=_TEXT), max_size=2
        ).map(tuple),
        packets_client=_COUNT,
        packets_server=_COUNT,
        bytes_client=_COUNT,
        bytes_server=_COUNT,
        retransmissions=_COUNT,
        out_of_order=_COUNT,
        gaps=_COUNT,
        gap_bytes=_COUNT,
        truncated_frames=_COUNT,
        verdict=st.sampled_from(Verdict),
        reason=_TEXT,
    )
)
def test_flow_json_is_the_encoders_text_for_any_record(record: FlowRecord) -> None:
    _flow_json_as_the_encoder_writes_it(record)
