"""The Optuna policy: a Bayesian-optimisation baseline that plays the protocol like the LLM does.

Each batch's exploit slots are asked from an Optuna study (ask-and-tell, ``TPESampler``, seeded) over the
run's profile's explorable training keys (``explore_ranges``, shared with the offline policy) and the
regularisers of the base instructions' table that the profile does not lock; the objective is the profile's
reward (the primary metric, 0 when a hard constraint fails; connectivity_R2 for the alternating profile). Everything else is the offline
policy's: baseline block first, the replicate quota, entries and memory built from measured values only
(``OptunaPlanner`` subclasses ``OfflinePlanner`` and replaces only how exploit slots are chosen). The parent
of a proposal is the existing node of the block nearest to it in config space (``root`` at a block start).

The study lives in the run directory (``optuna_study.jsonl``, Optuna's JournalStorage on a
JournalFileBackend): every write is one fsynced line, a line torn by a crash is cut off before the next
write, and the study is reconciled with the run's results on every call, so a SIGKILL or ``--resume``
never tells a trial twice, never asks a slot twice and never loses a measured run:

- a measured iteration becomes exactly one COMPLETE trial (its own asked trial when one exists and its
  parameters match; otherwise an added trial: baselines, replicates, a plan that ran something else);
- a trial asked for the next batch (state RUNNING, user attribute ``iteration``) is reused as that slot's
  proposal when the call is repeated (resume, re-ask), and failed only when its iteration ran or was planned
  without it;
- every ask uses a sampler seeded from (seed, iteration, attempt), so a resumed run proposes what the
  uninterrupted run proposed from the same study.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

from agent.config_policy import Trainable, apply_overlay, diff_trainable, overlay_between, same_value
from agent.llm.base import LLMRequest
from agent.llm.offline_policy import OfflinePlanner, Proposal, explore_ranges
from agent.profile import Profile
from agent.protocol import blocked_keys, extra_ranges
from agent.reply_check import ReplyContext
from agent.tree import node_score
from experiment.exploration import ROOT, Parent, SlotResult, block_of
from memory.variance import config_key

STUDY_FILE = "optuna_study.jsonl"
STUDY_NAME = "flyvis-agent"
SEED_ENV = "FLYVIS_OPTUNA_SEED"
MAX_DUPLICATE_ASKS = 20  # asks per slot before a proposal that re-runs a known config is accepted
SECTION = "training"  # every explorable parameter is a training: key

# The regularisers of the base instructions' table, with the value of the spec's reference config
# (shared/spec/PARITY.md section 1). Their grid is {0, reference / 10, reference} plus the base config's
# value, inside the config policy's range (protocol.extra_ranges).
REGULARISER_REFERENCE: dict[str, float] = {
    "coeff_edge_diff": 750.0,
    "coeff_edge_norm": 0.9,
    "coeff_edge_weight_L1": 0.29,
    "coeff_phi_weight_L1": 0.5,
    "coeff_W_L1": 3.3e-5,
    "coeff_W_L2": 2.5e-6,
}


# ---------------------------------------------------------------------------------------------- space


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def search_grid(base: Trainable, profile: Profile | None = None) -> dict[str, tuple[Any, ...]]:
    """Parameter -> ordered choices: the profile's explorable training keys, then the regulariser grid (the
    regularisers the profile locks are left out).

    The base config's value is always a choice, so the baseline runs are trials of the study.
    """
    training = base.get(SECTION, {})
    grid: dict[str, tuple[Any, ...]] = {}
    for key, values in explore_ranges(profile):
        grid[key] = _with_base(values, training.get(key))
    locked, ranges = blocked_keys(profile), extra_ranges(profile)
    for key, ref in REGULARISER_REFERENCE.items():
        if f"{SECTION}.{key}" in locked or key in grid:
            continue
        low, high = ranges[f"{SECTION}.{key}"]
        values = tuple(v for v in (0.0, _round(ref / 10), _round(ref)) if low <= v <= high)
        grid[key] = _with_base(values, training.get(key))
    return grid


def _with_base(values: tuple[Any, ...], base: Any) -> tuple[Any, ...]:
    if base is None or any(same_value(v, base) for v in values):
        return tuple(values)
    return tuple(sorted((*values, base)))


def distributions(grid: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
    """Optuna categorical distributions of the grid (choices keep their order and type)."""
    from optuna.distributions import CategoricalDistribution

    return {key: CategoricalDistribution(list(values)) for key, values in grid.items()}


def params_of(trainable: Trainable, base: Trainable, grid: dict[str, tuple[Any, ...]]) -> dict[str, Any] | None:
    """The trial parameters of a config; None when it is outside the space (another key changed, or a
    value that is not a choice)."""
    for ch in diff_trainable(base, trainable):
        section, _, name = ch.key.partition(".")
        if section != SECTION or name not in grid:
            return None
    training = trainable.get(SECTION, {})
    params = {}
    for key, choices in grid.items():
        hit = next((c for c in choices if same_value(c, training.get(key))), _MISSING)
        if hit is _MISSING:
            return None
        params[key] = hit
    return params


_MISSING = object()


def trainable_of(params: dict[str, Any], base: Trainable, profile: Profile | None = None) -> Trainable:
    """The config a trial stands for: the base config with the trial's parameters."""
    return apply_overlay(base, {SECTION: dict(params)}, "optuna trial", profile)


def config_distance(a: Trainable, b: Trainable, grid: dict[str, tuple[Any, ...]]) -> float:
    """Distance in config space: per grid parameter, choice steps over the range (0..1); any other
    differing key counts 1."""
    total = 0.0
    for ch in diff_trainable(a, b):
        section, _, name = ch.key.partition(".")
        choices = grid.get(name) if section == SECTION else None
        i, j = _index(choices, ch.old), _index(choices, ch.new)
        total += abs(i - j) / max(1, len(choices) - 1) if choices and i >= 0 and j >= 0 else 1.0
    return total


def _index(choices: tuple[Any, ...] | None, value: Any) -> int:
    return next((k for k, c in enumerate(choices or ()) if same_value(c, value)), -1)


# ---------------------------------------------------------------------------------------------- study


def repair_journal_file(path: Path) -> None:
    """Cut a line torn by a crash (no final newline) and a stale writer lock left by a killed process.

    Only called while the controller holds the run lock, so no other process writes the file.
    """
    if path.exists() and path.stat().st_size:
        raw = path.read_bytes()
        if not raw.endswith(b"\n"):
            with open(path, "r+b") as fh:
                fh.truncate(raw.rfind(b"\n") + 1)
                fh.flush()
                os.fsync(fh.fileno())
    for suffix in (".lock",):
        stale = path.with_name(path.name + suffix)
        if stale.is_symlink() or stale.exists():
            stale.unlink()


def open_study(path: Path, seed: int) -> Any:
    """The run's study (created on first use, with its seed recorded); quiet Optuna logging."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_journal_file(path)
    storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, direction="maximize", load_if_exists=True)
    if "seed" not in study.user_attrs:
        study.set_user_attr("seed", seed)
        study.set_user_attr("objective", "connectivity_R2 of one run (a failed run counts 0)")
    return study


def make_sampler(seed: int) -> Any:
    """TPE with the constant liar, so the parallel slots of one batch do not all get the same proposal."""
    from optuna.exceptions import ExperimentalWarning
    from optuna.samplers import TPESampler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return TPESampler(seed=seed, constant_liar=True)


def ask_seed(seed: int, iteration: int, attempt: int) -> int:
    """The sampler seed of one ask: a pure function of the run seed, the slot's iteration and the attempt."""
    return (seed * 1_000_003 + iteration * 1_009 + attempt) % (2**32)


class Tuner:
    """The study of one run, reconciled with the run's results; asks the next batch's exploit configs."""

    def __init__(self, study: Any, ctx: ReplyContext) -> None:
        from optuna.trial import TrialState

        self.study, self.ctx, self.TrialState = study, ctx, TrialState
        self.seed = int(study.user_attrs["seed"])
        self.base = ctx.base_trainable
        self.profile = ctx.profile
        self.grid = search_grid(self.base, ctx.profile)
        self.dists = distributions(self.grid)

    # ------------------------------------------------------------------ reconcile
    def _trials(self) -> list[Any]:
        return self.study.get_trials(deepcopy=False)

    def reconcile(self) -> None:
        """Make the study agree with the measured results (idempotent: a second call changes nothing)."""
        trials = self._trials()
        done = {t.user_attrs.get("iteration") for t in trials if t.state == self.TrialState.COMPLETE}
        running = {t.user_attrs.get("iteration"): t for t in trials if t.state == self.TrialState.RUNNING}
        for r in sorted(self.ctx.all_results, key=lambda r: r.iteration):
            if r.iteration in done:
                continue
            asked = running.pop(r.iteration, None)
            params = params_of(r.trainable, self.base, self.grid)
            if asked is not None and params is not None and _same_params(asked.params, params):
                self.study.tell(asked.number, node_score(r, self.profile))
                continue
            if asked is not None:  # the slot ran another config than this trial: the trial never ran
                self.study.tell(asked.number, state=self.TrialState.FAIL)
            if params is not None:
                self._add(r, params)
        first_next = self.ctx.next_iterations[0] if self.ctx.next_iterations else math.inf
        for it, t in running.items():
            if it is None or it < first_next:  # its iteration is over without it
                self.study.tell(t.number, state=self.TrialState.FAIL)

    def _add(self, r: SlotResult, params: dict[str, Any]) -> None:
        from optuna.trial import create_trial

        kind = "baseline" if r.strategy == "baseline" else "replicate" if r.replicate_of is not None else "added"
        self.study.add_trial(
            create_trial(
                params=params,
                distributions=self.dists,
                value=node_score(r, self.profile),
                user_attrs={"iteration": r.iteration, "batch": r.batch, "slot": r.slot, "kind": kind},
            )
        )

    # ------------------------------------------------------------------ ask
    def targets(self, n: int, seen: set[str]) -> list[Trainable]:
        """The configs of exploit slots 0..n-1 of the next batch (reusing trials already asked for them)."""
        trials = self._trials()
        running = {t.user_attrs.get("iteration"): t for t in trials if t.state == self.TrialState.RUNNING}
        taken = set(seen)
        out = []
        for slot in range(n):
            iteration = self.ctx.next_iterations[slot]
            trial = running.pop(iteration, None)
            params = trial.params if trial is not None else self._ask(slot, iteration, taken, trials)
            target = trainable_of(params, self.base, self.profile)
            taken.add(config_key(target))
            out.append(target)
        for t in running.values():  # asked for a slot that is now a replicate: it will never run
            if t.user_attrs.get("iteration") in self.ctx.next_iterations:
                self.study.tell(t.number, state=self.TrialState.FAIL)
        return out

    def _ask(self, slot: int, iteration: int, taken: set[str], trials: list[Any]) -> dict[str, Any]:
        """A new trial for the slot; a proposal of a config that already ran (or is taken in this batch) is
        told that config's measured mean conn_R2 and asked again, up to MAX_DUPLICATE_ASKS times.

        ``trials``: the study's trials before this batch's asks (earlier duplicate asks for the iteration
        count as attempts, so a resumed run asks the same sequence)."""
        attempt = sum(
            1 for t in trials if t.state == self.TrialState.COMPLETE and t.user_attrs.get("duplicate_for") == iteration
        )
        while True:
            self.study.sampler = make_sampler(ask_seed(self.seed, iteration, attempt))
            trial = self.study.ask(self.dists)
            key = config_key(trainable_of(trial.params, self.base, self.profile))
            if key not in taken or attempt >= MAX_DUPLICATE_ASKS:
                trial.set_user_attr("iteration", iteration)
                trial.set_user_attr("batch", self.ctx.next_batch)
                trial.set_user_attr("slot", slot)
                trial.set_user_attr("kind", "asked")
                return dict(trial.params)
            trial.set_user_attr("duplicate_for", iteration)
            self.study.tell(trial, self._measured_mean(key))
            attempt += 1

    def _measured_mean(self, key: str) -> float:
        runs = [node_score(r, self.profile) for r in self.ctx.all_results if config_key(r.trainable) == key]
        if runs:
            return sum(runs) / len(runs)
        # taken in this batch but not measured yet: the mean of the study so far keeps TPE neutral
        values = [t.value for t in self._trials() if t.state == self.TrialState.COMPLETE and t.value is not None]
        return sum(values) / len(values) if values else 0.0


def _same_params(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------- planner


class OptunaPlanner(OfflinePlanner):
    """The offline planner with TPE proposals in the exploit slots and nearest-node parents."""

    def __init__(self, ctx: ReplyContext, tuner: Tuner | None) -> None:
        super().__init__(ctx)
        self.tuner = tuner

    def _exploit_proposals(self, n: int) -> list[Proposal]:
        if n == 0 or self.tuner is None:
            return []
        targets = self.tuner.targets(n, self.seen)
        props = []
        for slot, target in enumerate(targets):
            parent, parent_cfg = self._nearest_parent(target)
            overlay = overlay_between(parent_cfg, target)
            props.append(Proposal(slot, parent, "exploit" if slot < 2 else "explore", overlay))
        return props

    def _nearest_parent(self, target: Trainable) -> tuple[Parent, Trainable]:
        """The node of the next block nearest to ``target`` (ties: fewer changes, higher conn_R2, older);
        ``root`` at a block start or before the block has a node."""
        if self.ctx.next_starts_block:
            return ROOT, self.ctx.base_trainable
        block = block_of(self.ctx.next_iterations[0], self.ctx.n_iter_block)
        nodes = [r for r in self.results if r.block == block]
        completed = [r for r in nodes if r.status == "completed"] or nodes
        if not completed:
            return ROOT, self.ctx.base_trainable
        grid = self.tuner.grid if self.tuner is not None else {}
        best = min(
            completed,
            key=lambda r: (
                config_distance(r.trainable, target, grid),
                len(diff_trainable(r.trainable, target)),
                -node_score(r, self.ctx.profile),
                r.iteration,
            ),
        )
        return best.iteration, best.trainable

    def _parent_rule(self, r: SlotResult) -> str:
        if r.replicate_of is not None or r.parent == ROOT:
            return super()._parent_rule(r)
        return f"node {r.parent}: the existing node of the block nearest to the TPE proposal in config space"

    def _hypothesis(self, block: int) -> str:
        seed = self.tuner.seed if self.tuner is not None else "?"
        return (
            f"Optuna TPE proposals (seed {seed}) over the explore ranges and the regulariser grid; "
            "each from the existing node nearest to it"
        )


# ---------------------------------------------------------------------------------------------- policy


class OptunaPolicy:
    """The policy callable of the ``optuna`` backend: one reply per request, the study in ``run_dir``."""

    def __init__(self, run_dir: str | Path, seed: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.seed = default_seed() if seed is None else seed

    @property
    def study_path(self) -> Path:
        return self.run_dir / STUDY_FILE

    def __call__(self, request: LLMRequest) -> str:
        ctx = ReplyContext.model_validate(request.context["reply_context"])
        tuner = None
        if not ctx.is_start:
            tuner = Tuner(open_study(self.study_path, self.seed), ctx)
            tuner.reconcile()
        return OptunaPlanner(ctx, tuner).reply()


def default_seed() -> int:
    """The sampler seed of a new study: ``$FLYVIS_OPTUNA_SEED`` or 0 (a resumed study keeps its own)."""
    text = os.environ.get(SEED_ENV, "0").strip() or "0"
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{SEED_ENV}={text!r}: must be an integer") from None
