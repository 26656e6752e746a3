"""Half-space trees load without the rest of River, and River stays whole."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import sys
from gatewatch.detectors.anomaly import half_space_trees
cls = half_space_trees()
light = "scipy.stats" not in sys.modules and "river.tree.hoeffding_tree" not in sys.modules
from river.anomaly import GaussianScorer, HalfSpaceTrees
import river.tree
print(light, cls is HalfSpaceTrees, callable(GaussianScorer), hasattr(river.tree, "HoeffdingTreeClassifier"))
"""


def test_half_space_trees_load_alone_then_river_imports_in_full():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "True", "True"]

_THREADS = """
import threading, time
from gatewatch.detectors.anomaly import half_space_trees
got = []
def load(delay):
    time.sleep(delay)  # the others arrive while the first is still loading (about 0.2 s)
    try:
        got.append(half_space_trees().__name__)
    except Exception as exc:
        got.append(repr(exc))
threads = [threading.Thread(target=load, args=(0.01 * i,)) for i in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print(" ".join(got))
"""


def test_worker_threads_loading_the_trees_at_once_all_get_the_class():
    # Bytewax worker threads score their first windows together; before the lock the
    # others saw the half-built stand-in package and failed with AttributeError
    out = subprocess.run([sys.executable, "-c", _THREADS], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["HalfSpaceTrees"] * 8
