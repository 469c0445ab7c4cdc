"""The shared boundary: config schema, strict YAML, atomic writes and the records slots write."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest

from experiment.atomic import atomic_write_text
from experiment.config import ConfigError, load_experiment, parse_experiment
from experiment.records import (
    R2_HEADER,
    Metrics,
    RecordError,
    SlotStatus,
    read_metrics,
    read_r2_log,
    read_status,
    write_metrics,
    write_status,
)
from experiment.yaml_io import YamlError, load_yaml_text

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_every_shipped_config_validates(name: str) -> None:
    """The standard-training explorations (gs, gs_vrest) ship standard configs; every other config is the
    alternating protocol's."""
    config = load_experiment(REPO / "configs" / name)
    standard = re.fullmatch(r"flyvis_(?:62_1_)?gs(?:_vrest)?(?:_demo)?(?:_cpu)?\.yaml", name) is not None
    assert config.training.alternate_training is not standard


def test_yaml_reads_exponent_without_dot_as_float() -> None:
    assert load_yaml_text("lr: 6e-7\n") == {"lr": 6e-7}


def test_unknown_key_names_file_and_dotted_field() -> None:
    with pytest.raises(ConfigError) as err:
        parse_experiment({"dataset": "d", "training": {"n_alternation": 4}}, "x.yaml")
    assert str(err.value) == "x.yaml: training.n_alternation: Extra inputs are not permitted"


def test_r2_async_takes_auto_on_or_off_only() -> None:
    with pytest.raises(ConfigError, match=r"^x\.yaml: training\.r2_async: Input should be 'auto', 'on' or 'off'"):
        parse_experiment({"dataset": "d", "training": {"r2_async": "yes"}}, "x.yaml")


def test_coupled_sizes_must_follow_embedding_dim() -> None:
    with pytest.raises(ConfigError, match="input_size must equal 1 \\+ embedding_dim"):
        parse_experiment({"dataset": "d", "graph_model": {"embedding_dim": 4}}, "x.yaml")


def test_non_finite_numbers_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"training\.alternate_lr_W"):
        parse_experiment({"dataset": "d", "training": {"alternate_lr_W": math.inf}}, "x.yaml")


def test_block_length_must_be_whole_batches() -> None:
    with pytest.raises(ConfigError, match="n_iter_block \\(6\\) must be a multiple of n_slots \\(4\\)"):
        parse_experiment({"dataset": "d", "claude": {"n_iter_block": 6}}, "x.yaml")


def test_yaml_anchors_and_aliases_are_refused_with_the_source_and_line() -> None:
    with pytest.raises(YamlError, match=r"^cfg\.yaml: line 1: key 'a': anchors are not allowed$"):
        load_yaml_text("a: &x 1\nb: *x\n", "cfg.yaml")


def test_atomic_write_leaves_the_old_file_when_the_write_fails(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "memory.md"
    target.write_text("old")

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["memory.md"]


def test_metrics_round_trip_and_a_corrupt_file_is_one_line(tmp_path: Path) -> None:
    metrics = Metrics(
        connectivity_R2=0.9,
        tau_R2=0.8,
        V_rest_R2=0.1,
        cluster_accuracy=0.7,
        test_R2=0.5,
        test_pearson=0.9,
        training_time_min=1.5,
    )
    write_metrics(tmp_path, metrics)
    assert read_metrics(tmp_path) == metrics
    assert "connectivity_R2: 0.9\n" in (tmp_path / "metrics.txt").read_text()
    (tmp_path / "metrics.json").write_text('{"connectivity_R2": "high"')
    with pytest.raises(RecordError) as err:
        read_metrics(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / 'metrics.json'}: unreadable metrics file") and "\n" not in str(err)


def test_missing_status_means_not_started_and_a_written_one_reads_back(tmp_path: Path) -> None:
    assert read_status(tmp_path) is None
    write_status(tmp_path, SlotStatus(state="failed", exit_code=137, reason="killed"))
    assert read_status(tmp_path) == SlotStatus(state="failed", exit_code=137, reason="killed")


def test_r2_log_tolerates_a_torn_last_line_and_defaults_the_phase(tmp_path: Path) -> None:
    log = tmp_path / "connectivity_r2.log"
    log.write_text(f"{R2_HEADER}\n0,100,0.5,W\n0,200,0.6\n0,300,0.")
    rows = read_r2_log(log)
    assert [(r.iteration, r.connectivity_r2, r.phase) for r in rows] == [(100, 0.5, "W"), (200, 0.6, "-")]
