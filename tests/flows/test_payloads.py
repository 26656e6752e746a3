"""Attack payloads in paths and query strings (``flows/payloads.py``), from ``payload_cases.json``."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest

from gatewatch.flows import payloads
from gatewatch.flows.payloads import payload_kind

CASES = json.loads((Path(__file__).parent / "payload_cases.json").read_text())["cases"]


@pytest.mark.parametrize(("path", "query", "kind"), CASES, ids=[f"{p}?{q}" for p, q, _ in CASES])
def test_payload_kind(path, query, kind):
    assert payload_kind(path, query) == kind


def test_docstring_examples():
    assert doctest.testmod(payloads).failed == 0
