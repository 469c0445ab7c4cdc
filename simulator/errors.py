"""The simulator's single error type: one line naming the file or field and the rule."""

from __future__ import annotations


class SimulatorError(ValueError):
    """Bad simulator input or a corrupt dataset; the message is one line."""
