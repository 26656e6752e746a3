"""The gatewatch dashboard: a multipage Streamlit app over the store.

``app.py`` lays out the navigation and sidebar, ``views/`` holds one script
per page, ``ui.py`` what the pages share (live refresh, formatting, charts)
and ``queries.py`` every query they run.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

APP_PATH = pathlib.Path(__file__).resolve().with_name("app.py")


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
_WILDCARD_ADDRESSES = ("", "0.0.0.0", "::")  # noqa: S104 - names, not a bind


def allowed_hosts(address: str, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The Host names the dashboard's live connection accepts: loopback, ``address`` unless a wildcard, ``extra``.

    >>> allowed_hosts("0.0.0.0", ["gatewatch.example.com"])
    ['localhost', '127.0.0.1', '::1', 'gatewatch.example.com']
    >>> allowed_hosts("10.0.0.5")
    ['localhost', '127.0.0.1', '::1', '10.0.0.5']
    """
    named = [*LOOPBACK_HOSTS, *([] if address in _WILDCARD_ADDRESSES else [address]), *extra]
    return list(dict.fromkeys(h.lower().rstrip(".") for h in named))


def streamlit_flags(address: str, port: int, hosts: list[str]) -> list[str]:
    """The ``streamlit run`` options ``serve`` passes, the security ones explicitly.

    Given on the command line they win over any ``.streamlit/config.toml`` and
    ``STREAMLIT_*`` variable. Streamlit's live connection (the websocket at
    ``/_stcore/stream``) refuses a Host header not in ``server.allowedHosts`` (DNS
    rebinding) and, with ``server.enableCORS``, an Origin that is neither the Host
    itself nor on Streamlit's own list (localhost, 127.0.0.1, this machine's addresses,
    ``server.corsAllowedOrigins``): a page elsewhere cannot drive the dashboard.
    """
    flags = [
        "--server.address", address,
        "--server.port", str(port),
        "--server.headless", "true",
        "--server.enableCORS", "true",
        "--server.enableXsrfProtection", "true",
        "--server.enableAgentApi", "false",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
    ]  # fmt: skip
    for host in hosts:
        flags += ["--server.allowedHosts", host]
    return flags


def serve(
    store: pathlib.Path,
    *,
    address: str = "127.0.0.1",
    port: int = 8501,
    refresh_s: int | None = None,
    operators_env: str = "",
    operators_file: str = "",
    hosts: list[str] | tuple[str, ...] = (),
) -> int:
    """Run the dashboard on ``store`` in a Streamlit server until it stops.

    Args:
        store: Root folder of the store to show.
        address: Address the server listens on.
        port: Port the server listens on.
        refresh_s: Page refresh interval (``$GATEWATCH_REFRESH_S`` wins if set).
        operators_env: Environment variable holding the operators' tokens (its name, not a token).
        operators_file: File holding them, instead (its path).
        hosts: Host names browsers may use beyond loopback and ``address`` (``[dashboard] allowed_hosts``).

    Returns:
        The server's exit code; 0 after Ctrl-C.
    """
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP_PATH),
        *streamlit_flags(address, port, allowed_hosts(address, hosts)),
        "--", "--store", str(store),
        "--operators-env", operators_env, "--operators-file", operators_file,
    ]  # fmt: skip
    print(f"Dashboard: http://{address}:{port}", flush=True)
    env = None
    if refresh_s is not None and "GATEWATCH_REFRESH_S" not in os.environ:  # the environment wins over the config
        env = {**os.environ, "GATEWATCH_REFRESH_S": str(refresh_s)}
    with subprocess.Popen(cmd, env=env) as proc:
        stopping = []

        def stop_server(signum, _frame) -> None:  # a service manager stops us: the server goes too
            stopping.append(signum)
            proc.terminate()

        previous = signal.signal(signal.SIGTERM, stop_server)
        try:
            code = proc.wait()
            return 0 if stopping else code
        except KeyboardInterrupt:
            # a terminal's Ctrl-C reaches the server too and it stops by itself;
            # an interrupt aimed at this process alone needs it stopped for us
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait()
            return 0
        finally:
            signal.signal(signal.SIGTERM, previous)
