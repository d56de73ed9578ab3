"""Running totals over flow records, so a report's summary never needs the records kept in memory."""

from __future__ import annotations

import heapq
from collections import Counter

from verifier.core.model import FlowRecord, Summary
from verifier.core.policy import severity, worst

NOT_OBSERVED = "not observed"


class SummaryBuilder:
    def __init__(self) -> None:
        self.by_verdict: Counter[str] = Counter()
        self.by_category: Counter[str] = Counter()
        self.by_identity: Counter[str] = Counter()

    def add(self, record: FlowRecord) -> None:
        self.by_verdict[str(record.verdict)] += 1  # str(), not .value: a property run interpreted
        self.by_category[record.category] += 1
        if record.identity is not None:
            self.by_identity[str(record.identity)] += 1
        elif record.tls_version is not None:
            self.by_identity[NOT_OBSERVED] += 1

    def build(self) -> Summary:
        return Summary(
            flows=sum(self.by_verdict.values()),
            by_verdict=dict(sorted(self.by_verdict.items())),
            by_category=dict(sorted(self.by_category.items())),
            by_identity=dict(sorted(self.by_identity.items())),
            verdict=worst(self.by_verdict),
        )


class WorstFlows:
    """The ``limit`` most severe flows seen (FAIL first, then INCONCLUSIVE, WARN, PASS), in bounded memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._heap: list[tuple[int, int, FlowRecord]] = []
        self._arrivals = 0

    def add(self, record: FlowRecord) -> None:
        # Min-heap on (severity, -arrival): the least severe, latest flow is the one pushed out.
        self._arrivals += 1
        item = (severity(record.verdict), -self._arrivals, record)
        if len(self._heap) < self.limit:
            heapq.heappush(self._heap, item)
        elif self.limit and item[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, item)

    def flows(self) -> list[FlowRecord]:
        return [record for _, _, record in sorted(self._heap, key=lambda item: (-item[0], -item[1]))]
