"""The Markdown summary for a pull-request comment: complete, bounded, and inert whatever the wire said."""

from __future__ import annotations

import io
import re
from dataclasses import replace

from tests.conftest import REPO
from tests.records import make_record
from tests.report.samples import DECLARED, as_run
from tests.report.test_findings import hostile_report
from verifier.analysis import analyze_files
from verifier.core.model import Report, Verdict
from verifier.report.markdown import write_markdown

CAPTURES = sorted((REPO / "captures").glob("*.pcap"))
# A pipe that is not escaped separates table cells (GFM).
_CELL_SEPARATOR = re.compile(r"(?<!\\)\|")


def markdown(report: Report, **limits: int) -> str:
    out = io.StringIO()
    write_markdown(report, out, **limits)
    return out.getvalue()


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


def test_summary_of_a_run() -> None:
    text = markdown(as_run(analyze_files(CAPTURES)))
    assert text.startswith("## verifier: FAIL\n")
    assert "**10 flows**: 5 FAIL, 3 PASS, 2 WARN" in text
    assert "Run vrf\\-20261122\\-1700\\-ab12 in eu\\-west\\-1 (account 111122223333)" in text
    assert "### Declared vs observed" in text and "### Worst flows" in text
    declared = [row for row in table_rows(text) if "prod" in row]
    assert len(declared) == 2 and "| nothing | 3 |" in declared[1] and "| FAIL |" in declared[1]
    worst = text.split("### Worst flows")[1]
    assert [row.split("|")[1].strip() for row in table_rows(worst)[2:]] == ["FAIL", "FAIL", "FAIL", "WARN"]
    assert "`api.internal.example`" in worst


def test_every_table_row_has_its_cells() -> None:
    for text in (markdown(as_run(analyze_files(CAPTURES))), markdown(hostile_report())):
        for row in table_rows(text):
            assert len(_CELL_SEPARATOR.findall(row)) == 7, row


def test_the_worst_flows_are_bounded() -> None:
    flows = tuple(
        make_record(
            server=f"10.0.{index // 200}.{index % 200}:80", category="plaintext(http)", verdict=Verdict.FAIL
        )
        for index in range(1000)
    )
    rows = tuple(replace(DECLARED[1], port=1000 + index) for index in range(500))
    text = markdown(replace(analyze_files([]), flows=flows, declared=rows), max_rows=5, max_declared=10)
    assert len(table_rows(text)) == 2 + 10 + 2 + 5
    assert "... and 490 more declared rows." in text
    assert "... and 995 more groups of flows that do not pass." in text
    # With the defaults, a comment GitHub accepts (65,536 characters at most).
    assert len(markdown(replace(hostile_report(), flows=flows, declared=rows * 2))) < 65_536


def test_what_the_wire_controls_is_inert() -> None:
    text = markdown(hostile_report())
    assert "\u202e" not in text and "\x00" not in text and "\r" not in text
    for line in text.splitlines():
        # Raw HTML and mentions only inside code spans; a heading only where the writer puts one.
        outside_code = re.sub(r"(`+).*?\1", "", line)
        assert "<script>" not in outside_code and "@everyone" not in outside_code.replace("\\@", "")
        assert not line.startswith("#") or line.startswith(("## verifier", "### "))
    assert max(len(line) for line in text.splitlines()) < 1000


def test_all_passing_and_empty_reports() -> None:
    passing = replace(analyze_files([]), flows=(make_record(),), declared=DECLARED[:1])
    text = markdown(passing)
    assert "Every flow passes." in text and "### Worst flows" not in text
    empty = markdown(analyze_files([]))
    assert empty.startswith("## verifier: INCONCLUSIVE") and "**0 flows**: none" in empty
