"""The policy file (``--policy FILE``, TOML; docs/policy.md): read, validate, and turn into a core ``Policy``.

tomllib reports syntax errors with their line but knows nothing of lines once the document is parsed, so a
key that is unknown or has a bad value is found again in the text to say on which line it is.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date, datetime
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from verifier.core.policy import TLS_VERSIONS, Policy, PolicyException, VersionRule
from verifier.errors import InputError, UsageError

_DEFAULT_POLICY_TOML = """\
# verifier policy (TOML): the default, what applies without --policy. docs/policy.md describes every key.
#
# Per flow: TLS 1.3 PASS; TLS 1.2 WARN (FAIL with a NULL, EXPORT, RC4, anonymous or DES cipher); TLS 1.0/1.1,
# SSL and any cleartext FAIL; SSH WARN; what the capture cannot show INCONCLUSIVE. A policy file can only
# tighten this; an exception lowers a FAIL to WARN until its date, never to PASS.

# The minimum TLS version of flows no [[rule]] covers: "1.2" (TLS 1.2 is WARN) or "1.3" (TLS 1.2 FAILs).
min_tls_version = "1.2"

# Per server port and/or service: the rules that match a flow replace min_tls_version; the strictest wins.
# [[rule]]
# service = "payments"
# port = 8443
# min_tls_version = "1.3"

# Server certificates (checked where the chain was seen: TLS 1.2, or TLS 1.3 with a key log).
# [certificates]
# required_ca = "arn:aws:acm-pca:REGION:ACCOUNT:certificate-authority/ID"  # or a PEM file's path
# max_lifetime_days = 7
# san_patterns = ["*.internal.example"]

# A waiver: FAIL flows it matches (every selector given: peer, port, service) become WARN until the end
# of `expires` (UTC); after that it no longer applies and the report says so.
# [[exception]]
# peer = "10.0.42.0/24"
# port = 6379
# justification = "cleartext Redis until the migration of OPS-123"
# expires = 2026-12-31
"""


def default_policy_toml() -> str:
    """The default policy as a documented policy file (``verifier policy show``); it loads as the default
    ``Policy``."""
    return _DEFAULT_POLICY_TOML


def load_policy(path: Path) -> Policy:
    """The policy of a file; InputError naming the file, line and key for anything wrong in it."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the policy: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: the policy is not UTF-8 text: {exc}") from exc
    return parse_policy(text, str(path), path.parent)


def parse_policy(text: str, name: str, base: Path) -> Policy:
    """The policy of TOML ``text`` from the file ``name``; a PEM path in it is relative to ``base``."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{name}: not valid TOML: {exc}") from exc
    return _Reader(text, name, base).policy(document)


_Path = tuple[str | int, ...]  # a key's place in the document: table names, array indexes, the key

_ARRAY_HEADER = re.compile(r"\[\[\s*([^\]]+?)\s*\]\]")
_TABLE_HEADER = re.compile(r"\[\s*([^\]]+?)\s*\]")
_KEY = re.compile(r"""([A-Za-z0-9_\-."' ]+?)\s*=""")


def _dotted(key: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in key.split("."))


def _key_lines(text: str) -> dict[_Path, int]:
    """The line (1-based) where each table and key is first written. Enough TOML for a policy file: headers,
    dotted keys, multi-line strings skipped; keys inside inline tables are found at their table's line."""
    lines: dict[_Path, int] = {}
    table: _Path = ()
    arrays: dict[_Path, int] = {}  # array-of-tables name -> how many have been opened
    in_string = False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        quotes = stripped.count('"""') + stripped.count("'''")
        if in_string:
            in_string = quotes % 2 == 0
            continue
        in_string = quotes % 2 == 1
        if match := _ARRAY_HEADER.match(stripped):
            name = _dotted(match[1])
            index = arrays.get(name, 0)
            arrays[name] = index + 1
            lines.setdefault(name, number)
            table = (*name, index)
        elif match := _TABLE_HEADER.match(stripped):
            table = _dotted(match[1])
        elif match := _KEY.match(stripped):
            lines.setdefault((*table, *_dotted(match[1])), number)
            continue
        else:
            continue
        lines.setdefault(table, number)
    return lines


class _Reader:
    def __init__(self, text: str, name: str, base: Path) -> None:
        self.name = name
        self.base = base
        self.lines = _key_lines(text)

    def error(self, path: _Path, problem: str) -> InputError:
        line = 1
        for length in range(len(path), 0, -1):
            if path[:length] in self.lines:
                line = self.lines[path[:length]]
                break
        key = ".".join(part for part in path if isinstance(part, str))
        return InputError(f"{self.name}:{line}: {key}: {problem}")

    def policy(self, document: dict[str, Any]) -> Policy:
        self.known(document, (), {"min_tls_version", "rule", "certificates", "exception"})
        certificates = document.get("certificates", {})
        if not isinstance(certificates, dict):
            raise self.error(("certificates",), "expected a table: [certificates]")
        self.known(certificates, ("certificates",), {"required_ca", "max_lifetime_days", "san_patterns"})
        pca_arn, pem = self.required_ca(certificates)
        lifetime = certificates.get("max_lifetime_days")
        if lifetime is not None:
            self.integer(("certificates", "max_lifetime_days"), lifetime, 1, 36500)
        return Policy(
            min_tls_version=self.version(("min_tls_version",), document.get("min_tls_version", "1.2")),
            rules=tuple(self.rule(index, table) for index, table in self.tables(document, "rule")),
            required_pca_arn=pca_arn,
            required_ca_pem=pem,
            max_certificate_lifetime_days=lifetime,
            san_patterns=self.patterns(certificates.get("san_patterns", [])),
            exceptions=tuple(
                self.exception(index, table) for index, table in self.tables(document, "exception")
            ),
        )

    def known(self, table: dict[str, Any], path: _Path, keys: set[str]) -> None:
        for key in table:
            if key not in keys:
                raise self.error((*path, key), f"unknown key; expected one of {', '.join(sorted(keys))}")

    def tables(self, document: dict[str, Any], name: str) -> list[tuple[int, dict[str, Any]]]:
        tables = document.get(name, [])
        if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
            raise self.error((name,), f"expected tables: [[{name}]]")
        return list(enumerate(tables))

    def rule(self, index: int, table: dict[str, Any]) -> VersionRule:
        path: _Path = ("rule", index)
        self.known(table, path, {"port", "service", "min_tls_version"})
        if "port" not in table and "service" not in table:
            raise self.error(path, "a rule needs a port, a service or both; the default is min_tls_version")
        if "min_tls_version" not in table:
            raise self.error(path, "missing min_tls_version")
        return VersionRule(
            min_tls_version=self.version((*path, "min_tls_version"), table["min_tls_version"]),
            port=self.port((*path, "port"), table.get("port")),
            service=self.service((*path, "service"), table.get("service")),
        )

    def exception(self, index: int, table: dict[str, Any]) -> PolicyException:
        path: _Path = ("exception", index)
        self.known(table, path, {"peer", "port", "service", "justification", "expires"})
        if not {"peer", "port", "service"} & table.keys():
            raise self.error(path, "an exception needs at least one of peer, port, service")
        justification = table.get("justification")
        if not isinstance(justification, str) or not justification.strip():
            raise self.error((*path, "justification"), "every exception needs a justification (a string)")
        expires = table.get("expires")
        if not isinstance(expires, date) or isinstance(expires, datetime):
            raise self.error(
                (*path, "expires"), "every exception needs an expiry date, e.g. expires = 2026-12-31"
            )
        peer = table.get("peer")
        network = None
        if peer is not None:
            try:
                network = ip_network(peer) if isinstance(peer, str) else None
            except ValueError as exc:
                raise self.error((*path, "peer"), f"not an address or CIDR block: {exc}") from exc
            if network is None:
                raise self.error((*path, "peer"), 'expected a string, e.g. "10.0.42.0/24"')
        return PolicyException(
            justification=" ".join(justification.split()),  # one line, however the file wraps it
            expires=expires,
            peer=network,
            port=self.port((*path, "port"), table.get("port")),
            service=self.service((*path, "service"), table.get("service")),
        )

    def required_ca(self, certificates: dict[str, Any]) -> tuple[str | None, str | None]:
        path: _Path = ("certificates", "required_ca")
        value = certificates.get("required_ca")
        if value is None:
            return None, None
        if not isinstance(value, str) or not value:
            raise self.error(path, "expected a Private CA's ARN or the path of a PEM file (a string)")
        if value.startswith("arn:"):
            from verifier.aws.pca import parse_pca_arn  # boto3 loads only when AWS is used

            try:
                parse_pca_arn(value)
            except UsageError as exc:
                raise self.error(
                    path,
                    "not the ARN of a Private CA (arn:aws:acm-pca:REGION:ACCOUNT:certificate-authority/ID)",
                ) from exc
            return value, None
        pem = self.base / value
        if not pem.is_file():
            raise self.error(path, f"no such PEM file: {pem}")
        return None, str(pem.resolve())

    def version(self, path: _Path, value: object) -> str:
        if not isinstance(value, str) or value not in TLS_VERSIONS:
            raise self.error(path, f'expected "1.2" or "1.3" (a quoted string), not {value!r}')
        return value

    def port(self, path: _Path, value: object) -> int | None:
        return None if value is None else self.integer(path, value, 1, 65535)

    def integer(self, path: _Path, value: object, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(path, f"expected a whole number from {low} to {high}, not {value!r}")
        return value

    def service(self, path: _Path, value: object) -> str | None:
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise self.error(path, "expected a service name (a string)")
        return value.strip() if isinstance(value, str) else None

    def patterns(self, value: object) -> tuple[str, ...]:
        path: _Path = ("certificates", "san_patterns")
        if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
            raise self.error(path, 'expected a list of glob patterns, e.g. ["*.internal.example"]')
        return tuple(value)
