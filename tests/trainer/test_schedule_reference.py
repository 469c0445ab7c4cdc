"""The cyclic schedule equals the reference's (allierc/flyvis-gnn @fd6fee8, graph_trainer.py:991-1040).

The reference, as described there: cycles of ``Niter // n_alternations`` iterations; in each, a W-phase of
``int(cycle * (1 - alternate_vrest_ratio))`` iterations, then a V_rest-phase of the rest; the phases are laid
end to end from iteration 0, and the loop moves to the next laid phase when the iteration reaches its start,
so the ``Niter % n_alternations`` iterations after the last cycle stay in the last phase (V_rest).
"""

from __future__ import annotations

import pytest

from experiment.config import TrainingConfig
from trainer.schedule import phase_lrs

NITERS = (50, 97, 1000, 1003, 4001, 12_347)


def reference_phases(niter: int, n_alt: int, vrest_ratio: float) -> list[str]:
    """Phase of every iteration: lay (name, start) phases, then walk them as the reference's loop does."""
    cycle = niter // n_alt
    w_len = int(cycle * (1 - vrest_ratio))
    laid: list[tuple[str, int]] = []
    start = 0
    for _ in range(n_alt):
        laid += [("W", start), ("V_rest", start + w_len)]
        start += cycle
    out, k = [], 0
    for it in range(niter):
        if k + 1 < len(laid) and it >= laid[k + 1][1]:
            k += 1
        out.append(laid[k][0])
    return out


def ours(niter: int, cfg: TrainingConfig) -> list[str]:
    return [phase_lrs(it, niter, cfg)[0] for it in range(niter)]


def cyclic(n_alt: int, ratio: float, first: str = "W") -> TrainingConfig:
    return TrainingConfig(
        alternate_training=True, n_alternations=n_alt, alternate_vrest_ratio=ratio, alternate_first_phase=first
    )


@pytest.mark.parametrize("n_alt", [2, 4, 6, 8])
@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("niter", NITERS)
def test_every_iteration_has_the_reference_phase(n_alt: int, ratio: float, niter: int) -> None:
    assert ours(niter, cyclic(n_alt, ratio)) == reference_phases(niter, n_alt, ratio)


def test_six_cycles_of_the_slot_length_leave_the_remainder_in_the_last_v_rest_phase() -> None:
    niter = 160_000  # 64000 * 25 // 2 * 0.2: an exploration slot
    got = ours(niter, cyclic(6, 0.5))
    assert got == reference_phases(niter, 6, 0.5)
    # cycles of 26,666 = 13,333 W + 13,333 V_rest; the last V_rest-phase takes the 4 left over
    assert got[6 * 26_666 - 1 :] == ["V_rest"] * 5 and got[5 * 26_666 + 13_332 : 5 * 26_666 + 13_334] == ["W", "V_rest"]


@pytest.mark.parametrize("n_alt", [2, 4, 6, 8])
@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("niter", [97, 1003])
def test_v_rest_first_swaps_the_two_phases_of_each_cycle(n_alt: int, ratio: float, niter: int) -> None:
    ref = reference_phases(niter, n_alt, ratio)
    got = ours(niter, cyclic(n_alt, ratio, first="V_rest"))
    cycle = niter // n_alt
    for c in range(n_alt):
        block = ref[c * cycle : (c + 1) * cycle]
        w_len = block.count("W")
        assert got[c * cycle : (c + 1) * cycle] == ["V_rest"] * (cycle - w_len) + ["W"] * w_len
    assert got[n_alt * cycle :] == ["W"] * (niter % n_alt)  # the remainder stays in the last phase
