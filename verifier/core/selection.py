"""Which flows a report is about (`verifier analyze --since/--until/--vni/--address/--port`): every frame is
still read and counted in coverage; the flows not selected are dropped before they are judged, summarised or
written."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address

from verifier.core.model import FlowRecord


@dataclass(frozen=True, slots=True)
class FlowSelection:
    since: float | None = None  # flows active at or after this capture time
    until: float | None = None  # ... and at or before this one
    vnis: frozenset[int] = frozenset()  # empty: any (and untunnelled flows)
    networks: tuple[IPv4Network | IPv6Network, ...] = ()  # client or server inside one of them; empty: any
    ports: frozenset[int] = frozenset()  # client or server port; empty: any

    def matches(self, record: FlowRecord) -> bool:
        if self.since is not None and record.last_seen < self.since:
            return False
        if self.until is not None and record.first_seen > self.until:
            return False
        if self.vnis and record.vni not in self.vnis:
            return False
        ends = (_split(record.client), _split(record.server))
        if self.ports and not any(port in self.ports for _, port in ends):
            return False
        if self.networks:
            addresses = [ip_address(host) for host, _ in ends]
            return any(address in network for address in addresses for network in self.networks)
        return True


def _split(endpoint: str) -> tuple[str, int]:
    """ "10.0.0.1:443" or "[fd00::1]:443" -> (host, port)."""
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)
