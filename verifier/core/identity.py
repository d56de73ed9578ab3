"""Judge each flow's certificate chain against the configured trust anchors; fold that into its verdict.

The channel (version, cipher) and the identity (whose certificate) are judged apart, then combined: a chain
that FAILs (wrong CA, expired, name mismatch, ...) makes the flow FAIL; a WARN lowers a PASS to WARN. A flow
whose chain was not observed (TLS 1.3 without a key log) keeps its channel verdict, and its record says that
the identity was not checked and how to check it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

from verifier.core.chains import ChainJudgement, TrustAnchors, judge_chain
from verifier.core.model import FlowRecord, Verdict
from verifier.core.policy import severity

# Chains seen again within this many seconds reuse the judgement made at the start of that window: busy
# services repeat one chain thousands of times, and path building costs far more than a flow's analysis.
_JUDGEMENT_WINDOW = 60


class IdentityJudge:
    def __init__(
        self,
        anchors: TrustAnchors,
        certificates: dict[str, bytes],
        expected_names: Mapping[str, str] | None = None,
    ) -> None:
        self.anchors = anchors
        self.certificates = certificates  # SHA-256 -> DER, as the analyser registers them
        # server "ip:port" -> the name its certificate must carry (its Service Connect name, say); else SNI
        self.expected_names = dict(expected_names or {})
        self._cache: dict[tuple[tuple[str, ...], str | None, int], ChainJudgement] = {}

    def apply(self, record: FlowRecord, at: float | None = None) -> FlowRecord:
        """Judge the record's server chain as of ``at`` (default: when the connection was captured)."""
        if not record.server_certificates:
            return record
        window = int(record.first_seen if at is None else at) // _JUDGEMENT_WINDOW
        name = self.expected_names.get(record.server, record.sni)
        key = (record.server_certificates, name, window)
        judgement = self._cache.get(key)
        if judgement is None:
            chain = [self.certificates[digest] for digest in record.server_certificates]
            moment = datetime.fromtimestamp(window * _JUDGEMENT_WINDOW, UTC)
            judgement = judge_chain(chain, self.anchors, at=moment, expected_name=name)
            self._cache[key] = judgement
        identity = Verdict(judgement.status.value)
        verdict, reason = record.verdict, record.reason
        if identity is Verdict.FAIL or (identity is Verdict.WARN and severity(verdict) < severity(identity)):
            verdict = identity
            failed = [c for c in judgement.checks if c.status.value == identity.value]
            reason = f"{reason}; certificate: {failed[0].detail}" if failed else reason
        return replace(
            record,
            identity=identity,
            identity_checks=judgement.checks,
            verdict=verdict,
            reason=reason,
        )
