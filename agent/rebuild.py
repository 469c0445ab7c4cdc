"""Rebuild a run's derived files from its journal alone, and check them against the files on disk.

``python -m agent.rebuild RUN_DIR [--write]`` prints which files differ from what the journal
implies (exit 1 when any does); ``--write`` restores them. memory.md is rebuilt from the text the
controller read before the last analysis (human edits included) plus the accepted reply.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agent.cli_args import REBUILD_EXIT_CODES, OneLineParser, exit_codes_epilog
from agent.config_policy import load_slot_template, render_slot_config
from agent.journal import Journal
from agent.prompts import run_profile
from agent.run_files import RunFiles, render_analysis, render_memory
from agent.run_state import RunState
from experiment.atomic import atomic_write_text


def rebuild_run_files(run_dir: Path) -> dict[str, str]:
    """File name (relative to the run directory) -> the text the journal implies."""
    files = RunFiles(run_dir)
    template = load_slot_template(files.base_config)
    claude = template.config.claude
    state = RunState.from_events(Journal(run_dir).events, n_slots=claude.n_slots)
    if state.last_start is None:
        return {}
    profile = run_profile(state.last_start.instructions)  # scores the tree
    out: dict[str, str] = {
        files.analysis.name: render_analysis(
            state.analysis_entries(), files.name, claude.n_iter_block, state.batch_size
        )
    }

    if state.analysis_applied:
        batch = state.last_applied
        accepted = state.accepted.get(batch)
        read = state.memory_reads.get(batch)
        results = [r for r in state.results if r.batch <= batch]
        if accepted is not None and read is not None:
            memory, ucb = render_memory(
                read.text,
                results,
                accepted.memory,
                claude,
                n_iterations=state.planned_iterations,
                user_input=read.user_input,
                batch=batch,
                profile=profile,
            )
            out[files.memory.name] = memory
            if ucb is not None:
                out[files.ucb_scores.name] = ucb
    if state.configs_applied:
        for p in state.plan(max(state.configs_applied)) or []:
            text = render_slot_config(template.text, files.name, p.slot, p.iteration, p.trainable)
            out[files.slot_config(p.slot).name] = text
            out[str(files.iteration_config(p.iteration, p.slot).relative_to(files.dir))] = text
    return out


def differing_files(run_dir: Path) -> list[str]:
    """Names of derived files whose content on disk differs from the journal's."""
    bad = []
    for name, text in rebuild_run_files(run_dir).items():
        path = run_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            bad.append(name)
    return bad


def main(argv: list[str] | None = None, prog: str = "python -m agent.rebuild") -> int:
    p = OneLineParser(prog=prog, description=__doc__.split("\n\n")[0], epilog=exit_codes_epilog(REBUILD_EXIT_CODES))
    p.add_argument("run_dir", type=Path)
    p.add_argument("--write", action="store_true", help="restore the differing files from the journal")
    args = p.parse_args(argv)
    if not (args.run_dir / "journal.jsonl").exists():
        print(f"error: {args.run_dir}: no journal.jsonl (not a run directory)", file=sys.stderr)
        return 2
    bad = differing_files(args.run_dir)
    if not bad:
        print(f"{args.run_dir}: every derived file matches the journal")
        return 0
    if args.write:
        rebuilt = rebuild_run_files(args.run_dir)
        for name in bad:
            atomic_write_text(args.run_dir / name, rebuilt[name])
        print(f"{args.run_dir}: restored {', '.join(bad)}")
        return 0
    print(f"{args.run_dir}: differs from the journal: {', '.join(bad)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
