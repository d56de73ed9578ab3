"""The per-flow classifier on its own: chunking never changes the answer, arbitrary bytes never raise."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.traffic import Message, tls_conversation
from verifier.core import model
from verifier.core.classify import Classification, FlowClassifier

HTTP = [
    (True, b"POST /pay HTTP/1.1\r\nHost: pay\r\nContent-Length: 4\r\n\r\n4111"),
    (False, b"HTTP/1.1 201 Created\r\n\r\n"),
]
PG_UPGRADE_PREFIX = [(True, bytes.fromhex("0000000804d2162f")), (False, b"S")]


@pytest.fixture(scope="module")
def tls13(tmp_path_factory: pytest.TempPathFactory) -> list[Message]:
    return tls_conversation(tmp_path_factory.mktemp("c13"))


@pytest.fixture(scope="module")
def tls12(tmp_path_factory: pytest.TempPathFactory) -> list[Message]:
    return tls_conversation(tmp_path_factory.mktemp("c12"), version=ssl.TLSVersion.TLSv1_2)


def classify(messages: list[Message], chunk: int | None = None, max_bytes: int = 1 << 20) -> Classification:
    classifier = FlowClassifier(max_bytes=max_bytes, roles_known=True)
    for from_client, data in messages:
        step = chunk or len(data) or 1
        for start in range(0, len(data), step):
            classifier.feed(from_client, data[start : start + step])
    return classifier.finish()


def test_whole_messages(tls13: list[Message], tls12: list[Message]) -> None:
    assert classify(tls13).category == model.TLS13
    assert classify(tls12).category == model.TLS12
    assert classify(HTTP).category == "plaintext(http)"
    upgraded = classify(PG_UPGRADE_PREFIX + tls13)
    assert (upgraded.category, upgraded.upgrade_from) == (model.TLS13, "pgsql")


def test_byte_at_a_time_gives_the_same_answer(tls13: list[Message], tls12: list[Message]) -> None:
    for messages in (tls13, tls12, HTTP, PG_UPGRADE_PREFIX + tls13):
        assert classify(messages, chunk=1) == classify(messages)


@settings(max_examples=40, deadline=None)
@given(chunk=st.integers(1, 700))
def test_any_chunking_gives_the_same_answer(tls12: list[Message], chunk: int) -> None:
    assert classify(tls12, chunk=chunk) == classify(tls12)


def test_the_evidence_cap_is_marked(tls12: list[Message]) -> None:
    # 600 bytes per direction hold the ServerHello but not the whole certificate chain.
    capped = classify(tls12, max_bytes=600)
    assert capped.category == model.TLS12 and capped.evidence_truncated
    assert not classify(tls12).evidence_truncated


def test_a_gap_before_the_server_hello_leaves_the_handshake_incomplete(tls13: list[Message]) -> None:
    classifier = FlowClassifier(max_bytes=1 << 20, roles_known=True)
    from_client, hello = tls13[0]
    classifier.feed(from_client, hello)
    server_flight = tls13[1][1]
    classifier.feed(False, server_flight[:3])
    classifier.feed(False, server_flight[100:], gap=97)  # the mirror dropped part of the ServerHello
    result = classifier.finish()
    assert result.category == model.TLS_INCOMPLETE and result.client_hello is not None


def test_payload_that_was_never_captured_is_not_no_payload() -> None:
    classifier = FlowClassifier(max_bytes=1 << 20, roles_known=True)
    classifier.feed(True, b"", gap=1448)
    assert classifier.finish().category == model.UNKNOWN_DATA


def test_nothing_at_all_is_no_payload() -> None:
    assert FlowClassifier(max_bytes=1024, roles_known=True).finish().category == model.NO_PAYLOAD


def test_tls_record_header_followed_by_cleartext_is_cleartext() -> None:
    # Starts like a TLS handshake record, then is plainly not one: the TLS hypothesis is dropped and the
    # flow is judged on what both sides sent, including the server's reply that comes later.
    bogus = b"\x16\x03\x01\x00\x10" + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    result = classify([(True, bogus), (False, b"HTTP/1.1 200 OK\r\n\r\n")])
    assert (result.category, result.protocol) == ("plaintext(http)", "http")


@settings(max_examples=300, deadline=None)
@given(
    messages=st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), max_size=8),
    roles_known=st.booleans(),
    max_bytes=st.integers(1, 2048),
)
def test_arbitrary_bytes_never_raise(messages: list[Message], roles_known: bool, max_bytes: int) -> None:
    classifier = FlowClassifier(max_bytes=max_bytes, roles_known=roles_known)
    for from_client, data in messages:
        classifier.feed(from_client, data)
    result = classifier.finish()
    assert isinstance(result, Classification)


def test_real_tls_prefixes_never_raise(tls13: list[Message]) -> None:
    """Every prefix of a real conversation, ended there, gives a classification (byte-at-a-time contract)."""
    stream = [(c, bytes([b])) for c, data in tls13[:2] for b in data]
    for cut in range(0, len(stream), 37):
        classifier = FlowClassifier(max_bytes=1 << 20, roles_known=True)
        for from_client, byte in stream[:cut]:
            classifier.feed(from_client, byte)
        assert classifier.finish().category in (model.TLS13, model.TLS_INCOMPLETE, model.NO_PAYLOAD)
