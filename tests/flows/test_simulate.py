"""Tests for the synthetic WSO2 traffic generator."""

from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import msgspec
import pytest

from flows.simulate import Truth, format_request_timestamp, generate_wso2, main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_logs" / "wso2_apim_metrics.log"
SAMPLE_TRUTH = ROOT / "sample_logs" / "wso2_apim_metrics.truth.json"
SAMPLE_ARGS = (
    "sample_logs/wso2_apim_metrics.log --start 2026-11-02T09:00:00Z --minutes 90 --seed 7 --scale 0.4 "
    "--truth sample_logs/wso2_apim_metrics.truth.json"
)
START = datetime(2026, 11, 2, 9, tzinfo=timezone.utc)

LINE_RE = re.compile(
    r"^(?P<time>\d{2}:\d{2}:\d{2},\d{3}) \[(?P<mdc>[^\]]*)\] \[(?P<thread>[^\]]*)\]\s+(?P<level>\w+) "
    r"(?P<logger>\S+) apimMetrics: (?P<metric>apim:\w+), properties ?: ?(?P<json>\{.*\})\s*$"
)
# CONTRACTS.md §1.3 and §1.4
RESPONSE_FIELDS = set(
    "requestTimestamp correlationId keyType apiId apiType apiName apiVersion apiCreator apiMethod "
    "apiContext apiResourceTemplate apiCreatorTenantDomain destination applicationId applicationName "
    "applicationOwner regionId gatewayType userName proxyResponseCode targetResponseCode responseCacheHit "
    "responseLatency backendLatency requestMediationLatency responseMediationLatency userIp userAgent "
    "platform properties".split()
)
FAULT_FIELDS = set(
    "requestTimestamp correlationId keyType errorType errorCode errorMessage apiId apiType apiName "
    "apiVersion apiCreator apiCreatorTenantDomain applicationId applicationName applicationOwner regionId "
    "gatewayType proxyResponseCode targetResponseCode properties".split()
)
# request-time disorder allowed between gateway threads (latencies are capped at 3 s)
JITTER_SECS = 5.0


def _events(path: Path) -> list[tuple[re.Match[str], dict]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = LINE_RE.match(line)
        assert m, line
        out.append((m, json.loads(m["json"])))
    return out


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Truth]:
    path = tmp_path_factory.mktemp("wso2") / "run.log"
    return path, generate_wso2(path, start=START, minutes=90, seed=7, scale=0.4)


def test_generate_wso2_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    truth = generate_wso2(a, start=START, minutes=50, seed=3)
    assert generate_wso2(b, start=START, minutes=50, seed=3) == truth
    assert a.read_bytes() == b.read_bytes()


def test_generate_wso2_different_seed_gives_different_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    generate_wso2(a, start=START, minutes=50, seed=3)
    generate_wso2(b, start=START, minutes=50, seed=4)
    assert a.read_bytes() != b.read_bytes()


def test_generate_wso2_lines_match_the_contract(sample_run: tuple[Path, Truth]) -> None:
    path, truth = sample_run
    events = _events(path)
    assert len(events) == truth.lines
    metrics = Counter(m["metric"] for m, _ in events)
    assert set(metrics) == {"apim:response", "apim:faulty"}
    for m, ev in events:
        assert m["mdc"] == "-"
        assert m["level"] == "INFO"
        assert m["logger"] == "ELKCounterMetric"
        assert "  INFO ELKCounterMetric apimMetrics: " in m.string
        assert ", properties :{" in m.string
        if m["metric"] == "apim:response":
            assert set(ev) == RESPONSE_FIELDS
            assert ev["apiContext"] == ev["properties"]["apiContext"]
            assert ev["targetResponseCode"] == ev["proxyResponseCode"]
            assert ev["responseLatency"] >= ev["backendLatency"]
        else:
            assert set(ev) == FAULT_FIELDS
            assert ev["targetResponseCode"] == -1
        assert isinstance(ev["proxyResponseCode"], int)
        assert {"apiContext", "responseSize", "responseContentType"} <= set(ev["properties"])


def test_generate_wso2_faults_look_like_the_gateway_writes_them(sample_run: tuple[Path, Truth]) -> None:
    faults = [ev for m, ev in _events(sample_run[0]) if m["metric"] == "apim:faulty"]
    kinds = Counter((ev["errorType"], ev["errorCode"], ev["proxyResponseCode"]) for ev in faults)
    assert set(kinds) == {("THROTTLED", 900803, 429), ("AUTH", 900901, 401)}
    for ev in faults:
        unknown = ev["errorType"] == "AUTH"
        app = (ev["applicationId"], ev["applicationName"], ev["applicationOwner"], ev["keyType"])
        assert (app == ("UNKNOWN",) * 4) == unknown
        assert ("userName" in ev["properties"]) != unknown


def test_generate_wso2_is_in_log_order_with_small_jitter(sample_run: tuple[Path, Truth]) -> None:
    path, truth = sample_run
    prev_logged, latest_request = "", 0.0
    for m, ev in _events(path):
        assert m["time"] >= prev_logged  # no midnight in this run
        prev_logged = m["time"]
        t = _epoch(ev["requestTimestamp"])
        assert truth.start <= t < truth.end
        assert t >= latest_request - JITTER_SECS
        latest_request = max(latest_request, t)
        logged = datetime.fromtimestamp(t, timezone.utc).strftime("%H:%M:%S,%f")[:-3]
        assert logged <= m["time"]


def test_format_request_timestamp_drops_zero_fields_like_java() -> None:
    base = int(datetime(2022, 12, 15, 2, 53, tzinfo=timezone.utc).timestamp() * 1000)
    assert format_request_timestamp(base + 34_894) == "2022-12-15T02:53:34.894Z"
    assert format_request_timestamp(base + 34_090) == "2022-12-15T02:53:34.090Z"
    assert format_request_timestamp(base + 34_000) == "2022-12-15T02:53:34Z"
    assert format_request_timestamp(base) == "2022-12-15T02:53Z"


def test_generate_wso2_attack_window_holds_the_401_burst(sample_run: tuple[Path, Truth]) -> None:
    path, truth = sample_run
    attack = truth.attack
    assert attack is not None
    assert attack.kind == "credential_stuffing"
    assert (attack.application_name, attack.application_owner) == ("PartnerPortal", "partner1")
    app = [ev for m, ev in _events(path) if ev["applicationId"] == attack.application_id and "userIp" in ev]
    during = [ev for ev in app if attack.start <= _epoch(ev["requestTimestamp"]) < attack.end]
    before = [ev for ev in app if _epoch(ev["requestTimestamp"]) < attack.start]
    minutes = (attack.end - attack.start) / 60
    assert 8 <= minutes <= 10
    assert attack.start - truth.start >= 30 * 60

    stuffing = [ev for ev in during if ev["apiResourceTemplate"] == "/login" and ev["apiMethod"] == "POST"]
    failed = [ev for ev in stuffing if ev["proxyResponseCode"] == 401 and ev["targetResponseCode"] == 401]
    assert len(stuffing) / minutes >= 150
    assert len(failed) / len(stuffing) > 0.9
    assert len({ev["userIp"] for ev in failed}) > 100
    assert len({ev["userIp"].rsplit(".", 1)[0] for ev in failed}) >= 30
    assert Counter(ev["userAgent"] for ev in failed) == {"Python Requests": len(failed)}

    assert len({ev["userIp"] for ev in before}) <= 2
    assert 2 <= len(before) / ((attack.start - truth.start) / 60) <= 6
    assert sum(ev["proxyResponseCode"] >= 400 for ev in before) / len(before) < 0.1


def test_generate_wso2_without_attack_keeps_every_other_line(tmp_path: Path) -> None:
    with_attack, without = tmp_path / "a.log", tmp_path / "n.log"
    truth = generate_wso2(with_attack, start=START, minutes=60, seed=5)
    assert generate_wso2(without, start=START, minutes=60, seed=5, attack=False).attack is None
    marker = '"userAgent":"Python Requests","userName":"partner1@carbon.super"'
    kept = [line for line in with_attack.read_text().splitlines(keepends=True) if marker not in line]
    assert "".join(kept) == without.read_text()
    assert truth.attack is not None
    assert truth.lines - len(kept) > 150 * 8


def test_generate_wso2_stops_at_max_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    truth = generate_wso2(path, start=START, minutes=60, seed=1, max_lines=500)
    assert truth.lines == 500
    assert len(path.read_bytes().splitlines()) == 500


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": datetime(2026, 11, 2, 9), "minutes": 60}, "start must be timezone-aware"),  # noqa: DTZ001
        ({"start": START, "minutes": 44}, "an attack needs at least 45 minutes of traffic, got 44"),
    ],
)
def test_generate_wso2_rejects_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        generate_wso2(tmp_path / "a.log", seed=1, **kwargs)


def test_sample_log_is_the_documented_generation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "sample_logs" / "README.md").read_text(encoding="utf-8")
    assert f"python -m flows.simulate {SAMPLE_ARGS}\n" in readme
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sample_logs").mkdir()
    main(shlex.split(SAMPLE_ARGS))
    assert (tmp_path / "sample_logs" / SAMPLE.name).read_bytes() == SAMPLE.read_bytes()
    assert (tmp_path / "sample_logs" / SAMPLE_TRUTH.name).read_bytes() == SAMPLE_TRUTH.read_bytes()
    truth = msgspec.json.decode(SAMPLE_TRUTH.read_bytes(), type=Truth)
    assert 3000 <= truth.lines <= 6000
