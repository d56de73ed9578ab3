"""Optional compiled build: VERIFIER_COMPILE=1 compiles the analysis engine to C with mypyc.

The pure-Python package (the default, and what the test suite runs) and the compiled one are the same source:
mypyc compiles these modules as they are, using their type annotations. It makes `verifier analyze` about
three times faster on large captures. `scripts/build-native` builds it into .venv-native, and
tests/test_native_build.py checks that both builds write the same reports.
"""

import os

from setuptools import setup

# The per-packet and per-flow path: reading, decapsulation, reassembly, classification, verdicts, records.
COMPILED_MODULES = [
    "verifier/core/classify.py",
    "verifier/core/decode.py",
    "verifier/core/flows.py",
    "verifier/core/model.py",
    "verifier/core/plaintext.py",
    "verifier/core/policy.py",
    "verifier/core/reassembly.py",
    "verifier/core/summary.py",
    "verifier/core/tls.py",
    "verifier/report/json_report.py",
    "verifier/sources/capture_file.py",
]

if os.environ.get("VERIFIER_COMPILE") == "1":
    from mypyc.build import mypycify  # only this build needs mypy installed

    setup(ext_modules=mypycify(COMPILED_MODULES, opt_level="3"))
else:
    setup()
