"""Records that cross process boundaries: a slot's metrics, its status file, its R2 log rows.

The trainer writes them, the controller reads them; both sides use these models, so a field
renamed on one side is a validation error on the other, not a silently missing number.
"""

from __future__ import annotations

import csv
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from experiment.atomic import atomic_write_json, atomic_write_text

# File names inside a slot's output folder (slots/iter_NNN_slot_SS/).
METRICS_TXT = "metrics.txt"
METRICS_JSON = "metrics.json"
STATUS_JSON = "status.json"
R2_LOG = "connectivity_r2.log"
ACTIVITY_PNG = "activity.png"
W_SCATTER_PNG = "W_corrected.png"
ROLLOUT_PNG = "rollout.png"
PANEL_PNG = "panel.png"
VREST_LEVER_PNG = "V_rest_lever.png"
SLOT_LOG = "slot.log"
# Images the LLM may be shown, by the name ``claude.slot_image`` and ``claude.extra_images`` use.
SLOT_IMAGES = {"panel": PANEL_PNG, "activity": ACTIVITY_PNG, "w_scatter": W_SCATTER_PNG, "rollout": ROLLOUT_PNG}

_Record = TypeVar("_Record", bound=BaseModel)

METRIC_KEYS = (
    "connectivity_R2",
    "tau_R2",
    "V_rest_R2",
    "cluster_accuracy",
    "test_R2",
    "test_pearson",
    "training_time_min",
)


class RecordError(ValueError):
    """A record file is missing or does not match its schema (one line, names the file)."""


# test_R2 is reported no lower than this: a rollout that diverged scores e.g. -1e15 otherwise, a number
# that says nothing the flag does not; values below -1 are all "worse than each neuron's mean".
TEST_R2_FLOOR = -1.0
ROLLOUT_CLAMP = 100.0  # the test rollout clamps voltages to +-this after every step (trainer.metrics.rollout)


class Metrics(BaseModel):
    """Final metrics of one trained slot (MODEL.md section 6).

    ``test_R2`` is floored at TEST_R2_FLOOR (also when an older record is read, so every reader sees the
    same value); ``rollout_diverged`` says the autonomous test rollout reached the clamp bound (+-100).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    connectivity_R2: float
    tau_R2: float
    V_rest_R2: float
    cluster_accuracy: float = Field(ge=0, le=1)
    test_R2: float
    test_pearson: float
    training_time_min: float = Field(ge=0)
    rollout_diverged: bool = False

    @field_validator("test_R2")
    @classmethod
    def _floor_test_r2(cls, value: float) -> float:
        return max(value, TEST_R2_FLOOR)

    def as_lines(self) -> str:
        lines = "".join(f"{k}: {getattr(self, k):.6g}\n" for k in METRIC_KEYS)
        return lines + f"rollout_diverged: {str(self.rollout_diverged).lower()}\n"


def write_metrics(folder: str | Path, metrics: Metrics) -> None:
    """Write ``metrics.txt`` (key: value lines) and its JSON twin atomically."""
    folder = Path(folder)
    atomic_write_text(folder / METRICS_TXT, metrics.as_lines())
    atomic_write_json(folder / METRICS_JSON, metrics.model_dump())


def _read_record(path: Path, model: type[_Record], what: str) -> _Record | None:
    """A JSON record validated by ``model``; None when the file does not exist."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise RecordError(f"{path}: unreadable {what} file: {err}") from None
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise RecordError(f"{path}: {field}: {first['msg']}") from None


def read_metrics(folder: str | Path) -> Metrics:
    path = Path(folder) / METRICS_JSON
    metrics = _read_record(path, Metrics, "metrics")
    if metrics is None:
        raise RecordError(f"{path}: missing metrics file")
    return metrics


SlotState = Literal["running", "succeeded", "failed"]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class SlotStatus(BaseModel):
    """``status.json`` of a slot job: the only source of truth for completion."""

    model_config = ConfigDict(extra="forbid")

    state: SlotState
    exit_code: int | None = None
    reason: str | None = None
    host: str | None = None
    gpu: str | None = None
    pid: int | None = None
    started_at: str | None = None
    ended_at: str | None = None


def write_status(folder: str | Path, status: SlotStatus) -> None:
    atomic_write_json(Path(folder) / STATUS_JSON, status.model_dump())


def read_status(folder: str | Path) -> SlotStatus | None:
    """The slot's status, or None when no status file exists yet."""
    return _read_record(Path(folder) / STATUS_JSON, SlotStatus, "status")


Phase = Literal["W", "V_rest", "-"]


class R2Row(BaseModel):
    """One row of ``connectivity_r2.log``: ``epoch,iteration,connectivity_r2,phase``."""

    model_config = ConfigDict(extra="forbid")

    epoch: int = Field(ge=0)
    iteration: int = Field(ge=0)
    connectivity_r2: float
    phase: Phase = "-"


R2_HEADER = "epoch,iteration,connectivity_r2,phase"


def format_r2_row(row: R2Row) -> str:
    return f"{row.epoch},{row.iteration},{row.connectivity_r2:.6f},{row.phase}\n"


def read_r2_log(path: str | Path) -> list[R2Row]:
    """Parse an R2 log; a missing phase column reads as ``-``.

    Rows are written whole with their newline, so a last line without one is a torn write of a log
    still being written (it may even parse, e.g. ``0.`` for ``0.75``) and is skipped.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecordError(f"{path}: missing R2 log") from None
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        lines = lines[:-1]
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None or [h.strip() for h in header[:3]] != ["epoch", "iteration", "connectivity_r2"]:
        raise RecordError(f"{path}: header must be '{R2_HEADER}'")
    rows: list[R2Row] = []
    for n, fields in enumerate(reader, start=2):
        try:
            r2 = float(fields[2])
            row = R2Row(
                epoch=int(fields[0]),
                iteration=int(fields[1]),
                connectivity_r2=r2 if math.isfinite(r2) else float("nan"),
                phase=(fields[3].strip() if len(fields) > 3 and fields[3].strip() else "-"),
            )
        except (IndexError, ValueError, ValidationError):
            raise RecordError(f"{path}: line {n}: expected 'epoch,iteration,connectivity_r2,phase'") from None
        rows.append(row)
    return rows
