"""``flyvis-agent``: the console script; one subcommand per ``python -m`` entry point of the agent.

flyvis-agent run --instructions FILE [...]   start or resume a run (python -m agent.run)
flyvis-agent status RUN_DIR                  where a run stands (python -m agent.views.status)
flyvis-agent report RUN_DIR [--out FILE]     static HTML report (python -m agent.views.report)
flyvis-agent rebuild RUN_DIR [--write]       derived files checked against the journal (python -m agent.rebuild)
"""

from __future__ import annotations

import argparse
import importlib
import sys

from agent.cli_args import RUN_EXIT_CODES, OneLineParser, exit_codes_epilog

SUBCOMMANDS: dict[str, str] = {
    "run": "start or resume an LLM-steered exploration",
    "status": "where a run stands",
    "report": "static HTML report of a run",
    "rebuild": "check (or restore) a run's derived files against its journal",
}
# Subcommand -> module with ``main(argv, prog)``; imported on use, so the script imports no layer it does not run.
MODULES: dict[str, str] = {
    "run": "agent.run",
    "status": "agent.views.status",
    "report": "agent.views.report",
    "rebuild": "agent.rebuild",
}


def build_parser() -> OneLineParser:
    p = OneLineParser(
        prog="flyvis-agent",
        description="flyvis-agent: LLM-steered exploration of GNN training on the FlyVis connectome.",
        epilog=exit_codes_epilog(RUN_EXIT_CODES) + "\n(`flyvis-agent COMMAND --help` lists each command's codes)",
    )
    p.add_argument("command", choices=tuple(SUBCOMMANDS), help="; ".join(f"{k}: {v}" for k, v in SUBCOMMANDS.items()))
    p.add_argument("args", nargs=argparse.REMAINDER, help="the command's arguments (see flyvis-agent COMMAND --help)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the subcommand's ``main`` with the rest of the command line."""
    args = build_parser().parse_args(argv)
    module = importlib.import_module(MODULES[args.command])
    return module.main(args.args, prog=f"flyvis-agent {args.command}")


if __name__ == "__main__":
    sys.exit(main())
