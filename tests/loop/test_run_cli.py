"""``python -m agent.run``: what it refuses, in one line, before any compute."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers.agent_cli import INSTRUCTIONS, REPO, journal_events, run_agent


def _agent(*args: str, env: dict[str, str] | None = None):
    import os
    import subprocess

    full_env = {**os.environ, **(env or {})}
    full_env.pop("ANTHROPIC_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "agent.run", "--instructions", INSTRUCTIONS, *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_anthropic_without_api_key_fails_before_any_compute(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _agent("--config", "configs/flyvis_tiny.yaml", "--run-dir", str(run_dir), "--llm", "anthropic")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "ANTHROPIC_API_KEY" in lines[0]
    assert not run_dir.exists()


def test_full_scale_config_on_a_cpu_machine_says_so_in_one_line(tmp_path: Path) -> None:
    proc = _agent("--run-dir", str(tmp_path / "run"), "--llm", "offline")  # default config: full scale
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "flyvis_62_1_gs_alternate.yaml" in lines[0] and "GPU" in lines[0] and "DAVIS" in lines[0]


def test_existing_run_needs_resume_or_fresh(reference_run: Path) -> None:
    proc = _agent("--config", "configs/flyvis_tiny.yaml", "--run-dir", str(reference_run), "--llm", "offline")
    assert proc.returncode == 2
    assert "--resume" in proc.stderr and proc.stderr.count("\n") == 1


def test_resume_of_a_missing_run_is_refused(tmp_path: Path) -> None:
    proc = _agent("--run-dir", str(tmp_path / "nothing"), "--llm", "offline", "--resume")
    assert proc.returncode == 2
    assert "nothing to resume" in proc.stderr


@pytest.mark.fault("yaml")
def test_broken_config_yaml_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = (REPO / "configs" / "flyvis_tiny.yaml").read_text().replace("n_alternations: 4", "n_alternation: 4")
    bad.write_text(text)
    proc = _agent("--config", str(bad), "--run-dir", str(tmp_path / "run"), "--llm", "offline")
    assert proc.returncode == 2
    assert f"{bad}: training.n_alternation: Extra inputs are not permitted" in proc.stderr


def test_resume_of_a_finished_run_changes_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert run_agent(run_dir, iterations=4).returncode == 0
    before = (run_dir / "analysis.md").read_text()
    n_events = len(journal_events(run_dir))
    again = run_agent(run_dir, "--resume", iterations=4)
    assert again.returncode == 0, again.stderr
    assert (run_dir / "analysis.md").read_text() == before
    types = [e["type"] for e in journal_events(run_dir)[n_events:]]
    assert types == ["run_resumed"], types


def test_a_finished_run_cannot_be_extended_by_resume(reference_run: Path, tmp_path: Path) -> None:
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    proc = run_agent(run_dir, "--resume", iterations=16)
    assert proc.returncode == 2
    assert "has 8 iterations and its last batch was already" in proc.stderr and proc.stderr.count("\n") == 1


# ------------------------------------------------------------------ the flyvis-agent console script


def test_negative_iterations_exit_2_in_one_line_without_a_run_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _agent(
        "--config", "configs/flyvis_tiny.yaml", "--run-dir", str(run_dir), "--llm", "offline", "--iterations", "-3"
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--iterations" in lines[0] and "at least 1" in lines[0]
    assert not run_dir.exists()


def test_negative_max_parallel_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from agent.run import main

    with pytest.raises(SystemExit) as stop:
        main(["--instructions", INSTRUCTIONS, "--llm", "offline", "--max-parallel", "-1"])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--max-parallel" in lines[0]


def test_resume_and_fresh_are_mutually_exclusive(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from agent.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["run", "--instructions", INSTRUCTIONS, "--run-dir", str(tmp_path / "run"), "--resume", "--fresh"])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--fresh" in lines[0] and "--resume" in lines[0]
    assert not (tmp_path / "run").exists()


def test_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    from agent import run as agent_run
    from agent.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["run", "--help"])
    assert stop.value.code == 0
    help_text = capsys.readouterr().out
    expected = {
        0: "finished",
        agent_run.EXIT_BAD_INPUT: "bad input",
        agent_run.EXIT_PAUSED: "paused",
        agent_run.EXIT_LLM: "LLM",
        agent_run.EXIT_IO: "I/O",
        agent_run.EXIT_INTERRUPTED: "interrupted",
    }
    for code, word in expected.items():
        assert any(line.split()[:1] == [str(code)] and word in line for line in help_text.splitlines()), (code, word)


def test_console_script_entry_point_resolves_to_the_cli() -> None:
    """The ``flyvis-agent`` script that pyproject.toml declares loads ``agent.cli.main``.

    Read from pyproject.toml, not the installed metadata: a stale ``*.egg-info`` in the checkout can shadow it.
    """
    import tomllib
    from importlib.metadata import EntryPoint

    from agent import cli

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    script = EntryPoint(name="flyvis-agent", value=scripts["flyvis-agent"], group="console_scripts")
    assert script.load() is cli.main


def test_flyvis_agent_status_of_a_finished_run(reference_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main

    assert main(["status", str(reference_run)]) == 0
    out = capsys.readouterr().out
    assert "8/8" in out and "finished" in out.lower()


def test_flyvis_agent_status_counts_the_iterations_the_run_was_started_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli import main

    run_dir = tmp_path / "run"
    assert run_agent(run_dir, iterations=4).returncode == 0  # the tiny config's claude.n_iterations is larger
    assert main(["status", str(run_dir)]) == 0
    assert "4/4 iterations done" in capsys.readouterr().out


def test_the_python_m_forms_of_status_and_report_keep_working(reference_run: Path) -> None:
    status = subprocess.run(
        [sys.executable, "-m", "agent.status", str(reference_run)], capture_output=True, text=True, cwd=REPO
    )
    assert status.returncode == 0 and "8/8" in status.stdout
    report = subprocess.run([sys.executable, "-m", "agent.report", "--help"], capture_output=True, text=True, cwd=REPO)
    assert report.returncode == 0 and report.stdout.startswith("usage: python -m agent.report")


# ------------------------------------------------------------------ bad --run-dir and --iterations values


def _run_main(capsys: pytest.CaptureFixture[str], run_dir: Path, iterations: str = "4") -> tuple[int, list[str]]:
    """``agent.run.main`` on the tiny config with the offline policy: its exit code and its stderr lines."""
    from agent.run import main

    argv = ["--instructions", INSTRUCTIONS, "--config", "configs/flyvis_tiny.yaml", "--llm", "offline"]
    code = main([*argv, "--run-dir", str(run_dir), "--iterations", iterations])
    return code, capsys.readouterr().err.strip().splitlines()


def test_run_dir_naming_a_file_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    for run_dir in (a_file, a_file / "run"):
        code, lines = _run_main(capsys, run_dir)
        assert code == 2 and len(lines) == 1 and "is a file, not a directory" in lines[0], lines
    assert a_file.read_text() == "mine\n" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_run_dir_that_cannot_be_created_is_one_line_and_exit_5(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _run_main(capsys, Path("/proc/nope/x"))
    assert code == 5 and len(lines) == 1 and "cannot create the run directory" in lines[0], lines
    assert not Path("/proc/nope").exists()


def test_run_dir_failing_part_way_is_one_line_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the folders were made (here: copying the config) removes the folders it made."""
    import agent.run as agent_run

    def no_space(*_: object, **__: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(agent_run.shutil, "copyfile", no_space)
    code, lines = _run_main(capsys, tmp_path / "new" / "run")
    assert code == 5 and lines == [f"error: {tmp_path / 'new' / 'run'}: cannot create the run directory: No space "
                                   "left on device"]  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_iterations_not_a_multiple_of_the_batch_size_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for iterations, either in (("3", "pass 4"), ("6", "pass 4 or 8")):
        code, lines = _run_main(capsys, tmp_path / "run", iterations)
        assert code == 2 and len(lines) == 1, lines
        assert f"--iterations {iterations} is not a multiple of the batch size 4" in lines[0] and either in lines[0]
    assert not (tmp_path / "run").exists()


def test_bad_run_dir_through_the_console_script_is_one_line(tmp_path: Path) -> None:
    a_file = tmp_path / "taken"
    a_file.touch()
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--instructions", INSTRUCTIONS, "--config",
         "configs/flyvis_tiny.yaml", "--llm", "offline", "--run-dir", str(a_file)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
