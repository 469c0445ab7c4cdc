"""``python -m agent.report``: the older entry point of ``flyvis-agent report`` (the view lives in agent.views.report)."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from agent.views.report import main

    sys.exit(main(prog="python -m agent.report"))
