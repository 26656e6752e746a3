"""Tests for the synthetic traffic generators: the WSO2 sample and the labelled scenarios."""

from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path

import msgspec
import pytest

from flows.events import Chunk, Event
from flows.parsers import ChunkParser
from flows.simulate import (
    SIM_FORMATS,
    GroundTruth,
    Incident,
    SubjectRef,
    Truth,
    format_request_timestamp,
    generate_wso2,
    main,
    simulate,
)

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


# -- labelled scenarios (gatewatch simulate) -----------------------------------------------------------

ATTACK_KINDS = {
    "credential_stuffing", "brute_force", "probing", "scraping", "flooding", "key_compromise", "anomaly"
}  # fmt: skip


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, GroundTruth, list[Event]]]:
    out = tmp_path_factory.mktemp("scenario")
    runs = {}
    for fmt in SIM_FORMATS:
        truth = simulate(fmt, out, minutes=60, seed=3)
        log = out / truth.log
        events, rejects = ChunkParser("auto").parse(Chunk(str(log), 1, 0, log.read_bytes().splitlines()))
        assert rejects == [], rejects[:3]
        runs[fmt] = (log, truth, events)
    return runs


def test_simulate_same_arguments_give_the_same_bytes(tmp_path: Path) -> None:
    a = simulate("combined", tmp_path / "a", minutes=60, seed=4)
    b = simulate("combined", tmp_path / "b", minutes=60, seed=4)
    assert a == b
    assert (tmp_path / "a" / "combined.log").read_bytes() == (tmp_path / "b" / "combined.log").read_bytes()
    truths = [(tmp_path / d / "combined.truth.json").read_bytes() for d in "ab"]
    assert truths[0] == truths[1]
    simulate("combined", tmp_path / "c", minutes=60, seed=5)
    assert (tmp_path / "c" / "combined.log").read_bytes() != (tmp_path / "a" / "combined.log").read_bytes()


@pytest.mark.parametrize("fmt", SIM_FORMATS)
def test_simulated_log_is_detected_and_parsed_without_a_reject(scenarios, fmt: str) -> None:
    log, truth, events = scenarios[fmt]
    assert len(events) == truth.lines == len(log.read_bytes().splitlines())
    parser = ChunkParser("auto")
    parser.parse(Chunk(str(log), 1, 0, log.read_bytes().splitlines()[:1]))
    assert parser._by_source[str(log)].name == fmt
    assert truth.start <= min(e.ts for e in events) and max(e.ts for e in events) < truth.end + 5


@pytest.mark.parametrize("fmt", SIM_FORMATS)
def test_ground_truth_labels_every_attack_kind_and_the_look_alikes(scenarios, fmt: str) -> None:
    _, truth, _ = scenarios[fmt]
    assert {a.kind for a in truth.attacks} == ATTACK_KINDS
    kinds = [la.kind for la in truth.lookalikes]
    assert kinds == ["flash_crowd", "steady_giant", "new_consumer", "login_heavy"]
    for inc in truth.attacks + truth.lookalikes:
        assert truth.start <= inc.start < inc.end <= truth.end
        assert inc.subjects and inc.description
    assert truth.window_s == 60 and truth.format == fmt and truth.seed == 3


def _during(events: list[Event], inc: Incident) -> list[Event]:
    return [e for e in events if inc.start <= e.ts < inc.end + 5]


def _subject_events(events: list[Event], ref: SubjectRef) -> list[Event]:
    if ref.type == "ip":
        return [e for e in events if e.client_ip == ref.id]
    return [e for e in events if e.consumer == ref.id]


@pytest.mark.parametrize("fmt", SIM_FORMATS)
def test_each_attack_carries_the_traffic_its_truth_describes(scenarios, fmt: str) -> None:
    _, truth, events = scenarios[fmt]
    attack = {a.kind: a for a in truth.attacks}
    minutes = {k: (a.end - a.start) / 60 for k, a in attack.items()}

    stuffing = attack["credential_stuffing"]
    ips = {r.id for r in stuffing.participants if r.type == "ip"}
    tries = [e for e in _during(events, stuffing) if e.client_ip in ips]
    assert len(ips) > 100 and len(tries) / minutes["credential_stuffing"] > 150
    assert sum(e.auth_failure for e in tries) / len(tries) > 0.9
    assert {e.resource.rsplit("/", 1)[-1] for e in tries} == {"login"}

    brute = _subject_events(_during(events, attack["brute_force"]), attack["brute_force"].subjects[0])
    assert len(brute) / minutes["brute_force"] > 25 and sum(e.auth_failure for e in brute) / len(brute) > 0.9

    scan = _subject_events(_during(events, attack["probing"]), attack["probing"].subjects[0])
    assert sum(e.status in (403, 404) for e in scan) / len(scan) > 0.8
    if fmt != "wso2":  # WSO2 logs no request that matches no API
        assert {"/.env", "/.git/HEAD"} <= {e.resource for e in scan}
        assert all("Nikto" in e.user_agent for e in scan)

    scraping = attack["scraping"]
    scraper = sorted(_subject_events(_during(events, scraping), scraping.subjects[0]), key=lambda e: e.ts)
    gaps = [b.ts - a.ts for a, b in pairwise(scraper)]
    assert 0.9 < sum(gaps) / len(gaps) < 1.1 and {e.method for e in scraper} == {"GET"}
    if fmt != "wso2":
        ids = [int(e.resource.rsplit("/", 1)[-1]) for e in scraper if e.resource[-1].isdigit()]
        assert ids == list(range(ids[0], ids[0] + len(ids))) and len(ids) > 0.9 * len(scraper)

    flood = _subject_events(_during(events, attack["flooding"]), attack["flooding"].subjects[0])
    assert len(flood) / minutes["flooding"] > 200 and sum(e.throttled for e in flood) / len(flood) > 0.6

    stolen = attack["key_compromise"]
    before = {e.client_ip for e in _subject_events(events, stolen.subjects[0]) if e.ts < stolen.start}
    during = {e.client_ip for e in _subject_events(_during(events, stolen), stolen.subjects[0])}
    assert len(during - before) >= 30

    export = _subject_events(_during(events, attack["anomaly"]), attack["anomaly"].subjects[0])
    assert max(e.bytes_out for e in export) > 2_000_000


@pytest.mark.parametrize("fmt", SIM_FORMATS)
def test_look_alikes_are_there(scenarios, fmt: str) -> None:
    _, truth, events = scenarios[fmt]
    crowd, giant, newcomer, logins = truth.lookalikes
    per_min_before = sum(crowd.start - 600 <= e.ts < crowd.start and _is(e, crowd) for e in events) / 10
    per_min_during = sum(_is(e, crowd) for e in _during(events, crowd)) / ((crowd.end - crowd.start) / 60)
    assert 2.3 < per_min_during / per_min_before < 3.7
    assert len(_subject_events(events, giant.subjects[0])) / ((truth.end - truth.start) / 60) > 300
    assert min(e.ts for e in _subject_events(events, newcomer.subjects[0])) >= newcomer.start
    mobile = _subject_events(events, logins.subjects[0])
    login_tries = [e for e in mobile if e.method == "POST" and e.resource.endswith("login")]
    assert len({e.client_ip for e in mobile}) > 1000
    assert 0.02 < sum(e.auth_failure for e in login_tries) / len(login_tries) < 0.08


def _is(e: Event, inc: Incident) -> bool:
    return any(e.consumer == r.id for r in inc.subjects)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmt": "syslog"}, "unknown format 'syslog'; choose one of wso2, kong, combined"),
        ({"fmt": "kong", "minutes": 59}, "a scenario needs at least 60 minutes, got 59"),
        ({"fmt": "kong", "start": datetime(2026, 11, 2, 9)}, "start must be timezone-aware"),  # noqa: DTZ001
        ({"fmt": "combined", "scale": -0.5}, "scale must be positive, got -0.5"),
        ({"fmt": "combined", "scale": 0.0}, "scale must be positive, got 0.0"),
    ],
)
def test_simulate_rejects_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    fmt = kwargs.pop("fmt")
    with pytest.raises(ValueError, match=re.escape(message)):
        simulate(fmt, tmp_path, **kwargs)
    assert not list(tmp_path.iterdir())
