"""Fake Slurm and LSF commands for the executor tests (never a real scheduler).

Each command on PATH (sbatch, srun, sacct, squeue, scancel, bsub, bjobs, bkill) is a two-line shell shim
that runs this file. State lives in $FAKE_SCHED_DIR: ``jobs/<id>.json`` per job, a job-id counter,
and control files the tests write:

- ``fail_submissions``: an integer N; the next N sbatch/bsub calls fail like a busy controller.

and helper sub-commands the tests call directly (``python _fake_sched.py _lose ID``):

- ``_lose ID``: the job vanishes without running to the end (Slurm: state COMPLETED, the
  misleading state the executor must not trust; LSF: bjobs forgets it, "not found");
- ``_fail ID``: the node dies (Slurm NODE_FAIL; LSF EXIT with exit code 1);
- ``_forget ID``: Slurm only: sacct and squeue lose the record (state UNKNOWN from then on);
- ``_hide ID`` / ``_unhide ID``: Slurm only: sacct does not list the job while squeue does, as a real
  Slurm does for about a second after sbatch.

A submitted job is run in the background by a detached runner (its own session, like setsid),
which records RUNNING, runs the job script, and records the final state and exit code.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(os.environ.get("FAKE_SCHED_DIR", "/nonexistent-fake-sched"))
JOBS = ROOT / "jobs"
SLURM_ACTIVE = {"PENDING", "RUNNING"}
LSF_ACTIVE = {"PEND", "RUN"}


@contextlib.contextmanager
def locked():
    ROOT.mkdir(parents=True, exist_ok=True)
    with (ROOT / "lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load(jid: str) -> dict | None:
    try:
        return json.loads((JOBS / f"{jid}.json").read_text())
    except (OSError, ValueError):
        return None


def save(job: dict) -> None:
    JOBS.mkdir(parents=True, exist_ok=True)
    tmp = JOBS / f".{job['id']}.tmp"
    tmp.write_text(json.dumps(job))
    os.replace(tmp, JOBS / f"{job['id']}.json")


def new_id() -> str:
    counter = ROOT / "next_id"
    n = int(counter.read_text()) if counter.exists() else 4000 + os.getpid() % 1000 * 10
    counter.write_text(str(n + 1))
    return str(n)


def take_failure() -> bool:
    path = ROOT / "fail_submissions"
    n = int(path.read_text().strip() or 0) if path.exists() else 0
    if n > 0:
        path.write_text(str(n - 1))
    return n > 0


def spawn_runner(jid: str) -> None:
    subprocess.Popen(
        [sys.executable, __file__, "_run", jid],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_runner(job: dict, sig: int = signal.SIGKILL) -> None:
    if job.get("runner_pid"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job["runner_pid"], sig)


# -- Slurm -----------------------------------------------------------------------------------


def sbatch(args: list[str]) -> int:
    script = Path(args[-1])
    opts = dict(re.findall(r"^#SBATCH --([\w-]+)=?(.*)$", script.read_text(), flags=re.M))
    with locked():
        if take_failure():
            print(
                "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation", file=sys.stderr
            )
            return 1
        jid = new_id()
        save(
            {
                "id": jid,
                "kind": "slurm",
                "name": opts.get("job-name", "sbatch"),
                "state": "PENDING",
                "exit_code": None,
                "script": str(script),
                "output": opts.get("output", "/dev/null").strip("'").replace("%j", jid),
                "error": opts.get("error", "/dev/null").strip("'").replace("%j", jid),
                "options": opts,
            }
        )
    spawn_runner(jid)
    print(f"Submitted batch job {jid}")
    return 0


def srun(args: list[str]) -> int:
    files = {"--output": "/dev/null", "--error": "/dev/null"}
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] in ("--output", "--error", "--cpu-bind", "--ntasks", "-n", "-N"):
            files[args[i]] = args[i + 1]
            i += 2
        else:
            i += 1
    jid = os.environ.get("SLURM_JOB_ID", "0")
    out, err = (files[k].replace("%j", jid).replace("%t", "0") for k in ("--output", "--error"))
    with open(out, "ab") as fo, open(err, "ab") as fe:
        return subprocess.call(args[i:], stdout=fo, stderr=fe)


def sacct(args: list[str]) -> int:
    ids = [args[k + 1] for k, a in enumerate(args) if a == "-j"]
    print("JobID|State|NodeList")
    for jid in ids:
        job = load(jid)
        if job is None or job.get("forgotten") or job.get("sacct_hidden"):
            continue
        print(f"{jid}|{job['state']}|fakenode1")
        if job["state"] not in ("PENDING",):
            print(f"{jid}.batch|{job['state']}|fakenode1")
    return 0


def squeue(args: list[str]) -> int:
    """``squeue -h -o "%i|%T" -j ID,ID``: the jobs still queued or running (sacct may hide some)."""
    ids = args[args.index("-j") + 1].split(",") if "-j" in args else []
    listed = [(jid, job) for jid in ids if (job := load(jid)) is not None and not job.get("forgotten")]
    listed = [(jid, job) for jid, job in listed if job["state"] in SLURM_ACTIVE]
    if not listed:
        print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr)
        return 1
    for jid, job in listed:
        print(f"{jid}|{job['state']}")
    return 0


def scancel(args: list[str]) -> int:
    """``scancel ID`` cancels; ``scancel --signal=KILL ID.0`` kills the running step (the job then FAILED)."""
    target = args[-1]
    jid, _, step = target.partition(".")
    with locked():
        job = load(jid)
        if job is None:
            print(f"scancel: error: Invalid job id {target}", file=sys.stderr)
            return 1
        if step:
            if job["state"] != "RUNNING":
                print(
                    f"scancel: error: Kill job error on job step id {target}: Invalid job id specified", file=sys.stderr
                )
                return 1
            job["state"], job["exit_code"] = "FAILED", 137
            save(job)
            kill_runner(job, signal.SIGKILL)
            return 0
        if job["state"] in SLURM_ACTIVE:
            job["state"] = "CANCELLED by 0"
            save(job)
            kill_runner(job, signal.SIGTERM)
    return 0


# -- LSF ------------------------------------------------------------------------------------

_BSUB_VALUE_OPTS = {"-J", "-o", "-e", "-q", "-n", "-gpu", "-R", "-W", "-M", "-P", "-G"}


def bsub(args: list[str]) -> int:
    opts: dict[str, str] = {}
    i = 0
    while i < len(args) and args[i] in _BSUB_VALUE_OPTS:
        opts[args[i]] = args[i + 1]
        i += 2
    with locked():
        if take_failure():
            print("Failed in an LSF library call: Slave LIM configuration is not ready yet. Job not submitted.")
            return 255
        jid = new_id()
        save(
            {
                "id": jid,
                "kind": "lsf",
                "name": opts.get("-J", "job"),
                "state": "PEND",
                "exit_code": None,
                "command": args[i:],
                "output": opts.get("-o", "/dev/null").replace("%J", jid),
                "options": opts,
                "argv": args,
            }
        )
    spawn_runner(jid)
    print(f"Job <{jid}> is submitted to queue <{opts.get('-q', 'normal')}>.")
    return 0


def bjobs(args: list[str]) -> int:
    ids = [a for a in args if a.isdigit()]
    rc = 0
    for jid in ids:
        job = load(jid)
        if job is None or job.get("forgotten"):
            print(f"Job <{jid}> is not found", file=sys.stderr)
            rc = 255
            continue
        code = "-" if job["exit_code"] in (None, 0) else str(job["exit_code"])
        print(f"{jid} {job['state']} {code}")
    return rc


def bkill(args: list[str]) -> int:
    sig = signal.SIGTERM
    if args[:1] == ["-s"]:  # bkill -s KILL ID: the named signal at once
        sig, args = getattr(signal, "SIG" + args[1]), args[2:]
    with locked():
        job = load(args[0])
        if job is None:
            print(f"Job <{args[0]}>: No matching job found", file=sys.stderr)
            return 255
        if job["state"] not in LSF_ACTIVE:
            print(f"Job <{args[0]}>: Job has already finished", file=sys.stderr)
            return 255
        job["state"], job["exit_code"] = "EXIT", 130
        save(job)
        kill_runner(job, sig)
    print(f"Job <{args[0]}> is being terminated")
    return 0


# -- runner and test controls ---------------------------------------------------------------


def run(jid: str) -> int:
    time.sleep(0.05)  # a moment in the queue
    with locked():
        job = load(jid)
        if job is None or job["state"] not in ("PENDING", "PEND"):
            return 0  # cancelled or lost while pending
        job["state"] = "RUNNING" if job["kind"] == "slurm" else "RUN"
        job["runner_pid"] = os.getpid()
        save(job)
    env = dict(os.environ)
    if job["kind"] == "slurm":
        env.update(SLURM_JOB_ID=jid, SLURM_JOBID=jid, SLURM_NTASKS="1", SLURM_PROCID="0", SLURM_LOCALID="0")
        env.update(SLURM_NODEID="0", SLURM_JOB_NUM_NODES="1", SLURM_JOB_NODELIST="fakenode1")
        with open(job["output"], "ab") as fo, open(job["error"], "ab") as fe:
            rc = subprocess.call(["bash", job["script"]], stdout=fo, stderr=fe, env=env)
    else:
        env.update(LSB_JOBID=jid)
        with open(job["output"], "ab") as fo:
            rc = subprocess.call(job["command"], stdout=fo, stderr=subprocess.STDOUT, env=env)
    with locked():
        job = load(jid)
        if job is not None and job["state"] in ("RUNNING", "RUN"):
            ok = rc == 0
            job["state"] = ("COMPLETED" if ok else "FAILED") if job["kind"] == "slurm" else ("DONE" if ok else "EXIT")
            job["exit_code"] = rc
            save(job)
    return 0


def control(action: str, jid: str) -> int:
    with locked():
        job = load(jid)
        if job is None:
            print(f"no job {jid}", file=sys.stderr)
            return 1
        slurm = job["kind"] == "slurm"
        if action == "_lose":
            if slurm:
                job["state"], job["exit_code"] = "COMPLETED", 0
            else:
                job["forgotten"] = True
        elif action == "_fail":
            job["state"], job["exit_code"] = ("NODE_FAIL", 1) if slurm else ("EXIT", 1)
        elif action == "_forget":
            job["forgotten"] = True
        elif action in ("_hide", "_unhide"):
            job["sacct_hidden"] = action == "_hide"
        save(job)
        if action in ("_lose", "_fail"):
            kill_runner(job)
    return 0


COMMANDS = {"sbatch": sbatch, "srun": srun, "sacct": sacct, "squeue": squeue, "scancel": scancel}
COMMANDS.update(bsub=bsub, bjobs=bjobs)
COMMANDS["bkill"] = bkill


def main(argv: list[str]) -> int:
    cmd, args = argv[0], argv[1:]
    if cmd == "_run":
        return run(args[0])
    if cmd in ("_lose", "_fail", "_forget", "_hide", "_unhide"):
        return control(cmd, args[0])
    return COMMANDS[cmd](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
