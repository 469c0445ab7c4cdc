"""The one SlotResult factory of the tests, and the 20-iteration tree scenario built with it."""

from __future__ import annotations

import copy
from typing import Any

from experiment.config import ExperimentConfig
from experiment.exploration import ROOT, Parent, Seeds, SlotResult, digest_trajectory
from experiment.records import Metrics, R2Row


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


def slot_result(
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
    failure_reason: str = "CUDA out of memory (last log line)",
    parent: Parent = ROOT,
    trainable: dict[str, dict[str, Any]] | None = None,
    mutation: str = "[none] — baseline defaults",
    strategy: str = "baseline",
    replicate_of: int | None = None,
    rows: list[R2Row] | None = None,
    final_ge_peak: bool = True,
    n_slots: int = 4,
    n_iter_block: int = 12,
    slot: int | None = None,
    batch: int | None = None,
    block: int | None = None,
    seeds: Seeds | None = None,
    over_time_limit: bool = False,
) -> SlotResult:
    """One node, the only way tests build a SlotResult.

    Slot, batch and block follow from the iteration (each overridable), seeds from the slot. ``failed``
    gives no metrics and no trajectory; otherwise the trajectory digests ``rows`` (default: ``r2_rows``).
    """
    slot = (iteration - 1) % n_slots if slot is None else slot
    metrics = trajectory = None
    if not failed:
        metrics = Metrics(
            connectivity_R2=conn,
            tau_R2=tau,
            V_rest_R2=vrest,
            cluster_accuracy=cluster,
            test_R2=test_r2,
            test_pearson=pearson,
            training_time_min=minutes,
        )
        trajectory = digest_trajectory(rows if rows is not None else r2_rows(conn, final_ge_peak))
    return SlotResult(
        iteration=iteration,
        slot=slot,
        batch=batch if batch is not None else (iteration - 1) // n_slots + 1,
        block=block if block is not None else (iteration - 1) // n_iter_block + 1,
        parent=parent,
        replicate_of=replicate_of,
        strategy=strategy,
        mutation=mutation,
        trainable=copy.deepcopy(trainable) if trainable is not None else default_trainable(),
        seeds=seeds if seeds is not None else Seeds.for_slot(iteration, slot),
        status="failed" if failed else "completed",
        failure_reason=failure_reason if failed else None,
        metrics=metrics,
        trajectory=trajectory,
        over_time_limit=over_time_limit,
    )


def scenario() -> list[SlotResult]:
    """20 iterations: block 1 = 12 baseline runs; block 2 = two batches of mutations, replicates, a failure."""
    res = [
        slot_result(i, conn=0.90 + 0.01 * (i % 4), vrest=0.40 + 0.02 * (i % 5), final_ge_peak=i % 3 != 0)
        for i in range(1, 13)
    ]
    n6 = default_trainable(n_alternations=6)
    n6_lrw = default_trainable(n_alternations=6, alternate_lr_W=1e-07)
    ratio = default_trainable(alternate_vrest_ratio=0.3)
    res += [
        slot_result(13, conn=0.951, vrest=0.612, trainable=n6, mutation="n_alternations: 4 -> 6", strategy="exploit"),
        slot_result(
            14,
            conn=0.62,
            vrest=0.20,
            trainable=ratio,
            mutation="alternate_vrest_ratio: 0.5 -> 0.3",
            strategy="explore",
            minutes=75.5,
        ),
        slot_result(
            15,
            failed=True,
            trainable=default_trainable(alternate_lr_update=1.2e-05),
            mutation="alternate_lr_update: 1.2e-06 -> 1.2e-05",
            strategy="explore",
        ),
        slot_result(
            16,
            conn=0.93,
            vrest=0.45,
            mutation="[none] — robustness re-run of Node 1",
            strategy="robustness-check",
            replicate_of=1,
        ),
        slot_result(
            17,
            conn=0.949,
            vrest=0.58,
            parent=13,
            trainable=n6_lrw,
            mutation="alternate_lr_W: 6e-07 -> 1e-07",
            strategy="exploit",
        ),
        slot_result(
            18,
            conn=0.945,
            vrest=0.60,
            parent=13,
            trainable=n6,
            mutation="[none] — robustness re-run of Node 13",
            strategy="robustness-check",
            replicate_of=13,
        ),
        slot_result(
            19,
            conn=0.2,
            vrest=0.05,
            parent=17,
            trainable=default_trainable(n_alternations=6, alternate_lr_W=0.0),
            mutation="alternate_lr_W: 1e-07 -> 0.0",
            strategy="exploit",
            final_ge_peak=False,
        ),
        slot_result(
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
