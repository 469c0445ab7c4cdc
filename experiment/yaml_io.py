"""YAML in and out: strict safe loading, and comment-preserving round trips for slot configs.

YAML 1.2 (ruamel) reads ``6e-7`` as a float, unlike YAML 1.1 (PyYAML). Anchors, aliases, custom
tags, duplicate keys and oversized documents are refused: configs come from an LLM and must stay plain
data. Every refusal is one line, ``SOURCE: line N: key 'a.b': problem`` (the key when one is known), never
the library's multi-line dump: duplicate key / duplicate section (a repeated top-level key), bad indentation,
tab character, anchors, aliases, tags.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
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


_KEY_LINE = re.compile(r"""^(?P<indent>[ \t]*)(?:-[ \t]+)*(?P<key>'[^']*'|"[^"]*"|[^\s#:'"\-][^:#]*?)[ \t]*:(?:\s|$)""")
_ONE_LINE_PROBLEMS = (  # the library's problem text -> our words
    ("found character '\\t'", "tab character (indent with spaces)"),
    ("mapping values are not allowed", "bad indentation (or a missing space after ':')"),
    ("expected <block end>", "bad indentation"),
    ("did not find expected key", "bad indentation"),
    ("could not find expected ':'", "bad indentation (or a key without ':')"),
    ("found undefined alias", "aliases are not allowed"),
    ("found duplicate key", "duplicate key"),
)


class YamlError(ValueError):
    """A YAML text is malformed or uses a forbidden feature; one line naming the source."""


def _where(source: str, line: int, key: str) -> str:
    return f"{source}: line {line}: key '{key}'" if key else f"{source}: line {line}"


def _check_plain(node: Node, source: str, seen: set[int], key: str = "") -> None:
    where = _where(source, node.start_mark.line + 1, key)
    if id(node) in seen:
        raise YamlError(f"{where}: aliases are not allowed")
    seen.add(id(node))
    if getattr(node, "anchor", None):
        raise YamlError(f"{where}: anchors are not allowed")
    if node.tag not in _PLAIN_TAGS:
        raise YamlError(f"{where}: tag {node.tag!r} is not allowed")
    if node.tag == "tag:yaml.org,2002:int" and len(node.value) > MAX_INT_CHARS:
        raise YamlError(f"{where}: integer longer than {MAX_INT_CHARS} characters")
    if isinstance(node, MappingNode):
        names: set[str] = set()
        for k, value in node.value:
            if not isinstance(k, ScalarNode):
                raise YamlError(f"{source}: line {k.start_mark.line + 1}: mapping keys must be plain scalars")
            path = f"{key}.{k.value}" if key else str(k.value)
            if k.value in names:
                what = "duplicate key" if key else "duplicate section"
                raise YamlError(f"{_where(source, k.start_mark.line + 1, path)}: {what}")
            names.add(k.value)
            _check_plain(k, source, seen, path)
            _check_plain(value, source, seen, path)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            _check_plain(item, source, seen, f"{key}[{i}]")


def key_path_at(text: str, line: int) -> str:
    """The dotted key of 0-based ``line`` (or of the nearest key line above it), from indentation alone:
    the best name for a place in a document the parser could not read."""
    lines = text.splitlines()
    path: list[str] = []
    indent: int | None = None
    for i in range(min(line, len(lines) - 1), -1, -1):
        m = _KEY_LINE.match(lines[i])
        if m is None:
            continue
        width = len(m.group("indent").expandtabs(1))
        if indent is None or width < indent:
            path.insert(0, m.group("key").strip("'\""))
            indent = width
            if width == 0:
                break
    return ".".join(path)


def one_line_error(err: YAMLError, text: str, source: str) -> str:
    """A library error as one line: source, line, key and the problem in our words (no context, no link)."""
    problem = " ".join(str(getattr(err, "problem", None) or err).split())
    mark = getattr(err, "problem_mark", None) if isinstance(err, MarkedYAMLError) else None
    words = next((ours for theirs, ours in _ONE_LINE_PROBLEMS if theirs in problem), None)
    if mark is None:
        return f"{source}: malformed YAML: {words or problem[:200]}"
    key = key_path_at(text, mark.line)
    if words == "duplicate key" and "." not in key:
        words = "duplicate section"
    return f"{_where(source, mark.line + 1, key)}: {words or 'malformed YAML: ' + problem[:200]}"


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
        raise YamlError(one_line_error(err, text, source)) from None
    if len(nodes) > 1:
        raise YamlError(f"{source}: exactly one YAML document expected, got {len(nodes)}")
    if nodes and nodes[0] is not None:
        _check_plain(nodes[0], source, set())


def load_yaml_text(text: str, source: str = "<yaml>") -> Any:
    """Parse one plain YAML document into dicts, lists and scalars."""
    _compose_checked(text, source)
    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as err:  # compose caught syntax errors; a constructor may still refuse a value
        raise YamlError(one_line_error(err, text, source)) from None
    except ValueError as err:
        raise YamlError(f"{source}: malformed YAML: {' '.join(str(err).split())[:200]}") from None


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


def write_yaml_roundtrip(path: str | Path, data: Any) -> None:
    atomic_write_text(path, roundtrip_dump(data))
