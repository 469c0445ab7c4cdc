"""Helpers of the fault tests: the controller CLI in-process on a tiny config, scripted LLM replies,
snapshots of a folder, and a small synthetic run to check replies against.

In-process runs (``agent.run.main``) let a test inject faults with monkeypatch (a failing disk, a
scripted or mocked LLM) while slots still run as real subprocesses (``fault_slot.py``).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from agent import run as agent_run
from agent.config_policy import Trainable, base_trainable
from agent.llm.base import LLMRequest
from agent.llm.offline_policy import offline_policy
from agent.reply_check import ReplyContext
from experiment.atomic import atomic_write_text
from experiment.config import load_experiment
from experiment.exploration import SlotResult
from experiment.records import R2Row
from experiment.yaml_io import roundtrip_dump, roundtrip_load
from helpers.results import slot_result

REPO = Path(__file__).resolve().parents[2]
FAULT_SLOT = REPO / "tests" / "faults" / "fault_slot.py"
TINY = REPO / "configs" / "flyvis_tiny.yaml"
NAME = TINY.stem  # the run name: slot configs are flyvis_tiny_SS.yaml
INSTRUCTIONS = "instruction_flyvis_62_1_gs_alternate.md"
COMPARED_FILES = ("analysis.md", "memory.md", "ucb_scores.txt", f"{NAME}_00.yaml", f"{NAME}_03.yaml")


def assert_matches_clean_run(run_dir: Path, clean_run: Path) -> None:
    """The run's documents equal the uninterrupted run's, and every derived file matches its journal."""
    from agent.rebuild import differing_files

    for name in COMPARED_FILES:
        assert (run_dir / name).read_text() == (clean_run / name).read_text(), name
    assert differing_files(run_dir) == []


# ---------------------------------------------------------------------------------------------- runs


def write_tiny_config(folder: Path, *, dispatch: dict | None = None, claude: dict | None = None) -> Path:
    """configs/flyvis_tiny.yaml with section overrides, saved under its own name (same run name)."""
    data = roundtrip_load(TINY.read_text(encoding="utf-8"), str(TINY))
    for section, values in (("dispatch", dispatch or {}), ("claude", claude or {})):
        for key, value in values.items():
            data[section][key] = value
    path = Path(folder) / TINY.name
    atomic_write_text(path, roundtrip_dump(data))
    return path


def agent_argv(run_dir: Path, config: Path, *extra: str, iterations: int = 4, llm: str = "offline") -> list[str]:
    """Arguments of one controller invocation; a fresh run gets the fault slot as its slot command."""
    argv = [
        "--instructions",
        INSTRUCTIONS,
        "--config",
        str(config),
        "--run-dir",
        str(run_dir),
        "--llm",
        llm,
        "--iterations",
        str(iterations),
        *extra,
    ]
    if "--resume" not in extra:
        argv += ["--slot-command", f"{sys.executable} {FAULT_SLOT}"]
    return argv


class Invocation(BaseModel):
    """How one in-process controller invocation ended: its exit code, or the exception that escaped."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    code: int | None
    out: str
    err: str
    error: BaseException | None = None

    def last_err_line(self) -> str:
        """The final stderr line: where the CLI puts its one-line error (progress lines come before it)."""
        lines = [line for line in self.err.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def invoke(argv: list[str]) -> Invocation:
    """``python -m agent.run ARGV`` in this process, stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code: int | None = agent_run.main(argv)
            error = None
        except Exception as exc:  # an escaped exception is itself a finding: the tests assert on it
            code, error = None, exc
    return Invocation(code=code, out=out.getvalue(), err=err.getvalue(), error=error)


Scripted = str | BaseException | Callable[[LLMRequest], str]


class ScriptedPolicy:
    """An offline-policy stand-in: call ids in ``script`` get their scripted text (or raise the scripted
    error, once); every other call gets the real offline policy's reply."""

    def __init__(self, script: dict[str, Scripted] | None = None) -> None:
        self.script = dict(script or {})
        self.calls: list[str] = []

    def __call__(self, request: LLMRequest) -> str:
        self.calls.append(request.call_id)
        item = self.script.get(request.call_id)
        if item is None:
            return offline_policy(request)
        if isinstance(item, BaseException):
            del self.script[request.call_id]
            raise item
        return item(request) if callable(item) else item


class LockHolder:
    """Another process holding the run's controller lock (as a running controller does) until closed."""

    def __init__(self, run_dir: Path) -> None:
        code = (
            "import sys; from pathlib import Path; from agent.journal import RunLock\n"
            "with RunLock(Path(sys.argv[1])):\n    print('held', flush=True); sys.stdin.read()\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(run_dir)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "held"

    def __enter__(self) -> LockHolder:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=120)


# ---------------------------------------------------------------------------------------------- folders


def snapshot(root: Path, *, skip: Path | None = None) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), leaving out the tree under ``skip``."""
    found = {}
    for path in sorted(Path(root).rglob("*")):
        if skip is not None and path.is_relative_to(skip):
            continue
        if path.is_file():
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def stray_temp_files(run_dir: Path) -> list[str]:
    """Temp files an interrupted atomic write would leave (``.NAME.XXXX.tmp``)."""
    return sorted(str(p.relative_to(run_dir)) for p in Path(run_dir).rglob(".*.tmp"))


def journal_lines_parse(run_dir: Path) -> bool:
    """True when every line of journal.jsonl is a complete JSON event ending in a newline."""
    raw = (Path(run_dir) / "journal.jsonl").read_bytes()
    if raw and not raw.endswith(b"\n"):
        return False
    return all(isinstance(json.loads(line), dict) for line in raw.splitlines() if line.strip())


# ---------------------------------------------------------------------------------------------- replies


def tiny_trainable() -> Trainable:
    return base_trainable(load_experiment(TINY))


def baseline_result(iteration: int, trainable: Trainable, conn: float = 0.62) -> SlotResult:
    """A completed block-1 baseline node with a small rising R2 trajectory."""
    slot = (iteration - 1) % 4
    rows = [R2Row(epoch=0, iteration=k * 100, connectivity_r2=conn * k / 4, phase="W") for k in range(1, 5)]
    return slot_result(
        iteration,
        trainable=trainable,
        block=1,
        conn=conn + 0.01 * slot,
        tau=0.9,
        vrest=0.3,
        cluster=0.8,
        test_r2=0.95,
        pearson=0.97,
        minutes=0.5,
        rows=rows,
    )


def batch1_context() -> ReplyContext:
    """The reply context after batch 1 (iterations 1-4, baseline) of a 12-iteration tiny run."""
    trainable = tiny_trainable()
    results = [baseline_result(i, trainable) for i in range(1, 5)]
    return ReplyContext(
        is_start=False,
        batch_results=results,
        all_results=results,
        next_iterations=[5, 6, 7, 8],
        next_starts_block=False,
        block=1,
        base_trainable=trainable,
        n_iter_block=12,
        baseline_batches=3,
        time_limit_min=5.0,
    )
