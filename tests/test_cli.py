"""The command line as a user meets it: real process, exit codes, one-line errors, report files."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.report_schema import valid_report
from tests.traffic import make_pki

CAPTURES = REPO / "captures"
MIXED = CAPTURES / "vxlan-tls13-mixed.pcap"
TLS12_ONLY = CAPTURES / "vxlan-tls12-chain.pcap"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The verifier as a process; a JSON report it prints is checked against the published schema."""
    result = subprocess.run(
        [sys.executable, "-c", "from verifier.cli import main; main()", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "150"},
    )
    if "json" in args and args[0] != "probe" and result.stdout.startswith("{"):
        valid_report(result.stdout)
    return result


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("verifier: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_findings_exit_1_and_the_table_names_them() -> None:
    result = run("analyze", MIXED)
    assert result.returncode == 1, result.stderr
    assert "Overall: FAIL" in result.stdout
    assert "plaintext(http)" in result.stdout and "TLS1.3" in result.stdout
    assert "Coverage" in result.stdout and "VNI 4242" in result.stdout


def test_no_failures_exit_0() -> None:
    result = run("analyze", TLS12_ONLY)
    assert result.returncode == 0, result.stderr
    assert "Overall: WARN" in result.stdout


def test_json_report_file(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = run("analyze", MIXED, TLS12_ONLY, "--format", "json", "--output", out)
    assert result.returncode == 1 and result.stdout == ""
    report = json.loads(out.read_text())
    assert report["schema_version"] == "1.0"
    assert [c["path"] for c in report["captures"]] == [str(MIXED), str(TLS12_ONLY)]
    assert all(len(c["sha256"]) == 64 for c in report["captures"])
    assert report["summary"]["flows"] == len(report["flows"]) == 8
    assert report["summary"]["by_verdict"] == {"FAIL": 4, "PASS": 2, "WARN": 2}
    required = {"client", "server", "vni", "category", "tls_version", "cipher_suite", "sni", "alpn",
                "handshake_seen", "verdict", "reason"}  # fmt: skip
    assert all(required <= set(flow) for flow in report["flows"])
    tls12 = [f for f in report["flows"] if f["category"] == "TLS1.2"]
    chain = {c["sha256"] for c in report["certificates"]}
    assert tls12 and all(f["server_certificates"] and set(f["server_certificates"]) <= chain for f in tls12)
    assert not list(tmp_path.glob(".*partial"))


def test_gzip_is_read_transparently_whatever_the_name(tmp_path: Path) -> None:
    packed = tmp_path / "capture.bin"
    packed.write_bytes(gzip.compress(MIXED.read_bytes()))
    result = run("analyze", packed, "--format", "json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["captures"][0]["compressed"] is True and report["summary"]["flows"] == 6


def test_not_a_capture(tmp_path: Path) -> None:
    junk = tmp_path / "notes.pcap"
    junk.write_bytes(b"this is not a capture at all, just text\n" * 10)
    assert_one_line_error(run("analyze", junk), str(junk), "not a capture")


def test_truncated_capture_names_the_offset(tmp_path: Path) -> None:
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(MIXED.read_bytes()[:5000])
    assert_one_line_error(run("analyze", cut), str(cut), "truncated", "byte")


def test_missing_file_and_missing_keylog(tmp_path: Path) -> None:
    assert_one_line_error(run("analyze", tmp_path / "absent.pcap"), "absent.pcap")
    assert_one_line_error(run("analyze", MIXED, "--keylog", tmp_path / "keys.log"), "keys.log", "key log")


def test_unwritable_output_leaves_nothing_behind(tmp_path: Path) -> None:
    assert_one_line_error(
        run("analyze", MIXED, "--output", tmp_path / "no" / "such" / "dir.json"), "dir.json"
    )


def test_failed_analysis_does_not_replace_an_existing_report(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    out.write_text("previous report")
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(MIXED.read_bytes()[:5000])
    assert_one_line_error(run("analyze", bad, "--format", "json", "--output", out))
    assert out.read_text() == "previous report"
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize(
    "args", [("analyze",), ("analyze", MIXED, "--format", "xml"), ("analyze", "--bogus")]
)
def test_usage_errors_exit_2(args: tuple[str | Path, ...]) -> None:
    result = run(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_ca_bundle_judges_chains(tmp_path: Path) -> None:
    own = run("analyze", TLS12_ONLY, "--ca", CAPTURES / "pki" / "root-ca.pem", "--format", "json")
    assert own.returncode == 0 and {f["identity"] for f in json.loads(own.stdout)["flows"]} == {"PASS"}
    other_root = tmp_path / "other.pem"
    other_root.write_bytes(make_pki().root_pem)
    foreign = run("analyze", TLS12_ONLY, "--ca", other_root)
    assert foreign.returncode == 1 and "certificate:" in foreign.stdout
    assert "chain" in foreign.stdout and "Certificate chains against the given CA: FAIL 2" in foreign.stdout
    empty = tmp_path / "empty.pem"
    empty.write_text("no certificates here\n")
    assert_one_line_error(run("analyze", TLS12_ONLY, "--ca", empty), "empty.pem")
    assert_one_line_error(run("analyze", TLS12_ONLY, "--ca", tmp_path / "absent.pem"), "absent.pem")


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("verifier ")
    assert result.stdout.rstrip().endswith(
        "(pure Python)"
    )  # the suite runs the sources; see test_native_build


def test_expect_name_overrides_the_sni_for_that_server(tmp_path: Path) -> None:
    root = CAPTURES / "pki" / "root-ca.pem"
    server = (
        "10.77.0.2:8443"  # the TLS 1.2 server of that capture; its certificate names api.internal.example
    )
    wrong = run(
        "analyze",
        TLS12_ONLY,
        "--ca",
        root,
        "--expect-name",
        f"{server}=payments.internal.example",
        "--format",
        "json",
    )
    flows = json.loads(wrong.stdout)["flows"]
    assert wrong.returncode == 1 and {f["identity"] for f in flows} == {"FAIL"}
    assert all(
        any(c["name"] == "san_matches" and c["status"] == "FAIL" for c in f["identity_checks"]) for f in flows
    )
    right = run("analyze", TLS12_ONLY, "--ca", root, "--expect-name", f"{server}=api.internal.example")
    assert right.returncode == 0
    assert_one_line_error(run("analyze", TLS12_ONLY, "--expect-name", "no-equals-sign"), "--expect-name")


def test_demo_without_root_says_so_in_one_line(tmp_path: Path) -> None:
    # Run as if unprivileged: os.geteuid is the only thing the demo asks before building the lab.
    code = (
        "import os, sys; os.geteuid = lambda: 1000; from verifier.cli import main; "
        "sys.argv = ['verifier', 'demo', '--out', sys.argv[1]]; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "demo")], capture_output=True, text=True, timeout=120
    )
    assert_one_line_error(result, "verifier demo needs root", "sudo ./scripts/demo")
    assert not (tmp_path / "demo").exists()


def test_a_policy_tightens_and_its_exceptions_waive_until_they_expire(tmp_path: Path) -> None:
    capture = REPO / "captures" / "vxlan-tls12-chain.pcap"  # TLS 1.2 to 10.77.0.2:8443: WARN by default
    strict = tmp_path / "strict.toml"
    strict.write_text('min_tls_version = "1.3"\n')
    result = run("analyze", capture, "--policy", strict, "--format", "json")
    assert result.returncode == 1, result.stderr
    assert {flow["verdict"] for flow in json.loads(result.stdout)["flows"]} == {"FAIL"}

    waived = tmp_path / "waived.toml"
    exception = '[[exception]]\nport = 8443\njustification = "legacy client, ticket OPS-1"\nexpires = {}\n'
    waived.write_text('min_tls_version = "1.3"\n' + exception.format("2999-12-31"))
    result = run("analyze", capture, "--policy", waived, "--format", "json")
    assert result.returncode == 0, result.stderr
    flows = json.loads(result.stdout)["flows"]
    assert all(
        f["verdict"] == "WARN" and "exception: legacy client, ticket OPS-1" in f["reason"] for f in flows
    )

    waived.write_text('min_tls_version = "1.3"\n' + exception.format("2020-01-31"))
    result = run("analyze", capture, "--policy", waived, "--format", "json")
    assert result.returncode == 1, result.stderr
    assert all("exception expired on 2020-01-31" in f["reason"] for f in json.loads(result.stdout)["flows"])


def test_a_policy_that_requires_a_ca_refuses_other_anchors(tmp_path: Path) -> None:
    root = tmp_path / "root.pem"
    root.write_bytes(make_pki().root_pem)
    policy = tmp_path / "policy.toml"
    policy.write_text('[certificates]\nrequired_ca = "root.pem"\n')
    result = run("analyze", REPO / "captures" / "vxlan-tls12-chain.pcap", "--policy", policy, "--ca", root)
    assert_one_line_error(result, "requires the CA", "--ca and --pca-arn")


def test_policy_show_prints_a_file_that_loads_as_the_default(tmp_path: Path) -> None:
    shown = run("policy", "show")
    assert shown.returncode == 0 and shown.stdout.startswith("# verifier policy")
    default = tmp_path / "default.toml"
    default.write_text(shown.stdout)
    capture = REPO / "captures" / "vxlan-tls12-chain.pcap"
    with_file = run("analyze", capture, "--policy", default, "--format", "json")
    without = run("analyze", capture, "--format", "json")
    verdicts = [[flow["verdict"] for flow in json.loads(r.stdout)["flows"]] for r in (with_file, without)]
    assert verdicts[0] == verdicts[1] and with_file.returncode == without.returncode


def test_several_formats_go_to_an_output_directory(tmp_path: Path) -> None:
    capture = REPO / "captures" / "vxlan-tls13-mixed.pcap"
    result = run(
        "analyze", capture, "--format", "json,html,junit,sarif,markdown,ocsf", "--output-dir", tmp_path
    )
    assert result.returncode == 1, result.stderr
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == [
        "report.html",
        "report.json",
        "report.junit.xml",
        "report.md",
        "report.ocsf.json",
        "report.sarif",
    ]
    flows = valid_report((tmp_path / "report.json").read_text())["flows"]
    assert flows and "<html" in (tmp_path / "report.html").read_text().lower()
    assert_one_line_error(run("analyze", capture, "--format", "json,html"), "need --output-dir")
    assert_one_line_error(run("analyze", capture, "--format", "yaml"), "choose among")


def test_fail_on_inconclusive_exits_4(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))  # header only
    assert run("analyze", empty).returncode == 0
    assert run("analyze", empty, "--fail-on", "inconclusive").returncode == 4


def test_a_saved_report_is_rendered_again_in_other_formats(tmp_path: Path) -> None:
    saved = tmp_path / "saved.json"
    analysed = run(
        "analyze", REPO / "captures" / "vxlan-tls13-mixed.pcap", "--format", "json", "--output", saved
    )
    assert analysed.returncode == 1, analysed.stderr
    again = run("report", saved, "--format", "json,html,junit", "--output-dir", tmp_path / "again")
    assert again.returncode == 1, again.stderr  # the same findings, the same exit code
    assert valid_report((tmp_path / "again" / "report.json").read_text()) == valid_report(saved.read_text())
    assert (tmp_path / "again" / "report.junit.xml").read_text().startswith("<?xml")
    not_a_report = tmp_path / "other.json"
    not_a_report.write_text('{"flows": 3}')
    assert_one_line_error(run("report", not_a_report), "not a verifier JSON report")


def test_flow_selection_narrows_the_report_not_the_coverage() -> None:
    capture = REPO / "captures" / "vxlan-postgres-upgrade.pcap"
    everything = json.loads(run("analyze", capture, "--format", "json").stdout)
    ports = {int(flow["server"].rsplit(":", 1)[1]) for flow in everything["flows"]}
    port = min(ports)
    chosen = json.loads(run("analyze", capture, "--format", "json", "--port", str(port)).stdout)
    assert chosen["flows"] and all(str(port) in (f["server"] + f["client"]) for f in chosen["flows"])
    assert (
        chosen["summary"]["flows"] == len(chosen["flows"]) < everything["summary"]["flows"] or len(ports) == 1
    )
    assert chosen["coverage"]["frames"] == everything["coverage"]["frames"]
    later = run("analyze", capture, "--format", "json", "--since", "2999-01-01T00:00:00")
    assert json.loads(later.stdout)["flows"] == []
    assert_one_line_error(run("analyze", capture, "--address", "10.0.0.300"), "--address")


def test_a_saved_run_report_is_narrowed_to_one_eni(tmp_path: Path) -> None:
    from dataclasses import replace

    from tests.report.samples import as_run
    from verifier.analysis import analyze_files
    from verifier.report.json_report import report_to_dict

    report = as_run(analyze_files([REPO / "captures" / "vxlan-tls13-mixed.pcap"]))
    assert report.run is not None
    vni = report.flows[0].vni
    (source, *others) = report.run.sources
    run_record = replace(report.run, sources=(replace(source, vni=vni), *others))
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps(report_to_dict(replace(report, run=run_record))))
    narrowed = run("report", saved, "--eni", source.eni_id, "--format", "json")
    flows = json.loads(narrowed.stdout)["flows"]
    assert flows and {flow["vni"] for flow in flows} == {vni}
    assert json.loads(narrowed.stdout)["summary"]["flows"] == len(flows)
    assert_one_line_error(run("report", saved, "--eni", "eni-00000000000000000"), "no VNI for this ENI")
