"""``python -m agent.run``: start or resume an LLM-steered exploration.

    python -m agent.run --instructions instruction_flyvis_62_1_gs_alternate.md \\
        [--config FILE] [--run-dir DIR] [--iterations N] [--llm anthropic|claude-cli|replay|offline|optuna] \\
        [--resume | --fresh] [--review] [--executor local|slurm|lsf|replay] [--slot-records DIR] [--budget-usd X]

Also ``flyvis-agent run ...``. Every problem the user can fix is one line on stderr and a non-zero exit,
before anything is written; the exit codes (``agent.cli_args.RUN_EXIT_CODES``) are listed in ``--help``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from agent.cli_args import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_IO,
    EXIT_LLM,
    EXIT_PAUSED,
    RUN_EXIT_CODES,
    OneLineParser,
    command_line,
    exit_codes_epilog,
    non_negative_float,
    positive_int,
)
from agent.controller import Controller, RunPaused, RunSettings
from agent.events import Interrupted, RunResumed, RunStarted
from agent.executors.base import Executor
from agent.executors.records import SlotRecordError
from agent.journal import Journal, JournalError, RunLock
from agent.llm.base import LLMBackend, LLMError
from agent.llm.budget import Budget
from agent.llm.factory import BACKEND_NAMES, make_backend, preflight
from agent.llm.offline_policy import offline_policy
from agent.prompts import Instructions, PromptError, load_instructions
from agent.run_files import RunFiles
from agent.run_state import RunState
from experiment.config import ConfigError, ExperimentConfig, load_experiment
from experiment.networks import NetworkNotFound, find_network
from experiment.records import utc_now
from experiment.yaml_io import YamlError

REPO_ROOT = Path(__file__).resolve().parents[1]
__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "EXIT_IO", "EXIT_LLM", "EXIT_PAUSED", "main"]


class UsageError(ValueError):
    """A command-line problem the user fixes; one line."""


class RunDirError(OSError):
    """The run directory could not be created (an I/O failure, exit 5); one line."""


def build_parser(prog: str = "python -m agent.run") -> argparse.ArgumentParser:
    """Every value type-checked here, so a bad one stops the command before anything is written."""
    p = OneLineParser(prog=prog, description=__doc__.split("\n\n")[0], epilog=exit_codes_epilog(RUN_EXIT_CODES))
    p.add_argument("--instructions", required=True, help="instruction file name (in prompts/) or path")
    p.add_argument("--config", type=Path, help="experiment YAML (default: configs/<instructions stem>.yaml)")
    p.add_argument("--run-dir", type=Path, help="run directory (default: runs/<config stem>)")
    p.add_argument("--iterations", type=positive_int, help="iterations of the run (default: claude.n_iterations)")
    p.add_argument("--llm", choices=BACKEND_NAMES, default="anthropic", help="LLM backend (default: anthropic)")
    p.add_argument("--transcripts", type=Path, help="replay: folder of recorded transcripts to serve")
    p.add_argument("--allow-prompt-drift", action="store_true", help="replay: accept prompts that changed")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue the run in --run-dir where it stopped")
    start.add_argument("--fresh", action="store_true", help="move an existing --run-dir aside and start anew")
    p.add_argument("--review", action="store_true", help="pause after each batch for a human review")
    p.add_argument(
        "--executor",
        choices=("local", "slurm", "lsf", "replay"),
        help="override dispatch.executor; replay: serve recorded slot results (--slot-records) instead of training",
    )
    p.add_argument(
        "--slot-records", type=Path, help="replay executor: folder of recorded slots (RUN_DIR/slot_records of a run)"
    )
    p.add_argument("--max-parallel", type=positive_int, help="local executor: concurrent slots")
    p.add_argument("--budget-usd", type=non_negative_float, help="stop before an LLM call once this much was spent")
    p.add_argument("--budget-tokens", type=positive_int, help="stop before an LLM call once this many tokens were used")
    p.add_argument(
        "--trainer-iterations", type=positive_int, help="override the trainer's iterations per slot (quick runs)"
    )
    p.add_argument(
        "--slot-command",
        type=command_line,
        help="command that runs one slot instead of `python -m trainer.slot` (e.g. a container wrapper); "
        "--config/--out/--data-dir are appended",
    )
    p.add_argument("--force", action="store_true", help="run a full-scale config on a machine that lacks a GPU/DAVIS")
    return p


def default_config_for(instructions: Instructions) -> Path:
    stem = Path(instructions.base_path).stem.removeprefix("instruction_")
    return REPO_ROOT / "configs" / f"{stem}.yaml"


def check_machine(config: ExperimentConfig, source: Path) -> None:
    """The full-scale experiment needs a GPU, DAVIS and the trained network; say so before doing anything."""
    sim = config.simulation
    problems = []
    if sim.stimulus == "davis" and not (sim.davis_root or os.environ.get("DAVIS_ROOT")):
        problems.append("a DAVIS folder (set simulation.davis_root or DAVIS_ROOT)")
    if sim.ground_truth.startswith("flyvis:"):
        try:
            find_network(sim.ground_truth)
        except NetworkNotFound:
            problems.append(f"the trained network {sim.ground_truth} (get it with `flyvis download-pretrained`)")
    if sim.extent >= 8 and config.training.device != "cpu":
        import torch

        if not torch.cuda.is_available():
            problems.append("a GPU")
    if problems:
        raise UsageError(
            f"{source}: the full-scale experiment (extent {sim.extent}, {sim.n_frames:,} frames) needs "
            f"{' and '.join(problems)}; on this machine run `make demo` or pass --config configs/flyvis_demo_cpu.yaml "
            "(or --force)"
        )


def resolve_run(args: argparse.Namespace, instructions: Instructions) -> tuple[Path, Path, bool]:
    """The run directory, the config it runs and whether it resumes; nothing is written yet."""
    config_path = args.config or default_config_for(instructions)
    run_dir: Path = args.run_dir or REPO_ROOT / "runs" / config_path.stem
    exists = (run_dir / "journal.jsonl").exists()
    if args.resume:
        if not exists:
            raise UsageError(f"{run_dir}: nothing to resume (no journal.jsonl); start it without --resume")
        return run_dir, RunFiles(run_dir).base_config, True
    if exists and not args.fresh:
        raise UsageError(f"{run_dir}: a run already exists here; pass --resume to continue it or --fresh to restart")
    if not config_path.exists():
        raise UsageError(f"{config_path}: config file not found")
    check_run_dir(run_dir)
    return run_dir, config_path, False


def check_run_dir(run_dir: Path) -> None:
    """``--run-dir`` is a directory or can become one: no file on its path, a writable nearest ancestor."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"{run_dir}: --run-dir is a file, not a directory")
    ancestor = run_dir
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{run_dir}: --run-dir cannot be created: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{run_dir}: --run-dir cannot be created: {ancestor} is not writable")


def check_iterations(iterations: int, n_slots: int, config_path: Path) -> None:
    """Batches are whole: ``--iterations`` must be a multiple of the batch size (``claude.n_slots``)."""
    if iterations % n_slots:
        lower, upper = iterations - iterations % n_slots, iterations - iterations % n_slots + n_slots
        either = f"{lower} or {upper}" if lower else str(upper)
        raise UsageError(
            f"--iterations {iterations} is not a multiple of the batch size {n_slots} "
            f"(claude.n_slots of {config_path}); pass {either}"
        )


def create_run_dir(run_dir: Path, config_path: Path, instructions_name: str) -> RunFiles:
    """A fresh run directory (an earlier run there is moved aside, never deleted) with its base config."""
    if (run_dir / "journal.jsonl").exists():
        aside = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        run_dir.rename(aside)
        print(f"moved the previous run aside to {aside}", flush=True)
    created = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        files = RunFiles(run_dir)
        shutil.copyfile(config_path, files.base_config)
        info = {"name": config_path.stem, "config": str(config_path), "instructions": instructions_name}
        files.write_run_info({**info, "created": utc_now()})
    except OSError as err:  # the folders this call made are removed again: nothing is left behind
        for folder in created:
            shutil.rmtree(folder, ignore_errors=True)
        raise RunDirError(f"{run_dir}: cannot create the run directory: {err.strerror or err}") from None
    return files


def make_llm(args: argparse.Namespace, config: ExperimentConfig, files: RunFiles) -> tuple[LLMBackend, Budget]:
    claude = config.claude
    budget = Budget(
        max_usd=args.budget_usd if args.budget_usd is not None else claude.budget_usd,
        max_tokens=args.budget_tokens if args.budget_tokens is not None else claude.budget_tokens,
    )
    backend = make_backend(
        args.llm,
        claude,
        transcripts_dir=files.transcripts,
        offline_policy=offline_policy,
        replay_dir=args.transcripts,
        allow_prompt_drift=args.allow_prompt_drift,
        budget=budget,
    )
    return backend, budget


def make_dispatch(args: argparse.Namespace, config: ExperimentConfig, files: RunFiles) -> Executor:
    from agent.executors.factory import make_executor

    if (args.executor == "replay") != (args.slot_records is not None):
        raise UsageError("--executor replay and --slot-records DIR go together (replay serves the recorded slots)")
    if args.executor == "replay":
        from agent.executors.records import recorded_names
        from agent.executors.replay import ReplayExecutor

        executor = ReplayExecutor(args.slot_records)
        if not recorded_names(args.slot_records):
            raise UsageError(f"--slot-records {args.slot_records}: holds no slot record (no */record.json)")
        return executor
    dispatch = config.dispatch.model_copy()
    if args.executor:
        dispatch.executor = args.executor
    if args.max_parallel is not None:
        dispatch.max_parallel = args.max_parallel
    return make_executor(dispatch, files.dir / "jobs")


def cancel_active(journal: Journal, executor: Executor) -> int:
    """Ctrl-C: cancel the run's jobs that were submitted and have not finished."""
    n = 0
    for submitted in RunState.from_events(journal.events).unfinished_submissions():
        try:
            executor.cancel(submitted.handle)
            n += 1
        except Exception as err:
            print(f"could not cancel job of iteration {submitted.iteration}: {err}", file=sys.stderr)
    return n


def main(argv: list[str] | None = None, prog: str = "python -m agent.run") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        instructions = load_instructions(args.instructions)
        run_dir, config_path, resuming = resolve_run(args, instructions)
        config = load_experiment(config_path)
        if args.iterations is not None:
            check_iterations(args.iterations, config.claude.n_slots, config_path)
        if not args.force:
            check_machine(config, config_path)
        planned_files = RunFiles(run_dir)  # paths only: nothing is written before the backends are ready
        backend, budget = make_llm(args, config, planned_files)
        for warning in preflight(backend):  # key, model and CLI checked before any data generation
            print(f"warning: {warning}", file=sys.stderr)
        executor = make_dispatch(args, config, planned_files)
        files = planned_files if resuming else create_run_dir(run_dir, config_path, instructions.name)
        base_config = files.base_config
    except (UsageError, ConfigError, YamlError, PromptError, LLMError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RunDirError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_IO

    try:
        with RunLock(files.dir):
            journal = Journal(files.dir)
            settings = _settings(args, files, base_config, config, instructions, journal)
            controller = Controller(settings, instructions, backend, executor, journal=journal)
            try:
                controller.run()
            except KeyboardInterrupt:
                n = cancel_active(journal, executor)
                journal.append(Interrupted(cancelled_jobs=n))
                print(f"interrupted: cancelled {n} job(s); resume with --resume", file=sys.stderr)
                return EXIT_INTERRUPTED
            finally:
                executor.close()  # local: stops the CUDA MPS daemon it started
    except (JournalError, UsageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SlotRecordError as err:  # the replay executor met a slot it has no record of (or another config)
        print(f"error: {err} (the run stopped before that slot; resumable with --resume)", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RunPaused as err:
        print(str(err), file=sys.stderr)
        return EXIT_PAUSED
    except LLMError as err:
        print(f"LLM call failed: {err} (the run is resumable with --resume)", file=sys.stderr)
        return EXIT_LLM
    except OSError as err:  # disk full, permissions, a vanished mount: every write is atomic, so resume is safe
        print(f"error: {err} (fix the cause; the run is resumable with --resume)", file=sys.stderr)
        return EXIT_IO
    if budget.spent_usd:
        print(f"LLM cost: ${budget.spent_usd:.2f}", flush=True)
    return 0


def _settings(
    args: argparse.Namespace,
    files: RunFiles,
    base_config: Path,
    config: ExperimentConfig,
    instructions: Instructions,
    journal: Journal,
) -> RunSettings:
    """The run's settings: fixed at the start (iterations), or carried over from the journal on resume."""
    state = RunState.from_events(journal.events, n_slots=config.claude.n_slots)
    started = state.started
    previous = state.n_iterations
    if (
        previous is not None
        and args.iterations
        and args.iterations != previous
        and (args.iterations < previous or state.n_batches in state.accepted)
    ):
        raise UsageError(
            f"{files.dir}: the run has {previous} iterations and its last batch was already "
            "planned or analysed; --resume continues it as it is (to explore further, start a new run)"
        )
    n_iterations = args.iterations or state.n_iterations or config.claude.n_iterations
    settings = RunSettings(
        run_dir=files.dir,
        config_path=base_config,
        instructions_name=instructions.name,
        n_iterations=n_iterations,
        llm=args.llm,
        review=args.review,
        trainer_iterations=args.trainer_iterations
        if args.trainer_iterations is not None
        else (started.trainer_iterations if started else None),
        slot_command=args.slot_command if args.slot_command else (started.slot_command if started else None),
    )
    recorded = {
        "instructions": instructions.name,
        "n_iterations": settings.n_iterations,
        "n_slots": state.batch_size,
        "llm": args.llm,
        "trainer_iterations": settings.trainer_iterations,
        "slot_command": settings.slot_command,
    }
    if started is None:
        journal.append(RunStarted(name=files.name, **recorded))
    else:
        journal.append(RunResumed(**recorded))
    return settings


if __name__ == "__main__":
    sys.exit(main())
