"""Who may open the dashboard's live connection: Streamlit's websocket at ``/_stcore/stream``.

A browser sends every click over it, so a page from elsewhere that could open it
could drive the dashboard as whoever visits that page. ``gatewatch dashboard``
passes Streamlit its security settings explicitly (``dashboards.streamlit_flags``):
the server refuses a foreign ``Origin`` (``server.enableCORS``) and a ``Host`` it was
not told about (``server.allowedHosts``: DNS rebinding, where a hostile name resolves
to 127.0.0.1 and the page is "same origin" with itself). These tests open the websocket
of a real ``gatewatch dashboard`` on 127.0.0.1 with such headers.
"""

from __future__ import annotations

import os
import signal
import socket

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from gatewatch import dashboards


def _opens(port: int, origin: str | None, host: str | None = None) -> bool:
    """Whether the dashboard's websocket accepts a handshake with this Origin (and Host); a refusal is HTTP 403."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    uri = f"ws://{host or f'127.0.0.1:{port}'}/_stcore/stream"  # the Host header is the URI's authority
    try:
        with connect(uri, sock=sock, origin=origin, subprotocols=["streamlit"], open_timeout=20):
            return True
    except InvalidStatus as exc:
        assert exc.response.status_code == 403, exc
        return False
    finally:
        sock.close()


@pytest.fixture
def dashboard_port(store_root, serve_dashboard):
    dashboard, port = serve_dashboard(store_root, 'allowed_hosts = ["gatewatch.example.com"]\n')
    yield port
    os.killpg(dashboard.pid, signal.SIGINT)
    dashboard.communicate(timeout=30)


def test_the_websocket_opens_for_the_dashboard_s_own_origin_only(dashboard_port):
    port = dashboard_port
    assert _opens(port, f"http://127.0.0.1:{port}")  # the page the dashboard served
    assert _opens(port, f"http://localhost:{port}", f"localhost:{port}")
    assert _opens(port, f"http://[::1]:{port}", f"[::1]:{port}")
    assert _opens(port, None)  # no Origin: not a browser, which a page cannot make itself

    # a page from anywhere else, in a browser that can reach the dashboard
    assert not _opens(port, "http://evil.example")
    assert not _opens(port, f"https://evil.example:{port}")
    assert not _opens(port, "null")  # a sandboxed iframe or a file: page


def test_the_websocket_refuses_a_host_it_was_not_told_about(dashboard_port):
    """DNS rebinding: evil.example resolves to 127.0.0.1, so its page and the websocket share an origin."""
    port = dashboard_port
    assert not _opens(port, f"http://evil.example:{port}", f"evil.example:{port}")
    assert not _opens(port, f"http://127.0.0.1.evil.example:{port}", f"127.0.0.1.evil.example:{port}")
    # a name from [dashboard] allowed_hosts (a proxy that keeps the Host header) is accepted
    assert _opens(port, "https://gatewatch.example.com", "gatewatch.example.com")


def test_serve_passes_the_security_settings_explicitly():
    """On the command line they win over a .streamlit/config.toml or STREAMLIT_* variable where it runs."""
    flags = dashboards.streamlit_flags("0.0.0.0", 8501, dashboards.allowed_hosts("0.0.0.0", ["gw.example.com"]))
    settings = dict(zip(flags[::2], flags[1::2], strict=True))
    assert settings["--server.enableCORS"] == "true"
    assert settings["--server.enableXsrfProtection"] == "true"
    assert settings["--server.enableAgentApi"] == "false"
    hosts = [value for flag, value in zip(flags[::2], flags[1::2], strict=True) if flag == "--server.allowedHosts"]
    assert hosts == ["localhost", "127.0.0.1", "::1", "gw.example.com"]  # never 0.0.0.0, never "*"
