"""Parse an LLM batch reply (prompts/templates/reply_format.md) into pydantic records.

Parsing never raises on bad input: every problem becomes a self-contained message in
``Reply.errors`` that can be sent back to the LLM verbatim. The validator (agent.reply_check)
then compares the parsed claims with what the controller measured (free-text metric claims:
agent.claims). A reply over MAX_REPLY_CHARS, or a config block over MAX_CONFIG_BLOCK_BYTES, is one
error giving its size and the limit, and is not read at all.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from experiment.exploration import ROOT, Parent
from experiment.yaml_io import YamlError, load_yaml_text
from memory.documents import LLM_SECTIONS, REQUIRED_CONTROLLER_SECTIONS

MAX_REPLY_CHARS = 200_000  # a 4-slot reply is ~20 kB; 16,000 tokens are ~64 kB of text
MAX_CONFIG_BLOCK_BYTES = 16 * 1024
MAX_ID_DIGITS = 9  # node ids, slots and run counts; longer digit strings are errors, never int() calls
MAX_EXPONENT = 308  # printed numbers beyond the float range are errors
STRATEGIES = ("baseline", "exploit", "explore", "robustness-check")
STATUSES = ("converged", "partial", "failed")
TRENDS = ("rising", "stable", "decaying")
CONTROLLER_SECTIONS = REQUIRED_CONTROLLER_SECTIONS
# Line keys of a log entry, lower-cased -> canonical.
ENTRY_KEYS = {
    k.lower(): k
    for k in (
        "Node",
        "Mode/Strategy",
        "Config",
        "Metrics",
        "R2 trajectory",
        "Embedding",
        "Mutation",
        "Parent rule",
        "Observation",
        "Variance update",
        "Next",
    )
}
FREE_TEXT_KEYS = ("Embedding", "Parent rule", "Observation")
NA = ("n/a", "na", "none", "-")

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf(?:inity)?)"
_ID = rf"[0-9]{{1,{MAX_ID_DIGITS}}}"  # ASCII digits only: str.isdigit() also accepts '²', which int() refuses
_PARENT = rf"root|{_ID}"
_ITER_HEAD = re.compile(r"^##\s*Iter(?:ation)?\s+([0-9]+)\s*:?\s*(.*)$", re.IGNORECASE)
ENTRY_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9 /_()-]*?)\s*:\s*(.*)$")
_NODE = re.compile(rf"^id\s*=\s*({_ID})\s*,\s*parent\s*=\s*({_PARENT})\s*$", re.IGNORECASE)
_NEXT = re.compile(rf"^parent\s*=\s*({_PARENT})\b", re.IGNORECASE)
_TRAJ = re.compile(
    rf"^peak\s*=\s*({_NUM})\s+at\s+iter(?:ation)?\s+({_ID})\s*(?:\(([^)]*)\))?\s*,\s*"
    rf"final\s*=\s*({_NUM})\s*,\s*trend\s*=\s*\[?([A-Za-z]+)\]?\s*$",
    re.IGNORECASE,
)
_VAR = re.compile(
    rf"^\[?(\w+)\]?\s+now\s+has\s+({_ID})\s+runs?\s*,\s*CV\(conn_R2\)\s*=\s*({_NUM})\s*%\s*,\s*"
    rf"CV\(V_rest_R2\)\s*=\s*({_NUM})\s*%\s*\.?$",
    re.IGNORECASE,
)
_REPLICATE = re.compile(rf"^\[none\]\s*(?:—|–|--|-|:)?\s*robustness re-run of node\s+({_ID})\s*\.?$", re.IGNORECASE)
_BASELINE = re.compile(r"^\[none\]\s*(?:—|–|--|-|:)?\s*baseline defaults\s*\.?$", re.IGNORECASE)
_CHANGE = re.compile(r"^([A-Za-z_][\w.]*)\s*:\s*(\S+)\s*->\s*(\S+)$")
_CONFIG_OPEN = re.compile(r"<config\b([^>]*)>", re.IGNORECASE)
_CONFIG_CLOSE = re.compile(r"</config\s*>", re.IGNORECASE)
_ATTR = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
_FENCE = re.compile(r"^\s*```[\w-]*\s*$")


class Printed(BaseModel):
    """A number as the LLM printed it: its value and the rounding its digits imply."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float
    text: str

    @property
    def half_unit(self) -> float:
        """Half of the last printed digit's unit (0.95 -> 0.005)."""
        exponent = Decimal(self.text).as_tuple().exponent
        return 0.5 * 10.0 ** min(int(exponent), MAX_EXPONENT) if isinstance(exponent, int) else 0.0


class TrajectoryClaim(BaseModel):
    model_config = ConfigDict(extra="forbid")

    peak: Printed
    peak_iteration: int
    peak_phase: str | None = None
    final: Printed
    trend: str


class VarianceClaim(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config_id: str
    runs: int
    cv_conn: Printed
    cv_vrest: Printed


class ChangeClaim(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    param: str
    old: str
    new: str

    def text(self) -> str:
        return f"{self.param}: {self.old} -> {self.new}"


class MutationClaim(BaseModel):
    """A parsed Mutation line: a list of changes, a replicate of a node, or the baseline defaults."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["changes", "replicate", "baseline"]
    text: str
    changes: list[ChangeClaim] = Field(default_factory=list)
    replicate_of: int | None = None


class IterEntry(BaseModel):
    """One ``## Iter N:`` log entry; a field is None when its line is missing, n/a or unparsable."""

    model_config = ConfigDict(extra="forbid")

    iteration: int
    status: str
    text: str = Field(description="the entry verbatim, for analysis.md")
    lines: dict[str, str] = Field(default_factory=dict, description="canonical line key -> raw value")
    node_id: int | None = None
    parent: Parent | None = None
    strategy: str | None = None
    config: dict[str, Printed] | None = None
    metrics: dict[str, Printed] | None = None
    trajectory: TrajectoryClaim | None = None
    embedding: str | None = None
    mutation: MutationClaim | None = None
    parent_rule: str | None = None
    observation: str | None = None
    variance: VarianceClaim | None = None
    next_parent: Parent | None = None

    def is_na(self, key: str) -> bool:
        return self.lines.get(key, "").strip().lower() in NA


class ConfigProposal(BaseModel):
    """One ``<config slot= parent= [replicate=] strategy=>`` block; ``overlay`` None when its YAML failed."""

    model_config = ConfigDict(extra="forbid")

    slot: int
    parent: Parent
    replicate_of: int | None = None
    strategy: str
    overlay: dict[str, Any] | None = None
    broken: bool = Field(False, description="attributes or YAML unreadable (already reported)")


class Reply(BaseModel):
    """A parsed reply: log entries, memory sections, config proposals and every parse problem."""

    model_config = ConfigDict(extra="forbid")

    entries: list[IterEntry] = Field(default_factory=list)
    has_entries_block: bool = False
    memory: dict[str, str] = Field(default_factory=dict)
    proposals: list[ConfigProposal] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    too_large: bool = Field(False, description="over MAX_REPLY_CHARS: not read; errors holds the one size error")


class ReplyRejected(ValueError):
    """A reply failed parsing or validation; ``errors`` are the messages to send back to the LLM."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


# ---------------------------------------------------------------------------------------------- scalars


def parse_number(text: str) -> Printed | str:
    """A finite printed number, or an error phrase."""
    t = text.strip()
    try:
        d = Decimal(t)
    except InvalidOperation:
        return f"'{shorten(t)}' is not a number"
    if not d.is_finite():
        return f"'{shorten(t)}' is not a finite number"
    exponent = d.as_tuple().exponent
    value = float(d)
    if not math.isfinite(value) or (isinstance(exponent, int) and exponent > MAX_EXPONENT):
        return f"'{shorten(t)}' is out of range"
    return Printed(value=value, text=t)


def is_id(text: str) -> bool:
    """A node id, slot or count as the reply may write it: 1 to MAX_ID_DIGITS ASCII digits."""
    return re.fullmatch(_ID, text) is not None


def parse_parent(text: str) -> Parent:
    """``root`` or a node id; the caller checked ``is_id`` (a ValueError otherwise)."""
    if text.lower() == ROOT:
        return ROOT
    if not is_id(text):
        raise ValueError(f"parent must be 'root' or a node id, got '{shorten(text)}'")
    return int(text)


def size_error(n_chars: int) -> str | None:
    """The one error of a reply over MAX_REPLY_CHARS (None when it is within the limit); costs no parsing."""
    if n_chars <= MAX_REPLY_CHARS:
        return None
    return (
        f"reply: {n_chars:,} characters, over the limit of {MAX_REPLY_CHARS:,}; it was not read "
        "(a reply holds the entries, the memory sections and the config blocks, nothing else)"
    )


def shorten(text: str, limit: int = 40) -> str:
    """Echo of untrusted text in an error message: one line, at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# A switch on the Config line (``recurrent=True``, the lab's ``recurrent=T``): read as 1 / 0, printed exactly.
_SWITCH = {"true": "1", "t": "1", "false": "0", "f": "0"}


def _key_values(text: str, where: str, errors: list[str], switches: bool = False) -> dict[str, Printed]:
    """``a=1, b=2`` -> {a: 1, b: 2}; malformed items become errors; ``switches``: True / False read as 1 / 0."""
    out: dict[str, Printed] = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            errors.append(f"{where}: '{shorten(item, 80)}' is not 'name=value'")
            continue
        if key in out:
            errors.append(f"{where}: {key} given twice")
            continue
        switch = _SWITCH.get(value.strip().lower()) if switches else None
        num = parse_number(value) if switch is None else Printed(value=float(switch), text=switch)
        if isinstance(num, str):
            errors.append(f"{where}: {key}: {num}")
        else:
            out[key] = num
    return out


# ---------------------------------------------------------------------------------------------- sections


def _blocks(text: str, tag: str, errors: list[str]) -> list[str]:
    pattern = re.compile(rf"<{tag}\s*>(.*?)</{tag}\s*>", re.IGNORECASE | re.DOTALL)
    found = pattern.findall(text)
    opened = len(re.findall(rf"<{tag}\s*>", text, re.IGNORECASE))
    if opened > len(found):
        errors.append(f"<{tag}>: opened {opened} time(s) but closed {len(found)} time(s)")
    return found


def clean_line(line: str) -> str:
    """Drop markdown decoration the LLM may add around a log line."""
    return line.strip().replace("**", "").lstrip("-* ").rstrip()


def _parse_entries(body: str, errors: list[str]) -> list[IterEntry]:
    lines = [ln for ln in body.splitlines() if not _FENCE.match(ln)]
    chunks: list[list[str]] = []
    for line in lines:
        if _ITER_HEAD.match(_heading(line)):
            chunks.append([line])
        elif chunks:
            chunks[-1].append(line)
        elif line.strip():
            errors.append(f"<entries>: text before the first '## Iter N:' heading: '{line.strip()[:80]}'")
    return [entry for chunk in chunks if (entry := _parse_entry(chunk, errors)) is not None]


def _heading(line: str) -> str:
    return line.strip().replace("**", "")


def _parse_entry(chunk: list[str], errors: list[str]) -> IterEntry | None:
    """One ``## Iter N:`` entry; None (with an error) when N is not a readable iteration number."""
    head = _ITER_HEAD.match(_heading(chunk[0]))
    assert head is not None
    if not is_id(head.group(1)):
        errors.append(f"<entries>: '## Iter {shorten(head.group(1), 20)}': not an iteration number")
        return None
    iteration = int(head.group(1))
    where = f"Iter {iteration}"
    status = head.group(2).strip().strip("[]").strip().lower()
    raw: dict[str, str] = {}
    last: str | None = None
    for line in chunk[1:]:
        clean = clean_line(line)
        if not clean:
            continue
        m = ENTRY_LINE.match(clean)
        key = ENTRY_KEYS.get(m.group(1).strip().lower()) if m else None
        if key is None:
            if last in FREE_TEXT_KEYS:
                raw[last] = f"{raw[last]} {clean}".strip()
            continue  # extra lines (e.g. per-phase R2 notes) are kept in the text, not parsed
        if key in raw:
            errors.append(f"{where}: '{key}:' line given twice")
            continue
        raw[key] = m.group(2).strip() if m else ""
        last = key
    entry = IterEntry(iteration=iteration, status=status, text="\n".join(chunk).strip(), lines=raw)
    _fill_entry(entry, raw, where, errors)
    return entry


def _fill_entry(entry: IterEntry, raw: dict[str, str], where: str, errors: list[str]) -> None:
    if "Node" in raw:
        m = _NODE.match(raw["Node"])
        if m:
            entry.node_id, entry.parent = int(m.group(1)), parse_parent(m.group(2))
        else:
            errors.append(f"{where}: Node: '{shorten(raw['Node'], 80)}' is not 'id=N, parent=P'")
    if "Mode/Strategy" in raw:
        entry.strategy = raw["Mode/Strategy"].strip("[] ").lower()
    if "Config" in raw and not entry.is_na("Config"):
        entry.config = _key_values(raw["Config"], f"{where}: Config", errors, switches=True)
    if "Metrics" in raw and not entry.is_na("Metrics"):
        entry.metrics = _key_values(raw["Metrics"], f"{where}: Metrics", errors)
    if "R2 trajectory" in raw and not entry.is_na("R2 trajectory"):
        entry.trajectory = _parse_trajectory(raw["R2 trajectory"], where, errors)
    if "Mutation" in raw:
        entry.mutation = parse_mutation(raw["Mutation"], where, errors)
    if "Variance update" in raw and not entry.is_na("Variance update"):
        entry.variance = _parse_variance(raw["Variance update"], where, errors)
    if "Next" in raw:
        m = _NEXT.match(raw["Next"])
        if m:
            entry.next_parent = parse_parent(m.group(1))
        else:
            errors.append(f"{where}: Next: '{shorten(raw['Next'], 80)}' is not 'parent=P'")
    entry.embedding = raw.get("Embedding")
    entry.parent_rule = raw.get("Parent rule")
    entry.observation = raw.get("Observation")


def _parse_trajectory(text: str, where: str, errors: list[str]) -> TrajectoryClaim | None:
    m = _TRAJ.match(text)
    if not m:
        errors.append(
            f"{where}: R2 trajectory: '{shorten(text, 80)}' is not 'peak=X at iter Y, final=Z, trend=T' (or 'n/a')"
        )
        return None
    peak, final = parse_number(m.group(1)), parse_number(m.group(4))
    for label, num in (("peak", peak), ("final", final)):
        if isinstance(num, str):
            errors.append(f"{where}: R2 trajectory: {label}: {num}")
    if isinstance(peak, str) or isinstance(final, str):
        return None
    phase = m.group(3).strip() if m.group(3) else None
    return TrajectoryClaim(
        peak=peak, peak_iteration=int(m.group(2)), peak_phase=phase, final=final, trend=m.group(5).lower()
    )


def _parse_variance(text: str, where: str, errors: list[str]) -> VarianceClaim | None:
    m = _VAR.match(text)
    if not m:
        errors.append(
            f"{where}: Variance update: '{shorten(text, 80)}' is not '[config_id] now has N runs, CV(conn_R2)=X%, CV(V_rest_R2)=Y%'"
        )
        return None
    cv_conn, cv_vrest = parse_number(m.group(3)), parse_number(m.group(4))
    for label, num in (("CV(conn_R2)", cv_conn), ("CV(V_rest_R2)", cv_vrest)):
        if isinstance(num, str):
            errors.append(f"{where}: Variance update: {label}: {num}")
    if isinstance(cv_conn, str) or isinstance(cv_vrest, str):
        return None
    return VarianceClaim(config_id=m.group(1), runs=int(m.group(2)), cv_conn=cv_conn, cv_vrest=cv_vrest)


def parse_mutation(text: str, where: str, errors: list[str]) -> MutationClaim | None:
    """``a: 1 -> 2; b: x -> y`` or ``[none] — robustness re-run of Node X`` or ``[none] — baseline defaults``."""
    t = text.strip()
    if m := _REPLICATE.match(t):
        return MutationClaim(kind="replicate", text=t, replicate_of=int(m.group(1)))
    if _BASELINE.match(t):
        return MutationClaim(kind="baseline", text=t)
    changes = []
    for item in (i.strip() for i in re.split(r"[;,]", t)):
        if not item:
            continue
        m = _CHANGE.match(item)
        if not m:
            errors.append(
                f"{where}: Mutation: '{shorten(item, 80)}' is not 'param: old -> new' "
                "(or '[none] — robustness re-run of Node X' / '[none] — baseline defaults')"
            )
            return None
        param = m.group(1).split(".")[-1]
        changes.append(ChangeClaim(param=param, old=m.group(2), new=m.group(3)))
    if not changes:
        errors.append(f"{where}: Mutation: empty")
        return None
    return MutationClaim(kind="changes", text=t, changes=changes)


def _parse_memory(body: str, errors: list[str]) -> dict[str, str]:
    sections: dict[str, str] = {}
    current: str | None = None
    lines: list[str] = []
    names = {n.lower(): n for n in (*LLM_SECTIONS, *CONTROLLER_SECTIONS)}

    def close() -> None:
        if current is not None:
            sections[current] = "\n".join(lines).strip("\n")

    for line in body.splitlines():
        m = re.match(r"^###\s+(.+?)\s*$", line)
        if m and not line.startswith("####"):
            close()
            title = m.group(1).strip()
            current = names.get(title.lower(), title)
            lines = []
            if current in sections:
                errors.append(f"memory: section '{shorten(current, 80)}' given twice")
        elif current is None:
            if line.strip():
                errors.append(f"memory: text before the first '### ' heading: '{line.strip()[:80]}'")
                break
        else:
            lines.append(line)
    close()
    return sections


def _parse_proposal(attrs: str, body: str, errors: list[str]) -> ConfigProposal | None:
    """One config block; None only when its slot number is unreadable (the block cannot be placed)."""
    values = {k.lower(): v.strip() for k, v in _ATTR.findall(attrs)}
    label = f"config slot {shorten(values.get('slot', '?'), 20)}"
    problems: list[str] = []
    leftover = _ATTR.sub("", attrs).strip().rstrip("/").strip()
    if leftover:
        problems.append(
            f'{label}: cannot read attributes \'{shorten(leftover)}\' (write slot="S" parent="P" strategy="S")'
        )
    unknown = sorted(set(values) - {"slot", "parent", "replicate", "strategy"})
    if unknown:
        problems.append(f"{label}: unknown attribute(s) {', '.join(unknown)}")
    problems.extend(f"{label}: missing attribute {n}=" for n in ("slot", "parent", "strategy") if n not in values)
    slot, parent, replicate = values.get("slot", ""), values.get("parent", ROOT), values.get("replicate")
    strategy = values.get("strategy", "").lower()
    if "slot" in values and not is_id(slot):
        problems.append(f"{label}: slot must be a non-negative integer, got '{shorten(slot)}'")
    if parent.lower() != ROOT and not is_id(parent):
        problems.append(f"{label}: parent must be 'root' or a node id, got '{shorten(parent)}'")
    if replicate is not None and not is_id(replicate):
        problems.append(f"{label}: replicate must be a node id, got '{shorten(replicate)}'")
    if "strategy" in values and strategy not in STRATEGIES:
        problems.append(f"{label}: strategy must be one of {', '.join(STRATEGIES)}, got '{shorten(strategy)}'")
    overlay = _parse_overlay(body, label, problems)
    errors.extend(problems)
    if not is_id(slot):
        return None
    return ConfigProposal(
        slot=int(slot),
        parent=parse_parent(parent) if parent.lower() == ROOT or is_id(parent) else ROOT,
        replicate_of=int(replicate) if replicate is not None and is_id(replicate) else None,
        strategy=strategy,
        overlay=overlay,
        broken=bool(problems),
    )


def _parse_overlay(body: str, label: str, problems: list[str]) -> dict[str, Any] | None:
    body = body.removeprefix("\r").removeprefix("\n")  # line 1 = the first line inside the block
    size = len(body.encode("utf-8", "replace"))
    if size > MAX_CONFIG_BLOCK_BYTES:  # refused unread
        problems.append(f"{label}: config block of {size:,} bytes, over the limit of {MAX_CONFIG_BLOCK_BYTES:,}")
        return None
    text = "\n".join("" if _FENCE.match(ln) else ln for ln in body.splitlines())
    if not text.strip():
        return {}
    try:
        data = load_yaml_text(text, label)
    except YamlError as err:
        problems.append(str(err))
        return None
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(
            f"{label}: the YAML body must be a mapping (training: / graph_model:), got {type(data).__name__}"
        )
        return None
    return data


def _parse_configs(text: str, errors: list[str]) -> list[ConfigProposal]:
    proposals = []
    pos = 0
    while m := _CONFIG_OPEN.search(text, pos):
        close = _CONFIG_CLOSE.search(text, m.end())
        nxt = _CONFIG_OPEN.search(text, m.end())
        if close is None or (nxt is not None and nxt.start() < close.start()):
            errors.append(f"<config{m.group(1)}>: no matching </config>")
            pos = m.end()
            continue
        proposal = _parse_proposal(m.group(1), text[m.end() : close.start()], errors)
        if proposal is not None:
            proposals.append(proposal)
        pos = close.end()
    return proposals


def parse_reply(text: str) -> Reply:
    """Parse a reply; never raises on bad input (problems are in ``Reply.errors``)."""
    errors: list[str] = []
    if not isinstance(text, str):
        return Reply(errors=["reply: not text"])
    if (too_large := size_error(len(text))) is not None:
        return Reply(errors=[too_large], too_large=True)
    entry_blocks = _blocks(text, "entries", errors)
    if len(entry_blocks) > 1:
        errors.append(f"<entries>: given {len(entry_blocks)} times, expected once")
    entries = _parse_entries(entry_blocks[0], errors) if entry_blocks else []
    memory_blocks = _blocks(text, "memory", errors)
    if len(memory_blocks) > 1:
        errors.append(f"<memory>: given {len(memory_blocks)} times, expected once")
    memory = _parse_memory(memory_blocks[0], errors) if memory_blocks else {}
    outside = re.sub(r"<(entries|memory)\s*>.*?</\1\s*>", "", text, flags=re.IGNORECASE | re.DOTALL)
    proposals = _parse_configs(outside, errors)
    return Reply(
        entries=entries, has_entries_block=bool(entry_blocks), memory=memory, proposals=proposals, errors=errors
    )
