"""Make the shared synthetic-result factory of tests/agent importable as ``treemem_factory``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_FACTORY = Path(__file__).resolve().parents[1] / "agent" / "treemem_factory.py"

if "treemem_factory" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("treemem_factory", _FACTORY)
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["treemem_factory"] = _module
    _spec.loader.exec_module(_module)
