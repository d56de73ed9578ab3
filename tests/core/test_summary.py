"""Running summary and the bounded selection of the worst flows."""

from __future__ import annotations

import random

from tests.records import make_record
from verifier.core.model import Verdict
from verifier.core.summary import SummaryBuilder, WorstFlows


def test_summary_counts_every_record() -> None:
    builder = SummaryBuilder()
    for verdict, category in [
        (Verdict.PASS, "TLS1.3"),
        (Verdict.FAIL, "plaintext(http)"),
        (Verdict.PASS, "TLS1.3"),
    ]:
        builder.add(make_record(verdict=verdict, category=category))
    summary = builder.build()
    assert summary.flows == 3 and summary.verdict is Verdict.FAIL
    assert summary.by_verdict == {"FAIL": 1, "PASS": 2}
    assert summary.by_category == {"TLS1.3": 2, "plaintext(http)": 1}


def test_worst_flows_keeps_the_most_severe_in_arrival_order() -> None:
    verdicts = [
        Verdict.PASS,
        Verdict.FAIL,
        Verdict.WARN,
        Verdict.INCONCLUSIVE,
        Verdict.FAIL,
        Verdict.PASS,
    ] * 50
    random.Random(7).shuffle(verdicts)
    worst = WorstFlows(limit=120)
    records = [make_record(verdict=v, client=f"10.0.0.1:{1000 + i}") for i, v in enumerate(verdicts)]
    for record in records:
        worst.add(record)
    kept = worst.flows()
    expected = sorted(records, key=lambda r: -{"FAIL": 3, "INCONCLUSIVE": 2, "WARN": 1, "PASS": 0}[r.verdict])
    assert kept == expected[:120]  # sorted() is stable: arrival order within a verdict


def test_worst_flows_with_no_room() -> None:
    worst = WorstFlows(limit=0)
    worst.add(make_record())
    assert worst.flows() == []


def test_identity_counts_tls_flows_only() -> None:
    builder = SummaryBuilder()
    builder.add(make_record(identity=Verdict.PASS))
    builder.add(make_record())  # TLS 1.3 whose chain was not observed
    builder.add(make_record(category="plaintext(http)", tls_version=None, verdict=Verdict.FAIL))
    assert builder.build().by_identity == {"PASS": 1, "not observed": 1}
