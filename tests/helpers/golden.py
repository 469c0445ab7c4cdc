"""Golden-file comparison: rendered text must equal tests/golden/<name> byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"


def assert_golden(name: str, text: str) -> None:
    """Compare with tests/golden/<name> exactly; UPDATE_GOLDEN=1 rewrites the file instead."""
    path = GOLDEN_DIR / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path}: golden file missing; run with UPDATE_GOLDEN=1 to create it"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{path}: output differs from the golden file (UPDATE_GOLDEN=1 to accept)"
