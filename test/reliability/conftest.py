"""The reliability tests import their harness modules (`rig`, `node_harness`, `fuzz`, ...: test tooling kept out
of the product package) by module name, whatever pytest's import mode."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
