"""``claude.extra_images``: the controller attaches the chosen slot images and the prompt says what each shows."""

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


def _config(tmp_path: Path, extra: list[str] | None) -> Path:
    data = roundtrip_load(TINY.read_text(encoding="utf-8"), str(TINY))
    if extra is not None:
        data["claude"]["extra_images"] = extra
    path = tmp_path / "tiny_images.yaml"
    path.write_text(roundtrip_dump(data), encoding="utf-8")
    return path


def _run(tmp_path: Path, extra: list[str] | None) -> dict:
    wrapper = tmp_path / "slot_with_w_scatter.py"
    wrapper.write_text(WRAPPER, encoding="utf-8")
    run_dir = tmp_path / "run"
    cmd = ["--config", str(_config(tmp_path, extra)), "--slot-command", f"{sys.executable} {wrapper}"]
    proc = run_agent(run_dir, *cmd, iterations=4, fake_slot=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _batch_record(run_dir)


def test_extra_images_are_attached_after_each_slots_activity_and_described(tmp_path: Path) -> None:
    record = _run(tmp_path, ["w_scatter", "rollout"])
    labels = [im["label"] for im in record["images"]]
    assert labels[:4] == [
        "slot 0 (iteration 1) activity",
        "slot 0 (iteration 1) w_scatter",
        "slot 1 (iteration 2) activity",
        "slot 1 (iteration 2) w_scatter",
    ]
    assert len(labels) == 8  # rollout.png was not written, so it is neither attached nor named
    prompt = record["prompt"]
    assert "1. slot 0 (iteration 1): activity.png\n2. slot 0 (iteration 1): W_corrected.png\n" in prompt
    assert "- W_corrected.png: the trained model's corrected weights W*" in prompt
    assert "rollout.png" not in prompt


def test_by_default_only_the_activity_image_is_attached(tmp_path: Path) -> None:
    record = _run(tmp_path, None)
    assert [im["label"].split()[-1] for im in record["images"]] == ["activity"] * 4
    assert "W_corrected.png" not in record["prompt"]
    assert "shows nothing about the trained model" in record["prompt"]


def test_extra_images_default_to_none_and_reject_unknown_kinds() -> None:
    assert ClaudeConfig().extra_images == []
    assert ClaudeConfig(extra_images=["rollout"]).extra_images == ["rollout"]
    with pytest.raises(ValidationError, match="extra_images"):
        ClaudeConfig(extra_images=["movie"])
