"""Typed journal events: one pydantic model per event type, one discriminated union over them.

Every line of ``journal.jsonl`` is one of these models. ``type`` names the event (the discriminator),
``v`` is the schema version (lines written before it existed carry none and load as version 1), ``seq``
and ``at`` are stamped by ``Journal.append``. Payloads are typed (a SlotResult, a JobHandle, PlannedSlots),
so they are validated once, when the line is read, and never looked up by string again.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from agent.config_policy import EditRejected, Trainable, normalize_trainable
from agent.executors.base import JobHandle
from agent.llm.base import Usage
from agent.llm.transcripts import TextDigest
from agent.reply_check import PlannedSlot
from experiment.exploration import SlotResult

SCHEMA_VERSION = 1


class EventError(ValueError):
    """An event that is not one of the known types, or whose fields break the schema; one line, field and rule."""


class EventBase(BaseModel):
    """Fields every event has: schema version, position in the journal, time written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = SCHEMA_VERSION
    seq: int = Field(0, ge=0, description="1-based position in the journal; 0 until appended")
    at: str = Field("", description="UTC time the event was appended")


class _Start(EventBase):
    """The command-line settings a controller invocation recorded (the run's planned size among them)."""

    instructions: str | None = None
    n_iterations: int = Field(ge=1)
    n_slots: int | None = Field(None, ge=1, description="batch size; absent in journals before it was recorded")
    llm: str | None = None
    trainer_iterations: int | None = None
    slot_command: list[str] | None = None


class RunStarted(_Start):
    type: Literal["run_started"] = "run_started"
    name: str


class RunResumed(_Start):
    type: Literal["run_resumed"] = "run_resumed"


class _OfBatch(EventBase):
    """An event about one batch of slots (batch 1 is the first that trains)."""

    batch: int = Field(ge=1)


class _AfterBatch(EventBase):
    """An event about the analysis after a batch (batch 0: the PARALLEL START exchange, before any batch)."""

    batch: int = Field(ge=0)


class ConfigsApplied(_OfBatch):
    type: Literal["configs_applied"] = "configs_applied"


class SlotSubmitted(EventBase):
    type: Literal["slot_submitted"] = "slot_submitted"
    iteration: int = Field(ge=1)
    slot: int = Field(ge=0)
    handle: JobHandle


def current_trainable(trainable: Trainable) -> Trainable:
    """A journaled trainable in today's schema: keys added since it was written take their defaults.

    Without this, a node written before a new training key existed would differ from its parent by that key,
    and a resumed run would reject every reply ("the config differs from ... by 'key: default -> None'").
    """
    try:
        return normalize_trainable(trainable, "trainable")
    except EditRejected as err:
        raise ValueError("; ".join(err.errors)) from None


class SlotFinished(EventBase):
    type: Literal["slot_finished"] = "slot_finished"
    iteration: int = Field(ge=1)
    result: SlotResult

    @field_validator("result")
    @classmethod
    def _in_todays_schema(cls, result: SlotResult) -> SlotResult:
        return result.model_copy(update={"trainable": current_trainable(result.trainable)})


class MemoryRead(_AfterBatch):
    """memory.md (and user_input.md) as the controller read them before an analysis exchange."""

    type: Literal["memory_read"] = "memory_read"
    text: str
    user_input: str | None = None


class LlmResponse(_AfterBatch):
    """One paid LLM call; ``text`` is whole, or (oversized) an excerpt described by ``text_digest``."""

    type: Literal["llm_response"] = "llm_response"
    call_id: str
    text: str
    text_digest: TextDigest | None = None
    backend: str
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    request_id: str | None = None

    def served_text(self) -> str:
        """The reply as the controller first saw it: whole, or its excerpt padded to its size (which the size
        check rejects exactly as it rejected the original)."""
        return self.text_digest.padded() if self.text_digest is not None else self.text

    def reask_shown(self) -> str:
        """The reply as a re-ask shows it: whole, or its excerpt and a note of its size and hash."""
        return self.text_digest.shown() if self.text_digest is not None else self.text


class ReplyRejected(_AfterBatch):
    type: Literal["reply_rejected"] = "reply_rejected"
    call_id: str
    errors: list[str]


class ReplyAccepted(EventBase):
    """A valid reply to batch ``source_batch``: its log entries, memory sections and the plan of ``for_batch``."""

    type: Literal["reply_accepted"] = "reply_accepted"
    source_batch: int = Field(ge=0)
    for_batch: int = Field(ge=1)
    call_id: str
    entries: str
    memory: dict[str, str]
    planned: list[PlannedSlot]

    @field_validator("planned")
    @classmethod
    def _in_todays_schema(cls, planned: list[PlannedSlot]) -> list[PlannedSlot]:
        return [p.model_copy(update={"trainable": current_trainable(p.trainable)}) for p in planned]


class AnalysisPending(_AfterBatch):
    type: Literal["analysis_pending"] = "analysis_pending"


class AnalysisApplied(_AfterBatch):
    type: Literal["analysis_applied"] = "analysis_applied"


class ReviewPause(_OfBatch):
    type: Literal["review_pause"] = "review_pause"


class ReviewDone(_OfBatch):
    type: Literal["review_done"] = "review_done"


class Interrupted(EventBase):
    type: Literal["interrupted"] = "interrupted"
    cancelled_jobs: int = Field(ge=0)


class RunFinished(EventBase):
    type: Literal["run_finished"] = "run_finished"
    n_iterations: int = Field(ge=0)


JournalEvent = Annotated[
    RunStarted
    | RunResumed
    | ConfigsApplied
    | SlotSubmitted
    | SlotFinished
    | MemoryRead
    | LlmResponse
    | ReplyRejected
    | ReplyAccepted
    | AnalysisPending
    | AnalysisApplied
    | ReviewPause
    | ReviewDone
    | Interrupted
    | RunFinished,
    Field(discriminator="type"),
]
EVENT_TYPES: tuple[type[EventBase], ...] = get_args(get_args(JournalEvent)[0])  # the union's members, in order


def event_name(cls: type[EventBase]) -> str:
    """The ``type`` value of an event model."""
    return cls.model_fields["type"].default


EVENT_NAMES: frozenset[str] = frozenset(map(event_name, EVENT_TYPES))

_ADAPTER: TypeAdapter[Any] | None = None


def _adapter() -> TypeAdapter[Any]:
    global _ADAPTER
    if _ADAPTER is None:  # built on first use: no work at import time
        _ADAPTER = TypeAdapter(JournalEvent)
    return _ADAPTER


def parse_event(data: Any) -> EventBase:
    """A journal line's JSON as its typed event; EventError (one line: the field and the rule) otherwise."""
    if not isinstance(data, dict):
        raise EventError(f"an event must be a JSON object, got {type(data).__name__}")
    type_ = data.get("type")
    if type_ is None:
        raise EventError("type: missing (an event without a type)")
    if type_ not in EVENT_NAMES:
        raise EventError(f"type: unknown event type {type_!r}")
    version = data.get("v", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise EventError(f"{type_}.v: schema version {version!r} is not supported (this code reads {SCHEMA_VERSION})")
    try:
        return _adapter().validate_python(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"][1:])  # loc[0] is the union tag
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise EventError(f"{type_}.{where}: {first['msg']}{more}") from None


def event_json(event: EventBase) -> dict[str, Any]:
    """An event as the journal line stores it: ``type`` first, then the common fields and the payload."""
    data = event.model_dump(mode="json")
    return {"type": data.pop("type"), **data}
