"""Controller-level test helpers: run ``python -m agent.run`` in a subprocess on a tiny config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FAKE_SLOT = REPO / "tests" / "loop" / "fake_slot.py"
TINY = REPO / "configs" / "flyvis_tiny.yaml"
INSTRUCTIONS = "instruction_flyvis_62_1_gs_alternate.md"


def agent_command(run_dir: Path, *extra: str, iterations: int = 8, fake_slot: bool = True) -> list[str]:
    """The ``python -m agent.run`` command line on the tiny config with the offline policy."""
    cmd = [
        sys.executable,
        "-m",
        "agent.run",
        "--instructions",
        INSTRUCTIONS,
        "--config",
        str(TINY),
        "--run-dir",
        str(run_dir),
        "--llm",
        "offline",
        "--iterations",
        str(iterations),
        *extra,
    ]
    if fake_slot and "--resume" not in extra:
        cmd += ["--slot-command", f"{sys.executable} {FAKE_SLOT}"]
    return cmd


def run_agent(
    run_dir: Path,
    *extra: str,
    iterations: int = 8,
    env: dict[str, str] | None = None,
    fake_slot: bool = True,
    timeout: float = 900,  # bounds a hang only (a loaded 2-core machine runs the tiny run in under a minute)
) -> subprocess.CompletedProcess[str]:
    """One controller invocation; the offline policy and (by default) the fast fake slot."""
    cmd = agent_command(run_dir, *extra, iterations=iterations, fake_slot=fake_slot)
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("ANTHROPIC_API_KEY", None)
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


def journal_events(run_dir: Path) -> list[dict]:
    lines = (run_dir / "journal.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]
