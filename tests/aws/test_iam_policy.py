"""infra/iam/verifier-operator-policy.json grants exactly the IAM actions verifier's AWS calls declare.

Every AWS call goes through ``verifier.aws.calls.call`` with a literal ``iam_action=``; the actions are read
from the source of verifier/aws (no import, no AWS) and compared with the policy's statements: an action used
but not granted fails a real run with AccessDenied, one granted but not used is privilege nobody needs.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
AWS_PACKAGE = REPO / "verifier" / "aws"
POLICY = REPO / "infra" / "iam" / "verifier-operator-policy.json"
# service:Action, as IAM spells them ("acm-pca:DescribeCertificateAuthority", "ec2:DescribeInstances")
IAM_ACTION = re.compile(r"[a-z0-9-]+:[A-Z][A-Za-z0-9]*")


def declared_actions(source: str, filename: str) -> tuple[set[str], list[str]]:
    """The ``iam_action`` literals of the source's ``call(...)``s, and what is wrong with the others."""
    actions: set[str] = set()
    problems: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        if not (
            (isinstance(function, ast.Name) and function.id in ("call", "paginate"))
            or (isinstance(function, ast.Attribute) and function.attr in ("call", "paginate"))
        ):
            continue
        where = f"{filename}:{node.lineno}"
        given = next((keyword.value for keyword in node.keywords if keyword.arg == "iam_action"), None)
        if not (isinstance(given, ast.Constant) and isinstance(given.value, str)):
            problems.append(f"{where}: call(...) without a literal iam_action=")
        elif not IAM_ACTION.fullmatch(given.value):
            problems.append(f"{where}: '{given.value}' is not an IAM action (service:Action)")
        else:
            actions.add(given.value)
    # Permissions AWS checks besides the called action (tag-on-create authorizes ec2:CreateTags) are
    # declared as module constants named *_IAM_ACTION beside the calls that need them.
    for node in ast.parse(source, filename).body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id.endswith("_IAM_ACTION") for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            actions.add(node.value.value)
    return actions, problems


def policy_problems(used: set[str], policy: dict[str, Any]) -> list[str]:
    """Everything that keeps the policy from granting exactly ``used``, Allow statements only, each with a
    Sid that says its purpose."""
    problems: list[str] = []
    if policy.get("Version") != "2012-10-17":
        problems.append("the policy's Version must be 2012-10-17")
    granted: set[str] = set()
    sids: list[str] = []
    for statement in policy.get("Statement", []):
        sid = statement.get("Sid", "")
        sids.append(sid)
        if not sid:
            problems.append("a statement has no Sid to say what it is for")
        if statement.get("Effect") != "Allow":
            problems.append(f"{sid}: Effect must be Allow")
        for negation in ("NotAction", "NotResource"):
            if negation in statement:
                problems.append(f"{sid}: {negation} grants everything it does not name")
        if "Resource" not in statement:
            problems.append(f"{sid}: no Resource")
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        problems.extend(
            f"{sid}: the wildcard {action} grants more than is used" for action in actions if "*" in action
        )
        granted.update(actions)
    if len(set(sids)) != len(sids):
        problems.append("two statements share a Sid")
    problems.extend(
        f"{action} is called in verifier/aws but not granted" for action in sorted(used - granted)
    )
    problems.extend(f"{action} is granted but no call uses it" for action in sorted(granted - used))
    return problems


def used_actions() -> tuple[set[str], list[str]]:
    actions: set[str] = set()
    problems: list[str] = []
    for path in sorted(AWS_PACKAGE.glob("*.py")):
        if path.name == "calls.py":
            continue  # defines call and paginate; paginate forwards its caller's literal
        found, wrong = declared_actions(path.read_text(), str(path.relative_to(REPO)))
        actions |= found
        problems += wrong
    return actions, problems


def test_every_aws_call_declares_a_literal_action() -> None:
    actions, problems = used_actions()
    assert problems == []
    # The trust anchors from a Private CA: if the scan found none of these, it found nothing.
    assert {"acm-pca:DescribeCertificateAuthority", "acm-pca:GetCertificateAuthorityCertificate"} <= actions


def test_the_policy_grants_exactly_what_the_calls_need() -> None:
    actions, _ = used_actions()
    assert policy_problems(actions, json.loads(POLICY.read_text())) == []


def test_the_scan_catches_calls_it_cannot_read() -> None:
    source = """
def load(client, action):
    call(client, "DescribeCertificateAuthority", iam_action="acm-pca:DescribeCertificateAuthority")
    calls.call(client, "ListTags", iam_action="acm-pca:ListTags")
    call(client, "GetPolicy", iam_action=action)
    call(client, "GetPolicy", "acm-pca:GetPolicy")
    call(client, "GetPolicy", iam_action="GetPolicy")
"""
    actions, problems = declared_actions(source, "example.py")
    assert actions == {"acm-pca:DescribeCertificateAuthority", "acm-pca:ListTags"}
    assert problems == [
        "example.py:5: call(...) without a literal iam_action=",
        "example.py:6: call(...) without a literal iam_action=",
        "example.py:7: 'GetPolicy' is not an IAM action (service:Action)",
    ]


def test_the_comparison_catches_missing_and_unused_grants() -> None:
    used = {"acm-pca:DescribeCertificateAuthority", "acm-pca:GetCertificateAuthorityCertificate"}
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadCa",
                "Effect": "Allow",
                "Action": ["acm-pca:DescribeCertificateAuthority", "acm-pca:IssueCertificate"],
                "Resource": "*",
            },
            {"Sid": "Everything", "Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        ],
    }
    assert policy_problems(used, policy) == [
        "Everything: the wildcard s3:* grants more than is used",
        "acm-pca:GetCertificateAuthorityCertificate is called in verifier/aws but not granted",
        "acm-pca:IssueCertificate is granted but no call uses it",
        "s3:* is granted but no call uses it",
    ]
    exact = {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "ReadCa", "Effect": "Allow", "Action": sorted(used), "Resource": "*"}],
    }
    assert policy_problems(used, exact) == []
