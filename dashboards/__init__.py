"""The gatewatch dashboard: a Streamlit app over the store.

The page lives in ``app.py`` and every SQL query it runs in ``queries.py``.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

APP_PATH = pathlib.Path(__file__).resolve().with_name("app.py")


def serve(store: pathlib.Path, *, address: str = "127.0.0.1", port: int = 8501) -> int:
    """Run the dashboard on ``store`` in a Streamlit server until it stops.

    Args:
        store: Root folder of the store to show.
        address: Address the server listens on.
        port: Port the server listens on.

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
    with subprocess.Popen(cmd) as proc:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            # a terminal's Ctrl-C reaches the server too and it stops by itself;
            # an interrupt aimed at this process alone needs it stopped for us
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait()
            return 0
