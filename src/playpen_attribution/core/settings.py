"""The config schema is the one home of every default (issue 24).

The settings dataclasses (`LoraSettings`, `TrainSettings`, `AttributionSettings`, ...)
carry no defaults: each field names its config key, and `from_config` builds one from a
validated config, where Snakemake's `validate` has filled in the schema's defaults. Tests
and benchmarks start from `schema_defaults()` (or `config_from_files`) and say what they
change, so a default can never drift between the schema and the code.

A field's key is `<CONFIG_SECTION>.<field name>` unless its metadata says otherwise:
`field(metadata={"config": "compute.sparse_logits"})` (a key elsewhere) or
`{"config": None}` (no config key: the caller gives it).
"""

from __future__ import annotations

import dataclasses
from copy import deepcopy
from functools import cache
from pathlib import Path

# The workflow's schema, beside the package in the repository (src/ and workflow/).
SCHEMA_PATH = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"


def config_key(cls, f: dataclasses.Field) -> str | None:
    """The dotted config key of a settings field (None: not a config setting)."""
    if "config" in f.metadata:
        return f.metadata["config"]
    section = getattr(cls, "CONFIG_SECTION", None)
    return f"{section}.{f.name}" if section else f.name


def lookup(config: dict, key: str):
    """`config["a"]["b"]` for key "a.b"; KeyError naming the whole key if absent."""
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"config key {key} is not set (validate the config against the schema)")
        node = node[part]
    return node


def from_config(cls, config: dict, **given):
    """An instance of settings dataclass `cls`: `given` values first, the rest from the
    (validated) config by each field's key."""
    unknown = set(given) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {sorted(unknown)}")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in given:
            values[f.name] = given[f.name]
            continue
        key = config_key(cls, f)
        if key is None:
            raise TypeError(f"{cls.__name__}.{f.name} is not a config setting: give it")
        values[f.name] = deepcopy(lookup(config, key))
    return cls(**values)


def from_params(cls, section, absent=(), **given):
    """An instance of settings dataclass `cls` from a rule's params section (its keys are
    the field names), and `given` values. A rule's params hold only what its output
    depends on: the fields in `absent`, which it leaves out, are None; any other field
    missing is an error."""
    values = {name: None for name in absent} | dict(section) | given
    missing = {f.name for f in dataclasses.fields(cls)} - set(values)
    if missing:
        raise TypeError(f"{cls.__name__}: the rule's params lack {sorted(missing)}")
    return cls(**values)


@cache
def _schema() -> dict:
    import yaml

    return yaml.safe_load(SCHEMA_PATH.read_text())


def schema_node(key: str) -> dict:
    """The schema of a dotted key."""
    node = _schema()
    for part in key.split("."):
        node = node["properties"][part]
    return node


def has_default(key: str) -> bool:
    try:
        return "default" in schema_node(key)
    except KeyError:
        return False


def schema_defaults(schema: dict | None = None) -> dict:
    """Every default of the schema as a nested config (a fresh copy each call)."""
    node = _schema() if schema is None else schema
    out = {}
    for name, prop in node.get("properties", {}).items():
        if "properties" in prop:  # a section: its own default ({}) filled in key by key
            nested = overlay(prop.get("default", {}), schema_defaults(prop))
            if nested or "default" in prop:
                out[name] = nested
        elif "default" in prop:
            out[name] = deepcopy(prop["default"])
    return out


def overlay(base: dict, update: dict) -> dict:
    """Snakemake's merge of config files: dicts key by key, anything else replaced."""
    merged = deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = overlay(merged[key], value)
        else:
            merged[key] = deepcopy(value)
    return merged


def config_from_files(*paths) -> dict:
    """The schema's defaults overlaid by config files, in order (as `--configfile`)."""
    import yaml

    config = schema_defaults()
    for path in paths:
        config = overlay(config, yaml.safe_load(Path(path).read_text()) or {})
    return config
