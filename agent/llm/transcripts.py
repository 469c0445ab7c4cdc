"""Transcripts: every LLM exchange as one JSON file, replayable and reusable on resume.

Files are ``NNNN_<call_id>.json`` in one folder, numbered in call order and written atomically. Each
holds the request fingerprint (model, system-text hash, prompt text, image hashes), the prompt
itself, the image hashes (never their bytes), the response, the provider's raw response, usage,
cost and timing. The system text, identical across calls, is kept once under ``system/<sha256>.txt``.

A reply or prompt over MAX_KEPT_CHARS (a reply that long is rejected unread: agent.reply_parse) is kept as a
TextDigest -- its SHA-256, its size and its first EXCERPT_CHARS characters -- and the provider's raw response,
which repeats it, is dropped: a hostile 50 MB reply costs a few kB on disk. Served again (replay, resume), such
a reply is its excerpt padded with spaces to the recorded size, so the controller rejects it the same way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.llm.base import LLMBackend, LLMCallFailed, LLMRequest, LLMResponse, Usage, one_line, scrub
from experiment.atomic import atomic_write_text

FORMAT = "flyvis-agent-transcript/1"
FILE_PATTERN = re.compile(r"^(\d{4,})_(.+)\.json$")
MISSING_IMAGE = "missing"
MAX_KEPT_CHARS = 200_000  # longer replies / prompts are kept as a digest; >= agent.reply_parse.MAX_REPLY_CHARS
EXCERPT_CHARS = 2_000
HASH_CHUNK = 1 << 20


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks, or ``"missing"`` when it does not exist."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(HASH_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        return MISSING_IMAGE
    return digest.hexdigest()


class TextDigest(BaseModel):
    """What is kept of an oversized text: its hash, its size and its beginning."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str
    chars: int = Field(ge=0)
    excerpt: str

    @classmethod
    def of(cls, text: str, limit: int = EXCERPT_CHARS) -> TextDigest:
        return cls(sha256=sha256_text(text), chars=len(text), excerpt=text[:limit])

    def shown(self) -> str:
        """The excerpt and the note: what a prompt shows of the cut text."""
        return f"{self.excerpt}\n{self.note()}"

    def note(self) -> str:
        """One line saying what was left out."""
        return (
            f"[... cut: {self.chars:,} characters in all (sha256 {self.sha256[:16]}); "
            f"only the first {len(self.excerpt):,} are kept]"
        )

    def padded(self) -> str:
        """The excerpt padded with spaces to the original size (same length, same size verdict)."""
        return self.excerpt + " " * (self.chars - len(self.excerpt))


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` itself when it has at most ``limit`` characters, else its beginning and a note of the rest."""
    if len(text) <= limit:
        return text
    return TextDigest.of(text, limit).shown()


def kept_text(text: str) -> tuple[str, TextDigest | None]:
    """(text to store, digest): the text whole up to MAX_KEPT_CHARS, else its excerpt and its digest."""
    if len(text) <= MAX_KEPT_CHARS:
        return text, None
    digest = TextDigest.of(text)
    return digest.excerpt, digest


class ImageRecord(BaseModel):
    """An image as the transcript keeps it: where it was, its label and its hash."""

    model_config = ConfigDict(extra="forbid")

    label: str
    path: str
    sha256: str


class Fingerprint(BaseModel):
    """Identity of a request: a change in any part means the recorded reply answered another question."""

    model_config = ConfigDict(extra="forbid")

    sha256: str
    model: str
    system_sha256: str
    prompt_sha256: str
    image_sha256s: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, model: str, system: str, prompt: str, image_sha256s: list[str]) -> Fingerprint:
        system_sha = sha256_text(system)
        canonical = json.dumps(
            {"model": model, "system_sha256": system_sha, "prompt": prompt, "image_sha256s": image_sha256s},
            sort_keys=True,
            ensure_ascii=False,
        )
        return cls(
            sha256=sha256_text(canonical),
            model=model,
            system_sha256=system_sha,
            prompt_sha256=sha256_text(prompt),
            image_sha256s=list(image_sha256s),
        )

    def differences(self, other: Fingerprint) -> list[str]:
        """Names of the parts that differ: ``model``, ``system``, ``prompt``, ``images``."""
        parts = []
        if self.model != other.model:
            parts.append("model")
        if self.system_sha256 != other.system_sha256:
            parts.append("system")
        if self.prompt_sha256 != other.prompt_sha256:
            parts.append("prompt")
        if self.image_sha256s != other.image_sha256s:
            parts.append("images")
        return parts


def describe_request(request: LLMRequest) -> tuple[Fingerprint, list[ImageRecord]]:
    """Fingerprint and image records of a request (reads each image once to hash it)."""
    images = [ImageRecord(label=im.label, path=str(im.path), sha256=sha256_file(im.path)) for im in request.images]
    fingerprint = Fingerprint.of(request.model, request.system, request.prompt, [im.sha256 for im in images])
    return fingerprint, images


class TranscriptRecord(BaseModel):
    """One exchange on disk; ``ok`` is false for a billed or unbilled failure (``error`` says why)."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["flyvis-agent-transcript/1"] = FORMAT
    seq: int = Field(ge=1)
    call_id: str
    purpose: str
    backend: str
    model: str
    max_tokens: int
    fingerprint: Fingerprint
    prompt: str
    prompt_digest: TextDigest | None = Field(None, description="set when ``prompt`` is only an excerpt")
    images: list[ImageRecord] = Field(default_factory=list)
    started_at: str
    elapsed_s: float = Field(ge=0)
    ok: bool
    error: str | None = None
    response: LLMResponse | None = None
    response_digest: TextDigest | None = Field(None, description="set when the response text is only an excerpt")
    raw: Any = None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = Field(0.0, ge=0)

    def to_response(self) -> LLMResponse:
        """The recorded reply with its raw provider response; only for ``ok`` records."""
        if self.response is None:
            raise LLMCallFailed(f"transcript {self.seq:04d}_{self.call_id}: has no response to serve ({self.error})")
        update: dict[str, Any] = {"raw": self.raw}
        if self.response_digest is not None:
            update["text"] = self.response_digest.padded()
        return self.response.model_copy(update=update)


class TranscriptStore:
    """The transcripts folder of a run: append records, list them, find a call's reply."""

    def __init__(self, folder: str | Path, redact: tuple[str, ...] = ()) -> None:
        self.folder = Path(folder)
        self._redact = redact

    def _paths(self) -> list[tuple[int, Path]]:
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.iterdir():
            match = FILE_PATTERN.match(path.name)
            if match and path.is_file():
                found.append((int(match.group(1)), path))
        return sorted(found)

    @staticmethod
    def load(path: Path) -> TranscriptRecord:
        """Read one transcript file; a bad one is a one-line error naming it."""
        try:
            return TranscriptRecord.model_validate_json(path.read_bytes())
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "(root)"
            raise LLMCallFailed(f"{path}: field {field}: {one_line(first['msg'])}") from None
        except OSError as err:
            raise LLMCallFailed(f"{path}: cannot read transcript: {err.strerror}") from None

    def records(self) -> list[TranscriptRecord]:
        """All records in call order."""
        return [self.load(path) for _, path in self._paths()]

    def find(self, call_id: str) -> TranscriptRecord | None:
        """The latest successful record of ``call_id`` (what a resumed run may reuse), or ``None``."""
        for _, path in reversed(self._paths()):
            if FILE_PATTERN.match(path.name).group(2) == call_id:  # type: ignore[union-attr]
                record = self.load(path)
                if record.ok:
                    return record
        return None

    def total_cost_usd(self) -> float:
        return sum(r.cost_usd for r in self.records())

    def _write_system(self, system: str, system_sha256: str) -> None:
        path = self.folder / "system" / f"{system_sha256}.txt"
        if not path.exists():
            atomic_write_text(path, system)

    def append(
        self,
        request: LLMRequest,
        *,
        backend: str,
        started_at: str,
        elapsed_s: float,
        response: LLMResponse | None = None,
        error: str | None = None,
        fingerprint: Fingerprint | None = None,
        images: list[ImageRecord] | None = None,
        raw: Any = None,
    ) -> TranscriptRecord:
        """Record one exchange as the next numbered file (under a lock: numbers never collide)."""
        if fingerprint is None or images is None:
            fingerprint, images = describe_request(request)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_system(request.system, fingerprint.system_sha256)
        with FileLock(str(self.folder / ".transcripts.lock")):
            paths = self._paths()
            seq = (paths[-1][0] + 1) if paths else 1
            prompt, prompt_digest = kept_text(request.prompt)
            kept_response, response_digest = response, None
            if response is not None:
                text, response_digest = kept_text(response.text)
                kept_response = response.model_copy(update={"text": text})
            if raw is None and response is not None:
                raw = response.raw
            if response_digest is not None or len(json.dumps(raw, default=str)) > MAX_KEPT_CHARS:
                raw = None  # the provider's response repeats the oversized text
            record = TranscriptRecord(
                seq=seq,
                call_id=request.call_id,
                purpose=request.purpose,
                backend=response.backend if response is not None else backend,
                model=request.model,
                max_tokens=request.max_tokens,
                fingerprint=fingerprint,
                prompt=prompt,
                prompt_digest=prompt_digest,
                images=images,
                started_at=started_at,
                elapsed_s=elapsed_s,
                ok=error is None,
                error=error,
                response=kept_response.model_copy(update={"raw": None}) if kept_response is not None else None,
                response_digest=response_digest,
                raw=raw,
                usage=response.usage if response is not None else Usage(),
                cost_usd=response.cost_usd if response is not None else 0.0,
            )
            secrets = (*self._redact, os.environ.get("ANTHROPIC_API_KEY"))
            text = scrub(record.model_dump_json(indent=2), *secrets) + "\n"
            atomic_write_text(self.folder / f"{seq:04d}_{request.call_id}.json", text)
        return record


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class RecordingBackend(LLMBackend):
    """Records every call of ``inner`` (failures included); with ``reuse``, a call already answered with the
    same fingerprint is served from its transcript instead of being paid again (resume)."""

    def __init__(self, inner: LLMBackend, store: TranscriptStore, *, reuse: bool = True) -> None:
        self.inner = inner
        self.store = store
        self.reuse = reuse
        self.name = inner.name

    def complete(self, request: LLMRequest) -> LLMResponse:
        fingerprint, images = describe_request(request)
        if self.reuse:
            recorded = self.store.find(request.call_id)
            if recorded is not None and recorded.fingerprint.sha256 == fingerprint.sha256:
                return recorded.to_response().model_copy(
                    update={
                        "usage": Usage(),
                        "cost_usd": 0.0,
                        "elapsed_s": 0.0,
                        "backend": f"reused:{recorded.backend}",
                    }
                )
        started_at, t0 = utc_now(), time.monotonic()
        try:
            response = self.inner.complete(request)
        except LLMCallFailed as err:
            self.store.append(
                request,
                backend=self.inner.name,
                started_at=started_at,
                elapsed_s=time.monotonic() - t0,
                response=err.response,
                error=str(err),
                fingerprint=fingerprint,
                images=images,
                raw=err.raw,
            )
            raise
        self.store.append(
            request,
            backend=self.inner.name,
            started_at=started_at,
            elapsed_s=response.elapsed_s or time.monotonic() - t0,
            response=response,
            fingerprint=fingerprint,
            images=images,
        )
        return response
