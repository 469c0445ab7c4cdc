from __future__ import annotations

import torch

from simulator.dynamics import EulerStepper, drift


def _toy() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    n, e = 30, 120
    return {
        "edge_index": torch.randint(0, n, (2, e), generator=g),
        "W": 0.1 * torch.randn(e, generator=g),
        "tau": 0.02 + 0.1 * torch.rand(n, generator=g),
        "V_rest": torch.rand(n, generator=g),
    }


def test_drift_matches_the_ode_formula() -> None:
    p = _toy()
    v, stim = torch.randn(30), torch.zeros(30)
    stim[:4] = 0.7
    dense = torch.zeros(30, 30)
    dense.index_put_((p["edge_index"][1], p["edge_index"][0]), p["W"], accumulate=True)
    expected = (-v + p["V_rest"] + dense @ torch.relu(v) + stim) / p["tau"]
    torch.testing.assert_close(drift(v, stim, p["W"], p["edge_index"], p["tau"], p["V_rest"]), expected)


def test_drift_accepts_a_batch() -> None:
    p = _toy()
    v = torch.randn(5, 30)
    out = drift(v, torch.zeros(5, 30), p["W"], p["edge_index"], p["tau"], p["V_rest"])
    torch.testing.assert_close(out[2], drift(v[2], torch.zeros(30), p["W"], p["edge_index"], p["tau"], p["V_rest"]))


def test_stepper_records_clean_drift_at_observed_state() -> None:
    p = _toy()
    stepper = EulerStepper(p["W"], p["edge_index"], p["tau"], p["V_rest"], n_input=4, delta_t=0.02)
    T = 10
    stim = torch.rand(T, 4)
    noise = 0.05 * torch.randn(T, 30)
    v_out, y_out = torch.empty(T, 30), torch.empty(T, 30)
    v0 = p["V_rest"].clone()
    stepper.run(v0.clone(), stim, noise, v_out, y_out)
    full = torch.zeros(T, 30)
    full[:, :4] = stim
    torch.testing.assert_close(y_out, drift(v_out, full, p["W"], p["edge_index"], p["tau"], p["V_rest"]))
    torch.testing.assert_close(v_out[1], v_out[0] + 0.02 * y_out[0] + noise[0])
