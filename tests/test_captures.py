"""The project's own VXLAN captures (made by scripts/make-captures) against their manifests.

tshark (through pyshark) is the independent oracle that proves each capture and its manifest agree; our
analyser is then held to the same manifest.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import shutil
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyshark  # type: ignore[import-untyped]
import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from verifier.analysis import analyze_files

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
MANIFESTS = sorted(CAPTURES.glob("*.manifest.json"))
ROOT_CA = CAPTURES / "pki" / "root-ca.pem"

TLS_VERSION_NAMES = {"0x0304": "TLS1.3", "0x0303": "TLS1.2"}
CLIENT_HELLO, SERVER_HELLO, CERTIFICATE = "1", "2", "11"

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")


def load(manifest_path: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    return manifest


def manifest_ids(paths: list[Path]) -> list[str]:
    return [path.name.removesuffix(".manifest.json") for path in paths]


def test_every_manifest_describes_a_small_capture_made_by_the_script() -> None:
    assert MANIFESTS, "captures/*.manifest.json missing: run scripts/make-captures"
    for manifest_path in MANIFESTS:
        manifest = load(manifest_path)
        capture = CAPTURES / manifest["capture"]
        assert capture.is_file(), capture
        assert capture.stat().st_size < 300_000, capture
        assert manifest["made_with"] == "scripts/make-captures"
        for flow in manifest["flows"]:
            assert flow["vni"] == manifest["vni"]
            plaintext = flow["category"].startswith("plaintext(")
            expected_verdict = "FAIL" if plaintext else {"TLS1.3": "PASS", "TLS1.2": "WARN"}[flow["category"]]
            assert flow["verdict"] == expected_verdict, flow
            assert flow["tls_version"] == (None if plaintext else flow["category"]), flow


# --------------------------------------------------------------------------- tshark's view


@dataclass
class Stream:
    """What tshark saw in one TCP connection."""

    server: str
    vni: int
    first_seen: datetime
    protocols: set[str] = field(default_factory=set)  # dissectors above TCP, e.g. {"tls", "pgsql"}
    tls_versions: set[str] = field(default_factory=set)  # from every ServerHello (a HelloRetryRequest too)
    snis: set[str] = field(default_factory=set)
    certificates: list[bytes] = field(default_factory=list)  # DER, in the order the server sent them


@contextmanager
def packets(capture: Path) -> Iterator[Any]:
    # A fresh loop made current, closed here, so no unclosed-loop ResourceWarning escapes. It is not passed
    # as eventloop=: pyshark then attaches its SafeChildWatcher to it, whereas under asyncio's default
    # ThreadedChildWatcher about one capture in 40 reported tshark's exit as 255 ("Unknown child process").
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        file_capture = pyshark.FileCapture(str(capture), keep_packets=False)
        try:
            yield file_capture
        finally:
            file_capture.close()
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def values(layer: Any, name: str) -> list[Any]:
    found = layer.get_field(name)
    return list(found.all_fields) if found is not None else []


@functools.cache  # two tests read the same captures
def tshark_streams(capture: Path) -> list[Stream]:
    streams: dict[str, Stream] = {}
    with packets(capture) as file_capture:
        for packet in file_capture:
            layer_names = [layer.layer_name for layer in packet.layers]
            assert "vxlan" in layer_names and "tcp" in layer_names, f"frame {packet.number}: {layer_names}"
            inner_ip = packet.get_multiple_layers("ip")[-1]  # the first one is the underlay's
            tcp = packet.tcp
            if int(tcp.flags, 16) & 0x12 == 0x02:  # SYN without ACK: the client opens, so dst is the server
                seen_at = datetime.fromtimestamp(float(packet.sniff_timestamp), UTC)
                streams[tcp.stream] = Stream(f"{inner_ip.dst}:{tcp.dstport}", int(packet.vxlan.vni), seen_at)
            stream = streams[tcp.stream]  # KeyError: a connection whose opening the mirror missed
            stream.protocols.update(layer_names[layer_names.index("tcp") + 1 :])
            for tls in packet.get_multiple_layers("tls"):
                handshake_types = [value.show for value in values(tls, "handshake_type")]
                if CLIENT_HELLO in handshake_types:
                    stream.snis.update(
                        value.show for value in values(tls, "handshake_extensions_server_name")
                    )
                if SERVER_HELLO in handshake_types:
                    # supported_versions decides TLS 1.3; a TLS 1.2 ServerHello has only the legacy field.
                    chosen = values(tls, "handshake_extensions_supported_version") or values(
                        tls, "handshake_version"
                    )
                    stream.tls_versions.add(TLS_VERSION_NAMES.get(chosen[0].show, chosen[0].show))
                if CERTIFICATE in handshake_types:
                    stream.certificates += [
                        value.binary_value for value in values(tls, "handshake_certificate")
                    ]
    return list(streams.values())


@needs_tshark
@pytest.mark.parametrize("manifest_path", MANIFESTS, ids=manifest_ids(MANIFESTS))
def test_tshark_agrees_with_manifest(manifest_path: Path) -> None:
    manifest = load(manifest_path)
    by_server: dict[tuple[str, int], list[Stream]] = defaultdict(list)
    for stream in tshark_streams(CAPTURES / manifest["capture"]):
        by_server[(stream.server, stream.vni)].append(stream)

    assert set(by_server) == {(flow["server"], flow["vni"]) for flow in manifest["flows"]}
    for flow in manifest["flows"]:
        streams = by_server[(flow["server"], flow["vni"])]
        assert len(streams) == flow["count"], flow
        for stream in streams:
            if flow["category"].startswith("plaintext("):
                protocol = flow["category"].removeprefix("plaintext(").removesuffix(")")
                assert protocol in stream.protocols, (flow, stream)
                assert "tls" not in stream.protocols, (flow, stream)
            else:
                assert stream.tls_versions == {flow["tls_version"]}, (flow, stream)
                assert stream.snis == ({flow["sni"]} if flow["sni"] else set()), (flow, stream)
            if flow["upgrade_from"]:
                assert flow["upgrade_from"] in stream.protocols, (flow, stream)


@needs_tshark
def test_tls12_chains_in_clear_verify_against_the_shipped_root() -> None:
    root = x509.load_pem_x509_certificate(ROOT_CA.read_bytes())
    chains_checked = 0
    for manifest_path in MANIFESTS:
        manifest = load(manifest_path)
        tls12_servers = {
            flow["server"]: flow["sni"] for flow in manifest["flows"] if flow["category"] == "TLS1.2"
        }
        for stream in tshark_streams(CAPTURES / manifest["capture"]):
            if stream.server not in tls12_servers:
                continue
            leaf, *intermediates = (x509.load_der_x509_certificate(der) for der in stream.certificates)
            verifier = (
                PolicyBuilder()
                .store(Store([root]))
                .time(stream.first_seen)
                .build_server_verifier(x509.DNSName(tls12_servers[stream.server]))
            )
            chain = verifier.verify(leaf, intermediates)  # raises VerificationError if it does not chain
            assert chain[-1] == root
            assert len(chain) == 3  # leaf -> intermediate -> root, as scripts/make-captures issues them
            chains_checked += 1
    assert chains_checked > 0, "no TLS1.2 flow in any manifest"


# --------------------------------------------------------------------------- our analyser


@pytest.mark.parametrize("manifest_path", MANIFESTS, ids=manifest_ids(MANIFESTS))
def test_analyser_agrees_with_manifest(manifest_path: Path) -> None:
    manifest = load(manifest_path)
    result = analyze_files([CAPTURES / manifest["capture"]])

    seen: dict[tuple[str, int | None], list[tuple[object, ...]]] = defaultdict(list)
    for flow in result.flows:
        seen[(flow.server, flow.vni)].append(
            (flow.category, flow.tls_version, flow.sni, flow.verdict, flow.upgrade_from)
        )
    expected = {
        (flow["server"], flow["vni"]): [
            (flow["category"], flow["tls_version"], flow["sni"], flow["verdict"], flow["upgrade_from"])
        ]
        * flow["count"]
        for flow in manifest["flows"]
    }
    assert dict(seen) == expected


@needs_tshark
@pytest.mark.parametrize("manifest_path", MANIFESTS, ids=manifest_ids(MANIFESTS))
def test_analyser_agrees_with_tshark_connection_by_connection(manifest_path: Path) -> None:
    """Differential: each TCP connection tshark saw, against ours, matched by server, VNI and SYN time."""
    capture = CAPTURES / load(manifest_path)["capture"]
    ours = {
        (flow.server, flow.vni, round(flow.first_seen, 6)): flow for flow in analyze_files([capture]).flows
    }
    streams = tshark_streams(capture)
    assert len(ours) == len(streams)
    for stream in streams:
        flow = ours[(stream.server, stream.vni, round(stream.first_seen.timestamp(), 6))]
        if "tls" in stream.protocols:
            assert {flow.tls_version} == stream.tls_versions, (flow, stream)
            assert ({flow.sni} if flow.sni else set()) == stream.snis, (flow, stream)
            expected = [hashlib.sha256(der).hexdigest() for der in stream.certificates]
            assert list(flow.server_certificates) == expected, (flow, stream)
        else:
            assert flow.category.startswith("plaintext(") and flow.protocol in stream.protocols, (
                flow,
                stream,
            )
