"""Tests for the synthetic traffic generators: the WSO2 sample and the labelled scenarios."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import statistics
from collections import Counter
from datetime import datetime, timezone
from itertools import combinations, pairwise
from pathlib import Path

import msgspec
import pytest

from gatewatch.flows.events import Chunk, Event
from gatewatch.flows.lab.simulate import (
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
from gatewatch.flows.parsers import ChunkParser
from gatewatch.flows.payloads import payload_kind

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
# the apim:response and apim:faulty fields of API-M 4.x's ELK analytics events
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
    assert f"python -m gatewatch.flows.lab.simulate {SAMPLE_ARGS}\n" in readme
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


# -- the standard scenario stays as it was; the wide (held-out) scenario --------------------------------

# sha256 of simulate(fmt, out, minutes=60, seed=3) before the wide scenario existed: the standard
# scenario is what the detectors were tuned on, and it must not move when the wide one does
STANDARD_SHA256 = {
    "combined.log": "e97287a54dedb0d8085329056e1d033c2f15edf9373e404fbf755f008ade32f8",
    "combined.truth.json": "3c530042d49370f02ecb61f81373b0dc2654ddacfb4b12fe249353cf23cdeaef",
    "kong.log": "b8e27ebc0895fceaf780eebc98576696ffd6acc1611e7892e99541c4cdd262cc",
    "kong.truth.json": "9d1a8f1595ada81f44d342a4c488a510c16f4c4f9778ad2088f8b411ec5b2cc3",
    "wso2.log": "5fd1d0e250edf689520f3ec385db3ce7e285c4330abffdc6235ac91bd21eefd2",
    "wso2.truth.json": "15c133982471cc243f23be4679bd675ecaa3a91dc1e3debf6f2fc4ed5bb03eff",
}
WIDE_ARGS = {"minutes": 120, "seed": 21, "scale": 0.2, "scenario": "wide"}
LISTED = {  # the behaviours the wide scenario always holds, per format that can log them
    "slow_brute_force": ("brute_force", 600, SIM_FORMATS),
    "distributed_stuffing": ("credential_stuffing", 600, SIM_FORMATS),
    "new_key_scraper": ("scraping", None, SIM_FORMATS),
    "cache_busting": ("flooding", 60, ("kong", "combined")),
    "sqli_burst": ("probing", 60, ("kong", "combined")),
    "xss_burst": ("probing", 60, ("kong", "combined")),
    "tls_handshakes": ("probing", 60, ("combined",)),
    "path_traversal": ("probing", 60, ("kong", "combined")),
}
WIDE_LOOKALIKES = ["partner_new_ips", "nat_office", "search_crawler", "mobile_retries", "form_fillers"]
SITE_ONLY = {"search_crawler", "form_fillers", "form_spam"}  # the public site, which WSO2 does not log


@pytest.mark.parametrize("fmt", SIM_FORMATS)
def test_standard_scenario_is_byte_identical_to_before_the_wide_one(scenarios, fmt: str) -> None:
    log, truth, _ = scenarios[fmt]
    for name in (log.name, f"{fmt}.truth.json"):
        assert hashlib.sha256((log.parent / name).read_bytes()).hexdigest() == STANDARD_SHA256[name], name
    text = (log.parent / f"{fmt}.truth.json").read_text()
    assert '"scenario"' not in text and '"horizon_s"' not in text and '"params"' not in text


def test_standard_is_the_default_scenario(tmp_path: Path) -> None:
    simulate("wso2", tmp_path / "a", minutes=60, seed=2)
    simulate("wso2", tmp_path / "b", minutes=60, seed=2, scenario="standard")
    for name in ("wso2.log", "wso2.truth.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, GroundTruth, list[Event]]]:
    out = tmp_path_factory.mktemp("wide")
    runs = {}
    for fmt in SIM_FORMATS:
        truth = simulate(fmt, out, **WIDE_ARGS)
        log = out / truth.log
        events, rejects = ChunkParser(fmt).parse(Chunk(str(log), 1, 0, log.read_bytes().splitlines()))
        assert rejects == [], rejects[:3]
        runs[fmt] = (log, truth, events)
    return runs


def test_wide_same_arguments_give_the_same_bytes(wide, tmp_path: Path) -> None:
    log, truth, _ = wide["kong"]
    assert simulate("kong", tmp_path / "a", **WIDE_ARGS) == truth
    assert (tmp_path / "a" / "kong.log").read_bytes() == log.read_bytes()
    assert (tmp_path / "a" / "kong.truth.json").read_bytes() == (log.parent / "kong.truth.json").read_bytes()
    other = simulate("kong", tmp_path / "b", **{**WIDE_ARGS, "seed": 22})
    assert (tmp_path / "b" / "kong.log").read_bytes() != log.read_bytes()
    assert [a.params for a in other.attacks] != [a.params for a in truth.attacks]


@pytest.mark.parametrize("fmt", SIM_FORMATS)
def test_wide_truth_holds_every_listed_behaviour_with_its_horizon(wide, fmt: str) -> None:
    _, truth, _ = wide[fmt]
    assert truth.scenario == "wide" and truth.format == fmt and truth.window_s == 60
    by_behaviour = {a.params["behaviour"]: a for a in truth.attacks if a.params["behaviour"] != "drawn"}
    assert set(by_behaviour) == {b for b, (_, _, formats) in LISTED.items() if fmt in formats}
    for behaviour, attack in by_behaviour.items():
        kind, horizon, _ = LISTED[behaviour]
        assert attack.kind == kind, behaviour
        if horizon is not None:
            assert attack.horizon_s == horizon, behaviour
    slow = by_behaviour["slow_brute_force"]
    assert slow.params["per_ip_per_min"] == 3.0 and 59 <= (slow.end - slow.start) / 60 <= 61
    stuffing = by_behaviour["distributed_stuffing"].params
    assert (stuffing["n_ips"], stuffing["tries_per_ip"], stuffing["duration_min"]) == (150, 2, 40)
    scraper = by_behaviour["new_key_scraper"].params
    assert (scraper["n_ips"], scraper["total_per_min"], scraper["subject"]) == (24, 70.0, "new")
    expected = [k for k in WIDE_LOOKALIKES if fmt != "wso2" or k not in SITE_ONLY]
    assert [la.kind for la in truth.lookalikes][-len(expected) :] == expected


@pytest.mark.parametrize("fmt", SIM_FORMATS)
def test_wide_attacks_draw_their_parameters_from_wide_ranges(wide, fmt: str) -> None:
    _, truth, _ = wide[fmt]
    drawn = [a for a in truth.attacks if a.params["behaviour"] == "drawn"]
    kinds = ATTACK_KINDS if fmt == "wso2" else ATTACK_KINDS | {"form_spam"}
    assert {a.kind for a in drawn} == kinds
    assert {a.kind for a in truth.attacks} == kinds
    for a in truth.attacks:
        assert truth.start <= a.start < a.end <= truth.end
        assert a.horizon_s in (60, 600, 3600) and a.subjects and a.description
        p = a.params
        assert 1 <= p["n_ips"] <= 500 and 0 < p["duration_min"] <= WIDE_ARGS["minutes"]
        assert p["paths"] == ("templated" if fmt == "wso2" else "concrete")
        assert p["requests"] > 0 and isinstance(p["visible"], bool)
    assert {a.params["subject"] for a in truth.attacks} == {"new", "established"}
    # the subjects an attack is judged on are its own: no two attacks share one while both run
    for a, b in combinations(truth.attacks, 2):
        if a.start < b.end + 60 and b.start < a.end + 60 and {a.kind, b.kind} & {"key_compromise", "anomaly"}:
            shared = {r for r in a.subjects if r.type == "consumer"} & set(b.subjects)
            assert not shared, (a.description, b.description)


def _of(events: list[Event], attack: Incident) -> list[Event]:
    """The events of the attack's IPs while it runs (combined logs whole seconds: one before its start)."""
    ips = {r.id for r in attack.subjects + attack.participants if r.type == "ip"}
    return [e for e in events if attack.start - 1 <= e.ts < attack.end + 5 and e.client_ip in ips]


def test_wide_listed_behaviours_are_in_the_log(wide) -> None:
    _, truth, events = wide["combined"]
    attack = {a.params["behaviour"]: a for a in truth.attacks if a.params["behaviour"] != "drawn"}

    slow = sorted(_of(events, attack["slow_brute_force"]), key=lambda e: e.ts)
    assert 170 <= len(slow) <= 190 and all(e.auth_failure for e in slow)
    gaps = [b.ts - a.ts for a, b in pairwise(slow)]
    assert 18 <= min(gaps) and max(gaps) <= 22

    stuffing = _of(events, attack["distributed_stuffing"])
    assert Counter(Counter(e.client_ip for e in stuffing).values()) == {2: 150}
    assert all(e.auth_failure for e in stuffing) and max(e.ts for e in stuffing) - min(e.ts for e in stuffing) < 40 * 60

    scraper = attack["new_key_scraper"]
    key = next(r.id for r in scraper.subjects if r.type == "consumer")
    reads = _of(events, scraper)
    assert {e.consumer for e in reads} == {key} and len({e.client_ip for e in reads}) == 24
    assert min(e.ts for e in events if e.consumer == key) >= scraper.start - 1  # a brand-new key
    assert 55 < len(reads) / ((scraper.end - scraper.start) / 60) < 85
    assert {e.endpoint for e in reads} == {"/inventory/items/{id}"}

    busting = _of(events, attack["cache_busting"])
    assert len(busting) == 355 and len({e.client_ip for e in busting}) == 8
    assert {e.resource for e in busting} == {"/"} and len({e.query for e in busting}) == 355
    assert max(e.ts for e in busting) - min(e.ts for e in busting) < 60

    for behaviour, n, kind in (("sqli_burst", 16, "sqli"), ("xss_burst", 26, "xss")):
        burst = _of(events, attack[behaviour])
        assert len(burst) == n and max(e.ts for e in burst) - min(e.ts for e in burst) <= 1  # whole seconds
        assert {payload_kind(e.resource, e.query) for e in burst} == {kind}
    assert any(e.query == "id=1%27%20OR%20%271%27%3D%271" for e in _of(events, attack["sqli_burst"]))
    assert any(e.query == "q=%3Cscript%3Ealert(1)%3C%2Fscript%3E" for e in _of(events, attack["xss_burst"]))

    tls = _of(events, attack["tls_handshakes"])
    assert len(tls) == 12 and all(e.bad_request and e.status == 400 for e in tls)
    assert max(e.ts for e in tls) - min(e.ts for e in tls) <= 1
    log = wide["combined"][0].read_text()
    assert '"\\x16\\x03\\x01\\x00\\xa5\\x01\\x00\\x00\\xa1\\x03\\x03" 400 ' in log

    traversal = _of(events, attack["path_traversal"])
    assert len({e.resource for e in traversal}) == 9 and {e.status for e in traversal} == {404}
    assert {payload_kind(e.resource, e.query) for e in traversal} == {"traversal"}
    assert "/..%2f..%2fetc/passwd" in {e.resource for e in traversal}


def test_wide_lookalikes_are_there(wide) -> None:
    _, truth, events = wide["combined"]
    looks = {la.kind: la for la in truth.lookalikes}
    minutes = (truth.end - truth.start) / 60

    office_ip = next(r.id for r in looks["nat_office"].subjects if r.type == "ip")
    office = [e for e in events if e.client_ip == office_ip]
    logins = [e for e in office if e.method == "POST" and e.resource.endswith("/login")]
    assert len(office) / minutes > 15 and {e.consumer for e in office} == {"hq-office"}
    assert 0.02 < sum(e.auth_failure for e in logins) / len(logins) < 0.12

    move = looks["partner_new_ips"]
    partner = [e for e in events if e.consumer == "partner-b2b"]
    before = {e.client_ip for e in partner if e.ts < move.start}
    after = {e.client_ip for e in partner if e.ts >= move.start}
    assert not before & after and len({ip.rpartition(".")[0] for ip in after}) == 1
    rate_before = sum(e.ts < move.start for e in partner) / ((move.start - truth.start) / 60)
    rate_after = sum(e.ts >= move.start for e in partner) / ((truth.end - move.start) / 60)
    assert 0.5 < rate_after / rate_before < 2

    bots = {r.id for r in looks["search_crawler"].subjects}
    crawl = [e for e in events if e.client_ip in bots]
    assert {e.status for e in crawl} == {200} and all("Googlebot" in e.user_agent for e in crawl)
    assert {e.resource for e in crawl if e.resource == "/robots.txt"} and len({e.resource for e in crawl}) > 500
    first = {ip: min((e for e in crawl if e.client_ip == ip), key=lambda e: e.ts) for ip in bots}
    assert {e.resource for e in first.values()} == {"/robots.txt"}

    mobile = [e for e in events if e.consumer == "field-app"]
    per_ip = Counter(e.client_ip for e in mobile)
    assert len(per_ip) > 400 and statistics.median(per_ip.values()) <= 3
    retried = [e for e in mobile if e.status >= 500]
    assert retried and any(
        e2.client_ip == e.client_ip and e2.ts > e.ts and e2.endpoint == e.endpoint for e in retried for e2 in mobile
    )


def test_the_wide_scenario_needs_two_hours(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape("the wide scenario needs at least 120 minutes, got 90")):
        simulate("kong", tmp_path, minutes=90, scenario="wide")
    with pytest.raises(ValueError, match=re.escape("unknown scenario 'narrow'; choose one of standard, wide")):
        simulate("kong", tmp_path, scenario="narrow")
    assert not list(tmp_path.iterdir())
