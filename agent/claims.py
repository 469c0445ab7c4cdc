"""Metric claims in free text: a metric named with a number must be a value the prompt showed.

The Metrics, R2 trajectory and Variance update lines are checked field by field (agent.reply_check); this
module checks everything else an entry says. In every line of an entry except the heading and the fully
parsed lines (Node, Config, Metrics, R2 trajectory, Mutation, Variance update) -- so in the Observation,
Embedding, Parent rule, Mode/Strategy and Next lines and in any line outside the entry format, which is kept
in analysis.md and therefore checked like an Observation line -- a metric name followed by a number is a
claim:

- names: connectivity_R2 (conn_R2, connectivity R2, R2), tau_R2, V_rest_R2 (vrest_R2), cluster_accuracy
  (cluster accuracy, cluster_acc), test_R2, test_pearson (Pearson), training_time_min (training time);
- forms: ``name=x``, ``name x``, ``name: x``, ``name of x``, also with a few linking words between
  (``conn_R2 reached 0.91``, ``R2 peak 0.93``, ``mean conn_R2 0.41``, ``V_rest_R2 ≈ 0``, ``conn_R2 ~0.93``),
  ``x%`` for a fraction, and ``CV(conn_R2)=x%`` / ``conn_R2 CV x%`` for a coefficient of variation.

A claim is checked at the precision it is printed with (``0.66`` is true of 0.663, ``0.70`` is not, ``≈ 0``
is true of 0.007), plus METRIC_TOL for a value printed from the prompt's 4 decimals. It is accepted when it
matches a value the prompt showed: the metric of the entry's own node or its parent, or of a node the same
sentence names (``Node 3``, ``iter 3``, ``parent=3``); the mean of the entry's own config or of a config the
sentence names (``C5 mean``) from the variance table; for R2, the peak or final of those nodes' R2
trajectories. In a sentence that says so, also: a std of those configs (``std``, ``±``), an R2 phase-segment
change of those nodes (``phase``, ``segment``), the extreme node of the batch, block or run (``best``,
``highest``, ``lowest``; agent.data_claims checks the superlative itself) and a figure the instruction text
states for the metric (``standard``, ``reference``, ``lab``, ``instructions``: a stated value at its
precision, or any value inside a stated range). A failed node counts as 0 (as in the variance table). A CV
claim must match the CV of one of those configs (0.5 percentage points, or its printed precision).

Not claims: a number after a comparison (``R2 > 0.8``, ``below R2 0.3``, ``at least conn_R2 0.5``), the start
of a range (``R2 0.3-0.8``), a whole number after ``at`` (``R2 peak at 2560``: an iteration), a change
(``conn_R2 rose by 0.03``, ``conn_R2 improved 15%``; but ``rose to 0.91`` is a value), a number glued to
letters (``R2 2x``) or a name glued to other letters (``Δconn_R2``), and any number of a sentence that asks
or predicts (``?``, ``expect``, ``if``, ``would``: HEDGE).
Pure functions: the caller passes the facts (agent.reply_check builds them from its ReplyContext).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from agent.profile import VARIANCE_COLUMN
from agent.reply_parse import ENTRY_KEYS, ENTRY_LINE, clean_line, shorten
from experiment.exploration import SlotResult
from memory.variance import VarianceRow

METRIC_TOL = 5e-4  # Metrics line: plus half a unit of the printed digits, at most METRIC_TOL (3 decimals needed)
TIME_TOL_MIN, TIME_RTOL = 0.5, 0.25  # training_time_min is a wall-clock reading
CV_TOL = 0.5  # percentage points

# Alias (lower case, one space for "_" or " ") -> metric key; matched longest first.
METRIC_ALIASES: dict[str, str] = {
    "connectivity_r2": "connectivity_R2",
    "connectivity r2": "connectivity_R2",
    "conn_r2": "connectivity_R2",
    "conn r2": "connectivity_R2",
    "r2": "connectivity_R2",
    "tau_r2": "tau_R2",
    "tau r2": "tau_R2",
    "v_rest_r2": "V_rest_R2",
    "v_rest r2": "V_rest_R2",
    "vrest_r2": "V_rest_R2",
    "vrest r2": "V_rest_R2",
    "cluster_accuracy": "cluster_accuracy",
    "cluster accuracy": "cluster_accuracy",
    "clustering accuracy": "cluster_accuracy",
    "cluster_acc": "cluster_accuracy",
    "test_r2": "test_R2",
    "test r2": "test_R2",
    "test_pearson": "test_pearson",
    "test pearson": "test_pearson",
    "pearson r": "test_pearson",
    "pearson": "test_pearson",
    "training_time_min": "training_time_min",
    "training time": "training_time_min",
    "training_time": "training_time_min",
}
# Lines checked field by field elsewhere: their numbers are not free text.
STRUCTURED_KEYS = frozenset({"Node", "Config", "Metrics", "R2 trajectory", "Mutation", "Variance update"})
LINKING_WORDS = (
    "of|is|was|were|are|at|to|from|reached|reaches|reaching|hit|hits|peaked|peaks|peak|final|finally|ended|"
    "ends|mean|average|avg|about|around|approx|approximately|near|nearly|roughly|almost|only|still|now|stayed|"
    "stays|cv|value|score|trajectory"
)
# A metric name right after one of these is a threshold, not a claim ("half the runs fell below R2 0.3").
COMPARISONS = (
    r"below|above|under|over|beyond|exceed|exceeds|exceeded|exceeding|at\s+least|at\s+most|less\s+than|"
    r"more\s+than|greater\s+than|higher\s+than|lower\s+than|than"
)
# A sentence that asks or predicts claims nothing measured.
HEDGE = re.compile(
    r"\?|\b(?:expect|expects|expected|predict|predicts|predicted|hypothesis|hypothesise|hypothesize|target|goal|aim|"
    r"hope|if|would|could|might|should)\b",
    re.IGNORECASE,
)
# Words that make a sentence's other shown values citable (see the module docstring).
ATTRIBUTION = re.compile(
    r"\b(?:standard|reference|lab|instructions?|reported|reports|known|literature)\b", re.IGNORECASE
)
STD_WORDS = re.compile(
    r"\b(?:std|sd|stdev|standard\s+deviation|spread|sigma|interval|ci|bounds?)\b|±|\+/-", re.IGNORECASE
)
_LEVEL = re.compile(r"\s*+(?:confidence|interval|ci|bootstrap)\b", re.IGNORECASE)  # "95% interval": a level
PHASE_WORDS = re.compile(r"\b(?:phases?|segments?)\b|-phase", re.IGNORECASE)
SUPERLATIVE_WORDS = re.compile(r"\b(?:best|worst|highest|lowest|top|max|maximum|min|minimum)\b", re.IGNORECASE)
# A change verb links a value only with "to"/"from"/"at" ("rose to 0.91"); "rose 0.03" / "improved 15%" are changes.
CHANGE_VERBS = "rose|rises|risen|fell|falls|fallen|dropped|drops|climbed|climbs|improved|improves|decreased|increased"
_NAME = "|".join(
    "[ _]".join(re.escape(part) for part in re.split("[ _]", alias))
    for alias in sorted(METRIC_ALIASES, key=len, reverse=True)
)
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_CLAIM = re.compile(  # possessive / atomic pieces: linear time on hostile text (long runs of spaces or '=')
    rf"(?<![\w.])(?P<cv_before>CV\s*+\(\s*+|CV\s++(?:of\s++)?)?(?P<name>{_NAME})(?!\w)(?>\s*+\))?"
    rf"(?P<link>(?>(?:\s*+(?:(?:{LINKING_WORDS})\b|(?:{CHANGE_VERBS})\s++(?:to|from|at)\b|[=:~≈]))*+))"
    rf"\s*+(?:\(\s*+)?(?P<number>(?>{_NUMBER}))(?!\w)(?P<pct>\s*+%)?"
    rf"(?P<range>\s*+(?:-|–|—|to)\s*+(?P<upper>(?>{_NUMBER}))(?!\w)(?P<upper_pct>\s*+%)?)?",
    re.IGNORECASE,
)
_NODE_REF = re.compile(
    r"\b(?:nodes?|iters?|iterations?|id|parent)\s*+[=#:]?\s*+"
    r"(?P<ids>\d{1,9}(?:\s*+(?:,|and|&|/|or)\s*+\d{1,9})*+)\b",
    re.IGNORECASE,
)
_CONFIG_REF = re.compile(r"\bC(\d{1,9})\b")
_COMPARED = re.compile(rf"(?:\b(?:{COMPARISONS})|[<>≤≥])\s*+(?:(?:an?|the)\s++)?$", re.IGNORECASE)
_FIGURE = re.compile(  # a number of the instruction text, or a range of two
    rf"(?<![\w.])(?P<lo>{_NUMBER})(?![\w%])(?:\s*+(?:-|–|—|to)\s*+(?P<hi>{_NUMBER})(?![\w%]))?"
)
_NAME_ONLY = re.compile(rf"(?<![\w.])(?:{_NAME})(?!\w)", re.IGNORECASE)
_SENTENCE = re.compile(r";|(?<=[.!?])\s+")
_ITEM_START = re.compile(r"^(?:[-*+]\s|\d+[.)]\s|#|\|)")  # a markdown bullet, numbered item, heading or table row
# A "Key: value" line of a memory section ("Hypothesis: ...", "Emerging observations: ...").
_KEY_LINE = re.compile(r"^[A-Z][\w/()-]*(?: [\w/()-]+){0,3}\s*:(?:\s|$)")


@dataclass(frozen=True, slots=True)
class Claim:
    """A metric named with a number in free text."""

    metric: str
    text: str
    value: float
    half_unit: float
    is_cv: bool = False


Interval = tuple[float, float]


@dataclass(frozen=True)
class ClaimFacts:
    """What a claim may match: the run's results (iteration -> result), its variance table, the iterations of
    the batch the prompt showed, and the figures the instruction text states (metric -> closed intervals); the
    exploration's primary metric and hard constraints say what "best" means."""

    results: dict[int, SlotResult]
    rows: list[VarianceRow]
    batch: list[int] = field(default_factory=list)
    references: dict[str, list[Interval]] = field(default_factory=dict)
    primary: str = "connectivity_R2"
    constraints: dict[str, float] = field(default_factory=dict)

    def meets_constraints(self, node: SlotResult) -> bool:
        return all(metric_value(m, node) > bound for m, bound in self.constraints.items())

    def row_of(self, iteration: int) -> VarianceRow | None:
        return next((row for row in self.rows if iteration in row.iterations), None)

    def row_named(self, config_id: str) -> VarianceRow | None:
        return next((row for row in self.rows if row.config_id == config_id), None)


def metric_tolerance(key: str, measured: float, half_unit: float) -> float:
    """How far a Metrics-line value may be from the measured one: rounding for the R2-type metrics (3 decimals
    needed); for the wall-clock training time, half a minute or a quarter of it."""
    if key == "training_time_min":
        return max(TIME_TOL_MIN, TIME_RTOL * abs(measured))
    return METRIC_TOL + min(half_unit, METRIC_TOL)


def claim_tolerance(key: str, measured: float, half_unit: float) -> float:
    """How far a free-text claim may be from the value: its printed precision (half a unit of its last digit)
    plus METRIC_TOL (a value rounded from the prompt's 4 decimals); training time as on the Metrics line."""
    if key == "training_time_min":
        return max(metric_tolerance(key, measured, half_unit), half_unit)
    return METRIC_TOL + half_unit


def _half_unit(text: str) -> float:
    exponent = Decimal(text).as_tuple().exponent
    return 0.5 * 10.0 ** max(min(int(exponent), 308), -308) if isinstance(exponent, int) else 0.0


def _claim(metric: str, number: str, percent: bool, is_cv: bool, text: str) -> Claim | None:
    try:
        value, half = float(Decimal(number)), _half_unit(number)
    except (InvalidOperation, ValueError, OverflowError):
        return None
    if not math.isfinite(value):
        return None
    if percent and not is_cv:
        value, half = value / 100.0, half / 100.0
    return Claim(metric=metric, text=" ".join(text.split()), value=value, half_unit=half, is_cv=is_cv)


def _metric_of(name: str) -> str:
    key = " ".join(name.lower().replace("_", " ").split())
    return next(v for a, v in METRIC_ALIASES.items() if a.replace("_", " ") == key)


def find_claims(sentence: str) -> list[Claim]:
    """Every metric claim of one sentence (see the module docstring for the forms). ``from X to Y`` claims
    both X and Y; any other range (``0.3-0.8``, ``0.3 to 0.8``) claims nothing; nor does a sentence that asks
    or predicts, or a metric named after a comparison."""
    if HEDGE.search(sentence):
        return []
    claims = []
    for m in _CLAIM.finditer(sentence):
        if _COMPARED.search(sentence, max(0, m.start() - 40), m.start()):
            continue  # "below R2 0.3": a threshold
        if _LEVEL.match(sentence, m.end()):
            continue  # "CV(conn_R2) 95% interval": the interval's level
        link = m.group("link").lower()
        transition = re.search(r"\bfrom\b", link) is not None
        if m.group("range") and not transition:
            continue
        if (
            re.search(r"\bat\s*$", link)
            and re.fullmatch(r"[-+]?\d+", m.group("number"))
            and abs(int(m.group("number"))) > 1
        ):
            continue  # "R2 peak at 2560": a training iteration, not a value
        metric = _metric_of(m.group("name"))
        is_cv = bool(m.group("cv_before")) or re.search(r"\bcv\b", link) is not None
        head = m.group(0)[: m.end("pct" if m.group("pct") else "number") - m.start()]
        found = [_claim(metric, m.group("number"), bool(m.group("pct")), is_cv, head)]
        if m.group("range"):
            found.append(_claim(metric, m.group("upper"), bool(m.group("upper_pct")), is_cv, m.group(0)))
        claims += [c for c in found if c is not None]
    return claims


def named_nodes(sentence: str) -> set[int]:
    """Node ids a sentence names: ``Node 3``, ``nodes 3 and 4``, ``iter 3``, ``id=3``, ``parent 3``."""
    return {int(n) for m in _NODE_REF.finditer(sentence) for n in re.findall(r"\d+", m.group("ids"))}


def named_configs(sentence: str) -> set[str]:
    """Config ids a sentence names: ``C5``."""
    return {f"C{m.group(1)}" for m in _CONFIG_REF.finditer(sentence)}


def reference_figures(text: str) -> dict[str, tuple[Interval, ...]]:
    """metric -> the figures an instruction text states for it: in a sentence that attributes them (ATTRIBUTION,
    e.g. ``Standard training: conn_R2 peaks 0.95-0.98``), every number after a metric name up to the next name,
    a value as a point, ``a-b`` / ``a to b`` as a range (percentages left out).
    Cached per text: do not mutate the result."""
    return _reference_figures(text)


@lru_cache(maxsize=8)
def _reference_figures(text: str) -> dict[str, tuple[Interval, ...]]:
    found: dict[str, list[Interval]] = {}
    for sentence in _SENTENCE.split(" ".join(text.split())):
        if not ATTRIBUTION.search(sentence):
            continue  # thresholds and rules, not reference results
        names = list(_NAME_ONLY.finditer(sentence))
        for k, name in enumerate(names):
            end = names[k + 1].start() if k + 1 < len(names) else len(sentence)
            for f in _FIGURE.finditer(sentence, name.end(), end):
                try:
                    lo = float(f.group("lo"))
                    hi = float(f.group("hi")) if f.group("hi") else lo
                except ValueError:
                    continue
                found.setdefault(_metric_of(name.group(0)), []).append((min(lo, hi), max(lo, hi)))
    return {metric: tuple(intervals) for metric, intervals in found.items()}


def _node_values(metric: str, node: SlotResult) -> list[float]:
    if node.status != "completed" or node.metrics is None:
        return [0.0]  # a failed run counts as 0, as in the variance table
    values = [float(getattr(node.metrics, metric))]
    if metric == "connectivity_R2" and node.trajectory is not None:
        values += [node.trajectory.peak, node.trajectory.final]
    return values


def _segment_values(node: SlotResult) -> list[float]:
    """The R2 changes the prompt shows for a node: per phase segment and per phase in total, either sign."""
    d = node.trajectory
    if d is None or node.status != "completed":
        return []
    changes = [s.r2_change for s in d.segments] + [d.w_phase_gain, d.vrest_phase_change]
    return changes + [-c for c in changes]


def named_sets(facts: ClaimFacts, own: SlotResult | None) -> dict[str, list[SlotResult]]:
    """The sets of runs a sentence can mean by ``batch``, ``block`` and ``run``: the batch the prompt showed, the
    block of ``own`` (else of that batch), the whole run."""
    results = facts.results
    batch = [results[i] for i in sorted(facts.batch) if i in results]
    anchor = own if own is not None else (batch[0] if batch else None)
    block = [r for r in results.values() if anchor is not None and r.block == anchor.block]
    return {"batch": batch, "block": sorted(block, key=lambda r: r.iteration), "run": list(results.values())}


def metric_value(metric: str, node: SlotResult) -> float:
    """A node's metric, 0 for a failed node (as in the variance table)."""
    if node.status != "completed" or node.metrics is None:
        return 0.0
    return float(getattr(node.metrics, metric))


class Scope:
    """What the claims of one sentence may restate, worked out once per sentence. In ``own``'s entry: the node,
    its parent and the nodes the sentence names; their configs and the configs it names. In memory (``own``
    None): every node and config of the run. Plus the values the sentence's wording makes citable."""

    def __init__(self, own: SlotResult | None, sentence: str, facts: ClaimFacts) -> None:
        self.own, self.facts = own, facts
        if own is None:
            self.known = [facts.results[n] for n in sorted(facts.results)]
            self.rows = list(facts.rows)
        else:
            nodes = {own.iteration} | named_nodes(sentence)
            if isinstance(own.parent, int):
                nodes.add(own.parent)
            self.known = [facts.results[n] for n in sorted(nodes) if n in facts.results]
            rows = [facts.row_of(n.iteration) for n in self.known]
            rows += [facts.row_named(c) for c in sorted(named_configs(sentence))]
            self.rows = [row for row in rows if row is not None]
        self.std = STD_WORDS.search(sentence) is not None
        self.phase = PHASE_WORDS.search(sentence) is not None
        self.superlative = SUPERLATIVE_WORDS.search(sentence) is not None
        self.attributed = ATTRIBUTION.search(sentence) is not None
        self._cache: dict[tuple[str, bool], list[float]] = {}

    def values(self, metric: str, is_cv: bool) -> list[float]:
        key = (metric, is_cv)
        if key not in self._cache:
            self._cache[key] = self._cv_values(metric) if is_cv else self._values(metric)
        return self._cache[key]

    def _cv_values(self, metric: str) -> list[float]:
        short = VARIANCE_COLUMN.get(metric)
        if short is None:
            return []
        found = [row.cv(short) for row in self.rows]
        if self.std:  # the CV estimate's bootstrap std and interval
            found += [v for row in self.rows for v in row.cv_estimate(short).model_dump().values()]
        return [v for v in found if math.isfinite(v)]

    def _values(self, metric: str) -> list[float]:
        found = [v for node in self.known for v in _node_values(metric, node)]
        if metric in VARIANCE_COLUMN:
            found += [row.mean(VARIANCE_COLUMN[metric]) for row in self.rows]
            if self.std:
                found += [row.std(VARIANCE_COLUMN[metric]) for row in self.rows]
        if self.phase and metric == "connectivity_R2":
            found += [v for node in self.known for v in _segment_values(node)]
        if self.superlative:
            for runs in named_sets(self.facts, self.own).values():
                done = [metric_value(metric, r) for r in runs if r.status == "completed" and r.metrics is not None]
                every = [metric_value(metric, r) for r in runs]
                found += [f(v) for v in (done, every) if v for f in (min, max)]
        return found

    def intervals(self, metric: str) -> tuple[Interval, ...]:
        """The instruction text's figures for ``metric`` when the sentence attributes them."""
        return tuple(self.facts.references.get(metric, ())) if self.attributed else ()


def matches(claim: Claim, values: list[float], intervals: tuple[Interval, ...] = ()) -> bool:
    """Whether a claim equals one of ``values`` at its printed precision, or lies in one of ``intervals``."""
    if claim.is_cv:
        return any(abs(claim.value - v) <= max(CV_TOL, claim.half_unit + 0.05) for v in values)
    if any(abs(claim.value - v) <= claim_tolerance(claim.metric, v, claim.half_unit) for v in values):
        return True
    slack = claim.half_unit + 1e-9
    return any(lo - slack <= claim.value <= hi + slack for lo, hi in intervals)


def _line_label(raw: str, number: int) -> tuple[str, str | None]:
    """(label for messages, entry key or None) of one entry line."""
    m = ENTRY_LINE.match(raw)
    key = m.group(1).strip() if m else None
    canonical = ENTRY_KEYS.get(key.lower()) if key else None
    if canonical is not None:
        return canonical, canonical
    return f"line {number} '{shorten(raw, 40)}'", None


def _hint(claim: Claim, own: SlotResult | None) -> str:
    if claim.is_cv:
        return "no config named here has that CV"
    if own is None:
        return "no node or config of the run has that value"
    if own.status != "completed" or own.metrics is None:
        return f"node {own.iteration} failed"
    measured = getattr(own.metrics, claim.metric)
    return f"node {own.iteration} has {claim.metric}={measured:.4g}"


def sentence_errors(where: str, sentence: str, own: SlotResult | None, facts: ClaimFacts) -> list[str]:
    """One error line per claim of ``sentence`` that matches no value it may restate; ``where`` starts it."""
    claims = find_claims(sentence)
    if not claims:
        return []
    scope = Scope(own, sentence, facts)
    errors = []
    for claim in claims:
        if not matches(claim, scope.values(claim.metric, claim.is_cv), scope.intervals(claim.metric)):
            what = f"CV({claim.metric})" if claim.is_cv else claim.metric
            errors.append(
                f"{where}: '{shorten(claim.text, 60)}' states a {what} the run never measured "
                f"({_hint(claim, own)}; name the node or config a number belongs to, or leave it out)"
            )
    return errors


def _entry_key(raw: str) -> str | None:
    """The log-format key a line starts with (``Observation``), or None."""
    m = ENTRY_LINE.match(raw)
    return ENTRY_KEYS.get(m.group(1).strip().lower()) if m else None


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(number of its first line, text) of each markdown item: a line with its soft-wrapped continuation lines.

    A new item starts at a bullet, a numbered item, a heading, a table row, a ``Key: value`` line, after a
    blank line or after a line that ends a sentence; any other line continues the item above (a sentence
    wrapped across lines is one sentence, so an attribution or a node named on the first line covers the
    number on the next). A structured entry line (``Metrics:``, ``Config:``, ...) takes no continuation."""
    start, parts, open_ = 0, [], False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        raw = clean_line(line)
        key = _entry_key(raw)
        new_item = (
            not stripped
            or _ITEM_START.match(stripped) is not None
            or _KEY_LINE.match(raw) is not None
            or key is not None
            or not open_
        )
        if new_item and parts:
            yield start, " ".join(parts)
            parts = []
        if not raw:
            open_ = False
            continue
        if new_item:
            start = number
        parts.append(raw)
        open_ = not (raw.startswith(("#", "|")) or key in STRUCTURED_KEYS or raw.endswith((".", "!", "?", ";")))
    if parts:
        yield start, " ".join(parts)


def entry_sentences(iteration: int, text: str) -> Iterator[tuple[str, str]]:
    """(where, sentence) of every free-text sentence of an entry's ``text`` (heading first, as parsed); ``where``
    starts an error line: ``Iter N: Observation`` or ``Iter N: line 10 '...'``."""
    for number, raw in logical_lines(text):
        if number == 1:
            continue  # the heading's status is checked on its own
        label, key = _line_label(raw, number)
        if key in STRUCTURED_KEYS:
            continue
        body = raw.split(":", 1)[1] if key is not None else raw  # "Observation: text" -> "text"
        for sentence in _SENTENCE.split(body):
            yield f"Iter {iteration}: {label}", sentence


def memory_sentences(section: str, body: str) -> Iterator[tuple[str, str]]:
    """(where, sentence) of every sentence of a memory section's ``body`` (``line N``: the item's first line)."""
    for number, raw in logical_lines(body):
        if raw.startswith("#"):
            continue
        for sentence in _SENTENCE.split(raw):
            yield f"memory: {section}: line {number} '{shorten(raw, 40)}'", sentence


def check_entry_claims(iteration: int, text: str, own: SlotResult, facts: ClaimFacts) -> list[str]:
    """One error line per unmatched claim in an entry's ``text`` (heading first, as parsed)."""
    return [e for where, s in entry_sentences(iteration, text) for e in sentence_errors(where, s, own, facts)]


def check_memory_claims(section: str, body: str, facts: ClaimFacts) -> list[str]:
    """One error line per unmatched claim in a memory section the LLM sent (any value of the run may appear)."""
    return [e for where, s in memory_sentences(section, body) for e in sentence_errors(where, s, None, facts)]
