"""docs/CONFIG.md documents every key the schema accepts (the reference cannot drift from the code)."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiment.config import ClaudeConfig, GraphModelConfig, SimulationConfig, TrainingConfig

DOC = (Path(__file__).resolve().parents[2] / "docs" / "CONFIG.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("model", [SimulationConfig, GraphModelConfig, TrainingConfig, ClaudeConfig])
def test_every_schema_key_is_in_the_config_reference(model: type) -> None:
    missing = [name for name in model.model_fields if f"`{name}`" not in DOC]
    assert missing == [], f"{model.__name__} keys missing from docs/CONFIG.md: {missing}"
