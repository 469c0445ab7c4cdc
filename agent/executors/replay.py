"""Replay backend: serves recorded slot results instead of training (``--executor replay --slot-records DIR``).

A job is looked up by its name (``iter_NNN_slot_SS``) in a folder of slot records
(``agent.executors.records``, e.g. ``RUN_DIR/slot_records`` of a recorded run). Submitting it checks that the
job trains the recorded config, writes the recorded files into the slot folder (each checked against its
hash) and finishes it at once with the recorded outcome, so a recorded failure replays as the same failure.
A job without a record, a config that differs from the recorded one, or a changed record file is a
``SlotRecordError`` (one line naming the record): a replay never trains and never guesses.
"""

from __future__ import annotations

import os
from pathlib import Path

from experiment.atomic import atomic_write_bytes
from experiment.records import SLOT_LOG, STATUS_JSON, utc_now

from .base import PREVIOUS_STATUS, Executor, JobHandle, JobOutcome, SlotJob
from .records import (
    RECORDED_FILES,
    SlotRecord,
    SlotRecordError,
    check_config,
    read_slot_record,
    recorded_bytes,
)

REPLAY_POLL_S = 0.05  # every replayed job is finished when submitted


class ReplayExecutor(Executor):
    """Finished-at-submit jobs whose outcome and files come from ``records_dir``."""

    backend = "replay"

    def __init__(self, records_dir: Path, poll_s: float = REPLAY_POLL_S) -> None:
        super().__init__(poll_s)
        self.records_dir = Path(records_dir)
        if not self.records_dir.is_dir():
            raise SlotRecordError(f"--slot-records {self.records_dir}: no such folder")
        self._records: dict[str, SlotRecord] = {}

    def submit(self, job: SlotJob) -> JobHandle:
        record = read_slot_record(self.records_dir, job.name)
        check_config(record, job, self.records_dir)
        self._serve(record, job.out_dir)
        return JobHandle(
            backend=self.backend,
            job_id=f"replay-{job.name}",
            name=job.name,
            out_dir=job.out_dir,
            submitted_at=utc_now(),
        )

    def is_active(self, handle: JobHandle) -> bool:
        self._check_backend(handle)
        return False

    def cancel(self, handle: JobHandle) -> None:
        """A replayed job is finished when submitted; there is nothing to stop."""
        self._check_backend(handle)

    def reattach(self, handle: JobHandle) -> bool:
        self._check_backend(handle)
        if handle.name in self._records:
            return True
        try:
            record = read_slot_record(self.records_dir, handle.name)
        except SlotRecordError:
            return False  # submitted again, which names the missing record
        self._serve(record, handle.out_dir)
        return True

    def outcome(self, handle: JobHandle) -> JobOutcome:
        """The recorded outcome (the recorded status file is served too, but the outcome is what was collected)."""
        self._check_backend(handle)
        record = self._records.get(handle.name) or read_slot_record(self.records_dir, handle.name)
        return record.outcome

    def _lost_outcome(self, handle: JobHandle) -> JobOutcome:
        return self.outcome(handle)

    def _serve(self, record: SlotRecord, out: Path) -> None:
        """Write the record's files into ``out`` (every hash checked first; the status file last, as a slot does)."""
        payload = {name: recorded_bytes(record, self.records_dir, name) for name in record.files}
        out.mkdir(parents=True, exist_ok=True)
        status = out / STATUS_JSON
        if status.exists():
            os.replace(status, out / PREVIOUS_STATUS)
        for name in RECORDED_FILES:
            if name not in payload:
                (out / name).unlink(missing_ok=True)  # nothing of an earlier attempt is read as this one's
            elif name != STATUS_JSON:
                atomic_write_bytes(out / name, payload[name])
        if STATUS_JSON in payload:
            atomic_write_bytes(status, payload[STATUS_JSON])
        left_out = f"; left out of this copy: {', '.join(sorted(record.omitted))}" if record.omitted else ""
        with (out / SLOT_LOG).open("a", encoding="utf-8") as log:
            log.write(
                f"=== flyvis-agent: {record.name} replayed from {self.records_dir / record.name} at {utc_now()} "
                f"({record.outcome.state}{left_out}) ===\n"
            )
        self._records[record.name] = record
