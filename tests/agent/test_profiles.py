"""Exploration profiles: each shipped profile loads, its rules reach the prompt, the checks and both policies,
and the system text states the run's effective numbers (issue 22 item 2, issue 23 items 1, 3, 4).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from agent import protocol
from agent.config_policy import Trainable, base_trainable, check_edit
from agent.controller import Controller, RunSettings
from agent.events import RunStarted
from agent.journal import Journal
from agent.llm.base import LLMRequest
from agent.llm.offline_policy import OfflinePlanner, offline_policy
from agent.llm.optuna_policy import OptunaPolicy, search_grid
from agent.profile import Profile, ProfileError, load_profile_file, parse_profile, profile_path
from agent.prompts import PROMPTS_DIR, RunValues, load_instructions
from agent.reply import parse_reply, validate_reply
from agent.reply_check import PlannedSlot, ReplyContext, check_reply
from agent.run import create_run_dir
from experiment.config import load_experiment
from experiment.exploration import Seeds, SlotResult
from experiment.records import R2Row
from experiment.yaml_io import load_yaml_text
from helpers.replies import policy_context
from helpers.results import slot_result
from memory.variance import variance_table

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
ALTERNATE = "instruction_flyvis_62_1_gs_alternate.md"
GS = "instruction_flyvis_62_1_gs.md"
VREST = "instruction_flyvis_62_1_gs_vrest.md"
EXPLORATIONS = {
    GS: ("flyvis_gs_demo_cpu.yaml", "flyvis_gs_cpu.yaml", "flyvis_62_1_gs.yaml"),
    VREST: ("flyvis_gs_vrest_demo_cpu.yaml", "flyvis_gs_vrest_cpu.yaml", "flyvis_62_1_gs_vrest.yaml"),
}


def profile_of(name: str) -> Profile:
    return load_instructions(name).profile


def base_of(config: str) -> Trainable:
    return base_trainable(load_experiment(CONFIGS / config))


# ---------------------------------------------------------------------------------------------- the files


def test_every_shipped_instruction_pair_has_a_valid_profile_and_configs() -> None:
    names = sorted(p.name for p in PROMPTS_DIR.glob("instruction_*.md") if not p.stem.endswith("_parallel"))
    assert names == sorted([ALTERNATE, GS, VREST])
    for name in names:
        assert profile_path(PROMPTS_DIR / name).is_file(), name
        load_profile_file(profile_path(PROMPTS_DIR / name))
    for name, configs in EXPLORATIONS.items():
        profile = profile_of(name)
        for config in configs:
            base = base_of(config)
            for key in profile.locked:  # the base config obeys its own profile: nothing to restate
                section, _, field = key.partition(".")
                assert field in base[section], f"{config}: {key}"
            assert base["training"]["alternate_training"] is False, config


def test_the_alternating_profile_is_the_protocol_constants() -> None:
    p = profile_of(ALTERNATE)
    assert p == protocol.ALTERNATE
    assert (p.status.success_above, p.status.partial_from) == (protocol.CONVERGED, protocol.PARTIAL)
    assert protocol.blocked_keys(p) == protocol.BLOCKED_KEYS
    assert protocol.extra_ranges(p) == protocol.EXTRA_RANGES
    assert protocol.config_line_keys(p) == protocol.CONFIG_LINE_KEYS


def test_a_broken_profile_is_one_line_naming_the_file_and_the_field() -> None:
    data = load_yaml_text(profile_path(PROMPTS_DIR / VREST).read_text(), "vrest")
    data["status"]["partial_from"] = 0.9
    with pytest.raises(ProfileError, match=r"^x\.yaml: status: partial_from must be <= success_above$"):
        parse_profile(data, "x.yaml")
    data = load_yaml_text(profile_path(PROMPTS_DIR / GS).read_text(), "gs")
    data["locked"]["training.no_such_key"] = "why"
    with pytest.raises(ProfileError, match=r"locked keys unknown to the schema: training.no_such_key"):
        parse_profile(data, "x.yaml")


@pytest.mark.parametrize(
    ("field", "edit", "message"),
    [
        ("explore", lambda d: d["explore"].update({"training.no_such_key": {"values": [1]}}),
         r"explore keys unknown to the schema: training.no_such_key"),
        ("ranges", lambda d: d.setdefault("ranges", {}).update({"graph_model.no_such_key": [0, 1]}),
         r"ranges keys unknown to the schema: graph_model.no_such_key"),
        ("config_line", lambda d: d["config_line"].append(["x", "training.no_such_key"]),
         r"config_line x: training.no_such_key is not a training.<name> or graph_model.<name> key"),
    ],
)  # fmt: skip
def test_a_profile_naming_a_key_the_trainer_lacks_is_refused_at_load(field: str, edit, message: str) -> None:
    data = load_yaml_text(profile_path(PROMPTS_DIR / VREST).read_text(), "vrest")
    edit(data)
    with pytest.raises(ProfileError, match=rf"^x\.yaml: (<root>|{field}): {message}$"):
        parse_profile(data, "x.yaml")


# ---------------------------------------------------------------------------------------------- gs_vrest rules


def _vrest_ctx(results: list[SlotResult], base: Trainable, profile: Profile) -> ReplyContext:
    return ReplyContext(
        is_start=False,
        batch_results=results,
        all_results=results,
        next_iterations=[5, 6, 7, 8],
        next_starts_block=False,
        base_trainable=base,
        baseline_batches=1,
        profile=profile,
    )


def test_vrest_status_needs_the_conn_constraint_and_a_reply_dropping_it_is_rejected() -> None:
    profile, base = profile_of(VREST), base_of("flyvis_gs_vrest_demo_cpu.yaml")
    results = [
        slot_result(1, slot=0, conn=0.62, vrest=0.71, trainable=base),
        slot_result(2, slot=1, conn=0.91, vrest=0.71, trainable=base),
        slot_result(3, slot=2, conn=0.91, vrest=0.45, trainable=base),
        slot_result(4, slot=3, conn=0.91, vrest=0.12, trainable=base),
    ]
    assert [protocol.entry_status(r, profile) for r in results] == [
        "V_rest failed",
        "V_rest success",
        "V_rest partial",
        "V_rest failed",
    ]
    ctx = _vrest_ctx(results, base, profile)
    reply = OfflinePlanner(ctx).reply()
    assert validate_reply(parse_reply(reply), ctx) == []
    dropped = reply.replace("## Iter 1: V_rest failed", "## Iter 1: V_rest success")
    errors = validate_reply(parse_reply(dropped), ctx)
    assert errors == [
        "Iter 1: status 'v_rest success' but measured V_rest_R2=0.71, connectivity_R2=0.62 is 'V_rest failed' "
        "(V_rest success: V_rest_R2 > 0.6 and connectivity_R2 > 0.8; V_rest partial: V_rest_R2 0.3-0.6 and "
        "connectivity_R2 > 0.8; V_rest failed: V_rest_R2 < 0.3 or a constraint broken (profile gs_vrest))"
    ]


def test_the_vrest_stopping_rule_reads_the_cv_estimate_of_v_rest_not_of_conn() -> None:
    """Five runs with a tight conn_R2 and a spread V_rest_R2: enough under the conn rule, not under gs_vrest's."""
    profile, base = profile_of(VREST), base_of("flyvis_gs_vrest_demo_cpu.yaml")
    vrest = [0.15, 0.45, 0.3, 0.6, 0.2]
    rows = variance_table([slot_result(i, conn=0.9, vrest=v, trainable=base) for i, v in enumerate(vrest, 1)])
    row = rows[0]
    assert row.verdict == "fragile" and row.cv_estimate("conn").std < protocol.CV_STD_MAX
    assert protocol.enough_runs_mark(row) == "yes"  # the alternating rule: CV(conn_R2)
    v_std = row.cv_estimate("vrest").std
    assert v_std > profile.replicates.stop_cv_std_max
    assert protocol.enough_runs_mark(row, profile) == f"no: CV std {v_std:.1f} >= 5 pp"
    text = protocol.cv_estimates_text(rows, profile)
    assert "| Config ID | Runs | CV(V_rest_R2) |" in text
    assert f"| C1 | 5 | {row.vrest_cv:.1f}% | {v_std:.1f} pp |" in text
    assert "Enough runs (stop replicating): >= 5 runs, std of the CV(V_rest_R2) estimate < 5 percentage" in text
    four = variance_table([slot_result(i, conn=0.9, vrest=0.5, trainable=base) for i in range(1, 5)])[0]
    assert protocol.enough_runs_mark(four, profile).startswith("no: runs 4 < 5")


def test_the_replicate_rule_names_the_top_configs_it_counts_under_the_profile() -> None:
    """gs_vrest ranks by mean V_rest_R2, configs that break the conn_R2 constraint last."""
    profile, base = profile_of(VREST), base_of("flyvis_gs_vrest_demo_cpu.yaml")
    other = {**base, "training": {**base["training"], "time_step": 2}}
    broken = {**base, "training": {**base["training"], "time_step": 3}}
    results = [slot_result(i, conn=0.9, vrest=0.3, trainable=base) for i in (1, 2, 3)]
    results += [
        slot_result(4, conn=0.9, vrest=0.5, trainable=other),
        slot_result(5, conn=0.5, vrest=0.9, trainable=broken),
    ]
    text = protocol.replicate_rule_text(profile, variance_table(results))
    assert text.endswith("The top configs now: C4 (1 run), C1 (3 runs), C5 (1 run).")
    assert protocol.replicates_required(variance_table(results), profile) == profile.replicates.growth


def test_the_vrest_config_line_carries_the_recurrent_switch_as_the_lab_writes_it() -> None:
    """``recurrent=T`` (the lab's form) and ``recurrent=False`` read as the switch; a wrong one is named."""
    profile, base = profile_of(VREST), base_of("flyvis_gs_vrest_demo_cpu.yaml")
    results = [slot_result(i, slot=i - 1, conn=0.9, vrest=0.4, trainable=base) for i in range(1, 5)]
    ctx = _vrest_ctx(results, base, profile)
    reply = OfflinePlanner(ctx).reply()
    assert "Config: lr_update=0.0, recurrent=False, time_step=1," in reply
    assert validate_reply(parse_reply(reply.replace("recurrent=False", "recurrent=F")), ctx) == []
    errors = validate_reply(parse_reply(reply.replace("recurrent=False", "recurrent=T", 1)), ctx)
    assert errors == ["Iter 1: Config: recurrent=True but the config has False"]


def test_a_change_of_a_locked_vrest_key_is_rejected_naming_the_profile() -> None:
    profile, base = profile_of(VREST), base_of("flyvis_gs_vrest_demo_cpu.yaml")
    errors = check_edit(base, {"training": {"coeff_edge_diff": 600.0}}, "config slot 0", profile)
    assert errors == [
        "config slot 0: training.coeff_edge_diff: 750.0 -> 600.0: blocked (locked by profile gs_vrest: "
        "regularisers other than coeff_W_L2 stay at the standard optimum)"
    ]
    assert check_edit(base, {"training": {"coeff_W_L2": 4.0e-6}}, "config slot 0", profile) == []
    assert check_edit(base, {"training": {"coeff_W_L2": 1.0e-5}}, "s", profile) == [
        "s: training.coeff_W_L2: 2.5e-06 -> 1e-05: must be in [2.5e-06, 5e-06]"
    ]
    # the same edit is allowed under the standard profile, and the alternating profile blocks another key
    assert check_edit(base, {"training": {"coeff_edge_diff": 600.0}}, "s", profile_of(GS)) == []


def test_the_vrest_prompt_states_its_words_constraint_locked_keys_and_config_line() -> None:
    text = load_instructions(VREST).system_text
    flat = " ".join(text.split())
    for part in (
        "## Iter N: [V_rest success/V_rest partial/V_rest failed]",
        "`V_rest success` when V_rest_R2 > 0.6 and connectivity_R2 > 0.8",
        "Locked by the gs_vrest profile",
        "`coeff_edge_diff`",
        "Config: lr_update=X, recurrent=Y, time_step=Z, noise_recurrent=A, W_L2=B",
        "`connectivity_R2` > 0.8: a run that breaks it is a failure",
    ):
        assert part in flat, part


# ---------------------------------------------------------------------------------------------- run values


def test_the_system_text_states_the_config_values_the_controller_enforces(tmp_path: Path) -> None:
    text = (CONFIGS / "flyvis_tiny.yaml").read_text()
    text = text.replace("baseline_batches: 3", "baseline_batches: 1").replace("time_limit_min: 5", "time_limit_min: 7")
    config = tmp_path / "tiny.yaml"
    config.write_text(text)
    files = create_run_dir(tmp_path / "run", config, ALTERNATE)
    journal = Journal(files.dir)
    journal.append(RunStarted(name=files.name, instructions=ALTERNATE, n_iterations=24, n_slots=4, llm="offline"))
    settings = RunSettings(
        run_dir=files.dir, config_path=files.base_config, instructions_name=ALTERNATE, n_iterations=24, llm="offline"
    )
    controller = Controller(settings, load_instructions(ALTERNATE), None, None, journal=journal)  # type: ignore[arg-type]
    system = " ".join(controller.system_text.split())
    assert "This run: 24 iterations in 6 batches of 4 slots" in system
    assert "--trainer-iterations" not in system and "The run ends inside block" not in system  # 24 = 2 blocks
    quick = Controller(
        settings.model_copy(update={"trainer_iterations": 400}),
        load_instructions(ALTERNATE), None, None, journal=journal,  # type: ignore[arg-type]
    )  # fmt: skip
    assert "Each slot trains 400 iterations per epoch (`--trainer-iterations`)" in " ".join(quick.system_text.split())
    assert "block 1 runs the base config unchanged for its first 1 batch (4 runs)" in system
    assert "Block 1 runs the alternate defaults unchanged for its first 1 batch: 4 baseline runs" in system
    assert "(7 minutes unless the prompt says otherwise)" in system
    assert "first 3 batches" not in system and "60 minutes" not in system
    ctx = controller.reply_context(0)
    assert (ctx.baseline_batches, ctx.time_limit_min) == (1, 7.0)
    assert not protocol.is_baseline_batch(1, 2, ctx.baseline_batches)  # batch 2 may explore, as the text says


def test_run_values_follow_the_config_and_the_command_line() -> None:
    claude = load_experiment(CONFIGS / "flyvis_demo_cpu.yaml").claude
    values = RunValues.of(claude, n_iterations=24)
    assert (values.n_iterations, values.baseline_batches, values.time_limit_min) == (24, 1, 10.0)
    assert RunValues.of(claude).n_iterations == claude.n_iterations
    short = RunValues.of(claude, n_iterations=8).placeholders(profile_of(ALTERNATE))["run_settings"]
    assert "The run ends inside block 1, after 8 of its 12 iterations" in short
    assert "The run ends inside" not in values.placeholders(profile_of(ALTERNATE))["run_settings"]


# ---------------------------------------------------------------------------------------------- policies


def _measure(p: PlannedSlot) -> SlotResult:
    """A completed slot whose metrics depend on the config (a hash) and the seeds, deterministic."""
    h = int(hashlib.sha256(repr(sorted(p.trainable["training"].items())).encode()).hexdigest()[:8], 16)
    jitter = ((p.iteration * 7919 + p.slot) % 97) / 97.0
    conn = round(0.7 + 0.25 * ((h % 100) / 100.0) + 0.02 * jitter, 6)
    vrest = round(0.2 + 0.5 * (((h >> 8) % 100) / 100.0) + 0.05 * jitter, 6)
    rows = [R2Row(epoch=0, iteration=k * 100, connectivity_r2=round(conn * k / 4, 6), phase="W") for k in range(1, 5)]
    seed = p.iteration * 1000 + p.slot
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
        vrest=vrest,
        minutes=0.01,
        rows=rows,
    )


def _request(ctx: ReplyContext) -> LLMRequest:
    return LLMRequest(
        call_id="batch",
        purpose="start" if ctx.is_start else "batch",
        system="system",
        prompt="prompt",
        model="m",
        max_tokens=100,
        context={"reply_context": ctx.model_dump(mode="json")},
    )


@pytest.mark.parametrize("name", [GS, VREST])
@pytest.mark.parametrize("policy_name", ["offline", "optuna"])
def test_both_policies_play_a_whole_run_of_each_exploration(tmp_path: Path, name: str, policy_name: str) -> None:
    profile = profile_of(name)
    base = base_of(EXPLORATIONS[name][0])
    policy = offline_policy if policy_name == "offline" else OptunaPolicy(tmp_path, seed=0)
    results: list[SlotResult] = []
    n_batches = 6
    for batch in range(n_batches + 1):
        ctx = policy_context(batch, results, n_batches, base, 1, profile)
        reply, planned = check_reply(policy(_request(ctx)), ctx)  # raises on any violation of the profile
        for entry in reply.entries:
            assert entry.status in [w.lower() for w in profile.status.words]
        results = results + [_measure(p) for p in planned]
    changed = {ch.split(":")[0] for r in results for ch in r.mutation.split("; ") if "->" in ch}
    assert changed, "the run never left the baseline"
    explorable = {k.split(".", 1)[1] for k in profile.explore}
    if policy_name == "offline":
        assert changed <= explorable
    assert not changed & {k.split(".", 1)[1] for k in profile.locked}


def test_the_optuna_grid_keeps_to_the_profile() -> None:
    profile = profile_of(VREST)
    grid = search_grid(base_of("flyvis_gs_vrest_demo_cpu.yaml"), profile)
    assert set(grid) == {k.split(".", 1)[1] for k in profile.explore}
    gs_grid = search_grid(base_of("flyvis_gs_demo_cpu.yaml"), profile_of(GS))
    assert "coeff_edge_norm" in gs_grid and "n_alternations" not in gs_grid
