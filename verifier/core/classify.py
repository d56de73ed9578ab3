"""Classify one TCP connection from the first bytes of each direction.

Order of questions, chosen so that cleartext is never called encrypted:
1. Does the client's stream start with a TLS record (or an SSLv2 ClientHello)? Then parse the handshake and
   wait for the ServerHello (and, for TLS <= 1.2, the cleartext certificates). If the bytes stop parsing as
   TLS, the TLS hypothesis is dropped and the flow is judged on what the bytes are.
2. Otherwise ask the cleartext protocol identifier. A protocol that upgrades (PostgreSQL SSLRequest 'S',
   STARTTLS, MySQL SSL) is judged by what follows the upgrade: TLS parsing starts at the offsets it gives.
3. Nothing identified: a chain of well-formed TLS records somewhere in the bytes (a connection that began
   before the capture) is "TLS without a visible handshake"; anything else is unknown data.
"""

from __future__ import annotations

from dataclasses import dataclass

from verifier.core import model
from verifier.core.keylog import KeyLog
from verifier.core.plaintext import Identified, Unidentified, identify
from verifier.core.tls import (
    CONTENT_APPLICATION_DATA,
    ClientHello,
    ServerHello,
    TlsDirectionState,
    TlsStreamParser,
    cipher_suite_name,
    ja4,
    looks_like_tls,
    version_name,
)
from verifier.core.tls13_decrypt import HandshakeDecryptor
from verifier.errors import ParseError

_CERTIFICATE = 11
_CERTIFICATE_REQUEST = 13
_SERVER_HELLO_DONE = 14
_TLS13 = 0x0304
_SSLV2 = 0x0002  # the record version the TLS parser reports for SSLv2-format records
# What became of the TLS hypothesis when one side stopped parsing as TLS.
_SIDE_CLOSED, _DECIDED, _DROPPED = 0, 1, 2

_VERSION_CATEGORY = {
    0x0304: model.TLS13,
    0x0303: model.TLS12,
    0x0302: model.TLS10_11,
    0x0301: model.TLS10_11,
    0x0300: model.SSLV3,
    0x0002: model.SSLV2,
}

# RFC 8446 6.2 / RFC 5246 7.2 alert descriptions that are worth naming in a report.
_ALERT_NAMES = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    116: "certificate_required",
    120: "no_application_protocol",
}

# A mid-stream record header: application data (or alert/handshake) with a TLS 1.0-1.3 record version.
_MAX_RECORD = (1 << 14) + 2048
_RECORD_TYPES = frozenset({20, 21, 22, 23})


@dataclass(frozen=True, slots=True)
class Classification:
    category: str
    evidence: str
    protocol: str | None = None
    upgrade_from: str | None = None
    client_hello: ClientHello | None = None
    server_hello: ServerHello | None = None
    hello_retry_request: bool = False
    server_certificates: tuple[bytes, ...] = ()
    client_certificates: tuple[bytes, ...] = ()
    chain_source: str | None = None  # where the server chain came from: "passive" (TLS <= 1.2) or "keylog"
    chain_note: str | None = None  # why there is no server chain, and how to get one
    alerts: tuple[str, ...] = ()
    evidence_truncated: bool = False

    # Written out: compiled, the generated one would run interpreted (tests/test_dataclasses.py).
    def __init__(
        self,
        category: str,
        evidence: str,
        protocol: str | None = None,
        upgrade_from: str | None = None,
        client_hello: ClientHello | None = None,
        server_hello: ServerHello | None = None,
        hello_retry_request: bool = False,
        server_certificates: tuple[bytes, ...] = (),
        client_certificates: tuple[bytes, ...] = (),
        chain_source: str | None = None,
        chain_note: str | None = None,
        alerts: tuple[str, ...] = (),
        evidence_truncated: bool = False,
    ) -> None:
        object.__setattr__(self, "category", category)
        object.__setattr__(self, "evidence", evidence)
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "upgrade_from", upgrade_from)
        object.__setattr__(self, "client_hello", client_hello)
        object.__setattr__(self, "server_hello", server_hello)
        object.__setattr__(self, "hello_retry_request", hello_retry_request)
        object.__setattr__(self, "server_certificates", server_certificates)
        object.__setattr__(self, "client_certificates", client_certificates)
        object.__setattr__(self, "chain_source", chain_source)
        object.__setattr__(self, "chain_note", chain_note)
        object.__setattr__(self, "alerts", alerts)
        object.__setattr__(self, "evidence_truncated", evidence_truncated)

    @property
    def handshake_seen(self) -> bool:
        return self.client_hello is not None or self.server_hello is not None

    @property
    def ja4(self) -> str | None:
        return ja4(self.client_hello) if self.client_hello is not None else None


class FlowClassifier:
    """Incremental classifier of one connection: feed contiguous bytes per direction, read ``result``."""

    __slots__ = (
        "_buffers",
        "_closed",
        "_decryptors",
        "_fed",
        "_keylog",
        "_missing",
        "_parsers",
        "_prelude",
        "_record_positions",
        "_tls_offsets",
        "_tls_rejected",
        "_upgrade_from",
        "evidence_truncated",
        "max_bytes",
        "result",
        "roles_known",
        "swap_rule",
        "swapped",
    )

    def __init__(self, *, max_bytes: int, roles_known: bool, keylog: KeyLog | None = None) -> None:
        self.max_bytes = max_bytes
        self.roles_known = roles_known  # False: a ClientHello from the "server" side reveals the real client
        self.swapped = False  # set when the classifier swapped roles; the caller swaps its own and clears it
        self.swap_rule = ""  # what revealed the real client: "ClientHello" or "protocol greeting"
        self.result: Classification | None = None
        self.evidence_truncated = False
        self._buffers = [bytearray(), bytearray()]  # [client, server] stream prefixes
        self._closed = [False, False]  # no more contiguous bytes will come for that direction
        self._missing = 0  # payload bytes that were on the wire but not in the capture
        self._parsers: list[TlsStreamParser] | None = None
        self._fed = [0, 0]
        self._tls_offsets = (0, 0)
        self._upgrade_from: str | None = None
        self._prelude = ""  # cleartext evidence before an upgrade
        self._tls_rejected = False  # the client's bytes looked like TLS at first and then were not
        # TLS 1.3 with a key log entry: [client, server] decryptors of the encrypted handshake flights.
        self._keylog = keylog
        self._decryptors: list[HandshakeDecryptor] | None = None
        self._record_positions = [0, 0]

    def feed(self, from_client: bool, data: bytes, gap: int = 0) -> None:
        """Contiguous new bytes of one direction; ``gap`` bytes were lost just before them."""
        if self.result is not None:
            return
        side = 0 if from_client else 1
        buffer = self._buffers[side]
        if self._closed[side]:
            return
        self._missing += gap
        if gap and buffer:
            # The prefix ends at the hole; bytes after it cannot be read as a continuation.
            self._closed[side] = True
        else:
            room = self.max_bytes - len(buffer)
            if len(data) > room:
                data = data[:room]
                self._closed[side] = True
                self.evidence_truncated = True
            buffer += data
        self._step(more_coming=not all(self._closed))

    def finish(self) -> Classification:
        """No more bytes will come: decide with what was seen."""
        if self.result is None:
            self._closed = [True, True]
            self._step(more_coming=False)
        assert self.result is not None
        return self.result

    # -- decision steps --------------------------------------------------------------------------------

    def _step(self, more_coming: bool) -> None:
        # State changes come back as return values: a narrowed attribute must not outlive the call that
        # changes it (mypy keeps the narrowing, and mypyc-compiled code enforces it).
        if self._parsers is None:
            self._undecided(more_coming)
        parsers = self._parsers
        if parsers is not None and self.result is None and self._advance_tls(parsers, more_coming):
            self._undecided(more_coming)  # the TLS hypothesis was dropped: judge the bytes as they are

    def _undecided(self, more_coming: bool) -> None:
        client, server = bytes(self._buffers[0]), bytes(self._buffers[1])
        if not client and not server:
            if not more_coming and self._missing:
                self._final(
                    model.UNKNOWN_DATA,
                    f"{self._missing} payload bytes were on the wire but none was captured "
                    "(dropped by the mirror or cut by the snapshot length)",
                )
            elif not more_coming:
                self._final(model.NO_PAYLOAD, "no TCP payload in either direction")
            return
        if client and not self._tls_rejected and looks_like_tls(client):
            self._start_tls(0, 0)
            return
        if not self.roles_known and _starts_with_client_hello(server):
            self._swap("ClientHello")
            self._start_tls(0, 0)
            return
        found = identify(client, server, more_coming=more_coming)
        if found is None:
            return
        if not self.roles_known and not _specific(found):
            # No SYN, and this orientation shows nothing specific: the other one may show a protocol's
            # request or greeting (an HTTP response is not a request, say).
            reverse = identify(server, client, more_coming=more_coming)
            if isinstance(reverse, Identified) and _specific(reverse):
                self._swap("protocol greeting")
                client, server, found = server, client, reverse
        if isinstance(found, Identified):
            if found.upgrade is not None:
                self._upgrade_from = found.upgrade.protocol
                self._prelude = found.evidence
                self._start_tls(found.upgrade.client_offset, found.upgrade.server_offset)
            elif found.encrypted:
                self._final(model.OTHER_ENCRYPTED_SSH, found.evidence, protocol=found.protocol)
            else:
                self._final(model.plaintext_category(found.protocol), found.evidence, protocol=found.protocol)
            return
        chain = _record_chain(client) or _record_chain(server)
        if chain:
            self._final(model.TLS_NO_HANDSHAKE, chain)
        elif not more_coming or not _chain_possible(client, server):
            self._final(model.UNKNOWN_DATA, found.reason)

    def _start_tls(self, client_offset: int, server_offset: int) -> None:
        self._parsers = [TlsStreamParser(is_server=False), TlsStreamParser(is_server=True)]
        self._tls_offsets = (client_offset, server_offset)
        self._fed = [client_offset, server_offset]

    def _advance_tls(self, parsers: list[TlsStreamParser], more_coming: bool) -> bool:
        """Feed the parsers; True when the TLS hypothesis was dropped."""
        for side in (0, 1):
            buffer = self._buffers[side]
            if len(buffer) > self._fed[side]:
                try:
                    parsers[side].feed(bytes(buffer[self._fed[side] :]))
                except ParseError:
                    outcome = self._not_tls(side, parsers)
                    if outcome != _SIDE_CLOSED:
                        return outcome == _DROPPED
                    self._fed[side] = len(buffer)  # that side is set aside: do not feed it again
                    continue
                self._fed[side] = len(buffer)
        client, server = parsers[0].state(), parsers[1].state()
        server_hello = _final_server_hello(server)
        if server_hello is not None and _handshake_visible_part_done(server_hello, client, server):
            if not self._decrypting(client, server_hello, more_coming):
                self._final_tls(client, server)
        elif server_hello is None and _SSLV2 in server.record_versions:
            self._final_tls(client, server)  # an SSLv2 SERVER-HELLO: nothing more to learn
        elif (
            not client.client_hellos
            and server_hello is None
            and not client.handshake_types
            and not server.handshake_types
            and client.encrypted_records + server.encrypted_records >= 2
        ):
            self._final(model.TLS_NO_HANDSHAKE, _records_evidence(client, server))
        elif not more_coming:
            self._final_tls(client, server)
        return False

    def _decrypting(self, client: TlsDirectionState, server_hello: ServerHello, more_coming: bool) -> bool:
        """With a key log entry for this TLS 1.3 connection, read on until its encrypted certificates are in.

        True while the flights may still show more; the decision waits for them.
        """
        if server_hello.negotiated_version != _TLS13 or self._keylog is None or not client.client_hellos:
            return False
        if self._decryptors is None:
            secrets = self._keylog.handshake_secrets(client.client_hellos[-1].random)
            if secrets is None:
                return False
            suite = server_hello.cipher_suite
            self._decryptors = [
                HandshakeDecryptor(cipher_suite=suite, traffic_secret=secret) for secret in secrets
            ]
            self._record_positions = list(self._tls_offsets)
        for side in (0, 1):
            self._decrypt_records(side, self._decryptors[side])
        server_flight = self._decryptors[1]
        if not server_flight.done:
            return more_coming
        if _CERTIFICATE_REQUEST in server_flight.result().handshake_types and not self._decryptors[0].done:
            return more_coming  # mutual TLS: the client's certificate is in its own encrypted flight
        return False

    def _decrypt_records(self, side: int, decryptor: HandshakeDecryptor) -> None:
        """Hand every complete record of one side, not yet handed over, to its decryptor."""
        buffer = self._buffers[side]
        position = self._record_positions[side]
        while position + 5 <= len(buffer) and not decryptor.done:
            end = position + 5 + int.from_bytes(buffer[position + 3 : position + 5])
            if end > len(buffer):
                break
            version = int.from_bytes(buffer[position + 1 : position + 3])
            decryptor.feed_record(buffer[position], version, bytes(buffer[position + 5 : end]))
            position = end
        self._record_positions[side] = position

    def _chains(
        self, client: TlsDirectionState, server: TlsDirectionState, version: int | None
    ) -> tuple[tuple[bytes, ...], tuple[bytes, ...], str | None, str | None]:
        """(server chain, client chain, where the server chain came from, why there is none)."""
        if self._decryptors is not None:
            server_flight, client_flight = self._decryptors[1].result(), self._decryptors[0].result()
            if server_flight.certificates:
                return server_flight.certificates, client_flight.certificates, "keylog", None
            return (), client_flight.certificates, None, f"key log: {server_flight.error}"
        if version == _TLS13:
            if self._keylog is not None and client.client_hellos:
                return (), (), None, "the key log has no entry for this connection's client random"
            return (
                (),
                (),
                None,
                "TLS 1.3 encrypts the certificate chain: give --keylog, or --probe, to see it",
            )
        if server.certificates:
            return server.certificates, client.certificates, "passive", None
        if version is None:
            return (), client.certificates, None, None
        return (), client.certificates, None, "no certificate in the visible handshake (session resumption?)"

    def _not_tls(self, side: int, parsers: list[TlsStreamParser]) -> int:
        """The bytes of one side stopped parsing as TLS: _SIDE_CLOSED, _DECIDED or _DROPPED."""
        client, server = parsers[0].state(), parsers[1].state()
        after = bytes(self._buffers[side][self._tls_offsets[side] :])
        if side == 0:
            if client.client_hellos:
                self._closed[0] = True  # trailing oddities after a parsed hello: judge on the server side
                return _SIDE_CLOSED
            if self._upgrade_from is not None:
                self._final(
                    model.plaintext_category(self._upgrade_from),
                    f"{self._prelude}; no TLS followed the upgrade",
                    protocol=self._upgrade_from,
                )
                return _DECIDED
            # Looked like a TLS record but is not one: the caller judges the bytes as what they are.
            self._parsers = None
            self._tls_rejected = True
            return _DROPPED
        if server.server_hellos:
            self._closed[1] = True
            return _SIDE_CLOSED
        found = identify(b"", after, more_coming=False)
        if isinstance(found, Identified) and not found.encrypted:
            self._final(
                model.plaintext_category(found.protocol),
                f"server answered the client's TLS in cleartext: {found.evidence}",
                protocol=found.protocol,
            )
        elif not client.client_hellos:
            # Mid-stream: the client's bytes began on a record boundary, the server's inside a record. The
            # server side is set aside; the client's records decide.
            self._closed[1] = True
            return _SIDE_CLOSED
        else:
            self._final(
                model.TLS_INCOMPLETE,
                "ClientHello answered by data that is not TLS",
                client_state=client,
            )
        return _DECIDED

    def _final_tls(self, client: TlsDirectionState, server: TlsDirectionState) -> None:
        server_hello = _final_server_hello(server)
        alerts = tuple(_alert_text(level, code) for level, code in client.alerts + server.alerts)
        if server_hello is None and _SSLV2 in server.record_versions:
            category = model.SSLV2
            evidence = "SSLv2 SERVER-HELLO: the server speaks SSL 2.0"
        elif server_hello is not None:
            version = server_hello.negotiated_version
            category = _VERSION_CATEGORY.get(version, model.TLS_INCOMPLETE)
            evidence = f"ServerHello: {version_name(version)}, {cipher_suite_name(server_hello.cipher_suite)}"
        elif client.client_hellos:
            category = model.TLS_INCOMPLETE
            evidence = "ClientHello without a ServerHello"
            if alerts:
                evidence += f"; alerts: {', '.join(alerts)}"
        elif client.encrypted_records or server.encrypted_records:
            category = model.TLS_NO_HANDSHAKE
            evidence = _records_evidence(client, server)
        else:
            category = model.TLS_INCOMPLETE
            evidence = "the start of a TLS record, but no complete handshake message"
        if self._upgrade_from is not None:
            evidence = f"{self._prelude}; then {evidence}"
        hellos = client.client_hellos
        negotiated = server_hello.negotiated_version if server_hello is not None else None
        server_chain, client_chain, chain_source, chain_note = self._chains(client, server, negotiated)
        self.result = Classification(
            category=category,
            evidence=evidence,
            protocol=self._upgrade_from,
            upgrade_from=self._upgrade_from,
            client_hello=hellos[-1] if hellos else None,
            server_hello=server_hello,
            hello_retry_request=any(h.is_hello_retry_request for h in server.server_hellos),
            server_certificates=server_chain,
            client_certificates=client_chain,
            chain_source=chain_source,
            chain_note=chain_note,
            alerts=alerts,
            evidence_truncated=self.evidence_truncated or server.truncated_certificate,
        )
        self._release()

    def _final(
        self,
        category: str,
        evidence: str,
        protocol: str | None = None,
        client_state: TlsDirectionState | None = None,
    ) -> None:
        hellos = client_state.client_hellos if client_state is not None else ()
        self.result = Classification(
            category=category,
            evidence=evidence,
            protocol=protocol,
            client_hello=hellos[-1] if hellos else None,
            evidence_truncated=self.evidence_truncated,
        )
        self._release()

    def _release(self) -> None:
        self._buffers = [bytearray(), bytearray()]
        self._parsers = None
        self._decryptors = None

    def _swap(self, rule: str) -> None:
        self._buffers.reverse()
        self._closed.reverse()
        self.swapped = not self.swapped
        self.swap_rule = rule
        self.roles_known = True


def _specific(found: Identified | Unidentified | None) -> bool:
    """A named protocol, not just "printable text"."""
    return isinstance(found, Identified) and found.protocol != "text"


def _final_server_hello(state: TlsDirectionState) -> ServerHello | None:
    for hello in reversed(state.server_hellos):
        if not hello.is_hello_retry_request:
            return hello
    return None


def _handshake_visible_part_done(
    server_hello: ServerHello, client: TlsDirectionState, server: TlsDirectionState
) -> bool:
    """Has everything that a passive observer can see of this handshake arrived?"""
    if server_hello.negotiated_version == _TLS13:
        return True  # everything after the ServerHello is encrypted
    types = server.handshake_types
    if not (_SERVER_HELLO_DONE in types or server.change_cipher_spec or server.encrypted_records):
        return False  # the cleartext certificate chain may still be coming
    if _CERTIFICATE_REQUEST in types:
        # Mutual TLS: the client's certificate follows the server's flight.
        return bool(_CERTIFICATE in client.handshake_types or client.change_cipher_spec)
    return True


def _starts_with_client_hello(data: bytes) -> bool:
    return len(data) >= 6 and data[0] == 22 and data[1] == 3 and data[5] == 1


def _record_chain(data: bytes) -> str:
    """Evidence of TLS records in bytes that may start mid-record; empty when there is none.

    Needs at least one complete record whose successor is either a valid header or the exact end of the
    bytes, with at least two records in all: one chance header in random or binary data does not count.
    """
    position = data.find(b"\x17\x03")
    while position != -1:
        records = _count_chained_records(data, position)
        if records >= 2:
            return f"{records} TLS records without a handshake (stream picked up at byte {position})"
        position = data.find(b"\x17\x03", position + 1)
    return ""


def _count_chained_records(data: bytes, start: int) -> int:
    """Number of records chained from ``start``, or 0 if the chain breaks before the end of the bytes."""
    count = 0
    position = start
    end = len(data)
    while position + 5 <= end:
        content_type, major, minor = data[position], data[position + 1], data[position + 2]
        length = int.from_bytes(data[position + 3 : position + 5])
        if (
            content_type not in _RECORD_TYPES
            or major != 3
            or not 1 <= minor <= 4
            or not 0 < length <= _MAX_RECORD
        ):
            return 0
        position += 5 + length
        count += 1
    if position < end:
        # A header cut by the end of what we have: it must still look like one.
        tail = data[position:]
        if tail[0] not in _RECORD_TYPES or (len(tail) > 1 and tail[1] != 3):
            return 0
    return count


def _chain_possible(client: bytes, server: bytes) -> bool:
    """Could more bytes still reveal a record chain? (A header was seen whose record is not complete.)"""
    for data in (client, server):
        position = data.find(b"\x17\x03")
        if position != -1 and _count_chained_records(data, position) == 1:
            return True
    return False


def _records_evidence(client: TlsDirectionState, server: TlsDirectionState) -> str:
    return (
        f"{client.encrypted_records + server.encrypted_records} encrypted TLS records "
        f"(content type {CONTENT_APPLICATION_DATA}) without a visible handshake"
    )


def _alert_text(level: int, code: int) -> str:
    return f"{'fatal' if level == 2 else 'warning'} {_ALERT_NAMES.get(code, 'alert')}({code})"
