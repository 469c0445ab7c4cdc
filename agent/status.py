"""``python -m agent.status``: the older entry point of ``flyvis-agent status`` (the view lives in agent.views.status)."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from agent.views.status import main

    sys.exit(main(prog="python -m agent.status"))
