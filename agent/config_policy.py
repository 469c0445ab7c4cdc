"""What the LLM may change in a slot config, how an edit is applied, and how slot config files are written.

The LLM proposes YAML overlays relative to a parent config. Only ``training:`` and ``graph_model:`` keys
that the schema knows may change; the data routing, the simulation and the seeds belong to the controller, and
the exploration's profile locks its own keys (the alternating profile: the trainer switch and the active-phase
learning rates) and adds its ranges. Every violation is reported, so one
re-ask can fix them all. Trainable configs are kept in one normal form (schema-validated, all fields,
seeds excluded) so that config identity never depends on how a number was typed.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from ruamel.yaml.comments import CommentedMap

from agent.profile import Profile
from agent.protocol import BLOCKED_TOP, COUPLED, GROWTH_KEYS, blocked_keys, extra_ranges, format_value
from experiment.atomic import atomic_write_text
from experiment.config import (
    ExperimentConfig,
    GraphModelConfig,
    SimulationConfig,
    TrainingConfig,
    exploration_overrides,
    parse_experiment,
)
from experiment.exploration import ROOT, Parent, Seeds
from experiment.yaml_io import ExactFloat, load_yaml_text, roundtrip_dump, roundtrip_load

Trainable = dict[str, dict[str, Any]]

SECTIONS: dict[str, type[BaseModel]] = {"training": TrainingConfig, "graph_model": GraphModelConfig}


class EditRejected(ValueError):
    """An overlay breaks the config policy; ``errors`` holds one self-contained line per violation."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class Change(BaseModel):
    """One changed trainable value between a parent and a child config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str  # dotted: "training.n_alternations"
    old: Any
    new: Any

    @property
    def name(self) -> str:
        """The bare key as written in Mutation lines."""
        return self.key.split(".", 1)[1]

    def text(self) -> str:
        return f"{self.name}: {format_value(self.old)} -> {format_value(self.new)}"


# ---------------------------------------------------------------------------------------------- values


def is_number(value: Any) -> bool:
    """A real int or float (bool is not a number)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def same_value(a: Any, b: Any) -> bool:
    """Config-value equality: numbers compare numerically (750 == 750.0); bools only equal bools."""
    if is_number(a) and is_number(b):
        return a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def _key_order(key: str) -> tuple[int, int, str]:
    section, _, name = key.partition(".")
    sections = list(SECTIONS)
    s = sections.index(section) if section in sections else len(sections)
    fields = list(SECTIONS[section].model_fields) if section in SECTIONS else []
    f = fields.index(name) if name in fields else len(fields)
    return s, f, name


# ---------------------------------------------------------------------------------------------- trainable


def normalize_trainable(trainable: dict[str, Any], source: str = "<trainable>") -> Trainable:
    """Schema-validated ``training:`` + ``graph_model:`` with every field, seeds excluded.

    Raises EditRejected (one line per schema violation) when a section does not validate.
    """
    out: Trainable = {}
    errors: list[str] = []
    for section, model in SECTIONS.items():
        data = trainable.get(section) or {}
        if not isinstance(data, dict):
            errors.append(f"{source}: {section}: must be a mapping, got {_describe(data)}")
            continue
        try:
            dumped = model.model_validate(dict(data)).model_dump()
        except ValidationError as err:
            errors.extend(_error_lines(err, f"{source}: {section}"))
            continue
        dumped.pop("seed", None)
        out[section] = dumped
    if errors:
        raise EditRejected(errors)
    return out


def _error_lines(err: ValidationError, prefix: str) -> list[str]:
    """``prefix.field: rule`` per schema violation (model-level rules name the section itself)."""
    lines = []
    for e in err.errors():
        path = "".join(f".{p}" for p in e["loc"])
        lines.append(f"{prefix}{path}: {e['msg'].removeprefix('Value error, ')}")
    return lines


def base_trainable(config: ExperimentConfig | dict[str, Any]) -> Trainable:
    """The normalised trainable part of a base config (the ``root`` of every block's tree)."""
    if isinstance(config, dict):
        config = parse_experiment(config)
    return normalize_trainable(config.model_dump(include=set(SECTIONS)))


def diff_trainable(parent: Trainable, child: Trainable) -> list[Change]:
    """Every trainable value that differs, ``training.`` then ``graph_model.`` keys in schema order."""
    changes = []
    for section in sorted(set(parent) | set(child), key=lambda s: _key_order(f"{s}.")[0]):
        p, c = parent.get(section) or {}, child.get(section) or {}
        for name in set(p) | set(c):
            if name == "seed":
                continue
            old, new = p.get(name), c.get(name)
            if not same_value(old, new):
                changes.append(Change(key=f"{section}.{name}", old=old, new=new))
    return sorted(changes, key=lambda ch: _key_order(ch.key))


def replicate_mutation(node: int) -> str:
    return f"[none] — robustness re-run of Node {node}"


BASELINE_MUTATION = "[none] — baseline defaults"


def format_mutation(
    parent: Trainable, child: Trainable, *, parent_id: Parent = ROOT, replicate_of: int | None = None
) -> str:
    """The Mutation-line value of a node: its changes from the parent, or the replicate/baseline form."""
    if replicate_of is not None:
        return replicate_mutation(replicate_of)
    changes = diff_trainable(parent, child)
    if changes:
        return "; ".join(ch.text() for ch in changes)
    return BASELINE_MUTATION if parent_id == ROOT else replicate_mutation(int(parent_id))


# ---------------------------------------------------------------------------------------------- checks


def _leaves(prefix: str, value: Any) -> list[tuple[str, Any]]:
    """Nested mapping -> dotted leaf paths (used to name every field a blocked section edit reaches)."""
    if isinstance(value, dict) and value:
        return [pair for k, v in value.items() for pair in _leaves(f"{prefix}.{k}", v)]
    return [(prefix, value)]


def _flatten(overlay: Any, source: str) -> tuple[list[tuple[str, Any]], list[str]]:
    """Overlay -> (dotted key, value) pairs. Dotted keys are kept whole; bad shapes become errors."""
    if overlay is None:
        return [], []
    if not isinstance(overlay, dict):
        return [], [f"{source}: <root>: must be a mapping of sections, got {_describe(overlay)}"]
    pairs: list[tuple[str, Any]] = []
    errors: list[str] = []
    for top, value in overlay.items():
        if not isinstance(top, str):
            errors.append(f"{source}: {top!r}: keys must be strings")
        elif top in SECTIONS and value is None:
            continue  # an empty section changes nothing
        elif top in SECTIONS and isinstance(value, dict):
            for name, leaf in value.items():
                if isinstance(name, str):
                    pairs.append((f"{top}.{name}", leaf))
                else:
                    errors.append(f"{source}: {top}.{name!r}: keys must be strings")
        elif top in SECTIONS:
            errors.append(f"{source}: {top}: must be a mapping of keys, got {_describe(value)}")
        elif top in BLOCKED_TOP:
            pairs.extend(_leaves(top, value))
        else:
            pairs.append((top, value))
    return pairs, errors


def _type_error(key: str, value: Any) -> str | None:
    """Strict type rule of a schema field: ints are ints, floats are real numbers, bools are bools."""
    section, name = key.split(".", 1)
    field = SECTIONS[section].model_fields[name]
    ann = field.annotation
    if ann is bool:
        return None if isinstance(value, bool) else f"must be true or false, got {_describe(value)}"
    if ann is int or ann == (int | None):
        if value is None and ann is not int:
            return None
        return None if is_number(value) and isinstance(value, int) else f"must be an integer, got {_describe(value)}"
    if ann is float:
        if not is_number(value):
            return f"must be a number, got {_describe(value)}"
        return None if math.isfinite(value) else f"must be finite, got {value}"
    choices = getattr(ann, "__args__", ())
    if choices and all(isinstance(c, str) for c in choices):
        return None if value in choices else f"must be one of {', '.join(choices)}, got {_describe(value)}"
    return None


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return f"{type(value).__name__} {value!r}"


def _range_error(key: str, value: Any, profile: Profile | None = None) -> str | None:
    """Schema bounds (ge/gt/le/lt) plus the protocol's sane ranges."""
    if not is_number(value):
        return None
    section, name = key.split(".", 1)
    for meta in SECTIONS[section].model_fields[name].metadata:
        for attr, ok, word in (
            ("ge", lambda v, b: v >= b, ">="),
            ("gt", lambda v, b: v > b, ">"),
            ("le", lambda v, b: v <= b, "<="),
            ("lt", lambda v, b: v < b, "<"),
        ):
            bound = getattr(meta, attr, None)
            if bound is not None and not ok(value, bound):
                return f"must be {word} {format_value(bound)}"
    low, high = extra_ranges(profile).get(key, (-math.inf, math.inf))
    if not low <= value <= high:
        return f"must be in [{format_value(low)}, {format_value(high)}]"
    return None


def _blocked_reason(key: str, profile: Profile | None = None) -> str | None:
    head = key.split(".", 1)[0]
    if head in BLOCKED_TOP:
        return BLOCKED_TOP[head]
    return blocked_keys(profile).get(key)


def check_edit(parent: Trainable, overlay: Any, source: str, profile: Profile | None = None) -> list[str]:
    """Every violation of the config policy (under ``profile``; None: alternating) by ``overlay`` applied to
    ``parent`` (empty = allowed).

    Messages read ``{source}: {key}: [{old} -> {new}: ]{rule}``.
    """
    pairs, errors = _flatten(overlay, source)
    seen: set[str] = set()
    bad: set[str] = set()
    staged = {s: dict(parent.get(s) or {}) for s in SECTIONS}
    for key, value in pairs:
        if key in seen:
            errors.append(f"{source}: {key}: given twice")
            continue
        seen.add(key)
        pair_errors = _check_pair(parent, key, value, source, profile)
        errors.extend(pair_errors)
        bad.update([key] if pair_errors else [])
        section, _, name = key.partition(".")
        if section in SECTIONS and name in SECTIONS[section].model_fields:
            staged[section][name] = value
    if not bad & {"graph_model.embedding_dim", *(f"graph_model.{k}" for k in COUPLED)}:
        errors.extend(_coupled_errors(parent, staged, seen, source))
    if not errors:
        errors.extend(_schema_errors(staged, source))
    return errors


def _check_pair(parent: Trainable, key: str, value: Any, source: str, profile: Profile | None) -> list[str]:
    section, _, name = key.partition(".")
    reason = _blocked_reason(key, profile)
    old = (parent.get(section) or {}).get(name, _MISSING) if section in SECTIONS else _MISSING
    if reason is not None:
        if old is not _MISSING and same_value(old, value):
            return []  # restating the parent's value changes nothing
        shown = f"{format_value(old)} -> {_show(value)}: " if old is not _MISSING else ""
        return [f"{source}: {key}: {shown}blocked ({reason})"]
    if section not in SECTIONS:
        return [f"{source}: {key}: unknown key (only training: and graph_model: keys may change)"]
    if not name:
        return [f"{source}: {key}: must be a mapping of keys, got {_describe(value)}"]
    if name not in SECTIONS[section].model_fields:
        return [f"{source}: {key}: unknown key (not a field of the {section}: schema)"]
    rule = _type_error(key, value) or _range_error(key, value, profile)
    if rule is None:
        return []
    shown = f"{format_value(old)} -> {_show(value)}: " if old is not _MISSING else ""
    return [f"{source}: {key}: {shown}{rule}"]


_MISSING = object()


def _show(value: Any) -> str:
    if isinstance(value, dict | list):
        return _describe(value)
    return format_value(value)


def _coupled_errors(parent: Trainable, staged: Trainable, touched: set[str], source: str) -> list[str]:
    """input_size = 1 + embedding_dim and input_size_update = 3 + embedding_dim after the edit."""
    gm, old_gm = staged["graph_model"], parent.get("graph_model") or {}
    emb = gm.get("embedding_dim")
    if not is_number(emb):
        return []
    errors = []
    for key, offset in COUPLED.items():
        want, got = offset + emb, gm.get(key)
        if same_value(got, want):
            continue
        if "graph_model.embedding_dim" in touched:
            edit = f"graph_model.embedding_dim: {format_value(old_gm.get('embedding_dim'))} -> {format_value(emb)}"
            errors.append(
                f"{source}: {edit}: coupled graph_model.{key} must change too: "
                f"{key} = {offset} + embedding_dim = {want}, got {format_value(got)}"
            )
        else:
            edit = f"graph_model.{key}: {format_value(old_gm.get(key))} -> {_show(got)}"
            errors.append(f"{source}: {edit}: must equal {offset} + embedding_dim = {want}")
    return errors


def _schema_errors(staged: Trainable, source: str) -> list[str]:
    try:
        normalize_trainable(staged, source)
    except EditRejected as err:
        return err.errors
    return []


def overlay_between(parent: Trainable, child: Trainable) -> dict[str, dict[str, Any]]:
    """The overlay that ``apply_overlay`` turns ``parent`` into ``child`` with: each differing value by section."""
    overlay: dict[str, dict[str, Any]] = {}
    for ch in diff_trainable(parent, child):
        section, _, key = ch.key.partition(".")
        overlay.setdefault(section, {})[key] = ch.new
    return overlay


def apply_overlay(parent: Trainable, overlay: Any, source: str, profile: Profile | None = None) -> Trainable:
    """The child config: ``parent`` with the overlay applied, normalised. Raises EditRejected."""
    errors = check_edit(parent, overlay, source, profile)
    if errors:
        raise EditRejected(errors)
    pairs, _ = _flatten(overlay, source)
    child = {s: dict(parent.get(s) or {}) for s in SECTIONS}
    for key, value in pairs:
        section, name = key.split(".", 1)
        child[section][name] = value
    return normalize_trainable(child, source)


def growth_errors(parent: Trainable, child: Trainable, source: str) -> list[str]:
    """Increases of sizes that cost training time (forbidden for a child of an over-time slot)."""
    errors = []
    for key in GROWTH_KEYS:
        section, name = key.split(".", 1)
        old, new = (parent.get(section) or {}).get(name), (child.get(section) or {}).get(name)
        if is_number(old) and is_number(new) and new > old:
            errors.append(
                f"{source}: {key}: {format_value(old)} -> {format_value(new)}: "
                "the parent exceeded the time limit; do not grow sizes, layers or data_augmentation_loop"
            )
    return errors


# ---------------------------------------------------------------------------------------------- slot files


class SlotTemplate(BaseModel):
    """The run's base config: its verbatim text (comments kept), the validated config and its trainable."""

    model_config = ConfigDict(extra="forbid")

    source: str
    text: str
    config: ExperimentConfig
    trainable: Trainable


def load_slot_template(path: str | Path) -> SlotTemplate:
    """Read and validate the run's base config YAML."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read base config: {err}") from None
    config = parse_experiment(load_yaml_text(text, str(path)), str(path))
    overrides = exploration_overrides(config)
    if overrides:  # slots train with the claude: block's n_epochs / data_augmentation_loop (the reference's rule)
        data = roundtrip_load(text, str(path))
        if data.get("training") is None:
            data["training"] = CommentedMap()
        for key, value in overrides.items():
            _set_key(data["training"], key, value, TrainingConfig)
        text = roundtrip_dump(data)
        config = parse_experiment(load_yaml_text(text, str(path)), str(path))
    return SlotTemplate(source=str(path), text=text, config=config, trainable=base_trainable(config))


def slot_dataset(name: str, slot: int) -> str:
    """The per-slot data routing name ``{name}_{SS}``."""
    return f"{name}_{slot:02d}"


def _yaml_scalar(value: Any) -> Any:
    """A ruamel scalar whose text any YAML reader parses back to exactly ``value`` (floats carry a dot)."""
    return ExactFloat(value) if isinstance(value, float) else value


def _set_key(section: Any, name: str, value: Any, model: type[BaseModel]) -> None:
    """Set a key in a ruamel mapping, keeping the old scalar when equal and schema order when new."""
    if name in section:
        if not same_value(section[name], value):
            section[name] = _yaml_scalar(value)
        return
    fields = list(model.model_fields)
    before = [k for k in fields[: fields.index(name)] if k in section]
    keys = list(section.keys())
    pos = keys.index(before[-1]) + 1 if before else 0
    section.insert(pos, name, _yaml_scalar(value))
    if pos == len(keys) and keys:
        _move_trailing_lines(section, keys[-1], name)


def _move_trailing_lines(section: Any, old: str, new: str) -> None:
    """Blank lines and comments after the old last key move below the appended key (EOL comment stays)."""
    post = section.ca.items.get(old)
    token = post[2] if post is not None and len(post) > 2 else None
    if token is None:
        return
    eol, _, rest = token.value.partition("\n") if token.value.startswith("#") else ("", "", token.value[1:])
    moved = copy.copy(token)
    moved.value = "\n" + rest
    section.ca.items[new] = [None, None, moved, None]
    if eol:
        token.value = eol + "\n"
    else:
        post[2] = None


def render_slot_config(base_yaml_text: str, name: str, slot: int, iteration: int, trainable: Trainable) -> str:
    """The slot's config text: the base config with comments and key order kept, the slot's dataset,
    the controller's seeds and the trainable values applied in place."""
    data = roundtrip_load(base_yaml_text, "<base config>")
    seeds = Seeds.for_slot(iteration, slot)
    data["dataset"] = slot_dataset(name, slot)
    for section_name, model, seed in (
        ("simulation", SimulationConfig, seeds.simulation),
        ("training", TrainingConfig, seeds.training),
    ):
        if data.get(section_name) is None:
            data[section_name] = CommentedMap()
        _set_key(data[section_name], "seed", seed, model)
    defaults = {s: m().model_dump() for s, m in SECTIONS.items()}
    for section_name, model in SECTIONS.items():
        section = data.get(section_name) or {}
        updates = {
            k: v
            for k, v in (trainable.get(section_name) or {}).items()
            if k != "seed" and (k in section or not same_value(defaults[section_name].get(k), v))
        }  # an absent key already means the default
        if updates and data.get(section_name) is None:
            data[section_name] = CommentedMap()
        for key, value in updates.items():
            _set_key(data[section_name], key, value, model)
    return roundtrip_dump(data)


def write_slot_config(
    base_yaml_text: str, name: str, slot: int, iteration: int, trainable: Trainable, path: str | Path
) -> ExperimentConfig:
    """Write ``{name}_{SS}.yaml`` atomically after checking it parses back to exactly the intended config."""
    text = render_slot_config(base_yaml_text, name, slot, iteration, trainable)
    config = parse_experiment(load_yaml_text(text, str(path)), str(path))
    got = base_trainable(config)
    want = normalize_trainable(trainable, str(path))
    if diff_trainable(want, got):
        changes = "; ".join(ch.text() for ch in diff_trainable(want, got))
        raise ValueError(f"{path}: written config differs from the intended one: {changes}")
    atomic_write_text(path, text)
    return config
