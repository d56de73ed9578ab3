"""Shared test plumbing: figures that tests want printed at the end of the run, and the embedded AWS shop
fixture (tests/shop.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.shop import shop  # noqa: F401 (a fixture, for every test module)
from verifier.core import flows

# Lines tests add (agreement with the corpus truth, ...); printed in the terminal summary.
FIGURES: list[str] = []

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


def pytest_sessionstart(session: pytest.Session) -> None:
    # tests/test_native_build.py runs unit tests against the compiled build: make sure they get it.
    if os.environ.get("VERIFIER_TESTS_EXPECT_COMPILED") == "1" and flows.__file__.endswith(".py"):
        raise pytest.UsageError(
            f"the compiled build was expected, the sources were imported: {flows.__file__}"
        )
