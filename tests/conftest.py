"""Shared test plumbing: figures that tests want printed at the end of the run."""

from __future__ import annotations

from pathlib import Path

import pytest

# Lines tests add (agreement with the corpus truth, ...); printed in the terminal summary.
FIGURES: list[str] = []

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
