"""Where a trained flyvis network lives: a folder, or ``flyvis:<task>/<ensemble>/<model>`` in flyvis's results folder.

Path logic only (no torch, no flyvis import), so the controller can check a config's ground truth before it starts
anything and the simulator loads the same folder.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

FLYVIS_PREFIX = "flyvis:"
CHECKPOINT_FILE = "best_chkpt"


class NetworkNotFound(LookupError):
    """A ``flyvis:`` ground truth whose network is not on this machine; the message says how to get it."""


def checkpoint_file(directory: Path) -> Path | None:
    """The checkpoint the reference simulates: flyvis's ``init_network(checkpoint=0)``, the lowest-numbered
    ``chkpts/chkpt_*`` of the network folder; else the folder's ``best_chkpt``; None when it has neither."""
    numbered = sorted(
        (int(m.group(1)), p) for p in directory.glob("chkpts/chkpt_*") if (m := re.match(r"chkpt_(\d+)$", p.name))
    )
    if numbered:
        return numbered[0][1]
    best = directory / CHECKPOINT_FILE
    return best if best.is_file() else None


def flyvis_results_dir() -> Path | None:
    """flyvis's own results folder, located as flyvis does (``$FLYVIS_ROOT_DIR/results``, else ``data/results``
    beside the installed package) without importing flyvis (its import creates folders); None without flyvis."""
    root = os.environ.get("FLYVIS_ROOT_DIR")
    if root is None:
        spec = importlib.util.find_spec("flyvis")
        if spec is None or spec.origin is None:
            return None
        package = Path(spec.origin).parent
        root = str((package if package.parent.name == "site-packages" else package.parent) / "data")
    return Path(root).expanduser().absolute() / "results"


def find_network(spec: str) -> Path:
    """The network folder of a checkpoint ``ground_truth``: ``flyvis:<task>/<ensemble>/<model>`` (a network in
    flyvis's results folder, e.g. the reference's ``flyvis:flow/0000/000``) or a folder path.

    A ``flyvis:`` network that is not there raises a one-line NetworkNotFound that says how to get it.
    """
    if not spec.startswith(FLYVIS_PREFIX):
        return Path(spec).expanduser().resolve()
    name = spec.removeprefix(FLYVIS_PREFIX).strip("/")
    results = flyvis_results_dir()
    directory = None if results is None or not name else results / name
    if directory is None or not directory.is_dir() or checkpoint_file(directory) is None:
        where = directory or "flyvis's results folder (the flyvis package is not installed)"
        raise NetworkNotFound(
            f"simulation.ground_truth: {spec}: no trained network at {where}; get flyvis's pretrained networks with "
            "`flyvis download-pretrained` (FLYVIS_ROOT_DIR sets where they go) or set ground_truth to a checkpoint folder"
        )
    return directory
