"""Fixtures: a store in ``tmp_path`` holding the rows of ``store_rows``."""

from __future__ import annotations

import pytest
from store_rows import DECISIONS, FINDINGS, REJECTED, TRAFFIC

from sinks.store import StoreWriter


@pytest.fixture
def store_root(tmp_path):
    """A store holding TRAFFIC, FINDINGS, DECISIONS and REJECTED."""
    root = tmp_path / "store"
    writer = StoreWriter(root).open()
    writer.append("traffic", TRAFFIC[:5])
    writer.append("traffic", TRAFFIC[5:])
    writer.append("findings", FINDINGS)
    writer.append("decisions", DECISIONS)
    writer.append("rejected", REJECTED)
    return root
