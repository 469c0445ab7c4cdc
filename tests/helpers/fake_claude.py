"""A fake ``claude`` executable for the CLI backend's tests: answers like ``claude -p --output-format stream-json``.

``FAKE_CLAUDE_MODE`` picks the answer (ok, sleep, garbage, crash, leak, error, empty, swap, auth, nologin); every
run writes what it was given (argv, stdin, cwd, CLAUDE*/DISABLE*/HOME environment) to ``FAKE_CLAUDE_LOG`` and, when
``FAKE_CLAUDE_CALLS`` is set, appends one line to that file (a call counter).
"""

from __future__ import annotations

import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest

FAKE = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys, time
    mode = os.environ.get("FAKE_CLAUDE_MODE", "ok")
    stdin = sys.stdin.read()
    with open(os.environ["FAKE_CLAUDE_LOG"], "w") as fh:
        env = {{k: v for k, v in os.environ.items() if k.startswith(("CLAUDE", "DISABLE", "HOME"))}}
        json.dump({{"argv": sys.argv[1:], "stdin": stdin, "cwd": os.getcwd(), "env": env}}, fh)
    if os.environ.get("FAKE_CLAUDE_CALLS"):
        with open(os.environ["FAKE_CLAUDE_CALLS"], "a") as fh:
            fh.write(mode + "\\n")
    if mode == "sleep":
        time.sleep(30)
    if mode == "garbage":
        print("Welcome to Claude Code!")
        sys.exit(0)
    if mode == "crash":
        print("Error: not logged in; run claude login", file=sys.stderr)
        sys.exit(1)
    if mode == "leak":
        print("Traceback (most recent call last):", file=sys.stderr)
        print("Error: invalid x-api-key " + os.environ.get("ANTHROPIC_API_KEY", ""), file=sys.stderr)
        sys.exit(1)
    result = {{
        "type": "result", "subtype": "success", "is_error": False, "duration_ms": 1234, "num_turns": 1,
        "result": "## Iter 1: converged", "session_id": "sess-42", "total_cost_usd": 0.0123,
        "usage": {{"input_tokens": 500, "output_tokens": 80, "cache_read_input_tokens": 10,
                   "cache_creation_input_tokens": 5}},
    }}
    if mode == "error":
        result.update(subtype="error_during_execution", is_error=True, result="API Error: overloaded")
    if mode == "empty":
        result.update(result="")
    if mode == "swap":
        result.update(modelUsage={{"claude-other-1": {{"outputTokens": 80}}, "claude-tiny-0": {{"outputTokens": 3}}}})
    if mode == "auth":
        result.update(is_error=True, api_error_status=401, api_error_type="authentication_error",
                      result="Invalid API key", modelUsage={{}})
    if mode == "nologin":
        result.update(is_error=True, result="Not logged in · Please run /login", modelUsage={{}})
    print(json.dumps({{"type": "system", "subtype": "init"}}))
    print(json.dumps(result))
    """
)


def install_fake_claude(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a fake ``claude`` first on PATH (mode ok); return the path of the log it writes (argv, stdin, cwd)."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "claude"
    script.write_text(FAKE.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    log = folder / "fake_claude_log.json"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CLAUDE_LOG", str(log))
    monkeypatch.setenv("FAKE_CLAUDE_MODE", "ok")
    return log
