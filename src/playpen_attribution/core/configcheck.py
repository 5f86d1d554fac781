"""Config errors as short lines that name the key, before any job starts.

Snakemake's own `validate` prints the whole schema with each error; this lists only what is
wrong (`targets: [] should be non-empty`). Light: the Snakefile imports it at parse time.

`--config` values nested in a mapping (`--config "report={k: 5}"`) reach the workflow as
text: Snakemake reads them with YAML's BaseLoader. `coerce_text_values` gives such a
value the type the schema asks for, where the text spells one (`'5'` -> 5). The dotted form
(`--config report.k=5`) stops in Snakemake's command line parser, before the workflow.
"""

from __future__ import annotations

from pathlib import Path


def _validator(schema_path):
    import jsonschema
    import yaml

    return jsonschema.Draft202012Validator(yaml.safe_load(Path(schema_path).read_text()))


def _matches(value, types) -> bool:
    types = [types] if isinstance(types, str) else types
    checks = {
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    return any(checks.get(t, lambda v: False)(value) for t in types)


def coerce_text_values(config: dict, schema_path: str | Path) -> list[str]:
    """Give text values the type the schema asks for where the text spells one (YAML:
    `5`, `0.5`, `true`, `null`). Edits `config`; returns the keys changed."""
    import yaml

    validator = _validator(schema_path)
    changed = []
    for _ in range(10):  # a coerced value may reveal errors below it (a dict given as text)
        fixed = False
        for error in validator.iter_errors(config):
            if error.validator != "type" or not isinstance(error.instance, str) or not error.absolute_path:
                continue
            try:
                value = yaml.safe_load(error.instance)
            except yaml.YAMLError:
                continue
            if not _matches(value, error.validator_value):
                continue
            *parents, last = error.absolute_path
            target = config
            for key in parents:
                target = target[key]
            target[last] = value
            changed.append(".".join(map(str, error.absolute_path)))
            fixed = True
            break  # paths of the other errors may have changed
        if not fixed:
            break
    return changed


def config_errors(config: dict, schema_path: str | Path) -> list[str]:
    """One line per problem, `key.path: message`; empty if the config is valid."""
    validator = _validator(schema_path)
    lines = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in error.absolute_path) or "config"
        lines.append(f"{where}: {error.message}")
    return lines
