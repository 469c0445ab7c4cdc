"""Replay recorded transcripts as an LLM backend: offline tests and re-runs without paying again.

Recorded replies are served in call order. A request whose fingerprint no longer matches its
recording fails loudly, naming the call and the part that changed, unless prompt drift is allowed.
A recorded failure is replayed as the same failure, so the loop takes the same path (e.g. a re-ask).
"""

from __future__ import annotations

from pathlib import Path

from agent.llm.base import LLMBackend, LLMCallFailed, LLMRequest, LLMResponse, Usage
from agent.llm.transcripts import TranscriptRecord, TranscriptStore, describe_request

DRIFT_PARTS = {"system", "prompt", "images"}


class ReplayBackend(LLMBackend):
    """Serves the recordings of ``store_or_dir``.

    ``strict``: the next request must be the next recorded call (same ``call_id``, in order); otherwise
    the first unserved recording of that ``call_id`` is used. ``allow_prompt_drift`` ignores changes of
    system text, prompt and images (a model change still fails).
    """

    name = "replay"

    def __init__(
        self, store_or_dir: TranscriptStore | str | Path, strict: bool = True, *, allow_prompt_drift: bool = False
    ) -> None:
        self.store = store_or_dir if isinstance(store_or_dir, TranscriptStore) else TranscriptStore(store_or_dir)
        self.strict = strict
        self.allow_prompt_drift = allow_prompt_drift
        self._records: list[TranscriptRecord] = self.store.records()
        self._served: set[int] = set()

    @property
    def remaining(self) -> int:
        return len(self._records) - len(self._served)

    def _next_for(self, request: LLMRequest) -> TranscriptRecord:
        unserved = [r for r in self._records if r.seq not in self._served]
        if not unserved:
            raise LLMCallFailed(
                f"replay: no recorded transcript left for call {request.call_id!r} "
                f"({len(self._records)} served from {self.store.folder})"
            )
        if self.strict:
            record = unserved[0]
            if record.call_id != request.call_id:
                raise LLMCallFailed(
                    f"replay: call {request.call_id!r} asked but transcript {record.seq:04d} records "
                    f"{record.call_id!r} next ({self.store.folder})"
                )
            return record
        for record in unserved:
            if record.call_id == request.call_id:
                return record
        raise LLMCallFailed(f"replay: no unserved transcript of call {request.call_id!r} in {self.store.folder}")

    def _check_fingerprint(self, request: LLMRequest, record: TranscriptRecord) -> None:
        fingerprint, _ = describe_request(request)
        changed = record.fingerprint.differences(fingerprint)
        if self.allow_prompt_drift:
            changed = [part for part in changed if part not in DRIFT_PARTS]
        if changed:
            raise LLMCallFailed(
                f"replay: call {request.call_id!r} differs from transcript {record.seq:04d} in "
                f"{', '.join(changed)} (re-record, or allow prompt drift if intended)"
            )

    def complete(self, request: LLMRequest) -> LLMResponse:
        record = self._next_for(request)
        self._check_fingerprint(request, record)
        self._served.add(record.seq)
        if not record.ok:
            raise LLMCallFailed(f"replay of {record.seq:04d}: {record.error}", raw=record.raw)
        return record.to_response().model_copy(
            update={"usage": Usage(), "cost_usd": 0.0, "elapsed_s": 0.0, "backend": f"replay:{record.backend}"}
        )
