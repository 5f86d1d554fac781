"""One home for every default: the config schema (issue 24).

The settings dataclasses carry none, no package parameter named after a config key
restates its default, and the config files hold only what differs from the defaults.
"""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SCHEMA_DEFAULTS

from playpen_attribution.attribution.pipelines import PipelineSettings
from playpen_attribution.attribution.scoring import AttributionSettings, PreconditionerSettings
from playpen_attribution.core import settings as settings_module
from playpen_attribution.core.settings import (
    config_from_files,
    config_key,
    from_config,
    from_params,
    has_default,
    schema_node,
)
from playpen_attribution.sft.train import LoraSettings, TrainSettings
from playpen_attribution.words.generate import GenerateSettings

SETTINGS_CLASSES = [
    LoraSettings,
    TrainSettings,
    AttributionSettings,
    PreconditionerSettings,
    GenerateSettings,
    PipelineSettings,
]
# Keys of a section that are no field of its dataclass, and why.
NOT_FIELDS = {
    # which methods run and which is reported are the DAG's, read by the rules
    "attribution": {"methods", "report_method", "memory_budget_gb", "preconditioner", "trackstar", "trak"},
    # memory budgets are checks before a job starts (a resource), not settings of a result
    "attribution.preconditioner": {"memory_budget_gb"},
    # paths and templates: inputs of the rule, not settings of the word choice
    "generate": {"exclude_words", "templates"},
}
# Modules that read keys of clembench's game instances, not of our config: a
# `.get("max_turns", 3)` there is the game's own rule for an instance without the key.
GAME_MODULES = {"taboo.py", "clemgame"}

CODE_DIRS = [REPO / "src/playpen_attribution", REPO / "workflow/scripts", REPO / "benchmarks"]


def leaf_defaults(schema=None, prefix="") -> dict[str, object]:
    """Every schema key with a default: dotted key -> default."""
    node = yaml.safe_load(settings_module.SCHEMA_PATH.read_text()) if schema is None else schema
    out = {}
    for name, prop in node.get("properties", {}).items():
        key = f"{prefix}{name}"
        if "properties" in prop:
            out |= leaf_defaults(prop, f"{key}.")
        elif "default" in prop:
            out[key] = prop["default"]
    return out


LEAF_DEFAULTS = leaf_defaults()


def _defaults_by_name() -> dict[str, list]:
    by_name: dict[str, list] = {}
    for key, value in LEAF_DEFAULTS.items():
        by_name.setdefault(key.rsplit(".", 1)[-1], []).append(value)
    return by_name


def _literal(node):
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return dataclasses.MISSING
    return list(value) if isinstance(value, tuple) else value


def _nothing(value) -> bool:
    """None, an empty list or text: how code says "not given", not a setting's value."""
    return value is None or value == [] or value == ""


def restated_defaults(path: Path) -> list[str]:
    """Where a module writes a default of a config setting outside the schema: a parameter
    or dataclass field named after a config key with a default of its own, a
    `.get("key", value)`, and a `DEFAULT_*` constant equal to a schema default. A default
    that differs from the schema's is the worst case (it drifted), so any value counts;
    None or empty ("not given") does not."""
    by_name = set(_defaults_by_name())
    tree = ast.parse(path.read_text())
    found = []

    def check(name, value_node, where):
        value = _literal(value_node)
        if value is dataclasses.MISSING or name not in by_name or _nothing(value):
            return
        found.append(f"{path.name}:{where}: {name}={value!r}")

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            for arg, default in zip(positional[len(positional) - len(args.defaults) :], args.defaults):
                check(arg.arg, default, node.lineno)
            for arg, default in zip(args.kwonlyargs, args.kw_defaults):
                if default is not None:
                    check(arg.arg, default, node.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and len(node.args) == 2
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            check(node.args[0].value, node.args[1], node.lineno)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value:
                    check(item.target.id, item.value, item.lineno)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id.startswith("DEFAULT_"):
                    value = _literal(node.value)
                    if value is not dataclasses.MISSING and any(
                        not _nothing(value) and value == d for d in LEAF_DEFAULTS.values()
                    ):
                        found.append(f"{path.name}:{node.lineno}: {target.id}={value!r}")
    return found


def code_files():
    for directory in CODE_DIRS:
        for path in sorted(directory.rglob("*.py")):
            if not GAME_MODULES & {path.name, *path.relative_to(directory).parts[:-1]}:
                yield path


def test_no_code_restates_a_config_default():
    offenders = [line for path in code_files() for line in restated_defaults(path)]
    assert offenders == []


def test_the_check_finds_each_kind_of_restated_default(tmp_path):
    module = tmp_path / "restates.py"
    module.write_text(
        "from dataclasses import dataclass\n"
        "DEFAULT_DROP = ('aborted',)\n"
        "def topk(scores, k=10, *, aggregation='mean', revision=None, n=3):\n"
        "    return settings.get('temperature', 0.0)\n"
        "@dataclass\n"
        "class S:\n"
        "    damping_factor: float = 0.1\n"
    )
    found = sorted(line.split(": ", 1)[1] for line in restated_defaults(module))
    # aggregation='mean' differs from the schema's 'nearest': a drifted copy is found too;
    # revision=None ("not given") and n (no config key) are not defaults of a setting
    assert found == sorted(
        ["DEFAULT_DROP=['aborted']", "k=10", "aggregation='mean'", "temperature=0.0", "damping_factor=0.1"]
    )


@pytest.mark.parametrize("cls", SETTINGS_CLASSES, ids=lambda c: c.__name__)
def test_settings_dataclasses_have_no_defaults_and_name_schema_keys(cls):
    for f in dataclasses.fields(cls):
        assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING, f.name
        key = config_key(cls, f)
        if key is None:
            continue
        if cls is PipelineSettings:  # its section is the method's: trackstar or trak
            assert (
                has_default(f"attribution.trackstar.{key}")
                or has_default(f"attribution.trak.{key}")
                or (has_default(key))
            ), key
        else:
            assert has_default(key), f"{cls.__name__}.{f.name}: {key} has no schema default"


@pytest.mark.parametrize("cls", [c for c in SETTINGS_CLASSES if c.CONFIG_SECTION], ids=lambda c: c.__name__)
def test_every_key_of_a_section_is_a_field_of_its_settings(cls):
    section = cls.CONFIG_SECTION
    keys = set(schema_node(section)["properties"]) - NOT_FIELDS.get(section, set())
    fields = {f.name for f in dataclasses.fields(cls) if config_key(cls, f) == f"{section}.{f.name}"}
    assert keys == fields


def test_pipeline_settings_cover_both_pipeline_sections():
    fields = {f.name for f in dataclasses.fields(PipelineSettings)} - {"method", "seed"}
    assert (
        set(schema_node("attribution.trackstar")["properties"])
        | set(schema_node("attribution.trak")["properties"])
        == fields
    )


def test_from_config_takes_the_config_and_names_a_missing_key():
    train = from_config(TrainSettings, SCHEMA_DEFAULTS, epochs=1)
    assert train.epochs == 1 and train.learning_rate == SCHEMA_DEFAULTS["train"]["learning_rate"]
    assert train.max_length == SCHEMA_DEFAULTS["tokenize"]["max_length"]
    assert train.sparse_logits is SCHEMA_DEFAULTS["compute"]["sparse_logits"]
    broken = SCHEMA_DEFAULTS | {"train": {k: v for k, v in SCHEMA_DEFAULTS["train"].items() if k != "epochs"}}
    with pytest.raises(KeyError, match="train.epochs"):
        from_config(TrainSettings, broken)
    with pytest.raises(TypeError, match="method"):
        from_config(PreconditionerSettings, SCHEMA_DEFAULTS)
    with pytest.raises(TypeError, match="no field"):
        from_config(LoraSettings, SCHEMA_DEFAULTS, rank=4)


def test_from_params_fills_only_the_fields_a_rule_leaves_out():
    section = {
        k: v
        for k, v in SCHEMA_DEFAULTS["attribution"].items()
        if k in AttributionSettings.__dataclass_fields__
    }
    given = {"nproc_per_node": 1, "sparse_logits": True}
    del section["unit_normalize"]
    settings = from_params(AttributionSettings, section, absent={"unit_normalize"}, **given)
    assert settings.unit_normalize is None and settings.projection_dim == section["projection_dim"]
    # a value the params do hold wins over `absent`
    kept = from_params(
        AttributionSettings, section | {"unit_normalize": True}, absent={"unit_normalize"}, **given
    )
    assert kept.unit_normalize is True
    with pytest.raises(TypeError, match=r"lack \['unit_normalize'\]"):
        from_params(AttributionSettings, section, **given)


def _leaves(config: dict, prefix="") -> dict[str, object]:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value and f"{prefix}{key}" not in LEAF_DEFAULTS:
            out |= _leaves(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_config_yaml_restates_no_default():
    research = _leaves(yaml.safe_load((REPO / "config/config.yaml").read_text()))
    restated = [
        key for key, value in research.items() if key in LEAF_DEFAULTS and LEAF_DEFAULTS[key] == value
    ]
    assert restated == []


def test_demo_yaml_restates_only_what_the_research_config_changes():
    research = config_from_files(REPO / "config/config.yaml")
    demo = _leaves(yaml.safe_load((REPO / "config/demo.yaml").read_text()))
    restated = [
        key
        for key, value in demo.items()
        if key in LEAF_DEFAULTS
        and LEAF_DEFAULTS[key] == value
        and settings_module.lookup(research, key) == value
    ]
    assert restated == []


def test_the_demo_is_the_same_with_or_without_config_yaml_below_it():
    # Snakemake reads config/config.yaml only where it exists in the working directory
    with_research = config_from_files(REPO / "config/config.yaml", REPO / "config/demo.yaml")
    alone = config_from_files(REPO / "config/demo.yaml")
    assert with_research == alone


def test_schema_defaults_are_what_snakemake_validate_fills_in():
    """schema_defaults() (what tests and benchmarks start from) against Snakemake's own
    filling of the defaults, for the demo config."""
    code = f"""
import json, yaml
from snakemake.utils import validate
config = yaml.safe_load(open({str(REPO / "config/demo.yaml")!r}))
validate(config, {str(settings_module.SCHEMA_PATH)!r})
print(json.dumps(config))
"""
    import json

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    validated = json.loads(out.strip().splitlines()[-1])
    assert validated == config_from_files(REPO / "config/demo.yaml")
