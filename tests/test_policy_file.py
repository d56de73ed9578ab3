"""The policy file: the default round-trips, the documented example loads, every mistake names its file, line
and key; and whatever policy the loader accepts, applying it never crashes nor lets cleartext PASS."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, date, datetime, timedelta
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import REPO
from tests.pki import ec_key, issue
from tests.records import make_record
from verifier.core import model
from verifier.core.model import Verdict
from verifier.core.policy import (
    DEFAULT_POLICY,
    Policy,
    PolicyException,
    PolicyJudge,
    VersionRule,
    judge,
    severity,
)
from verifier.errors import InputError
from verifier.policy_file import default_policy_toml, load_policy, parse_policy

PCA = "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
FUZZ = settings(max_examples=150, deadline=None)


def parse(text: str, base: Path = REPO) -> Policy:
    return parse_policy(text, "p.toml", base)


def test_the_default_round_trips() -> None:
    assert parse(default_policy_toml()) == DEFAULT_POLICY == Policy()


def test_the_documented_example_loads() -> None:
    docs = (REPO / "docs" / "policy.md").read_text()
    example = re.search(r"```toml\n(.*?)```", docs, re.DOTALL)
    assert example is not None
    assert parse(example[1]) == Policy(
        min_tls_version="1.3",
        rules=(VersionRule("1.2", port=5432),),
        required_pca_arn=PCA,
        max_certificate_lifetime_days=7,
        san_patterns=("*.internal.example", "*.svc.cluster.local"),
        exceptions=(
            PolicyException(
                "cleartext Redis until the migration of OPS-123",
                date(2026, 12, 31),
                peer=ip_network("10.0.42.0/24"),
                port=6379,
            ),
        ),
    )


def test_every_key() -> None:
    text = """\
min_tls_version = "1.2"
certificates.san_patterns = ["db.*"]

[[rule]]
service = " payments "
min_tls_version = "1.3"

[[rule]]
service = "payments"
port = 8443
min_tls_version = "1.2"

[[exception]]
service = "legacy"
justification = '''
  TLS 1.0 client,
  replaced in Q3
'''
expires = 2027-01-15

[[exception]]
peer = "2001:db8::/64"
justification = "partner"
expires = 2026-02-01
"""
    assert parse(text) == Policy(
        rules=(VersionRule("1.3", service="payments"), VersionRule("1.2", port=8443, service="payments")),
        san_patterns=("db.*",),
        exceptions=(
            PolicyException("TLS 1.0 client, replaced in Q3", date(2027, 1, 15), service="legacy"),
            PolicyException("partner", date(2026, 2, 1), peer=ip_network("2001:db8::/64")),
        ),
    )


def test_a_pem_path_is_relative_to_the_policy_file(tmp_path: Path) -> None:
    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "root.pem").write_bytes(issue("root", ec_key("policy-root"), None, ca=True).pem)
    policy_path = tmp_path / "policy.toml"
    policy_path.write_text('[certificates]\nrequired_ca = "ca/root.pem"\n')
    policy = load_policy(policy_path)
    assert policy.required_ca_pem == str(tmp_path / "ca" / "root.pem") and policy.required_pca_arn is None


BAD = [
    # (text, the error after "p.toml:")
    (
        'min_tls = "1.3"\n',
        "1: min_tls: unknown key; expected one of certificates, exception, min_tls_version, rule",
    ),
    (
        '\n\nmin_tls_version = "1.1"\n',
        '3: min_tls_version: expected "1.2" or "1.3" (a quoted string), not \'1.1\'',
    ),
    ("min_tls_version = 1.3\n", '1: min_tls_version: expected "1.2" or "1.3" (a quoted string), not 1.3'),
    (
        "# comment\n[certificates]\nmax_lifetime_days = 7\nsan_pattern = ['x']\n",
        "4: certificates.san_pattern: unknown key",
    ),
    (
        "[certificates]\n\nmax_lifetime_days = 0\n",
        "3: certificates.max_lifetime_days: expected a whole number",
    ),
    (
        "[certificates]\nmax_lifetime_days = true\n",
        "2: certificates.max_lifetime_days: expected a whole number",
    ),
    ("certificates.max_lifetime_days = 7.5\n", "1: certificates.max_lifetime_days: expected a whole number"),
    (
        "[certificates]\nsan_patterns = '*.x'\n",
        "2: certificates.san_patterns: expected a list of glob patterns",
    ),
    (
        "[certificates]\nsan_patterns = ['']\n",
        "2: certificates.san_patterns: expected a list of glob patterns",
    ),
    (
        '[certificates]\nrequired_ca = "arn:aws:acm:eu-west-1:1:certificate/x"\n',
        "2: certificates.required_ca: not",
    ),
    ('[certificates]\nrequired_ca = "no/such.pem"\n', "2: certificates.required_ca: no such PEM file"),
    ("certificates = 3\n", "1: certificates: expected a table"),
    ("[rule]\nport = 1\n", "1: rule: expected tables: [[rule]]"),
    (
        '[[rule]]\nport = 443\nmin_tls_version = "1.3"\n[[rule]]\nmin_tls_version = "1.3"\n',
        "4: rule: a rule needs",
    ),
    ("[[rule]]\nport = 443\n", "1: rule: missing min_tls_version"),
    (
        '[[rule]]\nport = 70000\nmin_tls_version = "1.3"\n',
        "2: rule.port: expected a whole number from 1 to 65535",
    ),
    ('[[rule]]\nservice = ""\nmin_tls_version = "1.3"\n', "2: rule.service: expected a service name"),
    (
        "[[exception]]\njustification = 'x'\nexpires = 2026-01-01\n",
        "1: exception: an exception needs at least",
    ),
    (
        "[[exception]]\nport = 1\njustification = 'x'\nexpires = 2026-01-01\n\n"
        "[[exception]]\nport = 2\nexpires = 2026-01-01\n",
        "6: exception.justification: every exception needs a justification",
    ),
    (
        "[[exception]]\nport = 1\njustification = '''\nexpires = 3\n'''\nexpires = '2026-01-01'\n",
        "6: exception.expires: every exception needs an expiry date",  # the line in the string is skipped
    ),
    (
        "[[exception]]\nport = 1\njustification = 'x'\nexpires = 2026-01-01T00:00:00Z\n",
        "4: exception.expires",
    ),
    (
        "[[exception]]\npeer = '10.0.0.1/8'\njustification = 'x'\nexpires = 2026-01-01\n",
        "2: exception.peer: not",
    ),
    ("[[exception]]\npeer = 10\njustification = 'x'\nexpires = 2026-01-01\n", "2: exception.peer: expected"),
    (
        "[[exception]]\nport = 1\nowner = 'me'\njustification = 'x'\nexpires = 2026-01-01\n",
        "3: exception.owner",
    ),
    (
        "exception = [{port = 1, justification = 'x', expires = 2026-01-01, note = 'y'}]\n",
        "1: exception.note",
    ),
]


@pytest.mark.parametrize(("text", "error"), BAD)
def test_mistakes_name_the_file_line_and_key(text: str, error: str) -> None:
    with pytest.raises(InputError) as caught:
        parse(text)
    assert str(caught.value).startswith(f"p.toml:{error}")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the policy"):
        load_policy(tmp_path / "missing.toml")
    (tmp_path / "latin1.toml").write_bytes(b"# caf\xe9\n")
    with pytest.raises(InputError, match=r"latin1\.toml: the policy is not UTF-8 text"):
        load_policy(tmp_path / "latin1.toml")
    (tmp_path / "broken.toml").write_text('min_tls_version = "1.3"\n[rule\n')
    with pytest.raises(InputError, match=r"broken.toml: not valid TOML: .*line 2"):
        load_policy(tmp_path / "broken.toml")


# ---------------------------------------------------------------------------------------------------------
# Fuzzing: text built from the policy's own vocabulary reaches the validation of every key.

FRAGMENTS = [
    "[certificates]",
    "[[rule]]",
    "[[exception]]",
    "[rule]",
    'min_tls_version = "1.3"',
    "min_tls_version = 1.2",
    "port = 443",
    "port = 0",
    'port = "443"',
    'service = "api"',
    "service = []",
    'peer = "10.0.0.0/8"',
    'peer = "::1/200"',
    'justification = "why"',
    'justification = """',
    "expires = 2026-01-01",
    "expires = 2026-01-01T10:00:00",
    "max_lifetime_days = 7",
    "san_patterns = ['*']",
    "required_ca = 'arn:aws:acm-pca'",
    "certificates.max_lifetime_days = -1",
    "x = {}",
    "# comment",
    "",
]


@FUZZ
@given(st.one_of(st.text(max_size=200), st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("\n".join)))
def test_any_text_gives_a_policy_or_an_input_error(text: str) -> None:
    try:
        policy = parse(text)
    except InputError as exc:
        assert re.match(r"p\.toml:(\d+: .*?: | not valid TOML: )", str(exc)), exc
    else:
        assert isinstance(policy, Policy)


# ---------------------------------------------------------------------------------------------------------
# Random policies, written as files and loaded, applied to random judged records.

AT = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
SERVICES = ["api", "cache", "db"]  # the judge below knows the servers of cache and api; db is nobody's
CIDRS = ["10.0.0.0/8", "10.0.42.0/24", "10.0.42.5/32", "2001:db8::/64", "0.0.0.0/0", "192.0.2.0/24"]
ENDPOINTS = ["10.0.42.5:6379", "10.0.7.9:51000", "10.0.0.2:443", "192.0.2.1:5432", "[2001:db8::5]:8443"]
CATEGORIES = [
    model.TLS13,
    model.TLS12,
    model.TLS10_11,
    model.SSLV3,
    model.SSLV2,
    model.TLS_NO_HANDSHAKE,
    model.TLS_INCOMPLETE,
    model.OTHER_ENCRYPTED_SSH,
    model.UNKNOWN_DATA,
    model.NO_PAYLOAD,
    "plaintext(http)",
    "plaintext(resp)",
]


def toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string without control characters is a TOML string


justifications = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=30).filter(
    str.strip
)
ports = st.sampled_from([443, 5432, 6379, 8443, 51000]) | st.integers(1, 65535)  # mostly those of ENDPOINTS
versions = st.sampled_from(['"1.2"', '"1.3"'])
selectors = st.fixed_dictionaries(
    {},
    optional={
        "port": ports.map(str),
        "service": st.sampled_from(SERVICES).map(toml_string),
        "peer": st.sampled_from(CIDRS).map(toml_string),
    },
)
rules = st.lists(
    st.tuples(selectors.filter(lambda s: "port" in s or "service" in s), versions).map(
        lambda pair: {k: v for k, v in pair[0].items() if k != "peer"} | {"min_tls_version": pair[1]}
    ),
    max_size=3,
)
exceptions = st.lists(
    st.tuples(selectors.filter(bool), justifications, st.dates(date(2025, 1, 1), date(2027, 12, 31))).map(
        lambda t: t[0] | {"justification": toml_string(t[1]), "expires": t[2].isoformat()}
    ),
    max_size=3,
)
certificates = st.fixed_dictionaries(
    {},
    optional={
        "max_lifetime_days": st.integers(1, 400).map(str),
        "san_patterns": st.lists(st.sampled_from(["*.internal.example", "api.*", "10.0.*", "?"])).map(
            lambda patterns: "[" + ", ".join(map(toml_string, patterns)) + "]"
        ),
    },
)


@st.composite
def policy_files(draw: st.DrawFn) -> str:
    lines = []
    if draw(st.booleans()):
        lines.append(f"min_tls_version = {draw(versions)}")
    for header, tables in (("[[rule]]", draw(rules)), ("[[exception]]", draw(exceptions))):
        for table in tables:
            lines += [header, *(f"{key} = {value}" for key, value in table.items())]
    cert_rules = draw(certificates)
    if cert_rules:
        lines += ["[certificates]", *(f"{key} = {value}" for key, value in cert_rules.items())]
    return "\n".join(lines) + "\n"


def leaf(lifetime_days: int, san: str) -> bytes:
    return issue(
        "leaf", ec_key("policy-fuzz"), None, ca=False, lifetime=timedelta(days=lifetime_days), san=(san,)
    ).der


LEAVES = [leaf(7, "api.internal.example"), leaf(398, "10.0.42.5"), b"\x30\x00"]  # the last: no certificate
CERTIFICATES = {hashlib.sha256(der).hexdigest(): der for der in LEAVES}


@st.composite
def judged_records(draw: st.DrawFn) -> Any:
    category = draw(st.sampled_from(CATEGORIES))
    cipher = draw(st.sampled_from([None, 0x1301, 0xC02F, 0xC013, 0x0004, 0x000A]))
    verdict, reason = judge(category, cipher, "the evidence")
    if draw(st.booleans()) and category in (model.TLS13, model.TLS12):
        verdict, reason = (
            Verdict.FAIL,
            reason + "; certificate: not issued by the given CA",
        )  # the chain check
    return make_record(
        category=category,
        cipher_suite=cipher,
        tls_version=category if category in (model.TLS13, model.TLS12) else None,
        client=draw(st.sampled_from(ENDPOINTS)),
        server=draw(st.sampled_from(ENDPOINTS)),
        server_certificates=draw(st.sampled_from([(), *((digest,) for digest in CERTIFICATES)])),
        verdict=verdict,
        reason=reason,
    )


@FUZZ
@given(policy_files(), st.lists(judged_records(), min_size=1, max_size=8), st.floats(AT - 3e7, AT + 3e7))
def test_loaded_policies_never_crash_nor_pass_cleartext(text: str, records: list[Any], at: float) -> None:
    policy = parse(text)
    judge_ = PolicyJudge(policy, CERTIFICATES, at, services={"10.0.42.5": "cache", "2001:db8::5": "api"})
    for record in records:
        after = judge_.apply(record)
        assert after.verdict is not Verdict.PASS or record.verdict is Verdict.PASS
        if record.category.startswith("plaintext("):
            assert after.verdict in (Verdict.FAIL, Verdict.WARN)  # never PASS, and WARN only by an exception
            assert after.verdict is Verdict.FAIL or "; exception: " in after.reason
        if severity(after.verdict) < severity(record.verdict):
            assert after.verdict is Verdict.WARN and "; exception: " in after.reason
    uses = judge_.exceptions()
    assert [use.exception for use in uses] == list(policy.exceptions)
    assert sum(use.flows for use in uses) <= len(records) * len(policy.exceptions)
