"""Claims about the data, not only its values: counts, superlatives and ranges, recomputed from the records.

agent.claims checks that a number named with a metric is one the prompt showed; this module checks what a
sentence says about a set of those records, in a bounded set of patterns (anything else is left alone: a
false rejection costs a re-ask):

- counts over runs or segments: ``k of n runs`` (``k out of n``, ``k/n``, ``all n``, ``none of the n``) with
  one predicate in the sentence: an entry status (``converged``, ``partial``, ``failed``), a phase drop or
  gain (``no V_rest-phase drop``, ``held during V_rest phases``; the phase map of the R2 digest, a drop being
  a negative change and one above -DROP_TOL counting either way), a trend (``decaying``, ``no decay``,
  ``final >= peak``) or a threshold (``above conn_R2 0.5``);
- superlatives: ``highest``, ``lowest``, ``best``, ``worst`` of a named set (``of the batch``, ``in block
  2``, ``so far``, ``of C1``), ``the only ... run``, ``the first ... run``;
- ranges: ``conn_R2 ranged 0.25-0.91 across the batch``.

The set a sentence means is the one it names (batch, block, run, a config ``C5``, the baseline runs); a count
without a named set is checked against every set of its size (the batch, the entry's config, its block, the
run) and rejected only when it is true of none. A failed run counts as 0 or is left out, whichever makes the
sentence true. Memory sections get the same checks (a superlative or count there needs a named subject or
set) and the evidence rule of Established Principles: every config a principle names (or a node's config)
has >= PRINCIPLE_MIN_RUNS runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from agent import protocol
from agent.claims import (
    HEDGE,
    METRIC_ALIASES,
    ClaimFacts,
    check_entry_claims,
    claim_tolerance,
    entry_sentences,
    find_claims,
    memory_sentences,
    metric_value,
    named_configs,
    named_nodes,
    named_sets,
    sentence_errors,
)
from agent.reply_parse import shorten
from experiment.exploration import SlotResult

NUMBER_WORDS = {
    "no": 0,
    "none": 0,
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
}
_WORDS = "|".join(NUMBER_WORDS)
_COUNT_N = rf"\d{{1,4}}|{_WORDS}"
_UNIT = r"(?P<unit>runs?|slots?|nodes?|iterations?|replicates?|segments?|phases?)"
_ADJ = r"(?P<adj>(?:[\w-]+\s+){0,2}?)"
_COUNTS = (
    re.compile(
        rf"(?<![\w.])(?P<k>{_COUNT_N})\s+(?:of|out\s+of)\s+(?:the\s+|these\s+|its\s+|all\s+)?(?P<n>{_COUNT_N})\s+"
        rf"{_ADJ}{_UNIT}\b",
        re.IGNORECASE,
    ),
    re.compile(rf"(?<![\w.])(?P<k>\d{{1,4}})\s*/\s*(?P<n>\d{{1,4}})\s+{_ADJ}{_UNIT}\b", re.IGNORECASE),
    re.compile(rf"\b(?P<k>all)\s+(?:the\s+|these\s+)?(?P<n>{_COUNT_N})\s+{_ADJ}{_UNIT}\b", re.IGNORECASE),
    re.compile(rf"\b(?P<k>none)\s+of\s+(?:the\s+|these\s+)?(?P<n>{_COUNT_N})\s+{_ADJ}{_UNIT}\b", re.IGNORECASE),
)
_NAME = "|".join(
    "[ _]".join(re.escape(part) for part in re.split("[ _]", alias))
    for alias in sorted(METRIC_ALIASES, key=len, reverse=True)
)
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_OPS = (
    r"(?P<op>>=|<=|≥|≤|>|<|above|over|exceed(?:s|ed|ing)?|at\s+least|more\s+than|greater\s+than|"
    r"below|under|at\s+most|less\s+than)"
)
_THRESHOLD = (
    re.compile(
        rf"(?<![\w.])(?P<name>{_NAME})(?!\w)\s*(?:(?:of|was|is|were|at|reached|stayed)\s+)?{_OPS}\s*(?P<x>{_NUM})(?![\w.])",
        re.I,
    ),
    re.compile(rf"{_OPS}\s*(?:(?:an?|the)\s+)?(?P<name>{_NAME})(?!\w)\s*(?:of\s+)?(?P<x>{_NUM})(?![\w.])", re.I),
)
_STATUS = re.compile(r"\b(?P<s>converge[sd]?|converging|partial|failed|fail|fails)\b", re.IGNORECASE)
_V_PHASE = re.compile(r"\bv_?rest(?:[- ]phases?|\s+segments?|\b)", re.IGNORECASE)
_W_PHASE = re.compile(r"\bW[- ]phases?\b|\bW\s+segments?\b")
_DROP = re.compile(
    r"\b(?:drops?|dropped|dropping|dips?|dipped|falls?|fell|loses|lost|loss|losses|declines?|declined|"
    r"decreases?|decreased|negative)\b",
    re.IGNORECASE,
)
_GAIN = re.compile(r"\b(?:gains?|gained|rises?|rose|increases?|increased|positive)\b", re.IGNORECASE)
_HOLD = re.compile(r"\b(?:holds?|held|holding|kept|keeps)\b", re.IGNORECASE)
_DECAY = re.compile(r"\b(?:decay|decays|decayed|decaying)\b", re.IGNORECASE)
_TREND = re.compile(r"\b(?:rising|stable)\b", re.IGNORECASE)
_FINAL_GE_PEAK = re.compile(r"\bfinal\s*(?:>=|≥|at\s+or\s+above\s+(?:the\s+)?|above\s+(?:the\s+)?)\s*peak\b", re.I)
_NEGATION = re.compile(r"\b(?:no|not|never|without|none)\b|n't", re.IGNORECASE)
_SUPERLATIVE = re.compile(
    r"\b(?P<word>highest|lowest|best|worst)\b(?=\s*(?:[,.;:)]|$)|\s+(?:(?:of|in|among|across|so\s+far|yet|ever|"
    r"overall|mean|average|node|run|slot|result|iteration|value|score)\b|conn|connectivity|r2|tau|v_?rest|cluster|"
    r"test|pearson))",
    re.IGNORECASE,
)
_ONLY = re.compile(r"\bthe\s+only\s+(?:[\w-]+\s+){0,2}?(?:runs?|slots?|nodes?|one|replicates?)\b", re.I)
_ONLY_NODE = re.compile(r"\bonly\s+(?:node|iter(?:ation)?)\s+(?P<id>\d{1,9})\b", re.IGNORECASE)
_FIRST = re.compile(r"\bthe\s+first\s+(?:[\w-]+\s+){0,2}?(?:runs?|slots?|nodes?|one|iteration)\b", re.I)
_RANGE = (
    re.compile(
        rf"(?<![\w.])(?P<name>{_NAME})(?!\w)[^;]{{0,40}}?\b(?:ranged|ranges|ranging|range\s+of|spans?|spanned|spanning|"
        rf"varied|varies|vary)\b\s*(?:from\s+|between\s+|over\s+)?(?P<lo>{_NUM})\s*(?:-|–|—|to|and)\s*"
        rf"(?P<hi>{_NUM})(?![\w.])",
        re.IGNORECASE,
    ),
)
_STATED = re.compile(rf"^[^;,()]{{0,40}}?(?:\b(?:was|is|at)\b|[=:])\s*(?P<x>{_NUM})(?![\w.])", re.IGNORECASE)
_PLAIN_ADJ = re.compile(
    r"(?:(?:baseline|default|C\d{1,9}|V_rest|vrest|W|(?:V_rest|W)-phase|phase|batch|block|completed)\s*){0,2}", re.I
)
_QUALIFIED = re.compile(r"\s*(?:with|using|under|at|from|that\s+used)\s+(?!an?\s|no\s)", re.IGNORECASE)
_CONTRAST = re.compile(r"\b(?:vs\.?|versus|than|compared|while|whereas|but|against|except|unlike)\b", re.IGNORECASE)
_SET_BATCH = re.compile(r"\b(?:batch|slots)\b", re.IGNORECASE)
_SET_BLOCK = re.compile(r"\bblock(?:\s+(?P<n>\d{1,6}))?\b", re.IGNORECASE)
_SET_RUN = re.compile(
    r"\b(?:so\s+far|yet|ever|overall|in\s+total|(?:the|this|whole)\s+run|of\s+all\s+(?:runs|nodes))\b", re.I
)
_BASELINE = re.compile(r"\b(?:baseline|defaults?)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Predicate:
    """What a count, ``only`` or ``first`` says of each run: ``test(run) -> (strict, loose)``, the strictest and
    the loosest reading (loose includes strict)."""

    text: str
    test: Callable[[SlotResult], tuple[bool, bool]]
    on_segments: Callable[[float], tuple[bool, bool]] | None = None


def _metric(name: str) -> str:
    key = " ".join(name.lower().replace("_", " ").split())
    return next(v for a, v in METRIC_ALIASES.items() if a.replace("_", " ") == key)


def _change(sign: int) -> Callable[[float], tuple[bool, bool]]:
    """A segment change read as a drop (sign -1) or a gain (+1): strict beyond DROP_TOL, loose beyond 0."""
    return lambda c: (sign * c > protocol.DROP_TOL, sign * c > 0)


def _negate(f: Callable[..., tuple[bool, bool]]) -> Callable[..., tuple[bool, bool]]:
    def neg(x: object) -> tuple[bool, bool]:
        strict, loose = f(x)
        return not loose, not strict

    return neg


def _phase_test(phase: str, seg: Callable[[float], tuple[bool, bool]]) -> Callable[[SlotResult], tuple[bool, bool]]:
    def test(r: SlotResult) -> tuple[bool, bool]:
        d = r.trajectory
        if d is None or r.status != "completed":
            return False, False
        hits = [seg(s.r2_change) for s in d.segments if s.phase == phase]
        return any(h[0] for h in hits), any(h[1] for h in hits)

    return test


def _status_test(word: str) -> Callable[[SlotResult], tuple[bool, bool]]:
    if word.startswith("converg"):
        return lambda r: (protocol.entry_status(r) == "converged",) * 2
    if word == "partial":
        return lambda r: (protocol.entry_status(r) == "partial",) * 2
    return lambda r: (r.status == "failed" or r.metrics is None, protocol.entry_status(r) == "failed")


def _threshold_test(metric: str, op: str, x: float) -> Callable[[SlotResult], tuple[bool, bool]]:
    op = " ".join(op.lower().split())
    above = op in (">", ">=", "≥", "above", "over", "at least", "more than", "greater than") or op.startswith("exceed")

    def test(r: SlotResult) -> tuple[bool, bool]:
        v = metric_value(metric, r)
        return (v > x, v >= x) if above else (v < x, v <= x)

    return test


def _trend_test(kind: str) -> Callable[[SlotResult], tuple[bool, bool]]:
    """A digest's trend (``rising`` / ``stable`` / ``decaying``) or ``final >= peak``; a failed run has neither."""

    def test(r: SlotResult) -> tuple[bool, bool]:
        d = r.trajectory
        hit = (
            d is not None
            and r.status == "completed"
            and (d.final_ge_peak if kind == "final >= peak" else d.trend == kind)
        )
        return hit, hit

    return test


def _negated(text: str, at: int) -> bool:
    """A negation within the few words before position ``at`` (``no V_rest-phase drop``, ``did not converge``)."""
    return _NEGATION.search(text, max(0, at - 30), at) is not None


def _signed(
    name: str, test: Callable[..., tuple[bool, bool]], negated: bool
) -> tuple[str, Callable[..., tuple[bool, bool]]]:
    return (f"no {name}", _negate(test)) if negated else (f"a {name}", test)


def predicate(text: str) -> Predicate | None:
    """The one predicate of a sentence (the count phrase taken out), or None when it has none or several kinds
    (``3 of 4 converged, none above conn_R2 0.9`` is left alone)."""
    found: list[Predicate] = []
    for rx in _THRESHOLD:
        for m in rx.finditer(text):
            f = _threshold_test(_metric(m.group("name")), m.group("op"), float(m.group("x")))
            found.append(Predicate(m.group(0), f))
    v_phase, w_phase = _V_PHASE.search(text), _W_PHASE.search(text)
    phase = "V_rest" if v_phase and not w_phase else "W" if w_phase and not v_phase else None
    drop, hold, gain = _DROP.search(text), _HOLD.search(text), _GAIN.search(text)
    if phase is not None and (drop or hold) and not gain:
        seg = _change(-1)
        word = drop or hold
        assert word is not None
        negated = _negated(text, word.start()) or (hold is not None and drop is None)
        name, test = _signed(f"{phase}-phase drop", _phase_test(phase, seg), negated)
        found.append(Predicate(name, test, _negate(seg) if negated else seg))
    elif phase is not None and gain and not drop:
        seg = _change(+1)
        negated = _negated(text, gain.start())
        name, test = _signed(f"{phase}-phase gain", _phase_test(phase, seg), negated)
        found.append(Predicate(name, test, _negate(seg) if negated else seg))
    statuses = list(_STATUS.finditer(text))
    if len({m.group("s").lower()[:4] for m in statuses}) == 1 and not _negated(text, statuses[0].start()):
        word = statuses[0].group("s").lower()
        found.append(Predicate(word, _status_test(word)))
    if m := _FINAL_GE_PEAK.search(text):
        ge = _trend_test("final >= peak")
        found.append(
            Predicate("final < peak", _negate(ge)) if _negated(text, m.start()) else Predicate("final >= peak", ge)
        )
    elif m := _DECAY.search(text):
        dec = _trend_test("decaying")
        found.append(Predicate("no decay", _negate(dec)) if _negated(text, m.start()) else Predicate("decaying", dec))
    elif (m := _TREND.search(text)) and phase is None and not _negated(text, m.start()):
        found.append(Predicate(m.group(0).lower(), _trend_test(m.group(0).lower())))
    return found[0] if len(found) == 1 else None


# ---------------------------------------------------------------------------------------------- sets


def _config_runs(facts: ClaimFacts, config_id: str) -> list[SlotResult] | None:
    row = facts.row_named(config_id)
    return None if row is None else [facts.results[i] for i in row.iterations if i in facts.results]


def named_set(sentence: str, facts: ClaimFacts, own: SlotResult | None) -> tuple[str, list[SlotResult]] | None:
    """The set of runs a sentence names: a config (``C5``), the baseline runs, a block, the batch, the run."""
    configs = sorted(named_configs(sentence))
    if len(configs) == 1 and (runs := _config_runs(facts, configs[0])) is not None:
        return configs[0], runs
    sets = named_sets(facts, own)
    if m := _SET_BLOCK.search(sentence):
        if m.group("n"):
            block = int(m.group("n"))
            return f"block {block}", [r for r in facts.results.values() if r.block == block]
        return "the block", sets["block"]
    if _SET_BATCH.search(sentence):
        return "the batch", sets["batch"]
    if _SET_RUN.search(sentence):
        return "the run", sets["run"]
    if _BASELINE.search(sentence):
        first = next(
            (r for r in sorted(facts.results.values(), key=lambda r: r.iteration) if r.strategy == "baseline"), None
        )
        row = facts.row_of(first.iteration) if first is not None else None
        if row is not None:
            return "the baseline config", [facts.results[i] for i in row.iterations if i in facts.results]
    return None


def _default_sets(facts: ClaimFacts, own: SlotResult | None) -> list[tuple[str, list[SlotResult]]]:
    """The sets a sentence that names none may mean: the batch, the entry's config, its block, the run, then
    every block and config of the run."""
    sets = named_sets(facts, own)
    found = [("the batch", sets["batch"])]
    if own is not None and (row := facts.row_of(own.iteration)) is not None:
        found.append((row.config_id, [facts.results[i] for i in row.iterations if i in facts.results]))
    found += [("the block", sets["block"]), ("the run", sets["run"])]
    for block in sorted({r.block for r in facts.results.values()}):
        found.append((f"block {block}", [r for r in sets["run"] if r.block == block]))
    for row in facts.rows:
        found.append((row.config_id, [facts.results[i] for i in row.iterations if i in facts.results]))
    return found


def _variants(runs: list[SlotResult]) -> list[list[SlotResult]]:
    """A set with failed runs counted (as 0) and left out."""
    done = [r for r in runs if r.status == "completed" and r.metrics is not None]
    return [runs, done] if len(done) != len(runs) else [runs]


def _subject(sentence: str, facts: ClaimFacts, own: SlotResult | None) -> SlotResult | None:
    nodes = sorted(named_nodes(sentence))
    if len(nodes) == 1:
        return facts.results.get(nodes[0])
    return own if not nodes else None


# ---------------------------------------------------------------------------------------------- checks


def _number(text: str) -> int | None:
    text = text.lower()
    return NUMBER_WORDS.get(text) if not text.isdigit() else int(text)


def _clause(sentence: str, start: int, end: int) -> tuple[int, int]:
    """The bounds of the comma / semicolon clause around ``sentence[start:end]``."""
    lo = max(sentence.rfind(",", 0, start), sentence.rfind(";", 0, start)) + 1
    ends = [i for i in (sentence.find(",", end), sentence.find(";", end)) if i >= 0]
    return lo, min(ends, default=len(sentence))


def _count_errors(where: str, sentence: str, facts: ClaimFacts, own: SlotResult | None) -> list[str]:
    errors = []
    found = {m.span(): m for rx in _COUNTS for m in rx.finditer(sentence)}
    # with several counts, each takes its predicate from its own clause ("0 of 5 runs above X, 5 of 5 rising")
    several = len(found) > 1
    for m in found.values():
        n = _number(m.group("n"))
        k = n if m.group("k").lower() == "all" else _number(m.group("k"))
        if n is None or k is None or k > n:
            continue
        if not _PLAIN_ADJ.fullmatch(m.group("adj").strip()) or _QUALIFIED.match(sentence, m.end()):
            continue  # "2 of 4 exploit runs", "3 of 4 runs with n_alt=6": a subset we cannot name
        lo, hi = _clause(sentence, m.start(), m.end()) if several else (0, len(sentence))
        rest = sentence[lo : m.start()] + " " + m.group("adj") + sentence[m.end() : hi]
        pred = predicate(rest)
        if pred is None:
            continue
        phrase = shorten(sentence.strip(), 60)
        error = _check_count(k, n, m.group("unit").lower(), pred, sentence, facts, own)
        if error:
            claim = f"read as {k} of {n} {m.group('unit').lower()} with {pred.text}"
            errors.append(f"{where}: '{phrase}' is false ({claim}): {error} (counts are recomputed from the records)")
    return errors


def _check_count(
    k: int, n: int, unit: str, pred: Predicate, sentence: str, facts: ClaimFacts, own: SlotResult | None
) -> str | None:
    """None when the count is true of some set of size n (or no set has that size), else what was found."""
    if unit.startswith(("segment", "phase")):
        return _check_segment_count(k, n, pred, sentence, facts, own)
    named = named_set(sentence, facts, own)
    sets = [named] if named is not None else _default_sets(facts, own)
    found = []
    for label, runs in sets:
        for variant in _variants(runs):
            if len(variant) != n:
                continue
            tests = [pred.test(r) for r in variant]
            low, high = sum(t[0] for t in tests), sum(t[1] for t in tests)
            if low <= k <= high:
                return None
            found.append(f"{low if low == high else f'{low}-{high}'} of the {n} runs of {label}")
    return f"{found[0]} have {pred.text}" if found else None


def _check_segment_count(
    k: int, n: int, pred: Predicate, sentence: str, facts: ClaimFacts, own: SlotResult | None
) -> str | None:
    if pred.on_segments is None:
        return None
    named = named_set(sentence, facts, own)
    subject = _subject(sentence, facts, own)
    runs = named[1] if named is not None else ([subject] if subject is not None else [])
    phase = "V_rest" if _V_PHASE.search(sentence) else "W" if _W_PHASE.search(sentence) else None
    segments = [s for r in runs if r.trajectory is not None for s in r.trajectory.segments]
    found = []
    for subset in ([s for s in segments if s.phase == phase], segments) if phase else (segments,):
        if len(subset) != n:
            continue
        tests = [pred.on_segments(s.r2_change) for s in subset]
        low, high = sum(t[0] for t in tests), sum(t[1] for t in tests)
        if low <= k <= high:
            return None
        found.append(f"{low if low == high else f'{low}-{high}'} of the {n} segments")
    return f"{found[0]} have {pred.text.replace('-phase', '')}" if found else None


def _superlative_metric(sentence: str, m: re.Match[str], primary: str) -> str:
    """The metric a superlative is about: the one named right after it, else the last one before it, else the
    first one named after it in the sentence, else the exploration's primary metric."""
    after = re.match(rf"\s*(?:mean\s+|average\s+)?(?P<name>{_NAME})(?!\w)", sentence[m.end() :], re.IGNORECASE)
    if after:
        return _metric(after.group("name"))
    before = list(re.finditer(rf"(?<![\w.])(?P<name>{_NAME})(?!\w)", sentence[: m.start()], re.IGNORECASE))
    if before:
        return _metric(before[-1].group("name"))
    later = re.search(rf"(?<![\w.])(?P<name>{_NAME})(?!\w)", sentence[m.end() :], re.IGNORECASE)
    return _metric(later.group("name")) if later else primary


def _superlative_errors(where: str, sentence: str, facts: ClaimFacts, own: SlotResult | None) -> list[str]:
    if _CONTRAST.search(sentence):
        return []  # "0.552 vs the highest of the batch, 0.663": which number is the superlative's is unclear
    errors = []
    for m in _SUPERLATIVE.finditer(sentence):
        metric = _superlative_metric(sentence, m, facts.primary)
        if metric == "training_time_min":
            continue
        high = m.group("word").lower() in ("highest", "best")
        tail = sentence[m.end() :]
        named = named_set(tail, facts, own)
        if named is None:
            continue
        label, runs = named
        if m.group("word").lower() == "best" and metric == facts.primary and facts.constraints:
            runs = [r for r in runs if facts.meets_constraints(r)] or runs  # best: among runs that keep the constraints
        variants = [[metric_value(metric, r) for r in v] for v in _variants(runs) if v]
        extremes = [(max if high else min)(v) for v in variants]
        if not extremes:
            continue
        claims = [(c.value, c.half_unit) for c in find_claims(sentence) if c.metric == metric and not c.is_cv]
        if stated := _STATED.search(tail):
            claims.append((float(stated.group("x")), _half(stated.group("x"))))
        phrase = shorten(sentence.strip(), 60)
        word = "highest" if high else "lowest"
        if claims:
            if not any(abs(v - x) <= claim_tolerance(metric, x, half) for v, half in claims for x in extremes):
                errors.append(
                    f"{where}: '{phrase}' is false: the {word} {metric} of {label} is {extremes[0]:.4f}, "
                    f"not {claims[0][0]:g} (superlatives are recomputed from the records)"
                )
            continue
        subject = _subject(sentence, facts, own)
        if subject is None or subject not in runs:
            continue
        value = metric_value(metric, subject)
        if any(abs(value - x) <= 1e-9 for x in extremes):
            continue
        other = next(r for r in runs if abs(metric_value(metric, r) - extremes[0]) <= 1e-9)
        errors.append(
            f"{where}: '{phrase}' is false: node {subject.iteration} has {metric}={value:.4f} but node "
            f"{other.iteration} of {label} has {extremes[0]:.4f} (superlatives are recomputed from the records)"
        )
    return errors


def _only_first_errors(where: str, sentence: str, facts: ClaimFacts, own: SlotResult | None) -> list[str]:
    errors = []
    for m, kind in (
        (_ONLY.search(sentence) or _ONLY_NODE.search(sentence), "only"),
        (_FIRST.search(sentence), "first"),
    ):
        if m is None:
            continue
        rest = sentence[: m.start()] + re.sub(r"\b(?:only|first)\b", " ", m.group(0)) + sentence[m.end() :]
        pred = predicate(rest)
        named = named_set(sentence[m.end() :], facts, own)
        subject = _subject(sentence, facts, own)
        if pred is None or subject is None or (named is None and kind == "only"):
            continue
        sets = [named] if named is not None else _default_sets(facts, own)[-2:]  # first: in the block or the run
        sets = [(label, runs) for label, runs in sets if subject in runs]
        if not sets:
            continue
        phrase = shorten(sentence.strip(), 60)
        if not pred.test(subject)[1]:
            errors.append(f"{where}: '{phrase}' is false: node {subject.iteration} does not have {pred.text}")
            continue
        rivals = [
            [
                r.iteration
                for r in runs
                if r is not subject and pred.test(r)[0] and (kind == "only" or r.iteration < subject.iteration)
            ]
            for _, runs in sets
        ]
        if all(rivals):
            why = "too" if kind == "only" else "earlier"
            errors.append(f"{where}: '{phrase}' is false: node {rivals[0][0]} of {sets[0][0]} has {pred.text} {why}")
    return errors


def _range_errors(where: str, sentence: str, facts: ClaimFacts, own: SlotResult | None) -> list[str]:
    errors = []
    for rx in _RANGE:
        for m in rx.finditer(sentence):
            named = named_set(sentence, facts, own)
            metric = _metric(m.group("name"))
            if named is None or metric == "training_time_min":
                continue
            label, runs = named
            lo_text, hi_text = m.group("lo"), m.group("hi")
            lo, hi = sorted((float(lo_text), float(hi_text)))
            half = min(_half(lo_text), _half(hi_text))
            for variant in _variants(runs):
                values = [metric_value(metric, r) for r in variant]
                if values and all(
                    abs(a - b) <= claim_tolerance(metric, b, half) for a, b in ((lo, min(values)), (hi, max(values)))
                ):
                    break
            else:
                values = [metric_value(metric, r) for r in runs]
                if values:
                    errors.append(
                        f"{where}: '{shorten(m.group(0), 60)}' is false: {metric} of {label} ranges "
                        f"{min(values):.4f}-{max(values):.4f} (ranges are recomputed from the records)"
                    )
    return errors


def _half(text: str) -> float:
    decimals = len(text.split(".", 1)[1]) if "." in text else 0
    return 0.5 * 10.0**-decimals


def data_errors(where: str, sentence: str, facts: ClaimFacts, own: SlotResult | None) -> list[str]:
    """One error line per false count, superlative or range of one sentence (none for a question or prediction)."""
    if HEDGE.search(sentence):
        return []
    return (
        _count_errors(where, sentence, facts, own)
        + _superlative_errors(where, sentence, facts, own)
        + _only_first_errors(where, sentence, facts, own)
        + _range_errors(where, sentence, facts, own)
    )


def principle_errors(body: str, facts: ClaimFacts) -> list[str]:
    """Established Principles: each config a line names (``C5``, or a node's config) has enough runs."""
    errors = []
    for where, sentence in memory_sentences("Established Principles", body):
        configs = set(named_configs(sentence))
        for node in named_nodes(sentence):
            row = facts.row_of(node)
            if row is not None:
                configs.add(row.config_id)
        short = [
            f"{cid} has {row.runs} run{'s' * (row.runs != 1)}"
            for cid in sorted(configs, key=lambda c: int(c[1:]))
            if (row := facts.row_named(cid)) is not None and row.runs < protocol.PRINCIPLE_MIN_RUNS
        ]
        if short:
            errors.append(
                f"{where}: {', '.join(short)}; a principle needs configs with >= {protocol.PRINCIPLE_MIN_RUNS} runs "
                "(keep it in Knowledge Base or Open Questions until replicated)"
            )
    return errors


def check_entry(iteration: int, text: str, own: SlotResult, facts: ClaimFacts) -> list[str]:
    """Every claim error of an entry: its values (agent.claims), then its counts, superlatives and ranges."""
    errors = check_entry_claims(iteration, text, own, facts)
    for where, sentence in entry_sentences(iteration, text):
        errors += data_errors(where, sentence, facts, own)
    return errors


def check_memory(section: str, body: str, facts: ClaimFacts) -> list[str]:
    """Every claim error of a memory section the LLM sent, and the evidence rule of Established Principles."""
    errors = []
    for where, sentence in memory_sentences(section, body):
        errors += sentence_errors(where, sentence, None, facts) + data_errors(where, sentence, facts, None)
    if section == "Established Principles":
        errors += principle_errors(body, facts)
    return errors
