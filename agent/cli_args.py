"""Argument parsing shared by the ``flyvis-agent`` subcommands: one-line errors, checked value types, exit codes.

Every value is checked while the command line is parsed, so a bad one stops the command before it writes
anything: one line on stderr and exit 2 (``EXIT_BAD_INPUT``).
"""

from __future__ import annotations

import argparse
import math
import shlex
from typing import NoReturn

EXIT_OK, EXIT_DIFFERS, EXIT_BAD_INPUT, EXIT_PAUSED, EXIT_LLM, EXIT_IO, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130

RUN_EXIT_CODES: dict[int, str] = {
    EXIT_OK: "finished",
    EXIT_BAD_INPUT: "bad input (nothing was written; a slot record that --executor replay lacks mid-run: resumable)",
    EXIT_PAUSED: "paused (resumable with --resume)",
    EXIT_LLM: "LLM failure (resumable with --resume)",
    EXIT_IO: "I/O error (resumable with --resume; a run directory that cannot be created leaves nothing)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C; resumable with --resume)",
}
VIEW_EXIT_CODES: dict[int, str] = {EXIT_OK: "done", EXIT_BAD_INPUT: "bad input (not a run directory, unreadable run)"}
REBUILD_EXIT_CODES: dict[int, str] = {
    EXIT_OK: "every derived file matches the journal (or was restored with --write)",
    EXIT_DIFFERS: "some derived file differs from the journal",
    EXIT_BAD_INPUT: "bad input (not a run directory)",
}


def exit_codes_epilog(codes: dict[int, str]) -> str:
    """The ``--help`` epilog listing the exit codes, one per line."""
    return "exit codes:\n" + "\n".join(f"  {code:<4d}{meaning}" for code, meaning in codes.items())


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line on stderr (no usage block) and exit 2."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    """A whole number >= 1 (iterations, slots, tokens)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a budget in dollars)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number >= 0")
    return value


def command_line(text: str) -> list[str]:
    """A shell command line split into words (unbalanced quotes and empty commands refused)."""
    try:
        words = shlex.split(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None
    if not words:
        raise argparse.ArgumentTypeError("the command is empty")
    return words
