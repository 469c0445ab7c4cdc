"""The GNN: node-level and per-edge lin_edge agree, batches are disjoint graph copies, gradients flow."""

from __future__ import annotations

import torch

from experiment.config import GraphModelConfig
from trainer.losses import data_loss
from trainer.model import FlyVisGNN, batch_edge_index


def _model(edge_mode: str = "node", w_init: str = "randn_scaled") -> FlyVisGNN:
    cfg = GraphModelConfig(hidden_dim=8, hidden_dim_update=8, w_init_mode=w_init)
    ei = torch.tensor([[0, 1, 2, 3, 3, 4], [1, 2, 0, 0, 4, 1]])
    return FlyVisGNN(cfg, ei, n_neurons=5, n_input=2, seed=3, edge_mode=edge_mode)


def test_node_level_and_per_edge_lin_edge_give_the_same_prediction() -> None:
    node, edge = _model("node"), _model("edge")
    edge.load_state_dict(node.state_dict())
    v, stim = torch.rand(3, 5), torch.rand(3, 2)
    torch.testing.assert_close(node(v, stim), edge(v, stim))


def test_batch_prediction_equals_frame_by_frame_prediction() -> None:
    model = _model()
    v, stim = torch.rand(4, 5), torch.rand(4, 2)
    single = torch.cat([model(v[k : k + 1], stim[k : k + 1]) for k in range(4)])
    torch.testing.assert_close(model(v, stim), single)


def test_batch_edge_index_offsets_each_copy_by_n_nodes() -> None:
    ei = torch.tensor([[0, 1], [1, 2]])
    assert batch_edge_index(ei, 2, 3).tolist() == [[0, 1, 3, 4], [1, 2, 4, 5]]


def test_gradients_reach_all_four_param_groups() -> None:
    model = _model()
    loss = data_loss(model(torch.rand(2, 5), torch.rand(2, 2)), torch.rand(2, 5))
    loss.backward()
    for name, params in model.param_groups().items():
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), name


def test_initialisation_is_seeded_embedding_ones_and_w_zeros() -> None:
    a, b = _model(w_init="zeros"), _model(w_init="zeros")
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert torch.all(a.a == 1) and torch.all(a.W == 0)


def test_randn_scaled_w_has_variance_one_over_e() -> None:
    cfg = GraphModelConfig(w_init_mode="randn_scaled")
    n_edges = 20000
    ei = torch.randint(0, 100, (2, n_edges))
    w = FlyVisGNN(cfg, ei, n_neurons=100, n_input=4, seed=0).W.detach()
    assert abs(w.var().item() * n_edges - 1.0) < 0.05
