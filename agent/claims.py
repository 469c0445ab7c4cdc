"""Metric claims in the free text of a log entry: a metric named with a number must be a measured value.

The Metrics, R2 trajectory and Variance update lines are checked field by field (agent.reply_check); this
module checks everything else an entry says. In every line of an entry except the heading and the fully
parsed lines (Node, Config, Metrics, R2 trajectory, Mutation, Variance update) -- so in the Observation,
Embedding, Parent rule, Mode/Strategy and Next lines and in any line outside the entry format, which is kept
in analysis.md and therefore checked like an Observation line -- a metric name followed by a number is a
claim:

- names: connectivity_R2 (conn_R2, connectivity R2, R2), tau_R2, V_rest_R2 (vrest_R2), cluster_accuracy
  (cluster accuracy, cluster_acc), test_R2, test_pearson (Pearson), training_time_min (training time);
- forms: ``name=x``, ``name x``, ``name: x``, ``name of x``, also with a few linking words between
  (``conn_R2 reached 0.91``, ``R2 peak 0.93``, ``mean conn_R2 0.41``), ``x%`` for a fraction, and
  ``CV(conn_R2)=x%`` / ``conn_R2 CV x%`` for a coefficient of variation.

A claim is accepted when it matches, within the Metrics-line tolerance, a value the run measured: the
metric of the entry's own node or its parent, or of a node the same sentence names (``Node 3``, ``iter 3``,
``parent=3``); the mean of the entry's own config or of a config the sentence names (``C5 mean``) from the
variance table; for R2, the peak or final of those nodes' R2 trajectories. A failed node counts as 0 (as in
the variance table). A CV claim must match the CV of one of those configs (0.5 percentage points).

Not claims: a number after a comparison (``R2 > 0.8``), the start of a range (``R2 0.3-0.8``), a whole
number after ``at`` (``R2 peak at 2560``: an iteration), a change
(``conn_R2 rose by 0.03``, ``conn_R2 improved 15%``; but ``rose to 0.91`` is a value), a number glued to
letters (``R2 2x``) or a name glued to other letters (``Δconn_R2``).
Pure functions: the caller passes the facts (agent.reply_check builds them from its ReplyContext).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from agent.reply_parse import ENTRY_KEYS, ENTRY_LINE, clean_line, shorten
from experiment.exploration import SlotResult
from memory.variance import VarianceRow

METRIC_TOL = 5e-4  # plus half a unit of the printed digits, at most METRIC_TOL (3 decimals needed)
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
    "ends|mean|average|avg|about|around|approx|approximately|only|still|now|stayed|stays|cv|value|score|trajectory"
)
# A change verb links a value only with "to"/"from"/"at" ("rose to 0.91"); "rose 0.03" / "improved 15%" are changes.
CHANGE_VERBS = "rose|rises|risen|fell|falls|fallen|dropped|drops|climbed|climbs|improved|improves|decreased|increased"
_TABLE_MEAN = {
    "connectivity_R2": "conn_mean",
    "tau_R2": "tau_mean",
    "V_rest_R2": "vrest_mean",
    "cluster_accuracy": "cluster_mean",
}
_TABLE_CV = {
    "connectivity_R2": "conn_cv",
    "tau_R2": "tau_cv",
    "V_rest_R2": "vrest_cv",
    "cluster_accuracy": "cluster_cv",
}
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
_SENTENCE = re.compile(r";|(?<=[.!?])\s+")


@dataclass(frozen=True, slots=True)
class Claim:
    """A metric named with a number in free text."""

    metric: str
    text: str
    value: float
    half_unit: float
    is_cv: bool = False


@dataclass(frozen=True)
class ClaimFacts:
    """What a claim may match: the run's results (iteration -> result) and its variance table."""

    results: dict[int, SlotResult]
    rows: list[VarianceRow]

    def row_of(self, iteration: int) -> VarianceRow | None:
        return next((row for row in self.rows if iteration in row.iterations), None)

    def row_named(self, config_id: str) -> VarianceRow | None:
        return next((row for row in self.rows if row.config_id == config_id), None)


def metric_tolerance(key: str, measured: float, half_unit: float) -> float:
    """How far a printed metric may be from the measured one: rounding for the R2-type metrics (3 decimals
    needed); for the wall-clock training time, half a minute or a quarter of it."""
    if key == "training_time_min":
        return max(TIME_TOL_MIN, TIME_RTOL * abs(measured))
    return METRIC_TOL + min(half_unit, METRIC_TOL)


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


def find_claims(sentence: str) -> list[Claim]:
    """Every metric claim of one sentence (see the module docstring for the forms). ``from X to Y`` claims
    both X and Y; any other range (``0.3-0.8``, ``0.3 to 0.8``) claims nothing."""
    claims = []
    for m in _CLAIM.finditer(sentence):
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
        name = " ".join(m.group("name").lower().replace("_", " ").split())
        metric = next(v for a, v in METRIC_ALIASES.items() if a.replace("_", " ") == name)
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


def _node_values(metric: str, node: SlotResult) -> list[float]:
    if node.status != "completed" or node.metrics is None:
        return [0.0]  # a failed run counts as 0, as in the variance table
    values = [float(getattr(node.metrics, metric))]
    if metric == "connectivity_R2" and node.trajectory is not None:
        values += [node.trajectory.peak, node.trajectory.final]
    return values


class Scope:
    """What the claims of one sentence of ``own``'s entry may restate, worked out once per sentence: the node,
    its parent and the nodes the sentence names; their configs and the configs it names."""

    def __init__(self, own: SlotResult, sentence: str, facts: ClaimFacts) -> None:
        nodes = {own.iteration} | named_nodes(sentence)
        if isinstance(own.parent, int):
            nodes.add(own.parent)
        self.known = [facts.results[n] for n in sorted(nodes) if n in facts.results]
        rows = [facts.row_of(n.iteration) for n in self.known]
        rows += [facts.row_named(c) for c in sorted(named_configs(sentence))]
        self.rows = [row for row in rows if row is not None]
        self._cache: dict[tuple[str, bool], list[float]] = {}

    def values(self, metric: str, is_cv: bool) -> list[float]:
        key = (metric, is_cv)
        if key not in self._cache:
            if is_cv:
                field = _TABLE_CV.get(metric)
                found = [getattr(r, field) for r in self.rows if field and math.isfinite(getattr(r, field))]
            else:
                found = [v for node in self.known for v in _node_values(metric, node)]
                if metric in _TABLE_MEAN:
                    found += [getattr(row, _TABLE_MEAN[metric]) for row in self.rows]
            self._cache[key] = found
        return self._cache[key]


def matches(claim: Claim, values: list[float]) -> bool:
    """Whether a claim equals one of ``values`` within its tolerance."""
    if claim.is_cv:
        return any(abs(claim.value - v) <= CV_TOL for v in values)
    return any(abs(claim.value - v) <= metric_tolerance(claim.metric, v, claim.half_unit) for v in values)


def _line_label(raw: str, number: int) -> tuple[str, str | None]:
    """(label for messages, entry key or None) of one entry line."""
    m = ENTRY_LINE.match(raw)
    key = m.group(1).strip() if m else None
    canonical = ENTRY_KEYS.get(key.lower()) if key else None
    if canonical is not None:
        return canonical, canonical
    return f"line {number} '{shorten(raw, 40)}'", None


def _hint(claim: Claim, own: SlotResult) -> str:
    if claim.is_cv:
        return "no config named here has that CV"
    if own.status != "completed" or own.metrics is None:
        return f"node {own.iteration} failed"
    measured = getattr(own.metrics, claim.metric)
    return f"node {own.iteration} has {claim.metric}={measured:.4g}"


def check_entry_claims(iteration: int, text: str, own: SlotResult, facts: ClaimFacts) -> list[str]:
    """One error line per unmatched claim in an entry's ``text`` (heading first, as parsed)."""
    errors = []
    for number, line in enumerate(text.splitlines(), start=1):
        raw = clean_line(line)
        if number == 1 or not raw:
            continue  # the heading's status is checked on its own
        label, key = _line_label(raw, number)
        if key in STRUCTURED_KEYS:
            continue
        for sentence in _SENTENCE.split(raw):
            claims = find_claims(sentence)
            if not claims:
                continue
            scope = Scope(own, sentence, facts)
            for claim in claims:
                if not matches(claim, scope.values(claim.metric, claim.is_cv)):
                    what = f"CV({claim.metric})" if claim.is_cv else claim.metric
                    errors.append(
                        f"Iter {iteration}: {label}: '{shorten(claim.text, 60)}' states a {what} the run never measured "
                        f"({_hint(claim, own)}; name the node or config a number belongs to, or leave it out)"
                    )
    return errors
