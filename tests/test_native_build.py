"""The compiled build (setup.py, VERIFIER_COMPILE=1, mypyc) behaves as the pure one.

mypyc compiles the engine's modules as they are, but compiled code is not always Python: a value typed
``int | Literal[False]`` came back as 0 instead of False, and a dropped generator is never finalized, say. So
both builds analyse the same inputs (the project's captures with their CA, the whole corpus with every key
log, and a generated 100k-packet benchmark capture) and every report format they write must be byte for byte
the same; and the engine's unit tests, hypothesis fuzzing included, run again against the compiled modules.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS, REPO

NATIVE_VERIFIER = REPO / ".venv-native" / "bin" / "verifier"
PURE_VERIFIER = Path(sys.executable).parent / "verifier"
BENCH_GENERATOR = REPO.parent / "shared" / "bench" / "make_bench_pcap.py"
FORMATS = "json,html,sarif,junit,markdown"


@pytest.fixture(scope="module")
def native_verifier() -> Path:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler: the compiled build cannot be made here")
    built = subprocess.run(
        [REPO / "scripts" / "build-native"], capture_output=True, text=True, timeout=900, check=False
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    version = subprocess.run([NATIVE_VERIFIER, "--version"], capture_output=True, text=True, check=True)
    assert "compiled with mypyc" in version.stdout
    return NATIVE_VERIFIER


def _reports(verifier: Path, arguments: list[str], where: Path) -> dict[str, bytes]:
    where.mkdir()
    done = subprocess.run(
        [verifier, "analyze", *arguments, "--format", FORMATS, "--output-dir", where],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr  # 1: the inputs have plaintext flows
    return {path.name: path.read_bytes() for path in sorted(where.iterdir())}


def _same_reports(native: Path, arguments: list[str], tmp_path: Path) -> int:
    pure = _reports(PURE_VERIFIER, arguments, tmp_path / "pure")
    compiled = _reports(native, arguments, tmp_path / "compiled")
    assert sorted(pure) == sorted(compiled) and len(pure) == len(FORMATS.split(","))
    for name, document in pure.items():
        assert compiled[name] == document, f"{name} differs between the pure and the compiled build"
    return pure["report.json"].count(b'"client": ')


def test_the_projects_captures(native_verifier: Path, tmp_path: Path) -> None:
    captures = sorted(str(path) for path in (REPO / "captures").glob("*.pcap"))
    arguments = [*captures, "--ca", str(REPO / "captures" / "pki" / "root-ca.pem")]
    assert _same_reports(native_verifier, arguments, tmp_path) >= 10


def test_the_corpus_with_every_key_log(native_verifier: Path, tmp_path: Path) -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    keylog = tmp_path / "all.keys"
    keylog.write_bytes(b"\n".join(path.read_bytes() for path in sorted((CORPUS / "keys").iterdir())))
    captures = sorted(str(path) for path in (CORPUS / "files").iterdir())
    assert _same_reports(native_verifier, [*captures, "--keylog", str(keylog)], tmp_path) > 50


def test_a_generated_benchmark_capture(native_verifier: Path, tmp_path: Path) -> None:
    if not BENCH_GENERATOR.is_file():
        pytest.skip(f"benchmark generator not found at {BENCH_GENERATOR}")
    capture = tmp_path / "bench.pcap"
    subprocess.run(
        [sys.executable, BENCH_GENERATOR, "--out", capture, "--packets", "100000", "--no-truth"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert _same_reports(native_verifier, [str(capture)], tmp_path) > 5000


# The unit tests of the compiled modules and of what drives them.
UNIT_TESTS = [
    "tests/core", "tests/sources", "tests/report", "tests/test_analysis.py", "tests/test_corpus.py",
    "tests/test_dataclasses.py",
]  # fmt: skip


def test_the_unit_tests_pass_against_the_compiled_modules(native_verifier: Path) -> None:
    site_packages = next((REPO / ".venv-native" / "lib").glob("python3.*/site-packages"))
    # The compiled package first on the path, and pytest's own insertion of the repository (where the
    # sources would shadow it) last: --import-mode=append. tests/conftest.py checks which build it got.
    environment = {**os.environ, "PYTHONPATH": str(site_packages), "VERIFIER_TESTS_EXPECT_COMPILED": "1"}
    pytest_command = Path(sys.executable).parent / "pytest"  # not `python -m`: that puts the sources first
    run = subprocess.run(
        [pytest_command, "--import-mode=append", "-q", "-p", "no:cacheprovider", *UNIT_TESTS],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
