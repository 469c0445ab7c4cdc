"""``claude.slot_image`` and ``claude.extra_images``: the controller attaches the chosen slot images and the prompt
says what each shows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from experiment.config import ClaudeConfig
from experiment.yaml_io import roundtrip_dump, roundtrip_load
from helpers.agent_cli import FAKE_SLOT, TINY, run_agent

# The fake slot, plus a W* scatter (no rollout.png, so that kind must be skipped, not claimed).
WRAPPER = f"""
import sys
sys.path.insert(0, {str(FAKE_SLOT.parent)!r})
import fake_slot
from pathlib import Path
rc = fake_slot.main()
fake_slot.tiny_png(Path(sys.argv[sys.argv.index("--out") + 1]) / "W_corrected.png")
sys.exit(rc)
"""


def _batch_record(run_dir: Path) -> dict:
    (path,) = (run_dir / "transcripts").glob("*_batch-001.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _config(tmp_path: Path, extra: list[str] | None, slot_image: str | None = None) -> Path:
    data = roundtrip_load(TINY.read_text(encoding="utf-8"), str(TINY))
    if extra is not None:
        data["claude"]["extra_images"] = extra
    if slot_image is not None:
        data["claude"]["slot_image"] = slot_image
    path = tmp_path / "tiny_images.yaml"
    path.write_text(roundtrip_dump(data), encoding="utf-8")
    return path


def _run(
    tmp_path: Path, extra: list[str] | None, slot_image: str | None = None, env: dict[str, str] | None = None
) -> dict:
    wrapper = tmp_path / "slot_with_w_scatter.py"
    wrapper.write_text(WRAPPER, encoding="utf-8")
    run_dir = tmp_path / "run"
    cmd = ["--config", str(_config(tmp_path, extra, slot_image)), "--slot-command", f"{sys.executable} {wrapper}"]
    proc = run_agent(run_dir, *cmd, iterations=4, fake_slot=False, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _batch_record(run_dir)


def test_extra_images_are_attached_after_each_slots_panel_and_described(tmp_path: Path) -> None:
    record = _run(tmp_path, ["w_scatter", "rollout"])
    labels = [im["label"] for im in record["images"]]
    assert labels[:4] == [
        "slot 0 (iteration 1) panel",
        "slot 0 (iteration 1) w_scatter",
        "slot 1 (iteration 2) panel",
        "slot 1 (iteration 2) w_scatter",
    ]
    assert len(labels) == 8  # rollout.png was not written, so it is neither attached nor named
    prompt = record["prompt"]
    assert "1. slot 0 (iteration 1): panel.png\n2. slot 0 (iteration 1): W_corrected.png\n" in prompt
    assert "- W_corrected.png: the trained model's corrected weights W*" in prompt
    assert "rollout.png" not in prompt


def test_by_default_one_panel_per_slot_is_attached(tmp_path: Path) -> None:
    record = _run(tmp_path, None)
    assert [im["label"].split()[-1] for im in record["images"]] == ["panel"] * 4
    assert all(im["path"].endswith("/panel.png") for im in record["images"])
    assert "W_corrected.png" not in record["prompt"] and "activity.png:" not in record["prompt"]
    assert "- panel.png: the trained slot on one page: top row the embedding" in record["prompt"]


def test_slot_image_activity_sends_the_old_image(tmp_path: Path) -> None:
    record = _run(tmp_path, ["activity"], slot_image="activity")
    assert [im["label"].split()[-1] for im in record["images"]] == ["activity"] * 4  # listed twice, sent once
    assert "shows nothing about the trained model" in record["prompt"] and "panel.png" not in record["prompt"]


def test_a_slot_without_a_panel_sends_its_activity_image(tmp_path: Path) -> None:
    record = _run(tmp_path, None, env={"FAKE_SLOT_NO_PANEL": "1"})
    assert [im["label"].split()[-1] for im in record["images"]] == ["activity"] * 4
    assert "1. slot 0 (iteration 1): activity.png\n" in record["prompt"]


def test_image_settings_default_to_the_panel_alone_and_reject_unknown_kinds() -> None:
    assert ClaudeConfig().slot_image == "panel" and ClaudeConfig().extra_images == []
    assert ClaudeConfig(extra_images=["rollout"]).extra_images == ["rollout"]
    with pytest.raises(ValidationError, match="extra_images"):
        ClaudeConfig(extra_images=["movie"])
    with pytest.raises(ValidationError, match="slot_image"):
        ClaudeConfig(slot_image="w_scatter")
