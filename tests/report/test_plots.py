"""Plots draw what the run holds: the block's nodes, one trajectory per slot log, every config group."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from agent.views.plots import (
    global_iterations,
    phase_spans,
    plot_batch_trajectories,
    plot_block_tree,
    plot_config_spread,
    plot_metrics_over_iterations,
    short_mutation,
    tree_layout,
)
from experiment.exploration import ROOT
from experiment.records import R2Row
from memory.variance import variance_table

MAX_PIXELS = 1.2e6


def _pixels(path: Path) -> int:
    with Image.open(path) as im:
        return im.size[0] * im.size[1]


def test_block_tree_draws_exactly_the_nodes_of_the_block(finished_run, tmp_path: Path) -> None:
    for block in (1, 2):
        drawn = plot_block_tree(finished_run.results, block, tmp_path / f"b{block}.png")
        assert drawn == sorted(r.iteration for r in finished_run.results if r.block == block)
        assert 0 < _pixels(tmp_path / f"b{block}.png") < MAX_PIXELS


def test_block_tree_of_a_block_without_nodes_draws_only_the_root(finished_run, tmp_path: Path) -> None:
    assert plot_block_tree(finished_run.results, 3, tmp_path / "empty.png") == []
    assert (tmp_path / "empty.png").is_file()


def test_tree_layout_puts_children_one_level_right_of_their_parent() -> None:
    pos = tree_layout({9: ROOT, 12: 9, 13: 12, 10: ROOT, 16: 10, 14: 3})  # 3 is outside the block
    assert pos[ROOT][0] == 0
    assert pos[9][0] == pos[10][0] == pos[14][0] == 1
    assert pos[12][0] == pos[16][0] == 2
    assert pos[13][0] == 3
    assert pos[10][1] == pos[16][1]  # an only child sits level with its parent


def test_batch_trajectories_draw_one_line_per_slot_with_an_r2_log(finished_run, tmp_path: Path) -> None:
    assert plot_batch_trajectories(finished_run.dir, finished_run.results, 3, tmp_path / "b3.png") == 4
    # batch 4 has a failed slot without an R2 log
    assert plot_batch_trajectories(finished_run.dir, finished_run.results, 4, tmp_path / "b4.png") == 3
    assert _pixels(tmp_path / "b4.png") < MAX_PIXELS


def test_phase_spans_follow_the_phase_column(synth) -> None:
    spans = phase_spans(synth.r2_rows(0.9))
    assert spans == [(0.0, 100.0, "W"), (100.0, 200.0, "V_rest"), (200.0, 300.0, "W"), (300.0, 400.0, "V_rest")]


def test_global_iterations_continue_across_epochs() -> None:
    rows = [R2Row(epoch=e, iteration=i, connectivity_r2=0.5) for e in (0, 1) for i in (50, 100)]
    assert global_iterations(rows).tolist() == [50, 100, 150, 200]


def test_config_spread_draws_every_variance_group(finished_run, tmp_path: Path) -> None:
    drawn = plot_config_spread(finished_run.results, tmp_path / "spread.png")
    assert drawn == [row.config_id for row in variance_table(finished_run.results)]
    assert _pixels(tmp_path / "spread.png") < MAX_PIXELS


def test_metrics_plot_covers_every_iteration_including_failures(finished_run, tmp_path: Path) -> None:
    assert plot_metrics_over_iterations(finished_run.results, tmp_path / "m.png") == 16
    assert _pixels(tmp_path / "m.png") < MAX_PIXELS


def test_short_mutation_abbreviates_replicates_and_long_diffs() -> None:
    assert short_mutation("[none] — robustness re-run of Node 12") == "rep of 12"
    assert short_mutation("[none] — baseline defaults") == "baseline"
    long = "; ".join(f"alternate_lr_W: {k} -> {k + 1}" for k in range(5))
    assert short_mutation(long).endswith("…") and len(short_mutation(long)) <= 44
