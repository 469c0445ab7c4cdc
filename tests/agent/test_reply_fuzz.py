"""Fuzzing: parse and validate accept or reject any text with messages, and never crash."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.reply import parse_reply, validate_reply

pytestmark = pytest.mark.fault("fuzz")

FUZZ = settings(
    max_examples=int(os.environ.get("RULES_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
TOKENS = st.sampled_from(
    [
        "<entries>",
        "</entries>",
        "<memory>",
        "</memory>",
        '<config slot="0" parent="root" strategy="explore">',
        "</config>",
        "## Iter 13: ",
        "### Current Block",
        "Node: id=13, parent=",
        "Metrics: connectivity_R2=",
        "Mutation: ",
        "Next: parent=",
        "R2 trajectory: peak=",
        "Variance update: C1 now has ",
        "training:\n  ",
        "&a",
        "*a",
        "!!python/object",
        "nan",
        "1e999",
        "-0",
        "root",
        "\n",
        " -> ",
        "; ",
        "=",
        ",",
        "%",
        "—",
    ]
)


def _check(text, ctx):
    reply = parse_reply(text)
    errors = validate_reply(reply, ctx)
    assert isinstance(errors, list) and all(isinstance(e, str) and e for e in errors)
    return errors


@FUZZ
@given(text=st.text(max_size=400))
def test_random_text_never_crashes(make_ctx, text):
    assert _check(text, make_ctx())  # random text is never a valid reply to batch 4


@FUZZ
@given(pieces=st.lists(st.one_of(TOKENS, st.text(max_size=12)), max_size=40))
def test_protocol_shaped_noise_never_crashes(make_ctx, start_ctx, pieces):
    text = "".join(pieces)
    _check(text, make_ctx())
    _check(text, start_ctx)


@FUZZ
@given(data=st.data())
def test_mutated_valid_replies_never_crash(valid_reply, make_ctx, data):
    lines = valid_reply.splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(["drop", "dup", "swap", "replace", "insert"]))
        if op == "drop" and len(lines) > 1:
            lines.pop(i)
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = data.draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "replace":
            lines[i] = data.draw(st.one_of(TOKENS, st.text(max_size=30)))
        else:
            pos = data.draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:pos] + data.draw(st.one_of(TOKENS, st.text(max_size=5))) + lines[i][pos:]
    _check("\n".join(lines), make_ctx())


@FUZZ
@given(
    value=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(-(10**30), 10**30).map(str),
        st.sampled_from([".inf", ".nan", "true", "null", "[1, 2]", "{a: 1}", "'6e-7'", "0x1F", "1_000"]),
    ),
    key=st.sampled_from(["n_alternations", "alternate_lr_W", "alternate_vrest_ratio", "learning_rate_start", "seed"]),
)
def test_any_overlay_value_is_accepted_or_rejected_cleanly(valid_reply, make_ctx, value, key):
    text = valid_reply.replace("alternate_vrest_ratio: 0.3", f"{key}: {value}")
    _check(text, make_ctx())
