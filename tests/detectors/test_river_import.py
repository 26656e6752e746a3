"""Half-space trees load without the rest of River, and River stays whole."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import sys
from detectors.anomaly import half_space_trees
cls = half_space_trees()
light = "scipy.stats" not in sys.modules and "river.tree.hoeffding_tree" not in sys.modules
from river.anomaly import GaussianScorer, HalfSpaceTrees
import river.tree
print(light, cls is HalfSpaceTrees, callable(GaussianScorer), hasattr(river.tree, "HoeffdingTreeClassifier"))
"""


def test_half_space_trees_load_alone_then_river_imports_in_full():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "True", "True"]
