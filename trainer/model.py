"""The GNN: ``y_hat_i = lin_phi(v_i, a_i, sum_j W_ij * lin_edge(v_j, a_j)^2, I_i)`` (MODEL.md section 4).

The default ``edge_mode="sparse"`` evaluates lin_edge once per neuron and frame and aggregates the
messages of all B frames at once, ``M (N, B) = A(W) @ g (N, B)`` with A the (N, N) target-by-source
matrix (CSR on the CPU, gather/index_add on CUDA, where the ops capture into CUDA graphs and compile).
The MLPs run through ``mlp_apply``: one autograd node per MLP with a hand-written backward (in-place
ReLU, no outer-product or skinny matmuls), the same function as ``nn.Sequential`` up to float rounding.
The previous version (``"node"``: a batch is B disjoint graph copies, node ``b*N + i``, one flat
gather/scatter) and the per-edge one (``"edge"``) are kept for the benchmark and the equivalence tests.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.utils import scatter

from experiment.config import GraphModelConfig

EdgeMode = Literal["sparse", "node", "edge"]


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


def mlp_layers(mlp: nn.Sequential) -> list[nn.Linear] | None:
    """The Linear layers of a ``Linear (ReLU Linear)*`` stack, or None for any other structure."""
    mods = list(mlp)
    if not mods or len(mods) % 2 == 0:
        return None
    ok = all(isinstance(m, nn.Linear) for m in mods[::2]) and all(type(m) is nn.ReLU for m in mods[1::2])
    return [m for m in mods[::2] if isinstance(m, nn.Linear)] if ok else None


class _FusedMLP(torch.autograd.Function):
    """``Linear (ReLU Linear)*`` with one output column as a single autograd node.

    Forward keeps only the post-ReLU activations (ReLU in place on the addmm output). Backward uses
    the layouts that are fast for the skinny first and last layers: ``(x^T d)^T`` for the first
    layer's weight gradient, ``F.linear(d, W^T)`` for its input gradient, a broadcast product instead
    of an (M, 1) x (1, H) matmul for the last layer; the input gradient only when it is needed.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, *params: Tensor) -> Tensor:
        weights, biases = params[0::2], params[1::2]
        dnn = _use_onednn(x)
        acts = [x]
        h = x
        for w, b in zip(weights[:-1], biases[:-1], strict=True):
            h = _onednn_linear(h, w, b, "relu") if dnn else torch.addmm(b, h, w.t()).relu_()
            acts.append(h)
        out = torch.addmm(biases[-1], h, weights[-1].t()).squeeze(-1)
        ctx.save_for_backward(*acts, *weights)
        ctx.n_layers, ctx.dnn = len(weights), dnn
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        saved = ctx.saved_tensors
        n = ctx.n_layers
        acts, weights = saved[:n], saved[n:]
        grads: list[Tensor | None] = [None] * (2 * n)
        d = grad_out.unsqueeze(-1)  # (M, out=1)
        dx: Tensor | None = None
        for k in range(n - 1, -1, -1):
            h_in, w = acts[k], weights[k]
            out_dim, in_dim = w.shape
            if out_dim == 1:
                grads[2 * k] = torch.mv(h_in.t(), d.squeeze(-1)).unsqueeze(0)
            elif in_dim < out_dim:
                grads[2 * k] = (h_in.t() @ d).t()
            else:
                grads[2 * k] = d.t() @ h_in
            grads[2 * k + 1] = d.sum(0)
            if k == 0 and not ctx.needs_input_grad[0]:
                break
            if out_dim == 1:
                d_in = d * w  # (M, 1) * (1, in): the outer product without a K=1 matmul
            elif ctx.dnn:
                d_in = _onednn_linear(d, w.t().contiguous(), None, "none")
            elif in_dim < out_dim:
                d_in = F.linear(d, w.t().contiguous())
            else:
                d_in = d @ w
            if k == 0:
                dx = d_in
            else:
                d = torch.ops.aten.threshold_backward(d_in, acts[k], 0)
        return (dx, *grads)


_ONEDNN_OK: bool | None = None


def _onednn_linear(x: Tensor, w: Tensor, b: Tensor | None, act: str) -> Tensor:
    """``act(x @ w^T + b)`` through oneDNN (mkldnn), act ``"relu"`` or ``"none"``; x, w dense float32 CPU."""
    return torch.ops.mkldnn._linear_pointwise(x, w, b, act, [], "")


def _use_onednn(x: Tensor) -> bool:
    """oneDNN for the float32 CPU matmuls: MKL's sgemm takes a slow path for (M, 80) x (80, 80) on AMD
    CPUs (2x the CPU time, 5x the wall time under load, measured on this project's machine); checked
    once against addmm, so a torch build without the op (or with another signature) falls back."""
    global _ONEDNN_OK
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    if _ONEDNN_OK is None:
        try:
            g = torch.Generator().manual_seed(0)
            xs, ws, bs = torch.randn(5, 4, generator=g), torch.randn(3, 4, generator=g), torch.randn(3, generator=g)
            ok = torch.allclose(_onednn_linear(xs, ws, bs, "relu"), torch.relu(torch.addmm(bs, xs, ws.t())), atol=1e-5)
            _ONEDNN_OK = bool(ok and torch.backends.mkldnn.is_available())
        except (AttributeError, RuntimeError, NotImplementedError):
            _ONEDNN_OK = False
    return _ONEDNN_OK


def mlp_apply(mlp: nn.Sequential, x: Tensor) -> Tensor:
    """``mlp(x).squeeze(-1)`` for x (..., n_in) through ``_FusedMLP`` (plain modules for other structures)."""
    layers = mlp_layers(mlp)
    if layers is None or layers[-1].out_features != 1:
        return mlp(x).squeeze(-1)
    lead = x.shape[:-1]
    params = [t for layer in layers for t in (layer.weight, layer.bias)]
    return _FusedMLP.apply(x.reshape(-1, x.shape[-1]), *params).reshape(lead)


def _csr(ptr: Tensor, cols: Tensor, values: Tensor, n: int) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(ptr, cols, values, (n, n), check_invariants=False)


class _CsrAggregate(torch.autograd.Function):
    """``M (N, B) = A(W) @ g (N, B)``, ``A[dst, src] = W``, with both CSR orders precomputed.

    Backward: ``dg = A^T @ dM`` (the source-ordered CSR) and ``dW_e = sum_b dM[dst_e, b] g[src_e, b]``.
    """

    @staticmethod
    def forward(ctx: Any, g: Tensor, W: Tensor, graph: EdgeGraph) -> Tensor:
        ctx.save_for_backward(g, W)
        ctx.graph = graph
        return torch.sparse.mm(_csr(graph.in_ptr, graph.in_src, W.index_select(0, graph.in_perm), graph.n), g)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        g, W = ctx.saved_tensors
        graph: EdgeGraph = ctx.graph
        grad = grad.contiguous()
        dg = dW = None
        if ctx.needs_input_grad[0]:
            dg = torch.sparse.mm(_csr(graph.out_ptr, graph.out_dst, W.index_select(0, graph.out_perm), graph.n), grad)
        if ctx.needs_input_grad[1]:
            gt, dt = g.t().contiguous(), grad.t().contiguous()  # (B, N): long gathers along dim 1 are 3x faster
            dW = (dt.index_select(1, graph.dst) * gt.index_select(1, graph.src)).sum(0)
        return dg, dW, None


class EdgeGraph(nn.Module):
    """Index structures for the sparse aggregation: edge order as given, by target and by source."""

    def __init__(self, edge_index: Tensor, n_nodes: int) -> None:
        super().__init__()
        self.n = int(n_nodes)
        src, dst = edge_index[0].long(), edge_index[1].long()
        in_perm = torch.argsort(dst * self.n + src)  # rows by target, columns sorted inside a row
        out_perm = torch.argsort(src * self.n + dst)
        small = max(self.n, int(src.numel())) < 2**31 - 1
        idx = (lambda t: t.int()) if small else (lambda t: t)  # int32: the CPU sparse kernel's index type
        for name, t in {
            "src": src,
            "dst": dst,
            "in_perm": in_perm,
            "in_src": idx(src[in_perm]),
            "in_ptr": idx(_ptr(dst, self.n)),
            "out_perm": out_perm,
            "out_dst": idx(dst[out_perm]),
            "out_ptr": idx(_ptr(src, self.n)),
        }.items():
            self.register_buffer(name, t.contiguous(), persistent=False)

    def aggregate(self, g: Tensor, W: Tensor, *, csr: bool = True) -> Tensor:
        """Messages (N, B) from lin_edge outputs g (N, B) and weights W (E,); CSR product on the CPU when
        ``csr``, else gather and index_add (autograd's own backward; atomics on CUDA)."""
        if csr and g.device.type == "cpu":
            return _CsrAggregate.apply(g.contiguous(), W, self)
        msg = g.index_select(0, self.src) * W.unsqueeze(1)
        return g.new_zeros(g.shape).index_add_(0, self.dst, msg)


def _ptr(rows: Tensor, n: int) -> Tensor:
    """CSR row pointer (n + 1,) for sorted-by-row ``rows``."""
    counts = torch.bincount(rows, minlength=n)
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])


def batch_edge_index(edge_index: Tensor, batch_size: int, n_nodes: int) -> Tensor:
    """Edge index of ``batch_size`` disjoint graph copies: copy b's nodes are offset by ``b * n_nodes``."""
    offsets = torch.arange(batch_size, device=edge_index.device).repeat_interleave(edge_index.shape[1]) * n_nodes
    return edge_index.repeat(1, batch_size) + offsets


class FlyVisGNN(nn.Module):
    """Message-passing model of ``dv/dt`` with a per-edge weight ``W`` and a per-neuron embedding ``a``.

    ``edge_mode``: ``"sparse"`` (default) evaluates lin_edge once per neuron and frame and aggregates
    with ``EdgeGraph``; ``"node"`` (the previous version) and ``"edge"`` (lin_edge per edge) compute the
    same function and are kept for the benchmark ratio and the equivalence tests.
    """

    def __init__(
        self,
        cfg: GraphModelConfig,
        edge_index: Tensor,
        n_neurons: int,
        n_input: int,
        *,
        seed: int = 0,
        edge_mode: EdgeMode = "sparse",
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
        self.graph = EdgeGraph(self.edge_index, self.n_neurons) if edge_mode == "sparse" else None
        self.plain_ops = False  # True: plain modules and gather/index_add only (for torch.compile, any device)

    # -- building blocks -------------------------------------------------------------------
    def _mlp(self, mlp: nn.Sequential, x: Tensor) -> Tensor:
        return mlp_apply(mlp, x) if self.edge_mode == "sparse" and not self.plain_ops else mlp(x).squeeze(-1)

    def edge_fn(self, v: Tensor, a: Tensor) -> Tensor:
        """lin_edge(v, a), squared when ``lin_edge_positive``; v (...,), a (..., emb) -> (...,)."""
        g = self._mlp(self.lin_edge, torch.cat([v.unsqueeze(-1), a], dim=-1))
        return g * g if self.lin_edge_positive else g

    def phi(self, v: Tensor, a: Tensor, msg: Tensor, stim: Tensor) -> Tensor:
        """lin_phi(v, a, M, I) -> (...,)."""
        return self._mlp(self.lin_phi, torch.cat([v.unsqueeze(-1), a, msg.unsqueeze(-1), stim.unsqueeze(-1)], dim=-1))

    def full_stimulus(self, stim: Tensor) -> Tensor:
        """Photoreceptor input (B, n_input) -> (B, N) with zeros for the other neurons."""
        if self.edge_mode == "sparse":
            return F.pad(stim, (0, self.n_neurons - self.n_input))
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
        if self.graph is not None:
            # lin_edge on (N, B, 1 + emb): the aggregation then works on (N, B) columns, no batched edge copies
            g = self.edge_fn(v.t(), self.a.unsqueeze(1).expand(n, bsz, -1))
            return self.graph.aggregate(g, self.W, csr=not self.plain_ops).t()
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
