"""/v1/score's shortcuts give the careful path's answers.

Client IPs are checked and cut to their /24 without ``ipaddress`` (it parses IPv6 only), and
answers are worked out once a snapshot: each subject's reasons, each flagged subnet's, each
endpoint's, and whole answers, shared between client IPs the snapshot knows nothing of.
``decision_api_score_answers.json`` holds the answers the score path gave before any
shortcut: whatever order the questions come in, the answers must stay those.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import pytest

from gatewatch.detectors.base import subnet
from gatewatch.flows.config import Config
from gatewatch.flows.control.decision_api import DecisionApi, canonical_ip, parse_score_request
from tests.flows.test_decision_api import decision, finding

CASES = json.loads(Path(__file__).with_name("decision_api_score_answers.json").read_text())
KEY = "k" * 16


def score_api(tmp_path: Path) -> DecisionApi:
    """A decision API whose snapshot is ``CASES["state"]``."""
    spec = CASES["state"]
    mark = spec["watermark"]
    policy = {"elevate_score": 0.6, "restrict_score": 0.8, "block_score": 0.97}
    api = DecisionApi(Config.model_validate({"store": {"path": str(tmp_path)}, "policy": policy}), {KEY: "c"})
    decisions = [
        decision(
            d["id"],
            d["subject"],
            subject_type=d["subject_type"],
            tier=d["tier"],
            status=d["status"],
            mode="dry-run" if d["status"] == "recorded" else "enforce",
            limit_per_min=d["limit_per_min"],
            score=d["score"],
            reason=d["reason"],
        )
        for d in spec["decisions"]
    ]
    findings = [
        finding(f["subject_type"], f["subject"], f["kind"], f["score"], mark - f["age_s"], f["reasons"])
        for f in spec["findings"]
    ]
    api.state.update(decisions, findings, mark, now=mark)
    return api


def ask(api: DecisionApi, request: dict) -> tuple[int, object]:
    status, body = api.respond("POST", "/v1/score", "", KEY, json.dumps(request).encode())
    return status, json.loads(body)


@pytest.mark.parametrize("order", ["as listed", "reversed"])
def test_answers_are_the_careful_paths_whatever_was_asked_before(tmp_path, order):
    api = score_api(tmp_path)
    cases = CASES["cases"] if order == "as listed" else CASES["cases"][::-1]
    for case in cases:
        want = (case["status"], case["answer"])
        assert ask(api, case["request"]) == want, case["request"]
        assert ask(api, case["request"]) == want, case["request"]  # now from the cache


def test_client_ips_the_snapshot_does_not_know_share_an_answer(tmp_path):
    api = score_api(tmp_path)
    context = {"consumer": "app-new", "api": "AccountsAPI:1.0.0", "method": "POST", "resource": "/login"}
    answers = {
        json.dumps(
            ask(api, {"current_request": {"ip": f"100.64.{n // 256}.{n % 256}"}, "api_context": context})
        )
        for n in range(1000)
    }
    assert len(answers) == 1 and len(api.state.snapshot.scored) == 1


@pytest.mark.parametrize("text", CASES["ips"])
def test_client_ips_are_checked_and_cut_to_their_subnet_as_ipaddress_does(text):
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        addr = None
    assert canonical_ip(text) == (None if addr is None else str(addr))
    body = json.dumps({"current_request": {"ip": text}, "api_context": {"consumer": "app"}}).encode()
    if addr is None:
        if text:
            with pytest.raises(
                ValueError, match=re.escape(f"current_request.ip: not an IP address: {text[:64]!r}")
            ):
                parse_score_request(body)
        return
    assert parse_score_request(body).current_request.ip == str(addr)  # as findings name it
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.version == 4:  # the /24 without its ".0/24"
        assert subnet(text) == str(addr).rpartition(".")[0]
    else:
        assert subnet(text) == str(ipaddress.ip_interface(f"{addr}/64").network)
