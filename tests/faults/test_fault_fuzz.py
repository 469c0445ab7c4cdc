"""Fuzzing the numbers and ids of a valid reply: any token in any numeric position is rejected (or
accepted) with one-line messages, never an exception: no int() past the digit limit, no float overflow."""

from __future__ import annotations

import functools
import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config_policy import write_slot_config
from agent.llm.offline_policy import OfflinePlanner
from agent.reply import check_reply, parse_reply, validate_reply
from agent.reply_check import ReplyContext
from experiment.config import load_experiment
from helpers.fault_run import TINY, batch1_context

pytestmark = pytest.mark.fault("fuzz")

NASTY = st.sampled_from(
    [
        "²",
        "٣",
        "７",
        "9" * 5000,
        "99999999999",
        "1" * 40 + ".5",
        "1e999",
        "-1e999",
        "0e400",
        "1e-400",
        "1e99999999999999",
        "nan",
        "-inf",
        "+7",
        "0x1F",
        "1_000",
        "",
        "-0",
        "root",
        "../x",
        "\x00",
        "1e",
        ".",
    ]
)


@functools.cache
def valid_reply() -> tuple[ReplyContext, str, list[tuple[int, int]]]:
    """A context, its valid reply and the spans of every number in the reply."""
    ctx = batch1_context().model_copy(update={"baseline_batches": 0})
    text = OfflinePlanner(ctx).reply()
    return ctx, text, [m.span() for m in re.finditer(r"[0-9][0-9.eE+-]*", text)]


@settings(max_examples=int(os.environ.get("FAULT_FUZZ_EXAMPLES", "300")), deadline=None)
@given(data=st.data())
def test_any_token_in_any_number_position_is_handled_cleanly(data: st.DataObject) -> None:
    ctx, text, numbers = valid_reply()
    picks = data.draw(st.lists(st.sampled_from(numbers), min_size=1, max_size=4, unique=True))
    for start, end in sorted(picks, reverse=True):
        token = data.draw(st.one_of(NASTY, st.text(max_size=6)))
        text = text[:start] + token + text[end:]
    errors = validate_reply(parse_reply(text), ctx)
    assert isinstance(errors, list) and all(isinstance(e, str) and e and "\n" not in e for e in errors)


@settings(max_examples=int(os.environ.get("FAULT_FUZZ_EXAMPLES", "300")) // 8, deadline=None)
@given(value=st.floats(min_value=0.0, max_value=0.1))
def test_any_accepted_float_is_written_to_the_slot_config_exactly(tmp_path_factory, value: float) -> None:
    ctx, text, _ = valid_reply()
    body = f"training:\n  alternate_lr_W: {value!r}\n"
    text = re.sub(
        r'(<config slot="0"[^>]*>\n).*?(</config>)', lambda m: m.group(1) + body + m.group(2), text, flags=re.S
    )
    _, planned = check_reply(text, ctx)
    path = tmp_path_factory.mktemp("cfg") / "slot.yaml"
    written = write_slot_config(TINY.read_text(), "flyvis_tiny", 0, 5, planned[0].trainable, path)
    assert written.training.alternate_lr_W == value
    assert load_experiment(path).training.alternate_lr_W == value
