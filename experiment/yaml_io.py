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
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from experiment.atomic import atomic_write_text

MAX_YAML_BYTES = 256 * 1024
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
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                raise YamlError(f"{source}: line {key.start_mark.line + 1}: mapping keys must be plain scalars")
            _check_plain(key, source, seen)
            _check_plain(value, source, seen)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            _check_plain(item, source, seen)


def _compose_checked(text: str, source: str) -> None:
    if len(text.encode("utf-8", "replace")) > MAX_YAML_BYTES:
        raise YamlError(f"{source}: document larger than {MAX_YAML_BYTES} bytes")
    yaml = YAML(typ="safe", pure=True)
    try:
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
    except YAMLError as err:  # pragma: no cover - compose already caught syntax errors
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


def _roundtrip_yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.representer.add_representer(type(None), _represent_none)
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
