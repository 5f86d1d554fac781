"""config/README.md, the config reference: every key of workflow/schemas/config.schema.yaml
with its type, default and description, beside the values that config/config.yaml (the
research run) and config/demo.yaml (the demo) give it. Generated, so that it cannot drift
from the schema or the config files; it reads them each time it runs.

    uv run python docs/config_readme.py          # rewrite config/README.md
    uv run python docs/config_readme.py --check  # exit 1 (with a diff) if it is out of date

Either way it exits 1, naming the keys, if a schema property has no description.
tests/test_config_readme.py runs the check.
"""

import argparse
import copy
import difflib
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
RESEARCH = ROOT / "config/config.yaml"
DEMO = ROOT / "config/demo.yaml"
OUT = ROOT / "config/README.md"
SAME = "="  # the cell of a value that equals the schema's default
COMMAND = "uv run python docs/config_readme.py"


def properties(schema: dict, prefix: str = ""):
    """(dotted key, its schema, whether its parent requires it) for every property at any
    depth, in schema order, each before its own properties. The properties of a list's
    items are keyed `list[].name`."""
    required = set(schema.get("required", []))
    for name, node in schema.get("properties", {}).items():
        key = f"{prefix}{name}"
        yield key, node, name in required
        yield from properties(node, f"{key}.")
        items = node.get("items")
        if isinstance(items, dict):
            yield from properties(items, f"{key}[].")


def missing_descriptions(schema: dict) -> list[str]:
    """The keys whose schema has no description."""
    return [key for key, node, _ in properties(schema) if not str(node.get("description", "")).strip()]


def lookup(config, key: str):
    """The value at a dotted key, or KeyError (a list item's key has no one value)."""
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def effective(schema_path, *configs: dict) -> dict:
    """The config the workflow sees: the files merged in order as Snakemake merges
    `--configfile`s over the Snakefile's `configfile:` (dicts key by key, anything else,
    lists included, replaced), then the schema's defaults filled in by Snakemake's own
    `validate`, as the Snakefile does (which also rejects an invalid file here)."""
    from snakemake.utils import update_config, validate

    merged: dict = {}
    for config in configs:
        update_config(merged, copy.deepcopy(config))
    validate(merged, str(schema_path))
    return merged


def flow(value) -> str:
    """A value in YAML's flow style, on one line: `[q_proj, k_proj]`, `{k: 10}`, `null`."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, allow_unicode=True, width=10**6)
    text = text.strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def code(text: str) -> str:
    """A table cell's code span: `|` escaped (GitHub's tables split on it even in code)."""
    text = text.replace("|", "\\|")
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" or text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def prose(text: str) -> str:
    """A description as one table cell: whitespace collapsed; outside its `code` spans,
    Markdown's active characters escaped (`$` would start maths on GitHub, `*` emphasis,
    `<` a tag); `|` escaped everywhere."""
    text = " ".join(str(text).split())
    parts = re.split(r"(`[^`]*`)", text)
    for i, part in enumerate(parts):
        if i % 2 == 0:
            part = re.sub(r"([\\*$<])", r"\\\1", part)
        parts[i] = part.replace("|", "\\|")
    return "".join(parts)


def type_text(node: dict) -> str:
    """The schema's type and constraints, compactly: `integer ≥ 1`, `list of string`,
    `one of: mean, sum`, `non-empty list, each one of: top, bottom; no repeats`."""
    if "enum" in node:
        return "one of: " + ", ".join(flow(v) for v in node["enum"])
    types = node.get("type", "any")
    types = [types] if isinstance(types, str) else list(types)
    words = []
    for kind in types:
        if kind == "array":
            items = node.get("items", {})
            item = type_text(items) if items else "any"
            item = f", each {item}" if item.startswith("one of") else f" of {item}"
            sizes = "non-empty " if node.get("minItems", 0) >= 1 else ""
            unique = "; no repeats" if node.get("uniqueItems") else ""
            words.append(f"{sizes}list{item}{unique}")
        elif kind == "string" and node.get("minLength", 0) >= 1:
            words.append("non-empty string")
        else:
            words.append(kind)
    text = " or ".join(words)
    bounds = [
        (op, node[name])
        for name, op in (
            ("minimum", "≥"),
            ("exclusiveMinimum", ">"),
            ("maximum", "≤"),
            ("exclusiveMaximum", "<"),
        )
        if name in node
    ]
    if bounds:
        text += " " + ", ".join(f"{op} {flow(v)}" for op, v in bounds)
    if "pattern" in node:
        text += f" matching `{node['pattern']}`"
    return text


def value_cell(node: dict, config: dict, key: str) -> str:
    """A config's value of `key` for its column: `=` where it is the default, blank where
    a value has its own rows (a section) or there is none (a list item's key, an unset
    option)."""
    try:
        value = lookup(config, key)
    except KeyError:
        return ""
    if isinstance(value, dict) and "properties" in node:
        return ""
    if "default" in node and flow(value) == flow(node["default"]):
        return SAME
    return code(flow(value))


def default_cell(node: dict, required: bool) -> str:
    if "default" in node:
        if node["default"] == {} and "properties" in node:
            return ""  # a section: its keys' rows hold the defaults
        return code(flow(node["default"]))
    return "*required*" if required else ""


INTRO = """\
<!-- generated by docs/config_readme.py from workflow/schemas/config.schema.yaml,
config/config.yaml and config/demo.yaml; do not edit: run `{command}` -->

# Config reference

Every key of the workflow's config, generated from
[the schema](../workflow/schemas/config.schema.yaml), which holds every default and
validates the config before any job runs: a wrong type, an unknown key or a missing
required key stops Snakemake with a line naming the key. A key that no config file sets
takes the schema's default.

- [`config/config.yaml`](config.yaml) holds the research run's choices (the hub data, Gemma 3
  1B instruct); the Snakefile always reads it.
- [`config/demo.yaml`](demo.yaml) holds the offline demo's, merged over it:
  `uv run snakemake --cores all --configfile=config/demo.yaml`.
- Your own choices go in a file of your own, merged over these in order:
  `--configfile config/demo.yaml my.yaml` (one flag, several files). Snakemake merges
  mappings key by key and replaces anything else, lists included (so `targets: [...]` in an
  overlay replaces the list whole). In Snakemake 9 a repeated flag replaces the earlier
  files: `--configfile a.yaml --configfile b.yaml` reads `b.yaml` alone. Targets after the
  flag are read as more config files: put them before it, or write one file as
  `--configfile=FILE`.
- Snakemake's `--config` reads a value nested in a mapping (`--config "report={{k: 5}}"`) as
  text; the workflow retypes what the schema asks for where it can, but a file is the safe
  way to set a nested key.

The columns: **research** is the value with `config/config.yaml` over the defaults,
**demo** with `config/config.yaml` and then `config/demo.yaml` over them (as the demo
command runs); `{same}` means the schema's default, a blank that the key is not set (its
section is absent, or it is a key of a list's items) or that a section's value is in the
rows of its keys. Values are in YAML's flow style.
More on the data and the keys: [Configuration](../docs/configuration.md).
"""

HEADER = "| key | type | default | research | demo | description |\n|---|---|---|---|---|---|"


def table(rows) -> str:
    return "\n".join([HEADER, *("| " + " | ".join(row) + " |" for row in rows)])


def is_section(key: str, node: dict) -> bool:
    """A top-level key with keys of its own (a mapping's, or its list items')."""
    items = node.get("items")
    return "." not in key and ("properties" in node or isinstance(items, dict) and "properties" in items)


def render(schema: dict, research: dict, demo: dict) -> str:
    """The page: the intro, then one table of the top-level keys that are no section, and
    one table per section, in schema order. A mapping section's own value is in the rows of
    its keys; a list section (targets) has a row of its own."""
    rows_of = {}  # section (or "") -> its rows
    descriptions = {"": "The keys outside any section."}
    for key, node, required in properties(schema):
        section = key.split(".")[0].split("[]")[0]
        if is_section(key, node):
            descriptions[section] = node.get("description", "")
            rows_of.setdefault(section, [])
            if "properties" in node:
                continue
        if section not in descriptions:
            section = ""
        row = [
            code(key),
            prose(type_text(node)),
            default_cell(node, required),
            value_cell(node, research, key),
            value_cell(node, demo, key),
            prose(node.get("description", "")),
        ]
        rows_of.setdefault(section, []).append(row)
    parts = [INTRO.format(command=COMMAND, same=SAME)]
    for section, rows in rows_of.items():
        title = "Top level" if section == "" else f"`{section}`"
        parts.append(f"## {title}\n\n{prose(descriptions[section])}\n\n{table(rows)}\n")
    return "\n".join(parts)


def build(schema_path=SCHEMA, research_path=RESEARCH, demo_path=DEMO) -> str:
    def load(path):
        return yaml.safe_load(Path(path).read_text()) or {}

    schema = load(schema_path)
    missing = missing_descriptions(schema)
    if missing:
        raise SystemExit(f"{schema_path}: no description for {', '.join(missing)}")
    research_file, demo_file = load(research_path), load(demo_path)
    research = effective(schema_path, research_file)
    return render(schema, research, effective(schema_path, research_file, demo_file))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is out of date")
    parser.add_argument("--out", type=Path, default=OUT, help="the page (default: config/README.md)")
    args = parser.parse_args(argv)
    new = build()
    old = args.out.read_text() if args.out.exists() else ""
    if old == new:
        return 0
    name = args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out
    if args.check:
        diff = difflib.unified_diff(old.splitlines(), new.splitlines(), str(name), "generated", lineterm="")
        print("\n".join(diff))
        print(f"{name} is out of date: run `{COMMAND}`")
        return 1
    args.out.write_text(new)
    print(f"{name}: updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
