"""Shared test plumbing: figures that tests want printed at the end of the run, and the embedded AWS shop
fixture (tests/shop.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shop import shop  # noqa: F401 (a fixture, for every test module)

# Lines tests add (agreement with the corpus truth, ...); printed in the terminal summary.
FIGURES: list[str] = []

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
