"""docs/report.schema.json as a validator, for every test that reads a JSON report the tool wrote."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from tests.conftest import REPO

SCHEMA = json.loads((REPO / "docs" / "report.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())


def valid_report(text: str) -> dict[str, Any]:
    """The JSON report ``text``, after checking it against the published schema."""
    document: dict[str, Any] = json.loads(text)
    errors = sorted(VALIDATOR.iter_errors(document), key=lambda error: list(error.absolute_path))
    assert not errors, [f"{list(error.absolute_path)}: {error.message}" for error in errors[:5]]
    return document
