"""memory.md and analysis.md: the run's working memory and its append-only log.

memory.md is a document of ``## `` / ``### `` sections (PROTOCOL.md section 9). The LLM owns six
sections (kept verbatim; replaced whole by its reply or edited by a human between batches); the
controller owns Variance Estimates, UCB Ranking, Run Status and User Input (rewritten each batch).
Parsing is forgiving: a section a human deleted is recreated empty, unknown sections are kept
verbatim where they stand, and ``parse(text).render() == text`` for any text whose sections are all
present and whose heading lines are in canonical form.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from experiment.atomic import atomic_write_bytes, atomic_write_text
from experiment.exploration import SlotResult, block_of, block_range

MEMORY_FILE = "memory.md"
ANALYSIS_FILE = "analysis.md"

LLM_SECTIONS: tuple[str, ...] = (
    "Knowledge Base",
    "Established Principles",
    "Falsified Hypotheses",
    "Open Questions",
    "Previous Block Summary",
    "Current Block",
)
USER_INPUT = "User Input"
CONTROLLER_SECTIONS: tuple[str, ...] = (USER_INPUT, "Variance Estimates", "UCB Ranking", "Run Status")
REQUIRED_CONTROLLER_SECTIONS: tuple[str, ...] = CONTROLLER_SECTIONS[1:]

# (group heading, its ### sections) in canonical order.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Exploration Knowledge", LLM_SECTIONS[:4]),
    ("Blocks", LLM_SECTIONS[4:]),
    ("Controller (rewritten after every batch)", CONTROLLER_SECTIONS),
)

EMPTY_BODIES: dict[str, str] = {
    "Knowledge Base": (
        "| Parameter | Values tried | Effect on conn_R2 | Effect on V_rest_R2 | Evidence (iters) |\n"
        "|-----------|--------------|-------------------|---------------------|------------------|"
    ),
    "Established Principles": "(none yet: a principle needs >= 3 runs per config and a clear effect)",
    "Falsified Hypotheses": "(none yet)",
    "Open Questions": "(none yet)",
    "Previous Block Summary": "(no block finished yet)",
    "Current Block": "Hypothesis: (to be written)\nIterations: (to be written)\nEmerging observations: (none yet)",
    USER_INPUT: "(no user input)",
    "Variance Estimates": "(no results yet)",
    "UCB Ranking": "(no results yet)",
    "Run Status": "(no results yet)",
}

_HEADING = re.compile(r"^(#{2,3})[ \t]+(.*?)[ \t]*$")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")


class MemoryDocumentError(ValueError):
    """A memory update breaks the section rules; one line naming the section and the rule."""


def _norm(title: str) -> str:
    return " ".join(title.split()).casefold()


_CANONICAL = {_norm(t): t for t in (*LLM_SECTIONS, *CONTROLLER_SECTIONS)}
_GROUP_CANONICAL = {_norm(g): g for g, _ in GROUPS}


def _body(content: str) -> str:
    """Stored form of a section body: a blank line, the content, a blank line."""
    text = content.strip("\n")
    return f"\n{text}\n\n" if text.strip() else "\n"


def _without_group_headings(text: str) -> str:
    """``text`` less the lines that restate a ``## `` group heading of the LLM's own sections (``## Blocks``): a
    reply that copies the document's layout around its ``### `` sections means nothing by them. The controller's
    group heading stays an error."""
    groups = {_norm(group) for group, members in GROUPS if set(members) <= set(LLM_SECTIONS)}
    kept = [ln for ln in text.splitlines(keepends=True) if not ((m := _HEADING.match(ln)) and m.group(1) == "##"
            and _norm(m.group(2)) in groups)]  # fmt: skip
    return "".join(kept)


def _heading_lines(text: str) -> list[str]:
    """``## `` / ``### `` heading lines of a text, outside fenced code blocks."""
    found, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and _HEADING.match(line):
            found.append(line)
    return found


class Section(BaseModel):
    """A ``## `` (level 2) or ``### `` (level 3) heading and the text up to the next such heading."""

    model_config = ConfigDict(extra="forbid")

    level: Literal[2, 3]
    title: str
    body: str = "\n"

    @property
    def key(self) -> str:
        return _norm(self.title)

    @property
    def content(self) -> str:
        return self.body.strip("\n")

    def render(self) -> str:
        return f"{'#' * self.level} {self.title}\n{self.body}"


class MemoryDocument(BaseModel):
    """memory.md as a preamble plus an ordered list of sections."""

    model_config = ConfigDict(extra="forbid")

    preamble: str = ""
    sections: list[Section] = Field(default_factory=list)

    # ----- parse / render -------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> MemoryDocument:
        """Split on heading lines (outside code fences), then recreate any missing known section."""
        doc = cls()
        current: Section | None = None
        chunks: list[str] = []
        fenced = False
        for line in text.splitlines(keepends=True):
            bare = line.rstrip("\r\n")
            match = None if fenced else _HEADING.match(bare)
            if _FENCE.match(bare):
                fenced = not fenced
            if match:
                doc._close(current, chunks)
                level = len(match.group(1))
                title = match.group(2)
                canon = _CANONICAL.get(_norm(title)) if level == 3 else _GROUP_CANONICAL.get(_norm(title))
                current, chunks = Section(level=level, title=canon or title), []
            else:
                chunks.append(line)
        doc._close(current, chunks)
        doc._repair()
        return doc

    def _close(self, section: Section | None, chunks: list[str]) -> None:
        if section is None:
            self.preamble = "".join(chunks)
        else:
            section.body = "".join(chunks)
            self.sections.append(section)

    def render(self) -> str:
        return self.preamble + "".join(s.render() for s in self.sections)

    @classmethod
    def load(cls, path: str | Path) -> MemoryDocument:
        return cls.parse(Path(path).read_text(encoding="utf-8"))

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.render())

    # ----- lookup ---------------------------------------------------------------------------
    def _index(self, name: str, level: int = 3) -> int | None:
        key = _norm(name)
        return next((i for i, s in enumerate(self.sections) if s.level == level and s.key == key), None)

    def section(self, name: str) -> str | None:
        """Content of the first ``### name`` section (stripped of blank edges), None when absent."""
        i = self._index(name)
        return None if i is None else self.sections[i].content

    def llm_sections(self) -> dict[str, str]:
        return {name: self.section(name) or "" for name in LLM_SECTIONS}

    def extra_sections(self) -> list[Section]:
        """Sections that are neither known ``###`` sections nor group headings (human notes)."""
        known = set(_CANONICAL) | set(_GROUP_CANONICAL)
        return [s for s in self.sections if s.key not in known]

    # ----- repair ---------------------------------------------------------------------------
    def _insert_missing(self, group: str, members: tuple[str, ...], name: str) -> None:
        pos = members.index(name)
        before = [self._index(m) for m in members[:pos]]
        before = [i for i in before if i is not None]
        if before:
            at = max(before) + 1
        elif (g := self._index(group, level=2)) is not None:
            at = g + 1
        else:
            after = [i for i in (self._index(m) for m in members[pos + 1 :]) if i is not None]
            if after:
                at = min(after)
            else:
                self.sections.append(Section(level=2, title=group, body="\n"))
                at = len(self.sections)
        self.sections.insert(at, Section(level=3, title=name, body=_body(EMPTY_BODIES[name])))

    def _repair(self) -> None:
        """Recreate every missing required section at its canonical place; keep everything else."""
        for group, members in GROUPS:
            for name in members:
                if name != USER_INPUT and self._index(name) is None:
                    self._insert_missing(group, members, name)

    # ----- updates --------------------------------------------------------------------------
    def _set(self, name: str, content: str) -> None:
        i = self._index(name)
        if i is None:
            group, members = next(g for g in GROUPS if name in g[1])
            self._insert_missing(group, members, name)
            i = self._index(name)
            assert i is not None
        self.sections[i].body = _body(content)

    def replace_llm_sections(self, updates: dict[str, str]) -> MemoryDocument:
        """Replace LLM-owned sections whole (in place; returns self). Unknown names are an error."""
        checked: dict[str, str] = {}
        for name, content in updates.items():
            canon = _CANONICAL.get(_norm(name))
            if canon not in LLM_SECTIONS:
                owner = "is controller-owned" if canon else "is not a memory section"
                raise MemoryDocumentError(f"memory: section {name!r} {owner}; allowed: {', '.join(LLM_SECTIONS)}")
            content = _without_group_headings(content)
            if sum(1 for line in content.splitlines() if _FENCE.match(line)) % 2:
                raise MemoryDocumentError(f"memory: section {canon!r}: a ``` code fence is opened but not closed")
            heads = _heading_lines(content)
            if heads:
                raise MemoryDocumentError(
                    f"memory: section {canon!r}: line {heads[0]!r} is a ## / ### heading; use #### or a list"
                )
            checked[canon] = content
        for name, content in checked.items():
            self._set(name, content)
        return self

    def set_controller_sections(
        self, variance_md: str, ucb_md: str, status_md: str, user_input_ack: str | None = None
    ) -> MemoryDocument:
        """Rewrite the controller's sections (in place; returns self).

        The User Input section is written only when an acknowledgment is given; an older one stays.
        """
        if user_input_ack is not None:
            self._set(USER_INPUT, user_input_ack)
        self._set("Variance Estimates", variance_md)
        self._set("UCB Ranking", ucb_md)
        self._set("Run Status", status_md)
        return self


def initial_memory(run_name: str, instructions_name: str) -> MemoryDocument:
    """A fresh memory.md: title, ownership note and every required section with its empty body."""
    preamble = (
        f"# Working memory: {run_name}\n\n"
        f"Instructions: `{instructions_name}` with its parallel addendum.\n"
        "The LLM owns the sections under Exploration Knowledge and Blocks; a human may edit them\n"
        "between batches and the next prompt carries the edit. The Controller sections are\n"
        "recomputed after every batch; edits there are overwritten.\n\n"
    )
    return MemoryDocument.parse(preamble)


def format_user_input_ack(user_text: str, before_iteration: int) -> str:
    """Acknowledgment text for a user_input.md read before the batch starting at an iteration."""
    quoted = "\n".join(f"> {line}" if line else ">" for line in user_text.strip("\n").splitlines())
    return (
        f"User input read before iteration {before_iteration} (from user_input.md):\n\n{quoted}\n\n"
        "Act on it in the next configs and carry lasting directions into your own sections."
    )


# ----- analysis.md ------------------------------------------------------------------------------
def block_heading(block: int, first: int, last: int) -> str:
    """``# Block k (iterations a-b)``: the heading of a block in analysis.md."""
    return f"# Block {block} (iterations {first}-{last})"


def snapshot_memory(run_dir: str | Path, block: int) -> Path:
    """Copy memory.md to ``memory_block_{k}.md``; an existing snapshot is kept (idempotent resume)."""
    run_dir = Path(run_dir)
    target = run_dir / f"memory_block_{block}.md"
    if not target.exists():
        source = run_dir / MEMORY_FILE
        if not source.exists():
            raise MemoryDocumentError(f"{source}: missing memory file, cannot snapshot block {block}")
        atomic_write_bytes(target, source.read_bytes())
    return target


def render_run_status(
    results: list[SlotResult],
    n_iterations: int,
    n_iter_block: int,
    *,
    best: SlotResult | None,
    over_limit: list[SlotResult],
    time_limit_min: float,
) -> str:
    """The Run Status section: progress, current block, best node, failures and slow slots.

    The agent judges which node is best and which ran over the time limit (protocol rules); this only
    writes them down, so memory/ depends on the records alone.
    """
    if not results:
        return f"Iterations done: 0/{n_iterations}; no results yet."
    last = max(r.iteration for r in results)
    block = block_of(last, n_iter_block)
    first_b, last_b = block_range(block, n_iter_block)
    lines = [
        f"Iterations done: {len(results)}/{n_iterations} (last iteration {last}).",
        f"Current block: {block} (iterations {first_b}-{last_b}).",
    ]
    if best is not None and best.metrics is not None:
        lines.append(f"Best node: {best.iteration} (connectivity_R2={best.metrics.connectivity_R2:.4f}).")
    failed = [r for r in results if r.status == "failed"]
    lines.append(
        "Failed nodes: "
        + ("; ".join(f"{r.iteration} ({r.failure_reason or 'no reason recorded'})" for r in failed) or "none")
        + "."
    )
    lines.append(
        f"Over the time limit ({time_limit_min:g} min): "
        + (
            ", ".join(
                f"{r.iteration} ({r.metrics.training_time_min:.1f} min)" if r.metrics else str(r.iteration)
                for r in over_limit
            )
            or "none"
        )
        + "."
    )
    return "\n".join(lines)


__all__ = [
    "ANALYSIS_FILE",
    "CONTROLLER_SECTIONS",
    "LLM_SECTIONS",
    "MEMORY_FILE",
    "MemoryDocument",
    "MemoryDocumentError",
    "Section",
    "block_heading",
    "format_user_input_ack",
    "initial_memory",
    "render_run_status",
    "snapshot_memory",
]
