"""Regenerate the recording the end-to-end replay test serves: ``tests/loop/data/e2e_transcripts`` (the LLM
exchanges) and ``tests/loop/data/e2e_slot_records`` (each slot's recorded results, ``agent.executors.records``).

    python tests/loop/make_e2e_transcripts.py

The run: the tiny config, PARALLEL START and 2 batches with the real trainer; the offline policy
answers every call, except that its first reply to batch 1 claims a metric the slot never measured
(so the controller must reject it and re-ask); iteration 6 crashes (SIGKILL) before training, so its
record is a failure. Slot files over MAX_COMMITTED_FILE_BYTES (the images) are left out of the committed
records to keep the repository small; each record lists them under ``omitted``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from agent.controller import Controller, RunSettings  # noqa: E402
from agent.events import RunStarted  # noqa: E402
from agent.executors.factory import make_executor  # noqa: E402
from agent.executors.records import export_slot_records  # noqa: E402
from agent.journal import Journal, RunLock  # noqa: E402
from agent.llm.base import LLMRequest  # noqa: E402
from agent.llm.factory import make_backend  # noqa: E402
from agent.llm.offline_policy import offline_policy  # noqa: E402
from agent.prompts import load_instructions  # noqa: E402
from agent.run import create_run_dir  # noqa: E402
from experiment.config import load_experiment  # noqa: E402

TINY = REPO / "configs" / "flyvis_tiny.yaml"
INSTRUCTIONS = "instruction_flyvis_62_1_gs_alternate.md"
TARGET = REPO / "tests" / "loop" / "data" / "e2e_transcripts"
SLOT_TARGET = REPO / "tests" / "loop" / "data" / "e2e_slot_records"
MAX_COMMITTED_FILE_BYTES = 16 * 1024  # the records' text files; the PNGs (30-310 KB each here) stay out
CRASHED_ITERATION = "6"
HALLUCINATED = "connectivity_R2=0.9990"


def scripted_policy(request: LLMRequest) -> str:
    """The offline policy, with one hallucinated metric in the first reply to batch 1."""
    text = offline_policy(request)
    if request.call_id == "batch-001":
        text = re.sub(r"connectivity_R2=[0-9.]+", HALLUCINATED, text, count=1)
    return text


def main() -> None:
    os.environ["CRASH_ITERATIONS"] = CRASHED_ITERATION
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        files = create_run_dir(run_dir, TINY, INSTRUCTIONS)
        config = load_experiment(files.base_config)
        backend = make_backend(
            "offline", config.claude, transcripts_dir=files.transcripts, offline_policy=scripted_policy
        )
        executor = make_executor(config.dispatch, run_dir / "jobs")
        settings = RunSettings(
            run_dir=run_dir,
            config_path=files.base_config,
            instructions_name=INSTRUCTIONS,
            n_iterations=8,
            llm="offline",
            slot_command=[sys.executable, str(REPO / "tests" / "loop" / "crash_wrapper.py")],
        )
        with RunLock(run_dir):
            journal = Journal(run_dir)
            journal.append(RunStarted(name=files.name, n_iterations=8, llm="offline"))
            Controller(settings, load_instructions(INSTRUCTIONS), backend, executor, journal=journal).run()
        if TARGET.exists():
            shutil.rmtree(TARGET)
        shutil.copytree(files.transcripts, TARGET)
        slots = export_slot_records(files.slot_records, SLOT_TARGET, max_file_bytes=MAX_COMMITTED_FILE_BYTES)
    print(f"wrote {TARGET}: {sorted(p.name for p in TARGET.glob('*.json'))}")
    print(f"wrote {SLOT_TARGET}: {slots}")


if __name__ == "__main__":
    main()
