"""The report model: what the analysis concludes, as plain frozen data."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from verifier.core.chains import Check


class Verdict(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"


# Categories, spelled as in the corpus ground truth so the two compare directly.
TLS13 = "TLS1.3"
TLS12 = "TLS1.2"
TLS10_11 = "TLS1.0-1.1"
SSLV3 = "SSLv3"
SSLV2 = "SSLv2"
TLS_NO_HANDSHAKE = "TLS-no-handshake-visible"
TLS_INCOMPLETE = "TLS-incomplete"
OTHER_ENCRYPTED_SSH = "other-encrypted(ssh)"
UNKNOWN_DATA = "unknown(data)"
NO_PAYLOAD = "no-payload"


def plaintext_category(protocol: str) -> str:
    return f"plaintext({protocol})"


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """Everything the report says about one TCP connection (one direction pair, one VNI)."""

    client: str  # "ip:port" ("[v6]:port")
    server: str
    vni: int | None
    first_seen: float
    last_seen: float
    role_rule: str  # who is the client, decided by: SYN, SYN-ACK, ClientHello, protocol greeting, port, ...
    midstream: bool  # no SYN seen: the connection began before the capture (or its start was lost)
    handshake_seen: bool  # a ClientHello or ServerHello was visible
    category: str
    protocol: str | None  # cleartext protocol, or the one that upgraded to TLS
    upgrade_from: str | None
    tls_version: str | None
    cipher_suite: int | None
    cipher_suite_name: str | None
    sni: str | None
    alpn: str | None  # selected by the server, when visible (TLS 1.3 encrypts it)
    alpn_offered: tuple[str, ...]
    ja4: str | None
    hello_retry_request: bool
    server_certificates: tuple[
        str, ...
    ]  # SHA-256 of each DER certificate, leaf first (see Report.certificates)
    client_certificates: tuple[str, ...]
    chain_source: str | None  # where the server chain came from: "passive" (TLS <= 1.2 in clear), "keylog"
    chain_note: str | None  # why there is no server chain, and how to get one
    alerts: tuple[str, ...]
    evidence: str  # what on the wire the category rests on
    evidence_truncated: bool  # buffering stopped at the configured cap before the decision was final
    identity: Verdict | None  # the server chain against the configured anchors; None: not judged
    identity_checks: tuple[Check, ...]  # each check of that judgement, by name
    packets_client: int
    packets_server: int
    bytes_client: int  # TCP payload bytes
    bytes_server: int
    retransmissions: int
    out_of_order: int
    gaps: int
    gap_bytes: int
    truncated_frames: int
    verdict: Verdict
    reason: str

    # Written out: compiled, the generated one would run interpreted (tests/test_dataclasses.py).
    def __init__(
        self,
        client: str,
        server: str,
        vni: int | None,
        first_seen: float,
        last_seen: float,
        role_rule: str,
        midstream: bool,
        handshake_seen: bool,
        category: str,
        protocol: str | None,
        upgrade_from: str | None,
        tls_version: str | None,
        cipher_suite: int | None,
        cipher_suite_name: str | None,
        sni: str | None,
        alpn: str | None,
        alpn_offered: tuple[str, ...],
        ja4: str | None,
        hello_retry_request: bool,
        server_certificates: tuple[str, ...],
        client_certificates: tuple[str, ...],
        chain_source: str | None,
        chain_note: str | None,
        alerts: tuple[str, ...],
        evidence: str,
        evidence_truncated: bool,
        identity: Verdict | None,
        identity_checks: tuple[Check, ...],
        packets_client: int,
        packets_server: int,
        bytes_client: int,
        bytes_server: int,
        retransmissions: int,
        out_of_order: int,
        gaps: int,
        gap_bytes: int,
        truncated_frames: int,
        verdict: Verdict,
        reason: str,
    ) -> None:
        object.__setattr__(self, "client", client)
        object.__setattr__(self, "server", server)
        object.__setattr__(self, "vni", vni)
        object.__setattr__(self, "first_seen", first_seen)
        object.__setattr__(self, "last_seen", last_seen)
        object.__setattr__(self, "role_rule", role_rule)
        object.__setattr__(self, "midstream", midstream)
        object.__setattr__(self, "handshake_seen", handshake_seen)
        object.__setattr__(self, "category", category)
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "upgrade_from", upgrade_from)
        object.__setattr__(self, "tls_version", tls_version)
        object.__setattr__(self, "cipher_suite", cipher_suite)
        object.__setattr__(self, "cipher_suite_name", cipher_suite_name)
        object.__setattr__(self, "sni", sni)
        object.__setattr__(self, "alpn", alpn)
        object.__setattr__(self, "alpn_offered", alpn_offered)
        object.__setattr__(self, "ja4", ja4)
        object.__setattr__(self, "hello_retry_request", hello_retry_request)
        object.__setattr__(self, "server_certificates", server_certificates)
        object.__setattr__(self, "client_certificates", client_certificates)
        object.__setattr__(self, "chain_source", chain_source)
        object.__setattr__(self, "chain_note", chain_note)
        object.__setattr__(self, "alerts", alerts)
        object.__setattr__(self, "evidence", evidence)
        object.__setattr__(self, "evidence_truncated", evidence_truncated)
        object.__setattr__(self, "identity", identity)
        object.__setattr__(self, "identity_checks", identity_checks)
        object.__setattr__(self, "packets_client", packets_client)
        object.__setattr__(self, "packets_server", packets_server)
        object.__setattr__(self, "bytes_client", bytes_client)
        object.__setattr__(self, "bytes_server", bytes_server)
        object.__setattr__(self, "retransmissions", retransmissions)
        object.__setattr__(self, "out_of_order", out_of_order)
        object.__setattr__(self, "gaps", gaps)
        object.__setattr__(self, "gap_bytes", gap_bytes)
        object.__setattr__(self, "truncated_frames", truncated_frames)
        object.__setattr__(self, "verdict", verdict)
        object.__setattr__(self, "reason", reason)


@dataclass(frozen=True, slots=True)
class VniCoverage:
    vni: int | None
    frames: int  # TCP segments of the flows of this VNI
    flows: int
    flows_with_handshake: int
    midstream_flows: int
    gaps: int
    gap_bytes: int
    retransmissions: int
    out_of_order: int
    truncated_frames: int


@dataclass(frozen=True, slots=True)
class CollectorCoverage:
    """What the UDP collector received during a run: the frames the analysis could possibly see."""

    datagrams: int
    bytes: int
    kernel_drops: (
        int | None
    )  # datagrams the kernel dropped before the collector read them; None: not reported
    started: float
    ended: float
    stop_reason: str


@dataclass(frozen=True, slots=True)
class Coverage:
    """How much of the traffic the analysis could see, for the whole input."""

    frames: int
    tcp_segments: int
    not_analysed: dict[str, int]  # frames without an analysable TCP segment, by reason
    truncated_frames: int
    ip_fragments: int
    flows: int
    flows_with_handshake: int
    flows_without_handshake: int
    midstream_flows: int
    gaps: int
    gap_bytes: int
    retransmissions: int
    out_of_order: int
    evidence_truncated_flows: int
    per_vni: tuple[VniCoverage, ...]
    first_timestamp: float | None
    last_timestamp: float | None
    collector: CollectorCoverage | None = None  # None: the frames came from capture files


@dataclass(frozen=True, slots=True)
class Summary:
    flows: int
    by_verdict: dict[str, int]
    by_category: dict[str, int]
    by_identity: dict[str, int]  # TLS flows by chain judgement; "not observed" when no chain was seen
    verdict: Verdict  # the worst flow verdict; INCONCLUSIVE when there are no flows at all


@dataclass(frozen=True, slots=True)
class CaptureSource:
    path: str
    format: str
    compressed: bool
    size: int
    sha256: str
    frames: int


@dataclass(frozen=True, slots=True)
class DeclaredPort:
    """One row of "declared vs observed": what Service Connect declares for a server port against the wire."""

    cluster: str | None
    service: str | None  # None: a port seen on a mirrored source that belongs to no service
    port_name: str | None  # Service Connect portName; None for a port no declaration covers
    port: int | None  # server port; None: declared, but its number is unknown
    tls_declared: bool | None  # None: nothing declared for this port
    pca_declared: str | None
    flows: int  # flows observed with this server (the service's task addresses) and port
    by_category: tuple[tuple[str, int], ...]  # sorted by category
    plaintext_flows: int
    chains_verified: int  # flows whose identity is PASS
    chains_failed: int  # flows whose identity is FAIL
    verdict: Verdict
    reason: str


@dataclass(frozen=True, slots=True)
class SourceOutcome:
    """One network interface a run meant to mirror, and what became of it."""

    eni_id: str
    kind: str
    service: str | None
    task_arn: str | None
    private_ip: str | None
    eligibility: str
    eligibility_reason: str
    session_id: str | None  # set when mirrored
    vni: int | None
    refused: str | None  # why it was not mirrored, in AWS's words
    fallbacks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ResourceEvent:
    """One AWS resource a run created, and whether the teardown removed it."""

    resource_id: str
    kind: str  # filter, filter-rule, target, session, sg-rule
    created_at: str | None  # ISO 8601 UTC
    deleted_at: str | None
    outcome: str  # "deleted", "already gone", or why it is still there


@dataclass(frozen=True, slots=True)
class RunRecord:
    """Who ran a capture, when, against what, and what it created and removed in the account."""

    run_id: str
    region: str
    caller_arn: str | None
    account: str | None
    started_at: str  # ISO 8601 UTC
    ended_at: str
    placement: str  # where the collector ran: "collector" (this machine) or "ssm"
    cluster: str | None
    services: tuple[str, ...]
    target: str  # the mirror target, e.g. "network-interface eni-..."
    duration_seconds: float
    sources: tuple[SourceOutcome, ...]
    risks: tuple[str, ...]  # e.g. other sessions with lower numbers on the same ENI
    resources: tuple[ResourceEvent, ...]
    teardown_complete: bool


@dataclass(frozen=True, slots=True)
class ExceptionOutcome:
    """One exception of the policy (--policy) and what it did over the analysis."""

    justification: str
    expires: str  # ISO date: the last day (UTC) it applies
    peer: str | None  # address or CIDR block, matching the client or the server
    port: int | None  # the server port
    service: str | None
    expired: bool  # at the time of the analysis: then it was not applied
    flows: int  # FAIL flows it matched: waived to WARN, or (expired) left failing


@dataclass(frozen=True, slots=True)
class Report:
    schema_version: str
    tool_version: str
    captures: tuple[CaptureSource, ...]
    keylog: str | None  # key log given for TLS 1.3 chain recovery (used by certificate verification)
    flows: tuple[FlowRecord, ...]
    certificates: dict[str, bytes]  # SHA-256 hex -> DER, each certificate once
    summary: Summary
    coverage: Coverage
    run: RunRecord | None = None  # set by `verifier run`
    declared: tuple[DeclaredPort, ...] = ()
    policy_exceptions: tuple[ExceptionOutcome, ...] = ()  # with --policy: every exception, in its order
