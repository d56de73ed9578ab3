"""House rules on who may import what: the core is pure, boto3 stays in the AWS adapter, typer in the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "verifier"
# What the pure core must never import: I/O, clocks, the network, AWS, the command line.
IMPURE = {
    "socket",
    "time",
    "os",
    "subprocess",
    "threading",
    "boto3",
    "botocore",
    "typer",
    "click",
    "rich",
    "pathlib",
}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def modules(under: Path) -> list[Path]:
    return sorted(under.rglob("*.py"))


def test_only_the_aws_adapter_imports_boto3() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for path in modules(PACKAGE)
        if {"boto3", "botocore"} & imported_modules(path) and PACKAGE / "aws" not in path.parents
    ]
    assert not offenders


def test_only_the_cli_imports_typer() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for path in modules(PACKAGE)
        if {"typer", "click"} & imported_modules(path) and path != PACKAGE / "cli.py"
    ]
    assert not offenders


def test_the_core_does_no_io() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(IMPURE & imported_modules(path))
        for path in modules(PACKAGE / "core")
    }
    assert {name: found for name, found in offenders.items() if found} == {}
