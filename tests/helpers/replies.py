"""Reply-check helpers: every problem of a reply text, each a non-empty single line."""

from __future__ import annotations

from agent.profile import Profile
from agent.reply import ReplyContext, parse_reply, validate_reply
from experiment.exploration import SlotResult, block_of

N_SLOTS, N_ITER_BLOCK = 4, 12


def errors_of(text: str, ctx: ReplyContext) -> list[str]:
    """The reply check's errors for ``text``; asserts each is one non-empty line, as the re-ask shows them."""
    errors = validate_reply(parse_reply(text), ctx)
    assert all(isinstance(e, str) and e and "\n" not in e for e in errors), errors
    return errors


def policy_context(
    batch: int,
    results: list[SlotResult],
    n_batches: int,
    base: dict,
    baseline: int,
    profile: Profile | None = None,
) -> ReplyContext:
    """What the controller hands a policy after ``batch`` (0: PARALLEL START) of a run of ``n_batches`` batches
    of N_SLOTS slots in blocks of N_ITER_BLOCK iterations."""
    first = batch * N_SLOTS + 1
    nxt = list(range(first, first + N_SLOTS)) if batch < n_batches else []
    return ReplyContext(
        is_start=batch == 0,
        batch_results=[r for r in results if r.batch == batch],
        all_results=results,
        next_iterations=nxt,
        next_starts_block=bool(nxt) and (nxt[0] - 1) % N_ITER_BLOCK == 0,
        block=block_of((batch - 1) * N_SLOTS + 1, N_ITER_BLOCK) if batch else 1,
        base_trainable=base,
        n_iter_block=N_ITER_BLOCK,
        baseline_batches=baseline,
        time_limit_min=5.0,
        profile=profile,
    )
