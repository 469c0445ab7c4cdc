"""``ground_truth: flyvis:<task>/<ensemble>/<model>``: a network in flyvis's results folder (the reference's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from experiment.networks import checkpoint_file, flyvis_results_dir
from simulator.connectome import build_connectome
from simulator.errors import SimulatorError
from simulator.ground_truth import load_ground_truth, resolve_checkpoint_dir

REPO = Path(__file__).resolve().parents[2]


def _flyvis_root(tmp_path: Path, results: Path) -> Path:
    """A flyvis root folder whose results/ is ``results``."""
    root = tmp_path / "flyvis_root"
    root.mkdir()
    (root / "results").symlink_to(results, target_is_directory=True)
    return root


def test_full_scale_config_simulates_the_references_trained_network() -> None:
    cfg = yaml.safe_load((REPO / "configs" / "flyvis_62_1_gs_alternate.yaml").read_text())
    assert cfg["simulation"]["ground_truth"] == "flyvis:flow/0000/000"


@pytest.mark.checkpoint
def test_flyvis_network_resolves_in_the_configured_results_folder(
    checkpoint_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = checkpoint_dir.parents[2]  # .../flyvis_model, which holds flow/0000/000
    monkeypatch.setenv("FLYVIS_ROOT_DIR", str(_flyvis_root(tmp_path, results)))
    assert resolve_checkpoint_dir("flyvis:flow/0000/000").resolve() == checkpoint_dir
    con = build_connectome(1)
    by_name, by_path = load_ground_truth("flyvis:flow/0000/000", con), load_ground_truth(str(checkpoint_dir), con)
    for key in ("W", "tau", "V_rest"):
        np.testing.assert_array_equal(getattr(by_name, key), getattr(by_path, key))
    assert by_name.kind == "checkpoint"


def test_absent_flyvis_network_is_one_line_that_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("FLYVIS_ROOT_DIR", str(_flyvis_root(tmp_path, tmp_path / "empty")))
    with pytest.raises(SimulatorError) as err:
        load_ground_truth("flyvis:flow/0000/000", build_connectome(1))
    message = str(err.value)
    assert "\n" not in message
    assert "flyvis:flow/0000/000" in message and "`flyvis download-pretrained`" in message


def test_results_folder_defaults_to_flyvis_data_beside_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLYVIS_ROOT_DIR", raising=False)
    results = flyvis_results_dir()
    if results is None:
        pytest.skip("flyvis is not installed")
    assert results.name == "results" and results.parent.name == "data"
    assert (results.parent.parent / "__init__.py").is_file() or (results.parent.parent / "flyvis").is_dir()


def test_checkpoint_file_is_the_first_numbered_checkpoint_as_the_reference_loads(tmp_path: Path) -> None:
    assert checkpoint_file(tmp_path) is None
    (tmp_path / "best_chkpt").write_bytes(b"")
    assert checkpoint_file(tmp_path) == tmp_path / "best_chkpt"
    (tmp_path / "chkpts").mkdir()
    for index in (12, 3, 100):
        (tmp_path / "chkpts" / f"chkpt_{index:05}").write_bytes(b"")
    assert checkpoint_file(tmp_path) == tmp_path / "chkpts" / "chkpt_00003"  # init_network(checkpoint=0)


def test_full_scale_machine_check_names_the_missing_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.run import UsageError, check_machine
    from experiment.config import load_experiment

    monkeypatch.setenv("FLYVIS_ROOT_DIR", str(tmp_path))  # an empty flyvis root: no results/flow/0000/000
    config = load_experiment(REPO / "configs" / "flyvis_62_1_gs_alternate.yaml")
    with pytest.raises(UsageError) as err:
        check_machine(config, Path("flyvis_62_1_gs_alternate.yaml"))
    message = str(err.value)
    assert "\n" not in message and "flyvis:flow/0000/000" in message and "`flyvis download-pretrained`" in message
