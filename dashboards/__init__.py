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


def serve(
    store: pathlib.Path, *, address: str = "127.0.0.1", port: int = 8501, refresh_s: int | None = None
) -> int:
    """Run the dashboard on ``store`` in a Streamlit server until it stops.

    Args:
        store: Root folder of the store to show.
        address: Address the server listens on.
        port: Port the server listens on.
        refresh_s: Page refresh interval (``$GATEWATCH_REFRESH_S`` wins if set).

    Returns:
        The server's exit code; 0 after Ctrl-C.
    """
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP_PATH),
        "--server.address", address,
        "--server.port", str(port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
        "--", "--store", str(store),
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
