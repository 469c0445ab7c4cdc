"""Schema of the experiment YAML shared by the simulator, the trainer and the controller.

Every section forbids unknown keys (a misspelt key is an error, never ignored) and rejects
non-finite numbers. The layout follows the protocol's config files: ``dataset``,
``simulation:``, ``graph_model:``, ``training:``, ``claude:`` and ``dispatch:``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A config file breaks the schema; the message is one line naming file, field and rule."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)


class SimulationConfig(_Section):
    """FlyVis connectome ODE and stimulus. Fixed for the whole exploration (the LLM may not edit it)."""

    connectome: str = Field("fib25-fib19_v2.2", description="connectome JSON name inside the flyvis package, or a path")
    extent: int = Field(8, ge=1, le=15, description="hexagonal lattice radius (8 = flyvis_62_1, 15 = full eye)")
    n_frames: int = Field(64000, ge=10, description="training frames (one ODE step each)")
    n_test_frames: int = Field(2000, ge=10, description="held-out frames for the rollout test")
    delta_t: float = Field(0.02, gt=0, description="Euler step in seconds")
    noise_model_level: float = Field(0.05, ge=0, description="std of the process noise added to v each step")
    steady_state_s: float = Field(2.0, ge=0, description="seconds of grey 0.5 before recording")
    ground_truth: str = Field("synthetic", description="'synthetic' or a flyvis checkpoint directory")
    stimulus: Literal["procedural", "davis", "natural"] = Field(
        "procedural",
        description="seeded procedural movies, DAVIS 2017 videos, or scikit-image's bundled photos under a moving gaze",
    )
    davis_root: str | None = Field(None, description="DAVIS 2017 folder; DAVIS_ROOT env var otherwise")
    seed: int = Field(42, ge=0, description="drives stimulus order, noise, everything random (controller-owned)")


class GraphModelConfig(_Section):
    """The GNN: edge MLP ``lin_edge``, update MLP ``lin_phi``, per-neuron embedding and per-edge W."""

    embedding_dim: int = Field(2, ge=1, le=64)
    input_size: int = Field(3, ge=1, description="lin_edge input = 1 + embedding_dim")
    input_size_update: int = Field(5, ge=1, description="lin_phi input = 3 + embedding_dim")
    hidden_dim: int = Field(80, ge=1, le=1024, description="lin_edge hidden width")
    n_layers: int = Field(3, ge=1, le=10, description="lin_edge layers")
    hidden_dim_update: int = Field(80, ge=1, le=1024, description="lin_phi hidden width")
    n_layers_update: int = Field(3, ge=1, le=10, description="lin_phi layers")
    output_size: int = Field(1, ge=1, le=1)
    lin_edge_positive: bool = Field(True, description="square the lin_edge output")
    w_init_mode: Literal["zeros", "randn_scaled"] = "zeros"

    @model_validator(mode="after")
    def _coupled_sizes(self) -> GraphModelConfig:
        if self.input_size != 1 + self.embedding_dim:
            raise ValueError(
                f"input_size must equal 1 + embedding_dim ({1 + self.embedding_dim}), got {self.input_size}"
            )
        if self.input_size_update != 3 + self.embedding_dim:
            raise ValueError(
                f"input_size_update must equal 3 + embedding_dim ({3 + self.embedding_dim}), "
                f"got {self.input_size_update}"
            )
        return self


class TrainingConfig(_Section):
    """Optimisation, regularisers and the alternating schedule."""

    n_epochs: int = Field(1, ge=1, le=100)
    batch_size: int = Field(2, ge=1, le=256)
    data_augmentation_loop: int = Field(20, ge=1, le=1000, description="Niter = n_frames * dal // batch_size * 0.2")
    n_iterations: int | None = Field(None, ge=1, description="override of Niter per epoch (CPU configs)")

    learning_rate_start: float = Field(1.2e-3, ge=0, le=1, description="both MLPs (active phase)")
    learning_rate_W_start: float = Field(6e-4, ge=0, le=1, description="W (active phase)")
    learning_rate_embedding_start: float = Field(1.55e-3, ge=0, le=1, description="embedding (active phase)")

    # Defaults are the published flyvis_62_1_gs_alternate values (docs/PARITY.md).
    coeff_edge_diff: float = Field(750.0, ge=0, le=1e6, description="monotonicity of lin_edge (not annealed)")
    coeff_edge_norm: float = Field(0.9, ge=0, le=1e6, description="scale anchor of lin_edge at 2*xnorm (not annealed)")
    coeff_edge_weight_L1: float = Field(0.29, ge=0, le=1e3, description="x (1 - exp(-rate**epoch)): 0.632 in epoch 0")
    coeff_edge_weight_L1_rate: float = Field(0.5, ge=0, le=100)
    coeff_edge_weight_L2: float = Field(0.0, ge=0, le=1e3, description="not annealed")
    coeff_phi_weight_L1: float = Field(0.5, ge=0, le=1e3, description="x (1 - exp(-rate*epoch)): 0 in epoch 0")
    coeff_phi_weight_L1_rate: float = Field(0.4, ge=0, le=100)
    coeff_phi_weight_L2: float = Field(0.001, ge=0, le=1e3, description="not annealed")
    coeff_W_L1: float = Field(3.3e-5, ge=0, le=1e3, description="x (1 - exp(-rate*epoch)): 0 in epoch 0")
    coeff_W_L1_rate: float = Field(0.5, ge=0, le=100)
    coeff_W_L2: float = Field(2.5e-6, ge=0, le=1e3, description="not annealed")

    alternate_training: bool = Field(False, description="selects the alternating trainer")
    alternate_schedule: Literal["cyclic", "two_stage"] = "cyclic"
    n_alternations: int = Field(4, ge=1, le=64, description="W/V_rest cycles per epoch")
    alternate_vrest_ratio: float = Field(0.5, ge=0, le=1, description="V_rest-phase fraction of a cycle")
    alternate_first_phase: Literal["W", "V_rest"] = Field(
        "W", description="cyclic: the phase each cycle starts with (the reference: W)"
    )
    alternate_lr_W: float = Field(6e-7, ge=0, le=1, description="W LR during the V_rest-phase")
    alternate_lr_edge: float = Field(1.2e-6, ge=0, le=1, description="lin_edge LR during the V_rest-phase")
    alternate_lr_update: float = Field(1.2e-6, ge=0, le=1, description="lin_phi LR during the W-phase")
    alternate_lr_embedding: float = Field(1.55e-6, ge=0, le=1, description="embedding LR during the W-phase")
    alternate_joint_ratio: float = Field(0.4, ge=0, le=1, description="two_stage: joint fraction of the epoch")
    alternate_lr_ratio: float = Field(0.1, ge=0, le=1, description="two_stage: lin_edge and W LR factor after")

    # V_rest exploration's training scheme (docs/PARITY.md, "Recurrent training"); defaults off
    learning_rate_update_start: float = Field(
        0.0, ge=0, le=1, description="lin_phi's own LR (active phase); 0 = learning_rate_start"
    )
    recurrent_training: bool = Field(False, description="loss on the state time_step Euler steps ahead")
    time_step: int = Field(1, ge=1, le=64, description="recurrent: Euler steps of the rollout in the loss")
    noise_recurrent_level: float = Field(0.0, ge=0, le=10, description="recurrent: std of N(0,1) added per step")
    recurrent_training_start_epoch: int = Field(
        0, ge=0, le=99, description="recurrent: first 0-based epoch with the rollout loss (earlier: one-step)"
    )
    grad_clip_W: float = Field(0.0, ge=0, le=1e6, description="max L2 norm of W's gradient per step; 0 = off")

    n_rollout_frames: int = Field(500, ge=10, description="frames of the autonomous test rollout")
    cluster_n_components: int = Field(100, ge=2, le=1000, description="GaussianMixture components")
    seed: int = Field(42, ge=0, description="initialisation and frame sampling (controller-owned)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = Field(
        "off", description="torch.compile mode of the training step (reduce-overhead: CUDA graphs); off = eager"
    )
    r2_async: Literal["auto", "on", "off"] = Field(
        "auto", description="R2 checkpoints on a background thread (auto: on CUDA only); same log either way"
    )

    @model_validator(mode="after")
    def _recurrent_runs(self) -> TrainingConfig:
        if self.recurrent_training and self.recurrent_training_start_epoch >= self.n_epochs:
            raise ValueError(
                f"recurrent_training_start_epoch ({self.recurrent_training_start_epoch}) must be < n_epochs "
                f"({self.n_epochs}): the recurrent loss would never run"
            )
        return self


class ClaudeConfig(_Section):
    """Exploration protocol and LLM settings (read by the controller only)."""

    n_iter_block: int = Field(12, ge=4, description="iterations per block; the UCB tree resets at each block")
    ucb_c: float = Field(1.414, ge=0, description="exploration constant c of UCB = R2 + c*sqrt(N)/(1+visits)")
    n_slots: int = Field(4, ge=1, le=16, description="slots trained in parallel per batch (the protocol uses 4)")
    n_iterations: int = Field(48, ge=1, description="iterations of a run unless --iterations says otherwise")
    n_epochs: int | None = Field(
        None, ge=1, le=100, description="exploration slots train with training.n_epochs replaced by this"
    )
    data_augmentation_loop: int | None = Field(
        None, ge=1, le=1000, description="exploration slots train with training.data_augmentation_loop replaced by this"
    )
    time_limit_min: float = Field(60.0, gt=0, description="a slot over this is flagged")
    baseline_batches: int = Field(3, ge=0, description="block-1 batches that run the defaults unchanged")
    model: str = Field("claude-opus-5-5", description="model name sent to the API / claude CLI (docs/CONFIG.md)")
    max_tokens: int = Field(16000, ge=256, description="reply length limit; a reply cut there is a failed call")
    max_retries: int = Field(5, ge=0, le=20, description="SDK retries of 408/409/429/5xx/529")
    request_timeout_s: float = Field(600.0, gt=0, description="one API or CLI call")
    cli_home: Literal["run", "user"] = Field(
        "run", description="claude-cli: its home is a folder of the run, or 'user': your own (subscription login)"
    )
    outage_deadline_min: float = Field(60.0, ge=0, description="total wait on overload/connection errors")
    prompt_cache: Literal["off", "5m", "1h"] = Field(
        "off", description="cache the system text (worth it when a batch takes < 1 h)"
    )
    max_reasks: int = Field(2, ge=0, le=10, description="re-asks with the exact errors before the run pauses")
    budget_usd: float | None = Field(None, ge=0, description="stop before a call once this much was spent")
    budget_tokens: int | None = Field(None, ge=0, description="stop before a call once this many tokens were used")
    price_per_mtok: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {
            "default": {"input": 15.0, "output": 75.0, "cache_read": 1.5, "cache_write": 18.75},
        },
        description="USD per million tokens by model name ('default' for any other)",
    )
    ucb_reward: Literal["node", "replicate_mean"] = Field(
        "node", description="UCB reward: the node's conn_R2, or the mean over runs of its config"
    )
    slot_image: Literal["panel", "activity"] = Field(
        "panel",
        description="the image sent per completed slot: panel.png (model and data on one page) or activity.png "
        "(the data only); both 1000 x 800 px, ~1,067 tokens",
    )
    extra_images: list[Literal["activity", "w_scatter", "rollout"]] = Field(
        default_factory=list,
        description="slot images sent besides slot_image: activity.png (~1,067 tokens), W* vs W scatter, test "
        "rollout (~444 tokens each)",
    )

    @model_validator(mode="after")
    def _blocks_end_at_batch_boundaries(self) -> ClaudeConfig:
        if self.n_iter_block % self.n_slots:
            raise ValueError(
                f"n_iter_block ({self.n_iter_block}) must be a multiple of n_slots ({self.n_slots}): "
                "a block ends at a batch boundary"
            )
        return self


class SlurmConfig(_Section):
    partition: str | None = None
    gpus_per_job: int = Field(1, ge=0)
    cpus_per_task: int = Field(8, ge=1)
    mem_gb: float = Field(64, gt=0)
    time_min: int = Field(120, ge=1)
    setup: list[str] = Field(default_factory=list, description="shell lines run before the slot job")
    additional_parameters: dict[str, Any] = Field(default_factory=dict)


class LsfConfig(_Section):
    queue: str | None = None
    gpus_per_job: int = Field(1, ge=0)
    cpus_per_task: int = Field(8, ge=1)
    mem_gb: float = Field(64, gt=0)
    time_min: int = Field(120, ge=1)
    setup: list[str] = Field(default_factory=list)
    extra_args: list[str] = Field(default_factory=list)


class DispatchConfig(_Section):
    """Where the slot jobs run."""

    executor: Literal["local", "slurm", "lsf"] = "local"
    max_parallel: int | None = Field(None, ge=1, description="local: concurrent slots (default: GPUs or 2)")
    threads_per_slot: int | None = Field(None, ge=1, description="local CPU: torch threads per slot")
    slots_per_gpu: int = Field(1, ge=1, le=16, description="local: slots run at once on one GPU")
    gpu_min_free_gb: float | None = Field(
        None, gt=0, description="local: another slot starts on a GPU only while it has this much free memory"
    )
    mps: Literal["auto", "off"] = Field(
        "auto", description="local: start CUDA MPS when slots share a GPU and nvidia-cuda-mps-control exists"
    )
    slot_timeout_min: float = Field(180.0, gt=0)
    poll_s: float = Field(10.0, gt=0)
    submit_deadline_s: float = Field(300.0, gt=0, description="total time to retry a failing job submission")
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    lsf: LsfConfig = Field(default_factory=LsfConfig)


class ExperimentConfig(_Section):
    """One experiment YAML: what a slot trains, and how the controller explores."""

    description: str = ""
    dataset: str = Field(..., min_length=1, description="data routing name; fixed per slot")
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    graph_model: GraphModelConfig = Field(default_factory=GraphModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    claude: ClaudeConfig = Field(default_factory=ClaudeConfig)
    dispatch: DispatchConfig = Field(default_factory=DispatchConfig)


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per violation: ``source: field.path: rule``."""
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{source}: {path}: {msg}")
    return "\n".join(lines)


def parse_experiment(data: Any, source: str = "<config>") -> ExperimentConfig:
    """Validate a plain mapping; raise ConfigError naming the source, field and rule."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: <root>: must be a mapping, got {type(data).__name__}")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment YAML (strict, safe loading)."""
    from experiment.yaml_io import load_yaml_file

    return parse_experiment(load_yaml_file(path), str(path))


def exploration_overrides(cfg: ExperimentConfig) -> dict[str, int]:
    """``training:`` values the ``claude:`` block replaces in exploration slots.

    The reference writes ``claude.n_epochs`` and ``claude.data_augmentation_loop`` into every slot config when an
    exploration starts (so flyvis_62_1_gs_alternate slots train 160,000 iterations, not the standalone 128,000).
    """
    pairs = (("n_epochs", cfg.claude.n_epochs), ("data_augmentation_loop", cfg.claude.data_augmentation_loop))
    return {key: value for key, value in pairs if value is not None}
