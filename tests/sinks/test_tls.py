"""Deliveries over TLS: a private CA through ``ca_file``, the system's CAs by default, or no check.

A real HTTPS receiver on 127.0.0.1 with a certificate made here by ``openssl`` for
127.0.0.1 (as a self-signed WSO2 or an internal webhook has).
"""

from __future__ import annotations

import json
import ssl
import subprocess
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from gatewatch.sinks.alerts.generic import GenericWebhook
from gatewatch.sinks.control import ControlDB
from gatewatch.sinks.outbox import Sender
from gatewatch.sinks.store import StoreWriter
from tests.conftest import gatewatch
from tests.sinks.alerts_receiver import whsec

ALERT = json.loads((Path(__file__).with_name("alert_cases") / "open.alert.json").read_text())


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def https(certificate):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.expect_request("/hook", method="POST").respond_with_data("", status=204)
    server.start()
    yield server
    server.clear()
    server.stop()


def _deliver(tmp_path: Path, channel) -> tuple[str, str]:
    control = ControlDB(tmp_path).open()
    control.enqueue("alert-1", channel.kind, channel.name, ALERT["incident_id"], ALERT)
    Sender(control, StoreWriter(tmp_path, writer="c0").open(), {channel.name: channel}).step()
    (entry,) = control.outbox()
    return entry.state, entry.last_error


@pytest.mark.parametrize(
    ("tls", "state"),
    [({"ca_file": "CERT"}, "sent"), ({}, "pending"), ({"verify_tls": False}, "sent")],
    ids=["private CA", "system CAs refuse it", "no check"],
)
def test_a_receiver_with_a_private_certificate(tmp_path, https, certificate, tls, state):
    tls = {k: str(certificate[0]) if v == "CERT" else v for k, v in tls.items()}
    channel = GenericWebhook("hook", https.url_for("/hook"), [whsec("tls")], timeout_s=5, **tls)
    got, error = _deliver(tmp_path, channel)
    assert got == state
    assert (len(https.log) == 1) == (state == "sent")
    if state == "pending":
        assert "CERTIFICATE_VERIFY_FAILED" in error


def test_an_unreadable_ca_file_stops_validate_and_run_naming_the_key(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    cfg = tmp_path / "gatewatch.toml"
    cfg.write_text(f'[targets.kong]\nenabled = true\nca_file = "{bad}"\n')
    for command in (["validate"], ["replay", str(bad), "--store", str(tmp_path / "store")]):
        proc = gatewatch(*command, "--config", str(cfg), check=False)
        assert proc.returncode != 0 and "targets.kong.ca_file: cannot load" in proc.stderr, proc.stderr
