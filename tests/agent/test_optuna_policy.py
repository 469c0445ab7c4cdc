"""The Optuna policy plays the protocol: its replies pass the reply contract, its study agrees with the run's
results after every call (also after a call that died half-way), and one seed gives one sequence of proposals.

A whole run is simulated in-process: each accepted plan is "trained" by a deterministic function of its config
and seeds (like tests/loop/fake_slot.py), so a 24-iteration run takes about a second.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from agent.config_policy import Trainable, base_trainable, check_edit
from agent.llm.base import LLMRequest
from agent.llm.optuna_policy import (
    STUDY_FILE,
    OptunaPolicy,
    Tuner,
    open_study,
    params_of,
    repair_journal_file,
    search_grid,
)
from agent.reply_check import PlannedSlot, ReplyContext, check_reply
from experiment.config import load_experiment
from experiment.exploration import Seeds, SlotResult
from experiment.records import R2Row
from helpers.replies import N_SLOTS, policy_context
from helpers.results import slot_result
from memory.variance import config_key

TrialState = optuna.trial.TrialState

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "flyvis_tiny.yaml"


@pytest.fixture(scope="module")
def base() -> Trainable:
    return base_trainable(load_experiment(TINY))


def measure(p: PlannedSlot) -> SlotResult:
    """A completed slot whose conn_R2 depends on the config (n_alternations, vrest ratio) and its seeds."""
    t = p.trainable["training"]
    seed = p.iteration * 1000 + p.slot
    jitter = ((seed * 7919) % 97) / 97.0 - 0.5
    conn = round(min(0.99, 0.6 + 0.02 * t["n_alternations"] - 0.1 * t["alternate_vrest_ratio"] + 0.02 * jitter), 6)
    rows = [
        R2Row(epoch=0, iteration=k * 100, connectivity_r2=round(conn * k / 8, 6), phase="W" if k % 2 else "V_rest")
        for k in range(1, 9)
    ]
    return slot_result(
        p.iteration,
        slot=p.slot,
        batch=p.batch,
        block=p.block,
        parent=p.parent,
        replicate_of=p.replicate_of,
        strategy=p.strategy,
        mutation=p.mutation,
        trainable=p.trainable,
        seeds=Seeds(simulation=seed, training=seed + 500),
        conn=conn,
        tau=0.9,
        vrest=round(0.3 + 0.05 * jitter, 6),
        cluster=0.8,
        test_r2=0.95,
        pearson=0.97,
        minutes=0.01,
        rows=rows,
    )


def context(batch: int, results: list[SlotResult], n_batches: int, base: Trainable, baseline: int) -> ReplyContext:
    """What the controller hands the policy after ``batch`` (0: PARALLEL START)."""
    return policy_context(batch, results, n_batches, base, baseline)


def request(ctx: ReplyContext, call_id: str = "batch") -> LLMRequest:
    return LLMRequest(
        call_id=call_id,
        purpose="start" if ctx.is_start else "batch",
        system="system",
        prompt="prompt",
        model="m",
        max_tokens=100,
        context={"reply_context": ctx.model_dump(mode="json")},
    )


def simulate(
    run_dir: Path, base: Trainable, *, iterations: int = 24, baseline: int = 1, seed: int = 0
) -> tuple[list[SlotResult], list[list[PlannedSlot]]]:
    """A whole run: every reply goes through the reply contract (check_reply raises on any violation)."""
    policy = OptunaPolicy(run_dir, seed=seed)
    n_batches = iterations // N_SLOTS
    results: list[SlotResult] = []
    plans: list[list[PlannedSlot]] = []
    for batch in range(n_batches + 1):
        ctx = context(batch, results, n_batches, base, baseline)
        _, planned = check_reply(policy(request(ctx)), ctx)
        plans.append(planned)
        results = results + [measure(p) for p in planned]
    return results, plans


def study_at(run_dir: Path) -> optuna.Study:
    return open_study(run_dir / STUDY_FILE, seed=-1)


def complete_iterations(study: optuna.Study) -> list[int]:
    return sorted(
        t.user_attrs["iteration"]
        for t in study.get_trials(deepcopy=False)
        if t.state == TrialState.COMPLETE and "iteration" in t.user_attrs
    )


# ---------------------------------------------------------------------------------------------- the space


def test_every_grid_choice_is_allowed_by_the_config_policy(base: Trainable) -> None:
    for key, choices in search_grid(base).items():
        for value in choices:
            assert check_edit(base, {"training": {key: value}}, "grid") == [], (key, value)


def test_the_base_config_is_a_point_of_the_space(base: Trainable) -> None:
    grid = search_grid(base)
    assert params_of(base, base, grid) == {key: base["training"][key] for key in grid}


def test_a_config_outside_the_space_has_no_trial_parameters(base: Trainable) -> None:
    wider = {**base, "graph_model": {**base["graph_model"], "hidden_dim": 64}}
    assert params_of(wider, base, search_grid(base)) is None


# ---------------------------------------------------------------------------------------------- the protocol


@pytest.mark.parametrize("baseline", [1, 3])
def test_replies_pass_the_reply_contract_over_a_whole_run(tmp_path: Path, base: Trainable, baseline: int) -> None:
    results, plans = simulate(tmp_path, base, baseline=baseline)
    assert [r.iteration for r in results] == list(range(1, 25))
    for batch, planned in enumerate(plans[:baseline], start=1):  # plans[k] is the plan of batch k + 1
        assert {p.strategy for p in planned} == {"baseline"}, f"batch {batch} is a baseline batch"
    explored = [p for planned in plans[baseline:] for p in planned if p.strategy != "robustness-check"]
    assert explored, "the run never left the baseline"
    keys = [config_key(p.trainable) for p in explored]
    assert len(set(keys)) == len(keys), "an exploit slot re-ran a config"


def test_the_parent_is_the_nearest_node_of_the_block(tmp_path: Path, base: Trainable) -> None:
    results, plans = simulate(tmp_path, base, iterations=12)
    grid = search_grid(base)
    from agent.llm.optuna_policy import config_distance

    known: list[SlotResult] = []
    for planned in plans:
        for p in planned:
            if p.replicate_of is None and p.parent != "root":
                block_nodes = [r for r in known if r.block == p.block]
                nearest = min(config_distance(r.trainable, p.trainable, grid) for r in block_nodes)
                parent = next(r for r in known if r.iteration == p.parent)
                assert config_distance(parent.trainable, p.trainable, grid) == nearest
        known += [r for r in results if r.iteration in {p.iteration for p in planned}]


def test_every_measured_run_is_one_completed_trial(tmp_path: Path, base: Trainable) -> None:
    results, _ = simulate(tmp_path, base)
    study = study_at(tmp_path)
    assert complete_iterations(study) == [r.iteration for r in results]
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    by_iteration = {t.user_attrs["iteration"]: t for t in study.trials if "iteration" in t.user_attrs}
    for r in results:
        assert by_iteration[r.iteration].value == pytest.approx(r.conn_r2)


def test_asked_trials_are_the_configs_that_ran(tmp_path: Path, base: Trainable) -> None:
    results, _ = simulate(tmp_path, base)
    grid = search_grid(base)
    by_iteration = {r.iteration: r for r in results}
    asked = [t for t in study_at(tmp_path).trials if t.user_attrs.get("kind") == "asked"]
    assert asked
    for t in asked:
        assert t.params == params_of(by_iteration[t.user_attrs["iteration"]].trainable, base, grid)


# ---------------------------------------------------------------------------------------------- determinism


def test_the_same_seed_gives_the_same_proposals(tmp_path: Path, base: Trainable) -> None:
    _, first = simulate(tmp_path / "a", base, seed=7)
    _, second = simulate(tmp_path / "b", base, seed=7)
    assert [[p.trainable for p in b] for b in first] == [[p.trainable for p in b] for b in second]


def test_another_seed_gives_other_proposals(tmp_path: Path, base: Trainable) -> None:
    _, first = simulate(tmp_path / "a", base, seed=1)
    _, second = simulate(tmp_path / "b", base, seed=2)
    assert [[p.trainable for p in b] for b in first] != [[p.trainable for p in b] for b in second]


# ---------------------------------------------------------------------------------------------- kill and resume


def _run_until(run_dir: Path, base: Trainable, batches: int) -> list[SlotResult]:
    """Batches 0..batches-1 of a 24-iteration run (replies checked); returns the results so far."""
    policy = OptunaPolicy(run_dir, seed=0)
    results: list[SlotResult] = []
    for batch in range(batches):
        ctx = context(batch, results, 6, base, 1)
        results = results + [measure(p) for p in check_reply(policy(request(ctx)), ctx)[1]]
    return results


def test_a_repeated_call_reuses_the_asked_trials(tmp_path: Path, base: Trainable) -> None:
    results = _run_until(tmp_path, base, 3)
    ctx = context(3, results, 6, base, 1)
    first = OptunaPolicy(tmp_path, seed=0)(request(ctx))
    n_trials = len(study_at(tmp_path).trials)
    again = OptunaPolicy(tmp_path, seed=0)(request(ctx, "batch-reask-1"))  # resume or re-ask: same state
    assert again == first
    assert len(study_at(tmp_path).trials) == n_trials, "a slot was asked twice"


def test_a_call_killed_between_two_asks_resumes_to_the_uninterrupted_reply(
    tmp_path: Path, base: Trainable, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _run_until(tmp_path / "ref", base, 3)
    ctx = context(3, reference, 6, base, 1)
    want = OptunaPolicy(tmp_path / "ref", seed=0)(request(ctx))

    results = _run_until(tmp_path / "run", base, 3)
    assert results == reference
    real_ask, calls = Tuner._ask, []

    def dies_on_second_ask(self: Tuner, slot: int, iteration: int, *args: object) -> dict:
        calls.append(slot)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real_ask(self, slot, iteration, *args)

    monkeypatch.setattr(Tuner, "_ask", dies_on_second_ask)
    with pytest.raises(KeyboardInterrupt):
        OptunaPolicy(tmp_path / "run", seed=0)(request(ctx))
    monkeypatch.setattr(Tuner, "_ask", real_ask)
    assert OptunaPolicy(tmp_path / "run", seed=0)(request(ctx)) == want


def test_a_plan_that_ran_other_configs_fails_the_asked_trials_and_keeps_the_runs(
    tmp_path: Path, base: Trainable
) -> None:
    results = _run_until(tmp_path, base, 2)
    ctx = context(2, results, 6, base, 1)
    OptunaPolicy(tmp_path, seed=0)(request(ctx))  # asks trials for batch 3 ...
    from agent.llm.offline_policy import offline_policy

    _, planned = check_reply(offline_policy(request(ctx)), ctx)  # ... but batch 3 runs another plan
    results = results + [measure(p) for p in planned]
    OptunaPolicy(tmp_path, seed=0)(request(context(3, results, 6, base, 1)))
    study = study_at(tmp_path)
    assert complete_iterations(study) == [r.iteration for r in results]
    stale = [t for t in study.trials if t.user_attrs.get("batch") == 3 and t.user_attrs.get("kind") == "asked"]
    assert stale and {t.state for t in stale} <= {TrialState.FAIL, TrialState.COMPLETE}
    assert not [t for t in study.trials if t.state == TrialState.RUNNING and t.user_attrs.get("batch") == 3]


def test_a_torn_study_line_is_cut_before_the_next_write(tmp_path: Path, base: Trainable) -> None:
    _run_until(tmp_path, base, 3)
    path = tmp_path / STUDY_FILE
    intact = path.read_bytes()
    with open(path, "ab") as fh:
        fh.write(b'{"op_code": 5, "worker_id": "x", "trial_id"')  # a write cut by SIGKILL
    (tmp_path / (STUDY_FILE + ".lock")).symlink_to(path)  # the lock the killed writer held
    repair_journal_file(path)
    assert path.read_bytes() == intact
    assert not (tmp_path / (STUDY_FILE + ".lock")).exists()
    assert len(study_at(tmp_path).trials) > 0
