"""Imports point one way: the import-linter contracts of pyproject.toml hold (docs/ARCHITECTURE.md, "Layers")."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import importlinter  # noqa: F401  (a dev dependency: a missing install fails here, it never skips)

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "memory", "trainer", "simulator", "experiment")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over the packages under ``root`` (it puts its working directory first on the path)."""
    code = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run(
        [sys.executable, "-c", code, "--no-cache", "--no-logo"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )


def broken_contracts(out: str) -> str:
    """The part of the linter's report that names each broken contract and the imports that break it."""
    return out[out.index("Broken contracts") :] if "Broken contracts" in out else out


def test_imports_keep_the_layer_contracts():
    result = lint_imports(REPO)
    assert result.returncode == 0, broken_contracts(result.stdout + result.stderr)
    assert "0 broken" in result.stdout


def test_an_import_against_the_layers_breaks_a_contract(tmp_path: Path):
    """The contracts bite: memory importing the agent (a copy of the packages) fails the lint, naming the import."""
    for name in PACKAGES:
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "memory" / "variance.py").open("a", encoding="utf-8") as fh:
        fh.write("\nfrom agent.tree import best_node  # against the layers\n")

    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "memory is not allowed to import agent" in result.stdout
    assert "memory.variance -> agent.tree" in result.stdout
