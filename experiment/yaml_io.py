"""YAML in and out: strict safe loading, and comment-preserving round trips for slot configs.

YAML 1.2 (ruamel) reads ``6e-7`` as a float, unlike YAML 1.1 (PyYAML). Anchors, aliases, custom
tags and oversized documents are refused: configs come from an LLM and must stay plain data.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import MappingEndEvent, MappingStartEvent, SequenceEndEvent, SequenceStartEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from experiment.atomic import atomic_write_text

MAX_YAML_BYTES = 256 * 1024
MAX_YAML_DEPTH = 32  # configs nest 4 levels; deep nesting only exhausts the recursive composer
MAX_INT_CHARS = 64  # longer integer literals are refused (int() refuses > 4300 digits with a ValueError)
_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}


class YamlError(ValueError):
    """A YAML text is malformed or uses a forbidden feature; one line naming the source."""


def _check_plain(node: Node, source: str, seen: set[int]) -> None:
    if id(node) in seen:
        raise YamlError(f"{source}: line {node.start_mark.line + 1}: aliases are not allowed")
    seen.add(id(node))
    if getattr(node, "anchor", None):
        raise YamlError(f"{source}: line {node.start_mark.line + 1}: anchors are not allowed")
    if node.tag not in _PLAIN_TAGS:
        raise YamlError(f"{source}: line {node.start_mark.line + 1}: tag {node.tag!r} is not allowed")
    if node.tag == "tag:yaml.org,2002:int" and len(node.value) > MAX_INT_CHARS:
        raise YamlError(f"{source}: line {node.start_mark.line + 1}: integer longer than {MAX_INT_CHARS} characters")
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                raise YamlError(f"{source}: line {key.start_mark.line + 1}: mapping keys must be plain scalars")
            _check_plain(key, source, seen)
            _check_plain(value, source, seen)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            _check_plain(item, source, seen)


def _check_depth(text: str, source: str) -> None:
    """Refuse nesting deeper than MAX_YAML_DEPTH from the (iterative) event stream, before composing."""
    depth = 0
    for event in YAML(typ="safe", pure=True).parse(text):
        if isinstance(event, MappingStartEvent | SequenceStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark is not None else "?"
                raise YamlError(f"{source}: line {line}: nesting deeper than {MAX_YAML_DEPTH} levels")
        elif isinstance(event, MappingEndEvent | SequenceEndEvent):
            depth -= 1


def _compose_checked(text: str, source: str) -> None:
    if len(text.encode("utf-8", "replace")) > MAX_YAML_BYTES:
        raise YamlError(f"{source}: document larger than {MAX_YAML_BYTES} bytes")
    yaml = YAML(typ="safe", pure=True)
    try:
        _check_depth(text, source)
        nodes = list(yaml.compose_all(text))
    except YAMLError as err:
        raise YamlError(f"{source}: malformed YAML: {' '.join(str(err).split())}") from None
    if len(nodes) > 1:
        raise YamlError(f"{source}: exactly one YAML document expected, got {len(nodes)}")
    if nodes and nodes[0] is not None:
        _check_plain(nodes[0], source, set())


def load_yaml_text(text: str, source: str = "<yaml>") -> Any:
    """Parse one plain YAML document into dicts, lists and scalars."""
    _compose_checked(text, source)
    try:
        return YAML(typ="safe", pure=True).load(text)
    except (YAMLError, ValueError) as err:  # compose caught syntax errors; a constructor may still refuse a value
        raise YamlError(f"{source}: malformed YAML: {' '.join(str(err).split())}") from None


def load_yaml_file(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise YamlError(f"{path}: cannot read: {err}") from None
    return load_yaml_text(text, str(path))


def _represent_none(representer: Any, _data: None) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


class ExactFloat(float):
    """A float the round-trip dumper writes as :func:`float_text` (ruamel's own float writer can drop the
    last digit of a 17-digit value, so a written config would differ from the intended one)."""


def float_text(value: float) -> str:
    """Shortest text that reads back to exactly ``value`` in YAML 1.2 and 1.1 (a dot, a signed exponent)."""
    if value != value or value in (float("inf"), float("-inf")):
        return ".nan" if value != value else (".inf" if value > 0 else "-.inf")
    text = repr(float(value))
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text


def _represent_exact_float(representer: Any, data: ExactFloat) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:float", float_text(data))


def _roundtrip_yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.representer.add_representer(type(None), _represent_none)
    yaml.representer.add_representer(ExactFloat, _represent_exact_float)
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def roundtrip_load(text: str, source: str = "<yaml>") -> Any:
    """Load keeping comments and key order (for editing slot configs)."""
    _compose_checked(text, source)
    return _roundtrip_yaml().load(text)


def roundtrip_dump(data: Any) -> str:
    buf = io.StringIO()
    _roundtrip_yaml().dump(data, buf)
    return buf.getvalue()


def dump_plain(data: Any) -> str:
    """Dump plain data as block-style YAML."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


def write_yaml_roundtrip(path: str | Path, data: Any) -> None:
    atomic_write_text(path, roundtrip_dump(data))
