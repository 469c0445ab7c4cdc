"""Synthetic SlotResults and golden-file comparison for the tree / memory / prompt tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from experiment.config import ExperimentConfig
from experiment.exploration import Seeds, SlotResult, digest_trajectory
from experiment.records import Metrics, R2Row

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"


def default_trainable(**training: Any) -> dict[str, dict[str, Any]]:
    """The schema's training + graph_model defaults (alternating on), seeds excluded, with overrides."""
    cfg = ExperimentConfig(dataset="t").model_dump()
    train = {k: v for k, v in cfg["training"].items() if k != "seed"}
    train.update(alternate_training=True, **training)
    return {"training": train, "graph_model": cfg["graph_model"]}


def r2_rows(conn: float, final_ge_peak: bool = True) -> list[R2Row]:
    """A four-point W / V_rest trajectory that ends at ``conn`` (peaks above it when not final_ge_peak)."""
    peak = conn if final_ge_peak else conn + 0.05
    pts = [
        (640, 0.5 * conn, "W"),
        (1280, 0.9 * conn, "W"),
        (1920, peak if not final_ge_peak else 0.95 * conn, "V_rest"),
    ]
    pts.append((2560, conn, "W"))
    return [R2Row(epoch=0, iteration=i, connectivity_r2=v, phase=p) for i, v, p in pts]


def make_result(
    iteration: int,
    *,
    conn: float = 0.9,
    tau: float = 0.95,
    vrest: float = 0.5,
    cluster: float = 0.85,
    pearson: float = 0.98,
    test_r2: float = 0.9,
    minutes: float = 10.0,
    failed: bool = False,
    parent: int | str = "root",
    trainable: dict[str, dict[str, Any]] | None = None,
    mutation: str = "[none] — baseline defaults",
    strategy: str = "baseline",
    replicate_of: int | None = None,
    final_ge_peak: bool = True,
    n_slots: int = 4,
    n_iter_block: int = 12,
    block: int | None = None,
) -> SlotResult:
    """One node; slot, batch and block follow from the iteration (block overridable)."""
    slot = (iteration - 1) % n_slots
    metrics = (
        None
        if failed
        else Metrics(
            connectivity_R2=conn,
            tau_R2=tau,
            V_rest_R2=vrest,
            cluster_accuracy=cluster,
            test_R2=test_r2,
            test_pearson=pearson,
            training_time_min=minutes,
        )
    )
    return SlotResult(
        iteration=iteration,
        slot=slot,
        batch=(iteration - 1) // n_slots + 1,
        block=block if block is not None else (iteration - 1) // n_iter_block + 1,
        parent=parent,
        replicate_of=replicate_of,
        strategy=strategy,
        mutation=mutation,
        trainable=trainable if trainable is not None else default_trainable(),
        seeds=Seeds.for_slot(iteration, slot),
        status="failed" if failed else "completed",
        failure_reason="CUDA out of memory (last log line)" if failed else None,
        metrics=metrics,
        trajectory=None if failed else digest_trajectory(r2_rows(conn, final_ge_peak)),
    )


def scenario() -> list[SlotResult]:
    """20 iterations: block 1 = 12 baseline runs; block 2 = two batches of mutations, replicates, a failure."""
    res = [
        make_result(i, conn=0.90 + 0.01 * (i % 4), vrest=0.40 + 0.02 * (i % 5), final_ge_peak=i % 3 != 0)
        for i in range(1, 13)
    ]
    n6 = default_trainable(n_alternations=6)
    n6_lrw = default_trainable(n_alternations=6, alternate_lr_W=1e-07)
    ratio = default_trainable(alternate_vrest_ratio=0.3)
    res += [
        make_result(13, conn=0.951, vrest=0.612, trainable=n6, mutation="n_alternations: 4 -> 6", strategy="exploit"),
        make_result(
            14,
            conn=0.62,
            vrest=0.20,
            trainable=ratio,
            mutation="alternate_vrest_ratio: 0.5 -> 0.3",
            strategy="explore",
            minutes=75.5,
        ),
        make_result(
            15,
            failed=True,
            trainable=default_trainable(alternate_lr_update=1.2e-05),
            mutation="alternate_lr_update: 1.2e-06 -> 1.2e-05",
            strategy="explore",
        ),
        make_result(
            16,
            conn=0.93,
            vrest=0.45,
            mutation="[none] — robustness re-run of Node 1",
            strategy="robustness-check",
            replicate_of=1,
        ),
        make_result(
            17,
            conn=0.949,
            vrest=0.58,
            parent=13,
            trainable=n6_lrw,
            mutation="alternate_lr_W: 6e-07 -> 1e-07",
            strategy="exploit",
        ),
        make_result(
            18,
            conn=0.945,
            vrest=0.60,
            parent=13,
            trainable=n6,
            mutation="[none] — robustness re-run of Node 13",
            strategy="robustness-check",
            replicate_of=13,
        ),
        make_result(
            19,
            conn=0.2,
            vrest=0.05,
            parent=17,
            trainable=default_trainable(n_alternations=6, alternate_lr_W=0.0),
            mutation="alternate_lr_W: 1e-07 -> 0.0",
            strategy="exploit",
            final_ge_peak=False,
        ),
        make_result(
            20,
            conn=0.94,
            vrest=0.5,
            parent="root",
            mutation="[none] — robustness re-run of Node 1",
            strategy="robustness-check",
            replicate_of=1,
        ),
    ]
    return res


def assert_golden(name: str, text: str) -> None:
    """Compare with tests/golden/<name> exactly; UPDATE_GOLDEN=1 rewrites the file instead."""
    path = GOLDEN_DIR / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path}: golden file missing; run with UPDATE_GOLDEN=1 to create it"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{path}: output differs from the golden file (UPDATE_GOLDEN=1 to accept)"
