"""One slot job: generate the slot's data, train, test, write metrics, images, R2 log and status.

``python -m trainer.slot --config FILE --out DIR [--data-dir DIR] [--iterations N] [--device ...]
[--threads N]``. ``status.json`` goes running -> succeeded / failed (with a one-line reason); exit 0 on
success, 1 on failure. SIGTERM ends the slot as failed.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from pathlib import Path
from types import FrameType

import torch

from experiment.atomic import atomic_write_bytes, atomic_write_text
from experiment.config import ExperimentConfig, load_experiment
from experiment.records import ACTIVITY_PNG, SlotStatus, utc_now, write_status
from experiment.yaml_io import roundtrip_dump, roundtrip_load
from trainer.cli import Terminated, base_parser, one_line, parse, with_iterations
from trainer.run import train_and_evaluate
from trainer.train import resolve_device

CONFIG_COPY = "config.yaml"


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"terminated by signal {signum}")


def write_config_copy(config_path: Path, out: Path, iterations: int | None) -> None:
    """The config as trained (comments kept), with ``--iterations`` applied."""
    text = config_path.read_text(encoding="utf-8")
    if iterations is not None:
        data = roundtrip_load(text, str(config_path))
        data.setdefault("training", {})["n_iterations"] = iterations
        text = roundtrip_dump(data)
    atomic_write_text(out / CONFIG_COPY, text)


def generate_data(cfg: ExperimentConfig, data_dir: Path, device: str) -> Path:
    """The slot's dataset, simulated with ``simulation.seed`` (imports the simulator lazily)."""
    from simulator.generate import generate_dataset

    return generate_dataset(
        cfg.simulation,
        data_dir,
        seed=cfg.simulation.seed,
        device=None if device == "auto" else device,
        progress=sys.stderr.isatty(),
        overwrite=True,
    )


def run_slot(args: argparse.Namespace) -> SlotStatus:
    """Run the whole slot, updating ``status.json``; never raises for a training failure."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    status = SlotStatus(state="running", host=socket.gethostname(), pid=os.getpid(), started_at=utc_now())
    write_status(out, status)
    try:
        cfg = with_iterations(load_experiment(args.config), args.iterations)
        device = args.device or cfg.training.device
        dev = resolve_device(device)
        if dev.type == "cuda":
            status.gpu = torch.cuda.get_device_name(dev)
            write_status(out, status)
        write_config_copy(args.config, out, args.iterations)
        data_dir = generate_data(cfg, args.data_dir or out / "data", device)
        activity = Path(data_dir) / ACTIVITY_PNG
        if activity.exists():
            atomic_write_bytes(out / ACTIVITY_PNG, activity.read_bytes())
        ev, _ = train_and_evaluate(cfg, Path(data_dir), out, device=device)
        print(ev.metrics.as_lines(), end="", flush=True)
        status = status.model_copy(update={"state": "succeeded", "exit_code": 0, "ended_at": utc_now()})
    except Exception as err:  # every failure becomes a failed status with a one-line reason
        reason = one_line(err)
        print(f"slot failed: {reason}", file=sys.stderr, flush=True)
        status = status.model_copy(update={"state": "failed", "exit_code": 1, "reason": reason, "ended_at": utc_now()})
    write_status(out, status)
    return status


def parser() -> argparse.ArgumentParser:
    p = base_parser(
        "python -m trainer.slot",
        __doc__,
        config_help="the slot's experiment YAML",
        out_help="slot folder (slots/iter_NNN_slot_SS)",
    )
    p.add_argument("--data-dir", type=Path, default=None, help="where to generate the data (default OUT/data)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse(parser(), argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        status = run_slot(args)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0 if status.state == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
