"""Makes the scripts of this folder import the ``elasticnet`` of *this* checkout.

A campaign often runs from a second git worktree (its code fixed while work goes on in the first) with the
first one's environment, whose installed ``elasticnet`` is the first checkout's. Every script imports this
module before ``elasticnet`` (import sorting puts these local modules first), so this checkout wins.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if sys.path[:1] != [str(ROOT)]:
    sys.path.insert(0, str(ROOT))
