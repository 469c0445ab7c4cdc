"""Build the executor that ``dispatch.executor`` names."""

from __future__ import annotations

from pathlib import Path

from experiment.config import DispatchConfig

from .base import Executor


def make_executor(settings: DispatchConfig, work_dir: Path) -> Executor:
    """The local, Slurm or LSF executor; scheduler files go under ``work_dir`` (a shared filesystem).

    Raises BackendUnavailableError (one line) when the scheduler's commands are not on PATH.
    """
    work_dir = Path(work_dir)
    if settings.executor == "local":
        from .local import LocalExecutor

        return LocalExecutor(settings, work_dir)
    if settings.executor == "slurm":
        from .slurm import SlurmExecutor

        return SlurmExecutor(settings, work_dir)
    if settings.executor == "lsf":
        from .lsf import LsfExecutor

        return LsfExecutor(settings, work_dir)
    raise ValueError(f"dispatch.executor: unknown backend {settings.executor!r}; use local, slurm or lsf")
