"""What the ``trainer.run`` and ``trainer.slot`` command lines share: options, threads, one-line errors."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from experiment.config import ConfigError, ExperimentConfig
from experiment.yaml_io import YamlError
from simulator.errors import SimulatorError
from trainer.train import TrainingFailed

# Errors on bad input or a failed training: reported as one line, never as a traceback.
EXPECTED_ERRORS: tuple[type[Exception], ...] = (ConfigError, YamlError, SimulatorError, TrainingFailed)


class Terminated(RuntimeError):
    """The job received SIGTERM (e.g. a scheduler timeout)."""


def base_parser(prog: str, doc: str | None, *, config_help: str, out_help: str) -> argparse.ArgumentParser:
    """A parser with the options both commands take: --config, --out, --iterations, --device, --threads."""
    p = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0] if doc else None)
    p.add_argument("--config", required=True, type=Path, help=config_help)
    p.add_argument("--out", required=True, type=Path, help=out_help)
    p.add_argument("--iterations", type=int, default=None, help="override training.n_iterations")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None, help="default: training.device")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: OMP_NUM_THREADS)")
    return p


def parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv`` and apply ``--threads``."""
    args = p.parse_args(argv)
    configure_threads(args.threads)
    return args


def configure_threads(threads: int | None) -> None:
    """``--threads`` wins; otherwise torch follows OMP_NUM_THREADS (or its own default)."""
    if threads is not None:
        torch.set_num_threads(threads)
    elif os.environ.get("OMP_NUM_THREADS", "").isdigit():
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def with_iterations(cfg: ExperimentConfig, iterations: int | None) -> ExperimentConfig:
    """A copy of cfg with ``training.n_iterations`` overridden when ``iterations`` is given."""
    if iterations is None:
        return cfg
    if iterations < 1:
        raise ConfigError(f"--iterations: must be >= 1, got {iterations}")
    out = cfg.model_copy(deep=True)
    out.training.n_iterations = iterations
    return out


def one_line(err: BaseException) -> str:
    """The exception as one line: messages that already name their cause verbatim, others prefixed by their type."""
    text = " ".join(str(err).split()) or "no message"
    if isinstance(err, (TrainingFailed, Terminated, SimulatorError)):
        return text
    return f"{type(err).__name__}: {text}"[:500]
