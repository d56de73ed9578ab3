"""TLS key logs in the NSS format (SSLKEYLOGFILE, RFC 9850): secrets by client random.

One entry a line: ``LABEL <client random, 64 hex digits> <secret, hex>``. The same text comes from a key log
file or from a pcapng Decryption Secrets Block. Key logs are often concatenated from several processes and
edited by hand, so a line that cannot be read is counted and skipped, never fatal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

CLIENT_HANDSHAKE_TRAFFIC_SECRET = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
SERVER_HANDSHAKE_TRAFFIC_SECRET = "SERVER_HANDSHAKE_TRAFFIC_SECRET"

# RFC 9850 labels and the secret lengths each may have: a TLS 1.3 secret is as long as the suite's hash
# (SHA-256 or SHA-384), the TLS <= 1.2 master secret is 48 bytes; ECH values vary (None: any length). All are
# kept though only the handshake traffic secrets are used: a key log holding the others is not malformed.
_TLS13_SECRET_LENGTHS = frozenset({32, 48})
_LABELS: dict[str, frozenset[int] | None] = {
    "CLIENT_RANDOM": frozenset({48}),
    "CLIENT_EARLY_TRAFFIC_SECRET": _TLS13_SECRET_LENGTHS,
    "EARLY_EXPORTER_SECRET": _TLS13_SECRET_LENGTHS,
    CLIENT_HANDSHAKE_TRAFFIC_SECRET: _TLS13_SECRET_LENGTHS,
    SERVER_HANDSHAKE_TRAFFIC_SECRET: _TLS13_SECRET_LENGTHS,
    "CLIENT_TRAFFIC_SECRET_0": _TLS13_SECRET_LENGTHS,
    "SERVER_TRAFFIC_SECRET_0": _TLS13_SECRET_LENGTHS,
    "EXPORTER_SECRET": _TLS13_SECRET_LENGTHS,
    "ECH_SECRET": None,
    "ECH_CONFIG": None,
}

# Label, client random, secret; fields separated by spaces or tabs (the line ending is already removed).
_ENTRY = re.compile(rb"[ \t]*([A-Z0-9_]+)[ \t]+([0-9A-Fa-f]{64})[ \t]+((?:[0-9A-Fa-f]{2})+)[ \t]*")


@dataclass(frozen=True, slots=True)
class KeyLog:
    """Secrets by client random (32 bytes) -> label -> secret bytes."""

    secrets: Mapping[bytes, Mapping[str, bytes]]
    lines: int  # every line of the text, comments and blank lines included
    ignored_lines: int  # malformed, unknown label or secret of a wrong length; comments and blanks are not

    def handshake_secrets(self, client_random: bytes) -> tuple[bytes, bytes] | None:
        """(CLIENT_HANDSHAKE_TRAFFIC_SECRET, SERVER_HANDSHAKE_TRAFFIC_SECRET) of a connection, None unless
        both are logged."""
        entry = self.secrets.get(client_random)
        if entry is None:
            return None
        client = entry.get(CLIENT_HANDSHAKE_TRAFFIC_SECRET)
        server = entry.get(SERVER_HANDSHAKE_TRAFFIC_SECRET)
        if client is None or server is None:
            return None
        return client, server


def parse_keylog(data: bytes) -> KeyLog:
    """Read a key log; never raises. A later entry for the same client random and label replaces an earlier
    one. A last line without a newline is read as complete: a line cut short while being written almost always
    leaves a secret of a length no hash has, and is ignored."""
    secrets: dict[bytes, dict[str, bytes]] = {}
    lines = data.split(b"\n")
    if lines[-1] == b"":  # the newline ending the last line does not start another
        lines.pop()
    ignored = 0
    for line in lines:
        line = line.removesuffix(b"\r")
        if not line.strip() or line.lstrip().startswith(b"#"):
            continue
        match = _ENTRY.fullmatch(line)
        if match is None:
            ignored += 1
            continue
        label = match.group(1).decode()
        secret = bytes.fromhex(match.group(3).decode())
        lengths = _LABELS.get(label, frozenset())  # an unknown label allows no length at all
        if lengths is not None and len(secret) not in lengths:
            ignored += 1
            continue
        secrets.setdefault(bytes.fromhex(match.group(2).decode()), {})[label] = secret
    return KeyLog(
        secrets=MappingProxyType({random: MappingProxyType(entry) for random, entry in secrets.items()}),
        lines=len(lines),
        ignored_lines=ignored,
    )
