"""Declared vs observed: what Service Connect declares for each server port against what the wire showed.

A flow belongs to the row of its server: the source (an ENI the run meant to mirror) whose private address is
the server's (awsvpc: one address per task), and the server port. Flows whose server is no source are ignored:
a task's own outgoing connections are judged on the row of the peer, when the peer is a source too.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from verifier.core import model
from verifier.core.model import DeclaredPort, FlowRecord, Verdict
from verifier.core.policy import severity
from verifier.core.targets import MirrorSource, ServiceConnectDeclaration

# Categories that show TLS records, with or without a visible handshake.
_TLS = frozenset({model.TLS13, model.TLS12, model.TLS10_11, model.SSLV3, model.SSLV2, model.TLS_NO_HANDSHAKE})
# Neither encrypted nor cleartext on the wire, yet possibly data: never enough for a PASS.
_UNPROVEN = frozenset({model.UNKNOWN_DATA, model.TLS_INCOMPLETE})

_RowKey = tuple[str | None, str | None, int | None, str | None]  # cluster, service, port, port name


@dataclass(slots=True)
class _Tally:
    """The counters of one row: all a row keeps, however many flows stream by."""

    by_category: Counter[str] = field(default_factory=Counter)
    plaintext: int = 0
    chains_verified: int = 0
    chains_failed: int = 0
    chains_warned: int = 0  # judged, with a warning (a long lifetime from a short-lived CA, say)
    # flows the default policy fails for a reason other than cleartext or the chain (old TLS, weak cipher)
    weak: int = 0
    warned: int = 0  # encrypted flows the policy warns about (TLS 1.2, SSH)

    def add(self, record: FlowRecord) -> None:
        self.by_category[record.category] += 1
        plaintext = record.category.startswith("plaintext(")
        self.plaintext += plaintext
        self.chains_verified += record.identity == Verdict.PASS
        self.chains_failed += record.identity == Verdict.FAIL
        self.chains_warned += record.identity == Verdict.WARN
        if record.verdict == Verdict.FAIL and not plaintext and record.identity != Verdict.FAIL:
            self.weak += 1
        self.warned += record.verdict == Verdict.WARN

    def count(self, categories: Iterable[str]) -> int:
        return sum(self.by_category[category] for category in categories)


class DeclaredVsObserved:
    """Accumulates flows, as they stream by, into one row per declared port and per undeclared server port."""

    def __init__(
        self, declarations: Sequence[ServiceConnectDeclaration], sources: Sequence[MirrorSource]
    ) -> None:
        self._declarations: dict[_RowKey, ServiceConnectDeclaration] = {
            (_cluster_name(d.cluster), d.service, d.port, d.port_name): d for d in declarations
        }
        self._tallies: dict[_RowKey, _Tally] = {key: _Tally() for key in self._declarations}
        self._sources: dict[str, list[MirrorSource]] = {}
        for source in sources:
            if source.private_ip is not None:
                self._sources.setdefault(_address(source.private_ip), []).append(source)

    def add(self, record: FlowRecord) -> None:
        host, port = _endpoint(record.server)
        at_address = self._sources.get(_address(host)) if port is not None else None
        if not at_address:
            return
        cluster, service = _owner(at_address, port)
        for key in self._rows_for(cluster, service, port):
            self._tallies.setdefault(key, _Tally()).add(record)

    def rows(self) -> tuple[DeclaredPort, ...]:
        rows = [self._row(key, tally) for key, tally in self._tallies.items()]
        return tuple(
            sorted(
                rows,
                key=lambda row: (
                    row.service or "\uffff",
                    row.cluster or "",
                    -1 if row.port is None else row.port,
                    row.port_name or "",
                ),
            )
        )

    def _rows_for(self, cluster: str | None, service: str | None, port: int | None) -> list[_RowKey]:
        if service is None:
            return [(cluster, None, port, None)]
        declared = [
            key
            for key in self._declarations
            if key[1] == service and (cluster is None or key[0] is None or key[0] == cluster)
        ]
        exact = [key for key in declared if key[2] == port]
        if exact:
            return exact
        # A port not claimed by a declared number goes to the declarations whose number is unknown; to every
        # one of them when there are several, so that no row can look cleaner than the wire was.
        unnumbered = [key for key in declared if key[2] is None]
        return unnumbered or [(cluster, service, port, None)]

    def _row(self, key: _RowKey, tally: _Tally) -> DeclaredPort:
        cluster, service, port, port_name = key
        declaration = self._declarations.get(key)
        tls_declared = declaration.tls_enabled if declaration is not None else None
        pca = declaration.pca_arn if declaration is not None else None
        verdict, reason = _judge(tally, tls_declared, pca)
        return DeclaredPort(
            cluster=cluster,
            service=service,
            port_name=port_name,
            port=port,
            tls_declared=tls_declared,
            pca_declared=pca,
            flows=tally.by_category.total(),
            by_category=tuple(sorted(tally.by_category.items())),
            plaintext_flows=tally.plaintext,
            chains_verified=tally.chains_verified,
            chains_failed=tally.chains_failed,
            verdict=verdict,
            reason=reason,
        )


def worst_declared(rows: Iterable[DeclaredPort]) -> Verdict | None:
    """The most severe verdict of the rows; None when there are none (nothing declared, nothing mirrored)."""
    verdicts = [row.verdict for row in rows]
    return max(verdicts, key=severity) if verdicts else None


def _judge(tally: _Tally, tls_declared: bool | None, pca: str | None) -> tuple[Verdict, str]:
    flows = tally.by_category.total()
    if not flows:
        return Verdict.INCONCLUSIVE, "no traffic seen on this port during the capture"
    if tally.plaintext:
        where = {
            True: "on a port Service Connect declares TLS",
            False: "on a port Service Connect declares without TLS",
            None: "on a port no Service Connect declaration covers",
        }[tls_declared]
        return Verdict.FAIL, f"plaintext {where}: {tally.plaintext} of {flows} flows"
    if tally.chains_failed:
        anchor = "the declared PCA" if pca else "the given CA"
        return (
            Verdict.FAIL,
            f"TLS, but the chain does not lead to {anchor}: {tally.chains_failed} of {flows} flows",
        )
    if tally.weak:
        return (
            Verdict.FAIL,
            f"encrypted, but {tally.weak} of {flows} flows use a version or cipher the policy fails",
        )
    unproven = tally.count(_UNPROVEN)
    if unproven:
        return (
            Verdict.INCONCLUSIVE,
            f"{unproven} of {flows} flows not shown encrypted: unknown data or an unfinished TLS handshake",
        )
    tls = tally.count(_TLS)
    encrypted = tls + tally.by_category[model.OTHER_ENCRYPTED_SSH]
    if not encrypted:
        return Verdict.INCONCLUSIVE, "no data exchanged on this port during the capture"
    if tls_declared is False:
        return (
            Verdict.WARN,
            "encrypted by the application; Service Connect does not declare TLS for this port",
        )
    if tls_declared is None:
        verdict = Verdict.WARN if tally.warned else Verdict.PASS
        return (
            verdict,
            f"encrypted on all {encrypted} flows with data; no Service Connect declaration covers it",
        )
    if tls < encrypted:
        return (
            Verdict.WARN,
            f"encrypted, but {encrypted - tls} of {encrypted} flows with data use SSH, not TLS",
        )
    unjudged = tls - tally.chains_verified - tally.chains_warned
    chains = f"chains verified {tally.chains_verified}, with warnings {tally.chains_warned}, failed 0, "
    chains += f"not judged {unjudged}"
    if tally.chains_warned:
        return Verdict.WARN, f"TLS on all {tls} flows with data; {chains}"
    return Verdict.PASS, f"TLS on all {tls} flows with data; {chains}"


def _owner(at_address: list[MirrorSource], port: int | None) -> tuple[str | None, str | None]:
    """(cluster, service) of the server: tasks sharing an address (bridge, host mode) are told apart by their
    host ports; when they cannot be, the port is nobody's."""
    candidates = at_address
    if len(candidates) > 1:
        candidates = [source for source in at_address if port in source.host_ports] or at_address
    owners = {(_cluster_name(source.cluster), source.service_name) for source in candidates}
    if len(owners) == 1:
        return owners.pop()
    return _cluster_name(candidates[0].cluster), None


def _cluster_name(cluster: str | None) -> str | None:
    # Declarations carry the cluster as given, tasks their cluster's ARN (arn:...:cluster/NAME).
    return cluster.rsplit("/", 1)[-1] if cluster else None


def _endpoint(text: str) -> tuple[str, int | None]:
    host, _, port = text.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port) if port.isascii() and port.isdigit() else None


def _address(text: str) -> str:
    # One spelling per address, so an IPv6 source matches however the flow writes it.
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return text
