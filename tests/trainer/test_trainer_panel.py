"""panel.png: one page per slot for the LLM, at activity.png's size, and the V_rest lever diagnostic behind it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from experiment.config import TrainingConfig
from experiment.records import R2Row
from trainer import plots
from trainer.data import Dataset
from trainer.diagnostics import vrest_lever_by_type
from trainer.metrics import W_OUTLIER
from trainer.run import trace_strip
from trainer.schedule import phase_lrs, phase_spans, r2_checkpoints
from trainer.train import build_probe

TOKENS_PER_IMAGE_TODAY = 1067  # activity.png, 1000 x 800 px: 800,000 / 750 = 1,066.7 by the API's estimate


def test_lever_from_the_probe_statistics_equals_the_one_from_the_data(synth: Dataset) -> None:
    probe = build_probe(synth, torch.device("cpu"))
    learned = np.asarray(synth.V_rest) + np.random.default_rng(0).normal(0, 0.1, synth.n_neurons)
    from_data = vrest_lever_by_type(synth, learned)
    from_probe = vrest_lever_by_type(synth, learned, (probe.mu.numpy(), probe.sigma.numpy()))
    np.testing.assert_array_equal(from_probe.lever, from_data.lever)
    np.testing.assert_array_equal(from_probe.error, from_data.error)


def test_trace_strip_falls_back_to_the_first_types_when_no_trace_type_exists(synth: Dataset) -> None:
    strip = trace_strip(synth, 0.02)
    n_types = len(synth.type_names)
    assert strip.names == list(synth.type_names[: min(n_types, 12)])
    assert strip.voltage.shape == (min(synth.train.n_frames, 800), len(strip.names))
    assert strip.stimulus.shape == (strip.voltage.shape[0],) and strip.v_rest.shape == (len(strip.names),)


def test_panel_is_activity_pngs_size_so_a_batch_costs_no_more_tokens(synth: Dataset, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n, niter = synth.n_neurons, 600
    cfg = TrainingConfig(alternate_training=True, n_alternations=4)
    rows = [R2Row(epoch=0, iteration=c, connectivity_r2=c / niter, phase=phase_lrs(c - 1, niter, cfg)[0])
            for c in r2_checkpoints(niter, cfg)]  # fmt: skip
    learned_v = np.asarray(synth.V_rest) + rng.normal(0, 0.1, n)
    plots.slot_panel(
        tmp_path / "panel.png",
        embedding=rng.normal(size=(n, 2)),
        types=np.asarray(synth.types),
        type_names=synth.type_names,
        w_true=synth.W,
        w_learned=synth.W + rng.normal(0, 0.1, synth.n_edges),
        w_outlier=W_OUTLIER,
        r2_rows=rows,
        spans=phase_spans(niter, cfg),
        niter=niter,
        tau=(synth.tau, synth.tau * 1.1),
        v_rest=(synth.V_rest, learned_v),
        lever=vrest_lever_by_type(synth, learned_v),
        strip=trace_strip(synth, 0.02),
    )
    width, height = Image.open(tmp_path / "panel.png").size
    assert (width, height) == (1000, 800)
    assert round(width * height / 750) <= TOKENS_PER_IMAGE_TODAY


def test_the_r2_cell_names_phase_shading_only_when_the_schedule_has_phases() -> None:
    rows = [R2Row(epoch=0, iteration=it, connectivity_r2=0.1 * k, phase="-") for k, it in enumerate((100, 200), 1)]
    fig, (standard, alternating) = plots.plt.subplots(1, 2)
    plots.draw_r2_trajectory(standard, rows, [(0, 200, "-")], 200, legend=False)
    plots.draw_r2_trajectory(alternating, rows, [(0, 100, "W"), (100, 200, "V_rest")], 200, legend=False)
    assert standard.get_title() == "conn R2 at checkpoints"
    assert alternating.get_title() == "conn R2 at checkpoints (W-phase blue, V_rest orange)"
    plots.plt.close(fig)
