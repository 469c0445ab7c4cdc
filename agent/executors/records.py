"""Slot records: what a finished slot left for the controller, kept so a run can be replayed without training.

The controller writes one record per finished slot under ``RUN_DIR/slot_records/<job name>/`` (the job name is
``iter_NNN_slot_SS``): the files the controller and the views read from the slot folder (``RECORDED_FILES``,
those the slot wrote) and ``record.json`` (``SlotRecord``: the trained config and its hash, the job's outcome,
each file's size and SHA-256), written last, so a folder without it holds no record. The replay executor
(``agent.executors.replay``) serves them back. Files are hard-linked from the slot folder where the filesystem
allows (slots write every file atomically, so a later rewrite never reaches the record), else copied.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from experiment.atomic import atomic_write_json
from experiment.config import ConfigError, load_experiment
from experiment.records import METRICS_JSON, METRICS_TXT, R2_LOG, SLOT_IMAGES, STATUS_JSON, utc_now
from experiment.yaml_io import YamlError

from .base import JobOutcome, SlotJob

RECORD_JSON = "record.json"
# What the controller and the views read from a slot folder: the status, the metrics, the R2 log, the images.
RECORDED_FILES = (STATUS_JSON, METRICS_JSON, METRICS_TXT, R2_LOG, *SLOT_IMAGES.values())
# The config sections a slot job trains on (``claude:`` and ``dispatch:`` steer the controller, not the slot).
TRAINED_SECTIONS = ("simulation", "graph_model", "training")


class SlotRecordError(RuntimeError):
    """A slot record is missing, unreadable or does not fit the job asked of it; one line naming the file."""


class RecordedFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class SlotRecord(BaseModel):
    """``record.json``: one finished slot, keyed by its job name and the config it trained."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    name: str
    config_sha256: str | None  # None: the job named no --config (executor tests' stand-in jobs)
    config: dict[str, Any] | None
    outcome: JobOutcome
    files: dict[str, RecordedFile]
    omitted: dict[str, RecordedFile] = Field(
        default_factory=dict, description="files the slot wrote that this copy leaves out (export_slot_records)"
    )
    recorded_at: str


# ---------------------------------------------------------------------------------------------
# The config a job trains


def _last_value(command: list[str], option: str) -> str | None:
    values = [command[i + 1] for i, word in enumerate(command[:-1]) if word == option]
    return values[-1] if values else None


def trained_config(job: SlotJob) -> dict[str, Any] | None:
    """The sections of the job's ``--config`` it trains on, with ``--iterations`` applied; None without --config."""
    text = _last_value(job.command, "--config")
    if text is None:
        return None
    path = Path(text) if Path(text).is_absolute() else (job.cwd or Path.cwd()) / text
    try:
        config = load_experiment(path)
    except (ConfigError, YamlError, OSError) as err:
        raise SlotRecordError(f"{job.name}: --config {path}: {' '.join(str(err).split())}") from None
    iterations = _last_value(job.command, "--iterations")
    if iterations is not None:
        if not iterations.isdigit():
            raise SlotRecordError(f"{job.name}: --iterations {iterations!r} is not a whole number")
        config = config.model_copy(deep=True)
        config.training.n_iterations = int(iterations)
    data = config.model_dump(mode="json")
    return {section: data[section] for section in TRAINED_SECTIONS}


def config_digest(config: dict[str, Any] | None) -> str | None:
    if config is None:
        return None
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def first_difference(asked: Any, recorded: Any, path: str = "") -> str | None:
    """The first key path where two configs differ, with both values (None when equal)."""
    if isinstance(asked, dict) and isinstance(recorded, dict):
        for key in sorted(set(asked) | set(recorded)):
            where = f"{path}.{key}" if path else key
            if key not in asked or key not in recorded:
                return f"{where}: {'only recorded' if key in recorded else 'only asked'}"
            found = first_difference(asked[key], recorded[key], where)
            if found:
                return found
        return None
    if asked != recorded:
        return f"{path or '<root>'}: asked {asked!r}, recorded {recorded!r}"
    return None


# ---------------------------------------------------------------------------------------------
# Writing and reading


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _place(src: Path, dst: Path) -> None:
    """``dst`` becomes a hard link to (or a copy of) ``src``, replaced atomically."""
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def write_slot_record(records_dir: Path, job: SlotJob, outcome: JobOutcome) -> Path:
    """Record a finished job's slot files and outcome under ``records_dir/<job name>``; returns that folder.

    Idempotent: a record written again (a slot collected again after a controller restart) replaces the old.
    """
    config = trained_config(job)
    folder = Path(records_dir) / job.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECORD_JSON).unlink(missing_ok=True)  # no stale record describes the files while they change
    files: dict[str, RecordedFile] = {}
    for name in RECORDED_FILES:
        src = job.out_dir / name
        if src.is_file():
            _place(src, folder / name)
            files[name] = RecordedFile(size=(folder / name).stat().st_size, sha256=file_sha256(folder / name))
        else:
            (folder / name).unlink(missing_ok=True)
    record = SlotRecord(
        name=job.name,
        config_sha256=config_digest(config),
        config=config,
        outcome=outcome,
        files=files,
        recorded_at=utc_now(),
    )
    atomic_write_json(folder / RECORD_JSON, record.model_dump(mode="json"))
    return folder


def recorded_names(records_dir: Path) -> list[str]:
    return sorted(p.parent.name for p in Path(records_dir).glob(f"*/{RECORD_JSON}"))


def read_slot_record(records_dir: Path, name: str) -> SlotRecord:
    """The record of job ``name``; SlotRecordError (one line) when it is missing or invalid."""
    path = Path(records_dir) / name / RECORD_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = recorded_names(records_dir)
        span = f"{len(known)} recorded: {known[0]} .. {known[-1]}" if known else "none recorded"
        raise SlotRecordError(f"{path}: no slot record of {name} ({span})") from None
    except (OSError, ValueError) as err:
        raise SlotRecordError(f"{path}: unreadable slot record: {' '.join(str(err).split())}") from None
    try:
        record = SlotRecord.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise SlotRecordError(f"{path}: {field}: {first['msg']}") from None
    if record.name != name:
        raise SlotRecordError(f"{path}: name: records {record.name!r}, expected {name!r}")
    return record


def check_config(record: SlotRecord, job: SlotJob, records_dir: Path) -> None:
    """SlotRecordError naming the first differing key when the job's config is not the recorded one."""
    config = trained_config(job)
    if config_digest(config) == record.config_sha256:
        return
    path = Path(records_dir) / job.name / RECORD_JSON
    where = first_difference(config, record.config) or "config_sha256: the recorded hash does not match"
    raise SlotRecordError(f"{path}: {job.name} asks another config than the recorded one: {where}")


def recorded_bytes(record: SlotRecord, records_dir: Path, name: str) -> bytes:
    """A recorded file's bytes, checked against the size and hash in ``record.json``."""
    path = Path(records_dir) / record.name / name
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SlotRecordError(f"{path}: recorded file unreadable: {err.strerror or err}") from None
    if hashlib.sha256(data).hexdigest() != record.files[name].sha256:
        raise SlotRecordError(f"{path}: sha256 differs from {RECORD_JSON} (the record was changed)")
    return data


def export_slot_records(src: Path, dst: Path, *, max_file_bytes: int | None = None) -> list[str]:
    """Copy every record of ``src`` to ``dst`` (replaced); files over ``max_file_bytes`` are left out and
    listed under ``omitted`` (kept small for a repository). Returns the names copied."""
    names = recorded_names(src)
    if dst.exists():
        shutil.rmtree(dst)
    for name in names:
        record = read_slot_record(src, name)
        kept = {f: meta for f, meta in record.files.items() if max_file_bytes is None or meta.size <= max_file_bytes}
        omitted = {**record.omitted, **{f: meta for f, meta in record.files.items() if f not in kept}}
        (dst / name).mkdir(parents=True)
        for file in kept:
            shutil.copyfile(src / name / file, dst / name / file)
        copy = record.model_copy(update={"files": kept, "omitted": omitted})
        atomic_write_json(dst / name / RECORD_JSON, copy.model_dump(mode="json"))
    return names
