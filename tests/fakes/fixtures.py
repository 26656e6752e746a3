"""Fixtures and helpers for tests that deliver to the fake gateways.

The fixtures are registered for every test by ``tests/conftest.py``; import the helpers you use.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from gatewatch.sinks.control import ControlDB
from gatewatch.sinks.outbox import Sender
from gatewatch.sinks.store import StoreWriter, query
from tests.fakes.kong import FakeKong
from tests.fakes.wso2 import FakeWso2

logging.getLogger("werkzeug").setLevel(logging.ERROR)  # dropped connections are the point of some tests

WSO2_PASSWORD = "admin-password"
APP = {"application_id": "d2f6b1c4-8e3a-4b7d-9c21-6a5e0f4b8d33", "name": "MobileApp", "owner": "partner1"}
KONG_CONSUMER = "c0ffee00-1234-4abc-8def-0123456789ab"


def _serve(fake):
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
    assert fake.rejected == [], "requests the real OpenAPI spec does not allow:\n" + "\n".join(fake.rejected)


@pytest.fixture
def fake_wso2():
    fake = FakeWso2(users={"admin": WSO2_PASSWORD})
    fake.add_application(APP["application_id"], APP["name"], APP["owner"], ["api-accounts", "api-orders"])
    fake.add_application("other-app", "Other", "someone", ["api-accounts"])
    yield from _serve(fake)


@pytest.fixture
def fake_kong():
    fake = FakeKong()
    fake.add_consumer(KONG_CONSUMER, "partner1")
    fake.add_consumer("0b0b0b0b-0000-4000-8000-000000000001", "other")
    yield from _serve(fake)


def desired(subject_type: str = "consumer", subject: str = APP["application_id"], *, block: bool = False,
            limit_per_min: int | None = None, name: str = APP["name"], owner: str = APP["owner"]) -> dict:  # fmt: skip
    return {
        "subject_type": subject_type, "subject": subject, "subject_name": name, "subject_owner": owner,
        "block": block, "limit_per_min": limit_per_min, "decision_id": "d-test",
    }  # fmt: skip


def sender(store: Path, channels: dict, **kw) -> Sender:
    opts = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "breaker_failures": 100, **kw}
    return Sender(ControlDB(store).open(), StoreWriter(store, writer="c0").open(), channels, **opts)


def drain(s: Sender, timeout_s: float = 60) -> None:
    """Step the sender until nothing is pending."""
    deadline = time.monotonic() + timeout_s
    while s.control.outbox("pending"):
        assert time.monotonic() < deadline, f"still pending: {s.control.outbox('pending')}"
        s.step()
        time.sleep(0.01)


def outcomes(store: Path) -> dict[str, int]:
    """Delivery attempts by outcome, from the store's ``deliveries`` table."""
    rows = query(store, "SELECT outcome, COUNT(*) AS n FROM deliveries GROUP BY outcome").to_pylist()
    return {r["outcome"]: r["n"] for r in rows}
