"""Reply-check helpers: every problem of a reply text, each a non-empty single line."""

from __future__ import annotations

from agent.reply import ReplyContext, parse_reply, validate_reply


def errors_of(text: str, ctx: ReplyContext) -> list[str]:
    """The reply check's errors for ``text``; asserts each is one non-empty line, as the re-ask shows them."""
    errors = validate_reply(parse_reply(text), ctx)
    assert all(isinstance(e, str) and e and "\n" not in e for e in errors), errors
    return errors
