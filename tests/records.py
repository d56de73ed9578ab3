"""A FlowRecord factory for tests of the code that consumes records."""

from __future__ import annotations

from typing import Any

from verifier.core.model import FlowRecord, Verdict


def make_record(**overrides: Any) -> FlowRecord:
    fields: dict[str, Any] = {
        "client": "10.0.0.1:40000",
        "server": "10.0.0.2:443",
        "vni": 7,
        "first_seen": 1_700_000_000.0,
        "last_seen": 1_700_000_001.5,
        "role_rule": "SYN",
        "midstream": False,
        "handshake_seen": True,
        "category": "TLS1.3",
        "protocol": None,
        "upgrade_from": None,
        "tls_version": "TLS1.3",
        "cipher_suite": 0x1301,
        "cipher_suite_name": "TLS_AES_128_GCM_SHA256",
        "sni": "api.internal.example",
        "alpn": None,
        "alpn_offered": ("h2",),
        "ja4": "t13d1516h2_8daaf6152771_e5627efa2ab1",
        "hello_retry_request": False,
        "server_certificates": (),
        "client_certificates": (),
        "chain_source": None,
        "chain_note": "TLS 1.3 encrypts the certificate chain: give --keylog to see it",
        "alerts": (),
        "evidence": "ServerHello: TLS1.3",
        "evidence_truncated": False,
        "identity": None,
        "identity_checks": (),
        "packets_client": 5,
        "packets_server": 6,
        "bytes_client": 700,
        "bytes_server": 4000,
        "retransmissions": 0,
        "out_of_order": 0,
        "gaps": 0,
        "gap_bytes": 0,
        "truncated_frames": 0,
        "verdict": Verdict.PASS,
        "reason": "TLS 1.3",
    }
    fields.update(overrides)
    return FlowRecord(**fields)
