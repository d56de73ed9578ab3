"""FlowSelection: which flows a report is about."""

from __future__ import annotations

from ipaddress import ip_network

from tests.records import make_record
from verifier.core.selection import FlowSelection

FLOW = make_record(client="10.0.0.1:40000", server="10.0.0.2:443", vni=7, first_seen=100.0, last_seen=200.0)
V6 = make_record(
    client="[fd00::1]:40000", server="[fd00::2]:5432", vni=None, first_seen=100.0, last_seen=200.0
)


def test_nothing_asked_selects_everything() -> None:
    assert FlowSelection().matches(FLOW) and FlowSelection().matches(V6)


def test_a_flow_active_in_the_window_is_selected() -> None:
    assert FlowSelection(since=150.0, until=160.0).matches(FLOW)  # began before, ended after
    assert FlowSelection(since=200.0).matches(FLOW)
    assert not FlowSelection(since=200.5).matches(FLOW)
    assert not FlowSelection(until=99.0).matches(FLOW)


def test_vni_address_and_port_each_narrow() -> None:
    assert FlowSelection(vnis=frozenset({7})).matches(FLOW)
    assert not FlowSelection(vnis=frozenset({8})).matches(FLOW)
    assert not FlowSelection(vnis=frozenset({7})).matches(V6)  # not tunnelled
    assert FlowSelection(ports=frozenset({40000})).matches(FLOW)  # the client's port counts too
    assert not FlowSelection(ports=frozenset({80})).matches(FLOW)
    assert FlowSelection(networks=(ip_network("10.0.0.2/32"),)).matches(FLOW)
    assert FlowSelection(networks=(ip_network("fd00::/64"),)).matches(V6)
    assert not FlowSelection(networks=(ip_network("fd00::/64"),)).matches(FLOW)
    both = FlowSelection(networks=(ip_network("10.0.0.0/24"),), ports=frozenset({5432}))
    assert not both.matches(FLOW)  # every criterion given must hold
