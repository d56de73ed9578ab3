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

from cryptography import x509

from verifier.core.chains import ChainJudgement, TrustAnchors, judge_chain
from verifier.core.model import FlowRecord, Verdict
from verifier.core.policy import severity

# Busy services repeat one chain thousands of times, and path building costs far more than a flow's analysis:
# a chain is judged again only when the moment falls on another side of some certificate's validity bounds
# (its own or an anchor's), the only way time changes a judgement.
Bounds = tuple[float, float] | None  # notBefore, notAfter as POSIX times; None: the DER does not parse


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
        self._cache: dict[tuple[tuple[str, ...], str | None, tuple[object, ...]], ChainJudgement] = {}
        self._bounds: dict[str, Bounds] = {}
        self._anchor_bounds = [_bounds(der) for der in (*anchors.roots, *anchors.intermediates)]

    def apply(self, record: FlowRecord, at: float | None = None) -> FlowRecord:
        """Judge the record's server chain as of ``at`` (default: when the connection was captured)."""
        if not record.server_certificates:
            return record
        moment = record.first_seen if at is None else at
        name = self.expected_names.get(record.server, record.sni)
        chain_bounds = []
        for digest in record.server_certificates:
            if digest not in self._bounds:
                self._bounds[digest] = _bounds(self.certificates[digest])
            chain_bounds.append(self._bounds[digest])
        sides = tuple(
            None if bounds is None else (bounds[0] <= moment, moment <= bounds[1])
            for bounds in (*chain_bounds, *self._anchor_bounds)
        )
        key = (record.server_certificates, name, sides)
        judgement = self._cache.get(key)
        if judgement is None:
            chain = [self.certificates[digest] for digest in record.server_certificates]
            when = datetime.fromtimestamp(moment, UTC)
            judgement = judge_chain(chain, self.anchors, at=when, expected_name=name)
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


def _bounds(der: bytes) -> Bounds:
    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError:
        return None  # judge_chain says what is wrong with it
    return certificate.not_valid_before_utc.timestamp(), certificate.not_valid_after_utc.timestamp()
