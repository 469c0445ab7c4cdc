"""Slot command for the end-to-end test: the real ``trainer.slot``, except that the iterations listed
in ``CRASH_ITERATIONS`` die by SIGKILL before training (a crashed trainer, as the OOM killer does it)."""

from __future__ import annotations

import os
import signal
import sys

from experiment.config import load_experiment


def main() -> None:
    args = sys.argv[1:]
    config = load_experiment(args[args.index("--config") + 1])
    iteration = config.simulation.seed // 1000
    if str(iteration) in os.environ.get("CRASH_ITERATIONS", "").split(","):
        os.kill(os.getpid(), signal.SIGKILL)
    os.execv(sys.executable, [sys.executable, "-m", "trainer.slot", *args])


if __name__ == "__main__":
    main()
