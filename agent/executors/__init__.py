"""Slot dispatch: one slot = one job, on this machine, on Slurm (submitit) or on LSF; or replayed from the
slot records of an earlier run (``replay``, ``records``), which trains nothing.

Completion is the slot's ``status.json``, never the scheduler's word; see ``base``.
"""

from __future__ import annotations

from .base import (
    BackendUnavailableError,
    Executor,
    JobHandle,
    JobOutcome,
    SlotJob,
    SubmissionError,
)
from .factory import make_executor

__all__ = [
    "BackendUnavailableError",
    "Executor",
    "JobHandle",
    "JobOutcome",
    "SlotJob",
    "SubmissionError",
    "make_executor",
]
