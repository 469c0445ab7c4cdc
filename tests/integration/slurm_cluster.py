"""A one-node Slurm 22.05 with accounting, started by hand (no systemd) in one folder, stopped by PID.

    python -m tests.integration.slurm_cluster up DIR      # prints SLURM_CONF=DIR/slurm.conf
    python -m tests.integration.slurm_cluster down DIR    # cancels the jobs, stops every daemon it started

Daemons, each in the foreground of its own session with its PID in ``DIR/pids``: munged (as the munge
user, on munge's default socket, which Slurm's commands assume; one already answering there is used), MariaDB (as mysql, on 127.0.0.1 and a free port, a fresh database every time:
job ids restart at 1 with a new state folder, and an old database would answer for them), slurmdbd,
slurmctld and slurmd. Everything (configs, state, spool, logs) lives in DIR; ``SLURM_CONF`` points the
client commands at it. KillWait is left at Slurm's default of 30 s, as on most sites, so a cancel
that waits for it shows. Measured on Debian 12, 2 cores: ``up`` takes 6-10 s.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")
CLUSTER = "flyvis"
DB_PASSWORD = "flyvis-test-only"
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")


class ClusterError(RuntimeError):
    """The cluster could not be started (one line, with the log to read)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing_commands() -> list[str]:
    needed = ("munged", "mariadbd", "mariadb-install-db", "mariadb", "slurmdbd", "slurmctld", "slurmd", "sacctmgr")
    return [cmd for cmd in needed if shutil.which(cmd) is None and not Path(f"/usr/sbin/{cmd}").exists()]


def _which(cmd: str) -> str:
    return shutil.which(cmd) or f"/usr/sbin/{cmd}"


def _chown(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _start(root: Path, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    log = (root / "log" / f"{name}.out").open("ab")
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    (root / "pids" / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def _wait_for(what: str, check: object, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
    raise ClusterError(f"{what} did not come up within {timeout_s:.0f}s; {log}: {' | '.join(tail)}")


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def _config(root: Path, ports: dict[str, int], cpus: int) -> str:
    return "\n".join(
        [
            f"ClusterName={CLUSTER}",
            "SlurmctldHost=localhost",
            f"SlurmctldPort={ports['ctld']}",
            f"SlurmdPort={ports['slurmd']}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            "MpiDefault=none",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerType=sched/backfill",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/slurmdbd",
            "AccountingStorageHost=localhost",
            f"AccountingStoragePort={ports['dbd']}",
            "JobCompType=jobcomp/none",
            "ReturnToService=2",
            "SlurmdParameters=config_overrides",
            "KillWait=30",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
            f"NodeName=localhost CPUs={cpus} RealMemory=4000 State=UNKNOWN",
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def _dbd_config(root: Path, ports: dict[str, int]) -> str:
    return "\n".join(
        [
            "AuthType=auth/munge",
            "DbdHost=localhost",
            f"DbdPort={ports['dbd']}",
            "SlurmUser=root",
            f"PidFile={root / 'run' / 'slurmdbd.pid'}",
            f"LogFile={root / 'log' / 'slurmdbd.log'}",
            "StorageType=accounting_storage/mysql",
            "StorageHost=127.0.0.1",
            f"StoragePort={ports['mysql']}",
            "StorageUser=slurm",
            f"StoragePass={DB_PASSWORD}",
            "StorageLoc=slurm_acct_db",
            "",
        ]
    )


def up(root: Path, cpus: int = 2) -> Path:
    """Start the cluster in ``root`` (created); returns the slurm.conf path. Stops what it started on failure."""
    missing = missing_commands()
    if missing:
        raise ClusterError(
            f"not installed: {', '.join(missing)} (apt-get install slurm-wlm munge slurmdbd mariadb-server)"
        )
    root = root.resolve()
    for sub in ("pids", "log", "run", "state", "spool", "munge", "mysql"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    closed = [str(p) for p in root.parents if not os.stat(p).st_mode & 0o001]
    if closed:
        raise ClusterError(
            f"{closed[0]} is not searchable by others: munged and mariadbd (own users) cannot reach {root}"
        )
    for sub, user in (("munge", "munge"), ("mysql", "mysql"), ("log", "mysql")):
        _chown(root / sub, user)
    os.chmod(root / "munge", 0o700)
    os.chmod(root / "log", 0o777)
    ports = {"ctld": free_port(), "slurmd": free_port(), "dbd": free_port(), "mysql": free_port()}
    conf = root / "slurm.conf"
    conf.write_text(_config(root, ports, cpus))
    dbd = root / "slurmdbd.conf"
    dbd.write_text(_dbd_config(root, ports))
    os.chmod(dbd, 0o600)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    try:
        _start_all(root, ports, env)
    except BaseException:
        down(root)
        raise
    return conf


def _start_all(root: Path, ports: dict[str, int], env: dict[str, str]) -> None:
    log = root / "log"
    if not _munge_answers():  # Slurm's commands only know munge's default socket, so munged serves it
        MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
        _chown(MUNGE_SOCKET.parent, "munge")
        os.chmod(MUNGE_SOCKET.parent, 0o755)
        _start(
            root,
            "munged",
            ["runuser", "-u", "munge", "--", _which("munged"), "-F", f"--log-file={root / 'munge' / 'munged.log'}",
             f"--seed-file={root / 'munge' / 'munged.seed'}"],
        )  # fmt: skip
        _wait_for("munged", _munge_answers, 15, log / "munged.out")

    datadir = root / "mysql" / "data"
    subprocess.run(
        [_which("mariadb-install-db"), "--user=mysql", f"--datadir={datadir}", "--auth-root-authentication-method=socket",
         "--skip-test-db"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    mysock = root / "mysql" / "mysqld.sock"
    _start(
        root,
        "mariadbd",
        [_which("mariadbd"), "--no-defaults", "--user=mysql", f"--datadir={datadir}", f"--socket={mysock}",
         f"--pid-file={root / 'mysql' / 'mariadbd.pid'}", "--bind-address=127.0.0.1", f"--port={ports['mysql']}",
         "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M", "--skip-log-bin",
         f"--log-error={root / 'log' / 'mariadb.err'}"],
    )  # fmt: skip
    _wait_for("mariadbd", lambda: _port_open(ports["mysql"]), 60, log / "mariadb.err")
    sql = (
        "CREATE DATABASE slurm_acct_db; "
        f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}'; "
        f"CREATE USER 'slurm'@'localhost' IDENTIFIED BY '{DB_PASSWORD}'; "
        "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
    )
    subprocess.run(
        [_which("mariadb"), "--no-defaults", f"--socket={mysock}", "-u", "root", "-e", sql],
        check=True,
        capture_output=True,
        timeout=30,
    )

    _start(root, "slurmdbd", [_which("slurmdbd"), "-D"], env)
    _wait_for("slurmdbd", lambda: _port_open(ports["dbd"]), 30, log / "slurmdbd.log")
    added = subprocess.run(
        [_which("sacctmgr"), "-i", "add", "cluster", CLUSTER], env=env, capture_output=True, text=True, timeout=30
    )
    if added.returncode != 0 and "already exists" not in added.stdout + added.stderr:
        raise ClusterError(f"sacctmgr add cluster: {' '.join((added.stderr or added.stdout).split())[:300]}")

    _start(root, "slurmctld", [_which("slurmctld"), "-D", "-i"], env)
    _wait_for("slurmctld", lambda: _port_open(ports["ctld"]), 30, log / "slurmctld.log")
    _start(root, "slurmd", [_which("slurmd"), "-D", "-N", "localhost"], env)

    def node_idle() -> bool:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%t"], env=env, capture_output=True, text=True, timeout=10, check=False
        )
        return out.stdout.strip() in ("idle", "mix", "alloc")

    _wait_for("slurmd (node idle)", node_idle, 30, log / "slurmd.log")


def _munge_answers() -> bool:
    """True when a munged answers on the default socket (``munge -n`` encodes a credential)."""
    if not MUNGE_SOCKET.exists() or shutil.which("munge") is None:
        return False
    done = subprocess.run(["munge", "-n"], capture_output=True, timeout=10, check=False)
    return done.returncode == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        if (Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split() or ["?"])[0] == "Z":
            return False
    return True


def down(root: Path) -> list[str]:
    """Cancel every job of this cluster, then stop the daemons in reverse order by their PID files."""
    root = root.resolve()
    conf = root / "slurm.conf"
    stopped: list[str] = []
    pid_dir = root / "pids"
    if conf.exists() and (pid_dir / "slurmctld.pid").exists():
        env = {**os.environ, "SLURM_CONF": str(conf)}
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["scancel", "--full", "--signal=KILL", "--user=root"], env=env, timeout=10, check=False)
            subprocess.run(["scancel", "--user=root"], env=env, timeout=10, check=False, capture_output=True)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                out = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True, timeout=10)
                if out.returncode != 0 or not out.stdout.strip():
                    break
                time.sleep(0.5)
    for name in reversed(DAEMONS):
        path = pid_dir / f"{name}.pid"
        if not path.exists():
            continue
        pid = int(path.read_text().strip())
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            stopped.append(f"{name} ({pid})")
        path.unlink()
    return stopped


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("up", "down"):
        print("usage: python -m tests.integration.slurm_cluster up|down DIR", file=sys.stderr)
        return 2
    root = Path(args[1])
    if args[0] == "up":
        try:
            conf = up(root)
        except (ClusterError, OSError, subprocess.SubprocessError) as err:
            print(f"slurm cluster: {' '.join(str(err).split())}", file=sys.stderr)
            return 1
        print(f"SLURM_CONF={conf}")
        return 0
    stopped = down(root)
    print(f"slurm cluster: stopped {', '.join(stopped) or 'nothing'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
