"""The GNN: ``y_hat_i = lin_phi(v_i, a_i, sum_j W_ij * lin_edge(v_j, a_j)^2, I_i)`` (MODEL.md section 4).

A batch of B frames is B disjoint copies of the graph (torch_geometric ``Batch`` offsets: frame b's
neuron i is node ``b*N + i``), so one flat gather/scatter serves the whole batch.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from experiment.config import GraphModelConfig

EdgeMode = Literal["node", "edge"]


HIDDEN_INIT_STD = 0.1  # the reference's std for every layer after the first


def make_mlp(n_in: int, hidden: int, n_out: int, n_layers: int) -> nn.Sequential:
    """``n_layers`` linear layers with ReLU between them and a linear output (n_layers=1: one Linear).

    Init as in the reference: the first layer keeps PyTorch's default; every later layer (hidden and output)
    gets weights N(0, HIDDEN_INIT_STD^2) and zero biases.
    """
    sizes = [n_in] + [hidden] * (n_layers - 1) + [n_out]
    layers: list[nn.Module] = []
    for k in range(n_layers):
        layer = nn.Linear(sizes[k], sizes[k + 1])
        if k > 0:
            nn.init.normal_(layer.weight, std=HIDDEN_INIT_STD)
            nn.init.zeros_(layer.bias)
        layers.append(layer)
        if k < n_layers - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def batch_edge_index(edge_index: Tensor, batch_size: int, n_nodes: int) -> Tensor:
    """Edge index of ``batch_size`` disjoint graph copies: copy b's nodes are offset by ``b * n_nodes``."""
    offsets = torch.arange(batch_size, device=edge_index.device).repeat_interleave(edge_index.shape[1]) * n_nodes
    return edge_index.repeat(1, batch_size) + offsets


class FlyVisGNN(nn.Module):
    """Message-passing model of ``dv/dt`` with a per-edge weight ``W`` and a per-neuron embedding ``a``.

    ``edge_mode="node"`` evaluates lin_edge once per neuron and gathers it per edge (same math as
    ``"edge"``, which evaluates it per edge; kept for the benchmark ratio and the equivalence test).
    """

    def __init__(
        self,
        cfg: GraphModelConfig,
        edge_index: Tensor,
        n_neurons: int,
        n_input: int,
        *,
        seed: int = 0,
        edge_mode: EdgeMode = "node",
    ) -> None:
        super().__init__()
        if edge_index.ndim != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
        self.n_neurons = int(n_neurons)
        self.n_input = int(n_input)
        self.embedding_dim = cfg.embedding_dim
        self.lin_edge_positive = cfg.lin_edge_positive
        self.edge_mode: EdgeMode = edge_mode
        n_edges = int(edge_index.shape[1])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.lin_edge = make_mlp(cfg.input_size, cfg.hidden_dim, cfg.output_size, cfg.n_layers)
            self.lin_phi = make_mlp(cfg.input_size_update, cfg.hidden_dim_update, cfg.output_size, cfg.n_layers_update)
            if cfg.w_init_mode == "randn_scaled":
                w0 = torch.randn(n_edges) / max(n_edges, 1) ** 0.5
            else:
                w0 = torch.zeros(n_edges)
        self.a = nn.Parameter(torch.ones(self.n_neurons, cfg.embedding_dim))
        self.W = nn.Parameter(w0)
        self.register_buffer("edge_index", edge_index.to(torch.long).contiguous(), persistent=False)
        self._batched: dict[int, Tensor] = {}

    # -- building blocks -------------------------------------------------------------------
    def edge_fn(self, v: Tensor, a: Tensor) -> Tensor:
        """lin_edge(v, a), squared when ``lin_edge_positive``; v (...,), a (..., emb) -> (...,)."""
        g = self.lin_edge(torch.cat([v.unsqueeze(-1), a], dim=-1)).squeeze(-1)
        return g * g if self.lin_edge_positive else g

    def phi(self, v: Tensor, a: Tensor, msg: Tensor, stim: Tensor) -> Tensor:
        """lin_phi(v, a, M, I) -> (...,)."""
        return self.lin_phi(torch.cat([v.unsqueeze(-1), a, msg.unsqueeze(-1), stim.unsqueeze(-1)], dim=-1)).squeeze(-1)

    def full_stimulus(self, stim: Tensor) -> Tensor:
        """Photoreceptor input (B, n_input) -> (B, N) with zeros for the other neurons."""
        out = stim.new_zeros(stim.shape[0], self.n_neurons)
        out[:, : self.n_input] = stim
        return out

    def _batch_edges(self, batch_size: int) -> Tensor:
        cached = self._batched.get(batch_size)
        if cached is None or cached.device != self.edge_index.device:
            cached = batch_edge_index(self.edge_index, batch_size, self.n_neurons)
            self._batched[batch_size] = cached
        return cached

    # -- forward ---------------------------------------------------------------------------
    def messages(self, v: Tensor) -> Tensor:
        """Aggregated messages M (B, N) for voltages v (B, N)."""
        bsz, n = v.shape
        ei = self._batch_edges(bsz)
        src, dst = ei[0], ei[1]
        a_flat = self.a.repeat(bsz, 1)
        v_flat = v.reshape(-1)
        if self.edge_mode == "node":
            g_edge = self.edge_fn(v_flat, a_flat)[src]
        else:
            g_edge = self.edge_fn(v_flat[src], a_flat[src])
        msg = self.W.repeat(bsz) * g_edge
        return scatter(msg, dst, dim=0, dim_size=bsz * n, reduce="sum").view(bsz, n)

    def forward(self, v: Tensor, stim: Tensor) -> Tensor:
        """Predicted dv/dt (B, N) from voltages v (B, N) and photoreceptor input stim (B, n_input)."""
        msg = self.messages(v)
        a = self.a.unsqueeze(0).expand(v.shape[0], -1, -1)
        return self.phi(v, a, msg, self.full_stimulus(stim))

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """The four optimiser groups, by the names the schedule uses."""
        return {
            "lin_edge": list(self.lin_edge.parameters()),
            "W": [self.W],
            "lin_phi": list(self.lin_phi.parameters()),
            "embedding": [self.a],
        }

    def mlp_weights(self, which: Literal["lin_edge", "lin_phi"]) -> list[Tensor]:
        """Weight matrices (no biases) of one MLP, for the L1/L2 penalties."""
        mlp = self.lin_edge if which == "lin_edge" else self.lin_phi
        return [m.weight for m in mlp if isinstance(m, nn.Linear)]
