"""YAML faults in proposed configs and base configs: only plain, small, shallow, finite data gets through.

Anchors, aliases, merge keys and tags are refused (safe loading only, no object construction), as are
huge or deeply nested documents, several documents, duplicate keys and non-finite numbers. Every
refusal is one line naming the source, the line and (when there is one) the key; none is an exception
escaping the parser, none the library's multi-line dump.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.config_policy import check_edit
from agent.reply import parse_reply, validate_reply
from agent.reply_parse import MAX_CONFIG_BLOCK_BYTES
from experiment.config import ConfigError, load_experiment
from experiment.yaml_io import MAX_INT_CHARS, MAX_YAML_BYTES, MAX_YAML_DEPTH, YamlError, load_yaml_text
from helpers.fault_run import batch1_context

pytestmark = pytest.mark.fault("yaml")

HEAD = '<config slot="0" parent="root" strategy="explore">\n'


def block_errors(body: str) -> list[str]:
    """Parse errors of one config block holding ``body``."""
    reply = parse_reply(f"{HEAD}{body}</config>")
    assert all("\n" not in e for e in reply.errors), reply.errors
    return reply.errors


def test_anchor_and_alias_reaching_a_blocked_field_are_refused() -> None:
    errors = block_errors("x: &s {seed: 5}\nsimulation: *s\n")
    assert errors == ["config slot 0: line 1: key 'x': anchors are not allowed"]


def test_alias_without_anchor_is_refused() -> None:
    assert block_errors("training: *undefined\n") == ["config slot 0: line 1: key 'training': aliases are not allowed"]


def test_merge_key_is_refused() -> None:
    errors = block_errors("training:\n  <<: {alternate_lr_W: 0.1}\n")
    assert errors == ["config slot 0: line 2: key 'training.<<': tag 'tag:yaml.org,2002:merge' is not allowed"]


def test_python_object_tag_is_refused_without_being_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    errors = block_errors(f'training: !!python/object/apply:os.system ["touch {marker}"]\n')
    assert len(errors) == 1 and "tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed" in errors[0]
    assert not marker.exists()


def test_local_tag_is_refused() -> None:
    assert "tag '!secret' is not allowed" in block_errors("training:\n  n_alternations: !secret 6\n")[0]


def test_billion_laughs_is_refused_at_the_first_anchor_in_milliseconds() -> None:
    lines = ['a0: &a0 ["lol"]'] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    t0 = time.monotonic()
    errors = block_errors("\n".join(lines) + "\n")
    assert errors == ["config slot 0: line 1: key 'a0': anchors are not allowed"]
    assert time.monotonic() - t0 < 1.0


def test_config_block_over_the_size_limit_is_refused_unparsed() -> None:
    body = "training:\n" + "".join(f"  k{i}: {i}\n" for i in range(MAX_CONFIG_BLOCK_BYTES // 8))
    size = len(body.encode())
    assert block_errors(body) == [
        f"config slot 0: config block of {size:,} bytes, over the limit of {MAX_CONFIG_BLOCK_BYTES:,}"
    ]


@pytest.mark.parametrize(
    "body",
    ["training: " + "[" * 5000 + "]" * 5000 + "\n", "training: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n"],
    ids=["flow-sequences", "flow-mappings"],
)
def test_deeply_nested_block_is_refused_without_recursion_error(body: str) -> None:
    assert block_errors(body) == [f"config slot 0: line 1: nesting deeper than {MAX_YAML_DEPTH} levels"]


def test_indented_nesting_past_the_depth_limit_is_refused() -> None:
    text = "".join("  " * i + f"k{i}:\n" for i in range(MAX_YAML_DEPTH + 2))
    with pytest.raises(YamlError, match=f"^src: line {MAX_YAML_DEPTH + 1}: nesting deeper than"):
        load_yaml_text(text, "src")


def test_several_documents_are_refused() -> None:
    assert block_errors("training: {}\n---\nsimulation: {seed: 1}\n") == [
        "config slot 0: exactly one YAML document expected, got 2"
    ]


def test_duplicate_key_is_refused() -> None:
    errors = block_errors("training:\n  n_alternations: 4\n  n_alternations: 64\n")
    assert errors == ["config slot 0: line 3: key 'training.n_alternations': duplicate key"]


def test_non_scalar_mapping_key_is_refused() -> None:
    assert block_errors("? [training, seed]\n: 1\n") == ["config slot 0: line 1: mapping keys must be plain scalars"]


@pytest.mark.parametrize("literal", ["9" * 5000, "-" + "1" * 65, "0x" + "f" * 70])
def test_integer_literal_past_the_length_limit_is_refused(literal: str) -> None:
    assert block_errors(f"training:\n  n_alternations: {literal}\n") == [
        f"config slot 0: line 2: key 'training.n_alternations': integer longer than {MAX_INT_CHARS} characters"
    ]


@pytest.mark.parametrize("literal", [".nan", ".NaN", ".inf", "-.inf", "1e999", "-1e999"])
def test_non_finite_float_is_refused_by_the_policy(literal: str) -> None:
    overlay = parse_reply(f"{HEAD}training:\n  alternate_lr_W: {literal}\n</config>").proposals[0].overlay
    errors = check_edit(batch1_context().base_trainable, overlay, "config slot 0")
    assert len(errors) == 1 and errors[0].startswith("config slot 0: training.alternate_lr_W: 6e-07 -> ")
    assert errors[0].endswith(("must be finite, got nan", "must be finite, got inf", "must be finite, got -inf"))


@pytest.mark.parametrize("literal", [".inf", "1e999", ".nan", "6.0", "'6'", "true"])
def test_non_integer_for_an_integer_field_is_refused(literal: str) -> None:
    text = f"{HEAD}training:\n  n_alternations: {literal}\n</config>"
    errors = validate_reply(parse_reply(text), batch1_context().model_copy(update={"baseline_batches": 0}))
    assert any("training.n_alternations: 4 -> " in e and "must be an integer" in e for e in errors), errors


def test_base_config_over_the_size_limit_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("dataset: x\ndescription: '" + "y" * MAX_YAML_BYTES + "'\n")
    with pytest.raises(YamlError) as info:
        load_experiment(path)
    assert str(info.value) == f"{path}: document larger than {MAX_YAML_BYTES} bytes"


def test_base_config_with_non_finite_number_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "nan.yaml"
    path.write_text("dataset: x\nsimulation:\n  delta_t: .nan\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert str(info.value).startswith(f"{path}: simulation.delta_t: ") and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            "training:\n  n_alternations: 4\n  n_alternations: 64\n",
            "line 3: key 'training.n_alternations': duplicate key",
        ),
        (
            "training:\n  n_alternations: 4\ntraining:\n  alternate_lr_W: 0.1\n",
            "line 3: key 'training': duplicate section",
        ),
        (
            "training:\n  n_alternations: 4\n    alternate_lr_W: 0.1\n",
            "line 3: key 'training.n_alternations.alternate_lr_W': bad indentation (or a missing space after ':')",
        ),
        (
            "training:\n    n_alternations: 4\n  alternate_lr_W: 0.1\n",
            "line 3: key 'training.alternate_lr_W': bad indentation",
        ),
        (
            "training:\n\tn_alternations: 4\n",
            "line 2: key 'training.n_alternations': tab character (indent with spaces)",
        ),
        ("training:\n  n_alternations: &n 4\n", "line 2: key 'training.n_alternations': anchors are not allowed"),
        (
            "training:\n  n_alternations: !secret 4\n",
            "line 2: key 'training.n_alternations': tag '!secret' is not allowed",
        ),
        ("training:\n  1: 4\n  01: 5\n", "line 3: key 'training.01': duplicate key"),
    ],
    ids=["duplicate-key", "duplicate-section", "indent-deeper", "indent-shallower", "tab", "anchor", "tag", "dup-int"],
)
def test_every_yaml_error_is_one_line_naming_the_slot_the_line_and_the_key(body: str, error: str) -> None:
    assert block_errors(body) == [f"config slot 0: {error}"]
