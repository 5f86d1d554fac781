"""Config errors as short lines that name the key, before any job starts.

Snakemake's own `validate` prints the whole schema with each error; this lists only what is
wrong (`targets: [] should be non-empty`). Light: the Snakefile imports it at parse time.
"""

from __future__ import annotations

from pathlib import Path


def config_errors(config: dict, schema_path: str | Path) -> list[str]:
    """One line per problem, `key.path: message`; empty if the config is valid."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    lines = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in error.absolute_path) or "config"
        lines.append(f"{where}: {error.message}")
    return lines
