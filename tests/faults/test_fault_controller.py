"""Controller faults: a torn or corrupt journal, a full disk during apply, a second controller on the run."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent import run as agent_run
from agent.events import AnalysisApplied, LlmResponse, ReplyAccepted
from agent.journal import Journal
from agent.rebuild import differing_files
from experiment import atomic
from helpers.fault_run import (
    LockHolder,
    ScriptedPolicy,
    agent_argv,
    assert_matches_clean_run,
    invoke,
    journal_lines_parse,
    stray_temp_files,
)

pytestmark = pytest.mark.fault("controller")

TORN = b'{"type": "llm_response", "seq": 99, "batch": 1, "text": "## It'


def test_torn_last_journal_line_is_cut_and_the_run_resumes(paused_run, clean_run: Path, tmp_path: Path) -> None:
    run_dir = paused_run.copy_to(tmp_path)
    with open(run_dir / "journal.jsonl", "ab") as fh:
        fh.write(TORN)
    assert len(Journal(run_dir).events) == len(Journal(paused_run.run_dir).events)

    resumed = invoke(agent_argv(run_dir, paused_run.config, "--resume"))
    assert resumed.code == 0, resumed.err
    assert journal_lines_parse(run_dir)
    assert_matches_clean_run(run_dir, clean_run)


def test_corrupt_journal_line_before_the_end_is_a_one_line_error(paused_run, tmp_path: Path) -> None:
    run_dir = paused_run.copy_to(tmp_path)
    journal = run_dir / "journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join([*lines[:3], b"{not json\n", *lines[3:]]))

    refused = invoke(agent_argv(run_dir, paused_run.config, "--resume"))
    assert refused.code == agent_run.EXIT_BAD_INPUT, refused.err
    assert refused.last_err_line() == f"error: {journal}: line 4: corrupt event (not JSON)"


def test_second_controller_on_the_same_run_is_refused_by_the_lock(paused_run, tmp_path: Path) -> None:
    run_dir = paused_run.copy_to(tmp_path)
    before = (run_dir / "journal.jsonl").read_bytes()
    with LockHolder(run_dir):  # a second process, as a running controller would
        refused = invoke(agent_argv(run_dir, paused_run.config, "--resume"))
    assert refused.code == agent_run.EXIT_BAD_INPUT, refused.err
    assert (
        refused.err.strip()
        == f"error: {run_dir}: another controller is running on this run directory (lock .controller.lock)"
    )
    assert (run_dir / "journal.jsonl").read_bytes() == before
    resumed = invoke(agent_argv(run_dir, paused_run.config, "--resume"))  # the lock is free again
    assert resumed.code == 0, resumed.err
    assert differing_files(run_dir) == []


class DiskFull:
    """``experiment.atomic``'s view of ``os`` where one call on one target file fails with ENOSPC."""

    def __init__(self, target: str, op: str) -> None:
        self.target, self.op = target, op
        self.armed = False
        self.old: bytes | None = None  # the target's content when the write failed (None: absent)
        self.tripped = False

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def replace(self, src: str, dst: str) -> None:
        if self.op == "replace" and self._armed_for(Path(dst)):
            self._fail(Path(dst))
        os.replace(src, dst)

    def fsync(self, fd: int) -> None:
        if self.op == "fsync":
            tmp = Path(os.readlink(f"/proc/self/fd/{fd}"))
            dst = tmp.with_name(Path(self.target).name)
            if tmp.name.startswith(f".{dst.name}.") and self._armed_for(dst):
                self._fail(dst)
        os.fsync(fd)

    def _armed_for(self, dst: Path) -> bool:
        return self.armed and not self.tripped and str(dst).endswith(self.target)

    def _fail(self, dst: Path) -> None:
        self.tripped = True
        self.old = dst.read_bytes() if dst.exists() else None
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))


def arm_at_start(disk: DiskFull) -> ScriptedPolicy:
    """The offline policy, arming the fault once the START reply is produced (the next writes apply it)."""
    from agent.llm.offline_policy import offline_policy

    def start(request: Any) -> str:
        disk.armed = True
        return offline_policy(request)

    return ScriptedPolicy({"start": start})


@pytest.fixture(
    scope="module",
    params=[("memory.md", "replace"), ("configs/iter_003_slot_02.yaml", "fsync")],
    ids=["memory-replace", "slot-config-fsync"],
)
def disk_full_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_config: Path
) -> SimpleNamespace:
    """A run whose first apply (START reply: memory.md, slot configs) hits a full disk; tests that resume
    it work on a copy."""
    target, op = request.param
    disk = DiskFull(target, op)
    run_dir = tmp_path_factory.mktemp("disk_full") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(atomic, "os", disk)
        mp.setattr(agent_run, "offline_policy", arm_at_start(disk))
        failed = invoke(agent_argv(run_dir, tiny_config))
    return SimpleNamespace(run_dir=run_dir, config=tiny_config, disk=disk, failed=failed, target=target)


def test_disk_full_during_apply_leaves_the_old_file_and_a_consistent_journal(disk_full_run) -> None:
    run, disk = disk_full_run, disk_full_run.disk
    assert disk.tripped and run.failed.code != 0
    path = run.run_dir / run.target
    assert (path.read_bytes() if path.exists() else None) == disk.old
    assert stray_temp_files(run.run_dir) == []
    assert journal_lines_parse(run.run_dir)
    journal = Journal(run.run_dir)
    assert journal.has(ReplyAccepted, source_batch=0) and not journal.has(AnalysisApplied, batch=0)


def test_disk_full_during_apply_resumes_to_the_uninterrupted_result(
    disk_full_run, clean_run: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(disk_full_run.run_dir, run_dir)
    resumed = invoke(agent_argv(run_dir, disk_full_run.config, "--resume"))
    assert resumed.code == 0, resumed.err
    assert_matches_clean_run(run_dir, clean_run)
    calls = [e.call_id for e in Journal(run_dir).of_type(LlmResponse)]
    assert calls == ["start", "batch-001"], "the START reply was paid for twice"


def test_disk_full_during_apply_is_a_one_line_resumable_error(disk_full_run) -> None:
    failed = disk_full_run.failed
    assert failed.error is None, f"{type(failed.error).__name__} escaped main(): {failed.error}"
    assert failed.code == agent_run.EXIT_IO
    line = failed.last_err_line()
    assert line.startswith("error: ") and "No space left on device" in line and "--resume" in line
