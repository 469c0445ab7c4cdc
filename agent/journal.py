"""Append-only JSON-lines journal of a run: the single source of truth for resume and rebuild.

Events are the typed models of agent.events: ``append(SlotFinished(...))`` writes one, ``events`` and the
lookups (``of_type(SlotFinished)``, ``last``, ``has``) return them validated; readers reduce them with
agent.run_state.RunState. Each event is one line, written with flush + fsync while holding the run's lock.
A torn last line (a crash mid-write) is tolerated on read and cut off before the next append. An event is at most
MAX_EVENT_BYTES: callers store oversized texts as a digest (agent.llm.transcripts.kept_text), and an event
over the limit is refused before anything is written, so the journal never balloons.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from filelock import FileLock, Timeout

from agent.events import EventBase, EventError, event_json, event_name, parse_event
from experiment.records import utc_now

JOURNAL_NAME = "journal.jsonl"
LOCK_NAME = ".controller.lock"
CRASH_ENV = "FLYVIS_AGENT_CRASH_AFTER"
MAX_EVENT_BYTES = 8 * 1024 * 1024  # a whole accepted reply is < 1 MB even JSON-escaped

E = TypeVar("E", bound=EventBase)


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C that arrives inside the block and deliver it once the block is done.

    A Python-level handler records it: masking SIGINT in the main thread is not enough, since the kernel may hand a
    process signal to another thread (a worker, tqdm's monitor) and Python then raises it in the main thread
    anyway. Only the main thread can swap handlers; elsewhere (and under a handler set outside Python) the block
    runs as it is.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            signal.raise_signal(signal.SIGINT)


class JournalError(RuntimeError):
    """The journal is unreadable beyond a torn last line (not JSON, an unknown event type, a field that breaks
    its event's schema), or the run is locked by another controller."""


class RunLock:
    """Exclusive lock on a run directory: a second controller on the same run is refused."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self._lock = FileLock(str(self.path))

    def __enter__(self) -> RunLock:
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise JournalError(
                f"{self.path.parent}: another controller is running on this run directory (lock {self.path.name})"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class Journal:
    """Typed events of one run, in order (agent.events). ``append`` is durable before it returns."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / JOURNAL_NAME
        self.events: list[EventBase] = []
        self._crash_after = _parse_crash_spec(os.environ.get(CRASH_ENV, ""))
        self._load()

    def _load(self) -> None:
        self._valid_size = 0
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        offset = 0
        for number, line in enumerate(raw.split(b"\n"), start=1):
            end = offset + len(line)
            complete = end < len(raw)  # followed by a newline
            if line.strip():
                try:
                    event = json.loads(line)
                except ValueError:
                    if not complete:
                        break  # torn last line of a crashed write: cut on the next append
                    raise JournalError(f"{self.path}: line {number}: corrupt event (not JSON)") from None
                if not complete:
                    break  # a last line without its newline was never acknowledged
                try:
                    self.events.append(parse_event(event))
                except EventError as err:
                    raise JournalError(f"{self.path}: line {number}: {err}") from None
            if complete:
                self._valid_size = end + 1
            offset = end + 1

    def _truncate_torn_tail(self) -> None:
        if self.path.exists() and self.path.stat().st_size > self._valid_size:
            with open(self.path, "r+b") as fh:
                fh.truncate(self._valid_size)
                fh.flush()
                os.fsync(fh.fileno())

    def append(self, event: E) -> E:
        """Record an event durably (stamped with its seq and time); then honour a crash point (fault injection)."""
        stamped = event.model_copy(update={"seq": len(self.events) + 1, "at": utc_now()})
        type_ = event_name(type(event))
        line = (json.dumps(event_json(stamped), allow_nan=False) + "\n").encode("utf-8")
        if len(line) > MAX_EVENT_BYTES:
            raise JournalError(
                f"{self.path}: event {type_} of {len(line):,} bytes is over the limit of {MAX_EVENT_BYTES:,}"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate_torn_tail()
        # Ctrl-C waits until the line is written and counted: one landing in the fsync (long on a loaded machine)
        # left the written line uncounted, and the next append cut it off (a submitted job no longer journaled).
        with _sigint_deferred():
            with open(self.path, "ab") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self._valid_size = self.path.stat().st_size
            self.events.append(stamped)
        self._maybe_crash(type_)
        return stamped

    def of_type(self, cls: type[E], **match: object) -> list[E]:
        """The events of one model, in order, whose fields equal ``match``."""
        return [e for e in self.events if isinstance(e, cls) and all(getattr(e, k) == v for k, v in match.items())]

    def last(self, cls: type[E], **match: object) -> E | None:
        found = self.of_type(cls, **match)
        return found[-1] if found else None

    def has(self, cls: type[E], **match: object) -> bool:
        return self.last(cls, **match) is not None

    def _maybe_crash(self, type_: str) -> None:
        if not self._crash_after:
            return
        name, nth = self._crash_after
        if type_ != name:
            return
        if sum(1 for e in self.events if event_name(type(e)) == name) == nth:
            os.kill(os.getpid(), signal.SIGKILL)


def _parse_crash_spec(spec: str) -> tuple[str, int] | None:
    """``event`` or ``event:N``: SIGKILL this process right after the N-th such event (default 1st)."""
    if not spec:
        return None
    name, _, nth = spec.partition(":")
    return name, int(nth) if nth else 1
