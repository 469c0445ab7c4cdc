"""The docs' `path:line` cites of this repository's files point at real lines that hold what they name.

docs/PARITY.md (and any other page) cites our code as `trainer/metrics.py:352`, `path:12, 40`,
`path:10-20`, or a bare `:127` that continues the previous cite's file on the same doc line. A cite
immediately preceded or followed by a backticked identifier (`rollout_diverged` trainer/metrics.py:352,
`trainer/losses.py:68` (`norm_sum`)) promises that identifier (its last dotted part) is on a cited line.
Cites of the reference repository (paths that do not exist here) are skipped. Refactors move code; this
test says which cites went stale instead of letting them drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUR_DIRS = ("agent", "memory", "trainer", "simulator", "experiment", "benchmarks", "prompts", "configs")

_LINES = r"\d+(?:-\d+)?(?:,[ \t]*\d+(?:-\d+)?)*"
# A file cite (any file with an extension, ours or the reference's) or a bare `:N` continuing the last one.
_CITE = re.compile(
    rf"(?P<path>(?<![\w/.-])[\w./-]+\.[A-Za-z]+):(?P<lines>{_LINES})(?![\w-])"
    rf"|(?<=[\s(`])(?P<bare>:)(?P<bare_lines>{_LINES})(?![\w:-])"
)
_IDENT = r"[A-Za-z_][\w.]*(?:\(\))?"
_BEFORE = re.compile(rf"`(?P<ident>{_IDENT})`[ \t]*\(?`?$")
_AFTER = re.compile(rf"^`?\)?[ \t]*\(?`(?P<ident>{_IDENT})`")


@dataclass(frozen=True)
class Cite:
    """One cite of our code: where it is written and what it claims."""

    doc: str
    doc_line: int
    path: str
    spans: tuple[tuple[int, int], ...]
    ident: str | None

    def where(self) -> str:
        lines = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in self.spans)
        named = f" `{self.ident}`" if self.ident else ""
        return f"{self.doc}:{self.doc_line}: {self.path}:{lines}{named}"


def _spans(text: str) -> tuple[tuple[int, int], ...]:
    spans = []
    for part in text.split(","):
        a, _, b = part.strip().partition("-")
        spans.append((int(a), int(b or a)))
    return tuple(spans)


def _ours(path: str) -> bool:
    return path.split("/", 1)[0] in OUR_DIRS and (ROOT / path).is_file()


def cites_in(text: str, doc: str) -> list[Cite]:
    """Every cite of one of our files in the page `text` (named `doc`), bare `:N` resolved to the file before."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        last_path: str | None = None
        for match in _CITE.finditer(line):
            if match["path"]:
                last_path, lines = match["path"], match["lines"]
            else:
                lines = match["bare_lines"]
            if last_path is None or last_path.split("/", 1)[0] not in OUR_DIRS:
                continue
            named = _BEFORE.search(line[: match.start()]) or _AFTER.match(line[match.end() :])
            found.append(Cite(doc, number, last_path, _spans(lines), named["ident"] if named else None))
    return found


@cache
def _source(path: str) -> tuple[str, ...]:
    return tuple((ROOT / path).read_text(encoding="utf-8").splitlines())


def problem(cite: Cite) -> str | None:
    """Why `cite` is wrong, or None when it holds."""
    if not _ours(cite.path):
        return "no such file in this repository"
    source = _source(cite.path)
    for a, b in cite.spans:
        if not 1 <= a <= b <= len(source):
            return f"line {a}-{b} outside the file's {len(source)} lines"
    if cite.ident is None:
        return None
    name = cite.ident.removesuffix("()").rsplit(".", 1)[-1]
    word = re.compile(rf"(?<![\w]){re.escape(name)}(?!\w)")
    if any(word.search(source[i - 1]) for a, b in cite.spans for i in range(a, b + 1)):
        return None
    return f"`{name}` is not on the cited line(s)"


def all_cites() -> list[Cite]:
    return [
        cite
        for doc in (*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md")
        if doc.is_file()
        for cite in cites_in(doc.read_text(encoding="utf-8"), doc.relative_to(ROOT).as_posix())
    ]


def test_every_cite_of_our_code_points_at_an_existing_line_holding_what_it_names() -> None:
    bad = [f"{cite.where()}: {why}" for cite in all_cites() if (why := problem(cite))]
    assert not bad, "stale doc cites (fix the doc's path:line):\n" + "\n".join(bad)


def test_the_docs_cite_our_code_so_the_check_above_has_something_to_check() -> None:
    cites = all_cites()
    assert len(cites) > 50
    assert sum(cite.ident is not None for cite in cites) > 20


def test_a_cite_whose_named_identifier_moved_off_the_line_is_reported() -> None:
    text = "| x | ref `graph_trainer.py:510` | `data_loss` trainer/losses.py:1 (:999999) |\n"
    cites = cites_in(text, "page.md")
    assert [(c.path, c.spans, c.ident) for c in cites] == [
        ("trainer/losses.py", ((1, 1),), "data_loss"),
        ("trainer/losses.py", ((999999, 999999),), None),
    ]
    assert problem(cites[0]) == "`data_loss` is not on the cited line(s)"
    assert problem(cites[1]) is not None and "outside the file" in problem(cites[1])


def test_comma_lists_ranges_and_a_following_backticked_name_are_read() -> None:
    (cite,) = cites_in("`agent/gone.py:10-12, 40` (`f`)", "page.md")
    assert (cite.spans, cite.ident) == (((10, 12), (40, 40)), "f")
    assert problem(cite) == "no such file in this repository"
