"""The reply contract: parse an LLM batch reply and check it against the controller's records.

A facade over ``agent.reply_parse`` (text -> pydantic records, never raises) and
``agent.reply_check`` (records + ReplyContext -> every protocol violation, and the planned slots).
"""

from __future__ import annotations

from agent.protocol import entry_status as classify
from agent.reply_check import (
    PlannedSlot,
    ReplyContext,
    check_reply,
    expected_mutation,
    resolve_proposals,
    validate_reply,
)
from agent.reply_parse import (
    CONTROLLER_SECTIONS,
    LLM_SECTIONS,
    STRATEGIES,
    ConfigProposal,
    IterEntry,
    MutationClaim,
    Printed,
    Reply,
    ReplyRejected,
    TrajectoryClaim,
    VarianceClaim,
    parse_reply,
)

__all__ = [
    "CONTROLLER_SECTIONS",
    "LLM_SECTIONS",
    "STRATEGIES",
    "ConfigProposal",
    "IterEntry",
    "MutationClaim",
    "PlannedSlot",
    "Printed",
    "Reply",
    "ReplyContext",
    "ReplyRejected",
    "TrajectoryClaim",
    "VarianceClaim",
    "check_reply",
    "classify",
    "expected_mutation",
    "parse_reply",
    "resolve_proposals",
    "validate_reply",
]
