"""Declared vs observed: flows attributed to the service and port of their server, judged against the
Service Connect declaration."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.records import make_record
from verifier.core.declared import DeclaredVsObserved, worst_declared
from verifier.core.model import DeclaredPort, FlowRecord, Verdict
from verifier.core.targets import MirrorSource, ServiceConnectDeclaration

PCA = "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
CLUSTER_ARN = "arn:aws:ecs:eu-west-1:111122223333:cluster/prod"
API_TASK = "10.0.1.10"
API_TASK_2 = "10.0.1.11"
WEB_TASK = "10.0.2.20"
OUTSIDE = "10.9.9.9"  # an address no mirrored source has


def declaration(**overrides: Any) -> ServiceConnectDeclaration:
    fields: dict[str, Any] = {
        "cluster": "prod",
        "service": "api",
        "port_name": "api-http",
        "tls_enabled": True,
        "pca_arn": PCA,
        "discovery_name": "api",
        "client_aliases": (("api.internal", 8443),),
        "namespace": "internal",
        "port": 8443,
    }
    fields.update(overrides)
    return ServiceConnectDeclaration(**fields)


def task(ip: str, service: str | None, **overrides: Any) -> MirrorSource:
    fields: dict[str, Any] = {
        "eni_id": f"eni-{ip.replace('.', '')}",
        "private_ip": ip,
        "kind": "task",
        "eligibility": "likely",
        "eligibility_reason": "m5 is a Nitro instance type not on AWS's list of exceptions",
        "service_name": service,
        "cluster": CLUSTER_ARN,
        "network_mode": "awsvpc",
    }
    fields.update(overrides)
    return MirrorSource(**fields)


SOURCES = (task(API_TASK, "api"), task(API_TASK_2, "api"), task(WEB_TASK, "web"))


def tls13(server: str, **overrides: Any) -> FlowRecord:
    return make_record(client=f"{WEB_TASK}:40000", server=server, **overrides)


def cleartext_http(server: str) -> FlowRecord:
    return make_record(
        client=f"{WEB_TASK}:40001",
        server=server,
        category="plaintext(http)",
        protocol="http",
        tls_version=None,
        cipher_suite=None,
        cipher_suite_name=None,
        sni=None,
        verdict=Verdict.FAIL,
        reason="cleartext http: GET / HTTP/1.1",
    )


def rows_of(
    flows: list[FlowRecord],
    declarations: tuple[ServiceConnectDeclaration, ...] = (declaration(),),
    sources: tuple[MirrorSource, ...] = SOURCES,
) -> dict[tuple[str | None, int | None], DeclaredPort]:
    accumulator = DeclaredVsObserved(declarations, sources)
    for flow in flows:
        accumulator.add(flow)
    return {(row.service, row.port): row for row in accumulator.rows()}


def test_plaintext_on_a_port_declared_tls_fails() -> None:
    rows = rows_of([tls13(f"{API_TASK}:8443"), cleartext_http(f"{API_TASK_2}:8443")])
    row = rows["api", 8443]
    assert (row.verdict, row.flows, row.plaintext_flows) == (Verdict.FAIL, 2, 1)
    assert row.reason.startswith("plaintext on a port Service Connect declares TLS")
    assert row.by_category == (("TLS1.3", 1), ("plaintext(http)", 1))
    assert (row.cluster, row.port_name, row.tls_declared, row.pca_declared) == ("prod", "api-http", True, PCA)
    assert worst_declared(rows.values()) is Verdict.FAIL


def test_tls_on_every_flow_passes_and_counts_the_chains() -> None:
    rows = rows_of(
        [
            tls13(f"{API_TASK}:8443", identity=Verdict.PASS),
            tls13(f"{API_TASK_2}:8443", identity=Verdict.PASS),
            tls13(f"{API_TASK}:8443"),  # chain not judged (TLS 1.3 without a key log)
        ]
    )
    row = rows["api", 8443]
    assert (row.verdict, row.chains_verified, row.chains_failed) == (Verdict.PASS, 2, 0)
    assert "chains verified 2, with warnings 0, failed 0, not judged 1" in row.reason


def test_a_chain_judged_with_a_warning_lowers_the_row_to_warn() -> None:
    rows = rows_of(
        [
            tls13(f"{API_TASK}:8443", identity=Verdict.PASS),
            # e.g. a 365-day leaf from a short-lived CA: judged, not failed, not clean either
            tls13(f"{API_TASK_2}:8443", identity=Verdict.WARN, verdict=Verdict.WARN),
        ]
    )
    row = rows["api", 8443]
    assert row.verdict is Verdict.WARN
    assert "chains verified 1, with warnings 1, failed 0, not judged 0" in row.reason


def test_a_chain_that_does_not_lead_to_the_declared_pca_fails() -> None:
    failed = tls13(f"{API_TASK}:8443", identity=Verdict.FAIL, verdict=Verdict.FAIL)
    row = rows_of([tls13(f"{API_TASK}:8443", identity=Verdict.PASS), failed])["api", 8443]
    assert (row.verdict, row.chains_verified, row.chains_failed) == (Verdict.FAIL, 1, 1)
    assert "the chain does not lead to the declared PCA" in row.reason


def test_tls_the_policy_fails_is_not_a_pass_on_a_tls_port() -> None:
    old = tls13(f"{API_TASK}:8443", category="TLS1.0-1.1", tls_version="TLS1.0", verdict=Verdict.FAIL)
    assert rows_of([old])["api", 8443].verdict is Verdict.FAIL


def test_a_declared_port_without_traffic_is_inconclusive() -> None:
    row = rows_of([])["api", 8443]
    assert (row.verdict, row.flows, row.by_category) == (Verdict.INCONCLUSIVE, 0, ())
    assert row.reason == "no traffic seen on this port during the capture"
    assert worst_declared([row]) is Verdict.INCONCLUSIVE


def test_data_the_wire_does_not_show_encrypted_never_passes() -> None:
    unknown = tls13(
        f"{API_TASK}:8443", category="unknown(data)", tls_version=None, verdict=Verdict.INCONCLUSIVE
    )
    row = rows_of([tls13(f"{API_TASK}:8443"), unknown])["api", 8443]
    assert row.verdict is Verdict.INCONCLUSIVE


def test_flows_without_payload_alone_are_inconclusive() -> None:
    empty = tls13(f"{API_TASK}:8443", category="no-payload", tls_version=None, verdict=Verdict.INCONCLUSIVE)
    row = rows_of([empty])["api", 8443]
    assert (row.verdict, row.reason) == (
        Verdict.INCONCLUSIVE,
        "no data exchanged on this port during the capture",
    )


def test_tls_not_declared_warns_when_encrypted_and_fails_when_plaintext() -> None:
    declarations = (declaration(tls_enabled=False, pca_arn=None),)
    encrypted = rows_of([tls13(f"{API_TASK}:8443")], declarations)["api", 8443]
    assert (encrypted.verdict, encrypted.tls_declared) == (Verdict.WARN, False)
    cleartext = rows_of([cleartext_http(f"{API_TASK}:8443")], declarations)["api", 8443]
    assert cleartext.verdict is Verdict.FAIL
    assert cleartext.reason.startswith("plaintext on a port Service Connect declares without TLS")


def test_an_undeclared_port_next_to_the_service_connect_one_has_its_own_row() -> None:
    rows = rows_of([tls13(f"{API_TASK}:8443"), cleartext_http(f"{API_TASK}:8080")])
    assert rows["api", 8443].verdict is Verdict.PASS
    open_port = rows["api", 8080]
    assert (open_port.port_name, open_port.tls_declared, open_port.pca_declared) == (None, None, None)
    assert (open_port.verdict, open_port.plaintext_flows, open_port.cluster) == (Verdict.FAIL, 1, "prod")
    assert worst_declared(rows.values()) is Verdict.FAIL


def test_an_undeclared_port_takes_its_verdict_from_the_flows() -> None:
    tls12 = tls13(f"{API_TASK}:9000", category="TLS1.2", tls_version="TLS1.2", verdict=Verdict.WARN)
    assert rows_of([tls13(f"{API_TASK}:9001")])["api", 9001].verdict is Verdict.PASS
    assert rows_of([tls12])["api", 9000].verdict is Verdict.WARN


def test_a_declared_port_of_unknown_number_takes_the_ports_no_other_declaration_claims() -> None:
    declarations = (
        declaration(),
        declaration(port_name="admin", port=None, tls_enabled=False, pca_arn=None),
    )
    rows = rows_of([tls13(f"{API_TASK}:8443"), cleartext_http(f"{API_TASK}:9090")], declarations)
    assert set(rows) == {("api", 8443), ("api", None)}
    assert (rows["api", 8443].flows, rows["api", 8443].verdict) == (1, Verdict.PASS)
    unnumbered = rows["api", None]
    assert (unnumbered.port_name, unnumbered.flows, unnumbered.verdict) == ("admin", 1, Verdict.FAIL)


def test_a_tasks_outgoing_flows_count_on_the_mirrored_peer_only() -> None:
    outgoing = make_record(client=f"{API_TASK}:50000", server=f"{OUTSIDE}:5432", category="plaintext(pgsql)")
    to_peer = make_record(client=f"{API_TASK}:50001", server=f"{WEB_TASK}:80", category="plaintext(http)")
    rows = rows_of([outgoing, to_peer])
    assert set(rows) == {("api", 8443), ("web", 80)}
    assert rows["web", 80].verdict is Verdict.FAIL


def test_a_mirrored_source_of_no_service_gets_rows_without_a_service() -> None:
    database = task("10.0.3.30", None, kind="rds", task_arn=None, cluster=None, network_mode=None)
    rows = rows_of([cleartext_http("10.0.3.30:5432")], sources=(*SOURCES, database))
    row = rows[None, 5432]
    assert (row.cluster, row.port_name, row.verdict) == (None, None, Verdict.FAIL)
    assert list(rows)[-1] == (None, 5432)  # rows of no service come last


def test_declarations_match_tasks_whose_cluster_is_an_arn() -> None:
    accumulator = DeclaredVsObserved((declaration(cluster="staging"),), SOURCES)
    accumulator.add(cleartext_http(f"{API_TASK}:8443"))
    # staging's api is not prod's: its declaration saw nothing, prod's api port is undeclared
    assert [(row.cluster, row.port_name, row.flows) for row in accumulator.rows()] == [
        ("prod", None, 1),
        ("staging", "api-http", 0),
    ]
    assert rows_of([cleartext_http(f"{API_TASK}:8443")])["api", 8443].port_name == "api-http"


def test_tasks_sharing_a_host_address_are_told_apart_by_host_port() -> None:
    host = "10.0.4.40"
    sources = (
        task(host, "api", kind="container-instance", network_mode="bridge", host_ports=(32768,)),
        task(host, "web", kind="container-instance", network_mode="bridge", host_ports=(32769,)),
    )
    declarations = (declaration(port=32768),)
    rows = rows_of(
        [cleartext_http(f"{host}:32768"), tls13(f"{host}:32769"), tls13(f"{host}:22")], declarations, sources
    )
    assert rows["api", 32768].verdict is Verdict.FAIL
    assert rows["web", 32769].flows == 1
    assert rows[None, 22].flows == 1  # either task's: nobody's


def test_ipv6_addresses_match_however_they_are_spelled() -> None:
    sources = (task("fd00:0:0:0::10", "api"),)
    rows = rows_of([cleartext_http("[fd00::10]:8443")], sources=sources)
    assert rows["api", 8443].plaintext_flows == 1


def test_no_rows_have_no_worst_verdict() -> None:
    assert worst_declared([]) is None
    assert rows_of([], declarations=()) == {}


@given(st.text())
def test_any_server_text_is_attributed_or_ignored(server: str) -> None:
    accumulator = DeclaredVsObserved((declaration(),), SOURCES)
    accumulator.add(make_record(server=server))
    assert sum(row.flows for row in accumulator.rows()) <= 1
