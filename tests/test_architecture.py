"""The package's layering (issue 24): config reaches code by one route, the rule's params
and resources; the package never sees the Snakemake object; stages import one way."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src/playpen_attribution"
SCRIPTS = ROOT / "workflow/scripts"


def names_used(path: Path) -> set[str]:
    """Every identifier a module uses or binds: names, arguments and attribute bases."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.arg):
            found.add(node.arg)
    return found


def imported_modules(path: Path) -> set[str]:
    """The package modules a module imports (relative or absolute), at any depth."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level or module.startswith("playpen_attribution"):
                base = module.removeprefix("playpen_attribution").lstrip(".")
                found |= {base} if base else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {
                a.name.removeprefix("playpen_attribution.")
                for a in node.names
                if a.name.startswith("playpen_attribution.")
            }
    return {name.split(".")[0] for name in found}


def config_reads(path: Path) -> list[int]:
    """Lines where a script reads `snakemake.config`."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and node.attr == "config"
        and isinstance(node.value, ast.Name)
        and node.value.id == "snakemake"
    ]


def test_the_package_never_receives_the_snakemake_object():
    offenders = sorted(p.name for p in PACKAGE.rglob("*.py") if "snakemake" in names_used(p))
    assert offenders == []


def test_the_check_sees_a_snakemake_argument(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def main(snakemake):\n    return 1\n")
    assert "snakemake" in names_used(module)


def test_no_script_reads_the_config_only_its_params_and_resources():
    offenders = {p.name: config_reads(p) for p in SCRIPTS.glob("*.py") if config_reads(p)}
    assert offenders == {}


def test_the_check_sees_a_config_read(tmp_path):
    script = tmp_path / "s.py"
    script.write_text('x = snakemake.config["dataset"]["strict"]\n')
    assert config_reads(script) == [1]


def test_every_script_runs_its_body_under_run_step_with_the_rule_its_log_and_outputs():
    for script in SCRIPTS.glob("*.py"):
        text = script.read_text()
        assert "run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))" in text, (
            script.name
        )


def test_reports_render_through_render_and_prompts_live_in_prompts():
    # a stage never imports a later stage's report to render its own summary, and the
    # prompts of generated instances are not the demo data's
    for module in (
        "generate.py",
        "hardness.py",
        "selection.py",
        "counterfactual_report.py",
        "play_report.py",
    ):
        imports = imported_modules(PACKAGE / module)
        assert "report" not in imports, module
        assert "demo_data" not in imports, module
    importers_of_demo_data = sorted(
        p.name for p in PACKAGE.rglob("*.py") if "demo_data" in imported_modules(p)
    )
    assert importers_of_demo_data == []
    assert "render" in imported_modules(PACKAGE / "generate.py")
    assert "prompts" in imported_modules(PACKAGE / "generate.py")
    assert "prompts" in imported_modules(PACKAGE / "demo_data.py")


def test_the_import_check_sees_relative_and_absolute_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "from .report import markdown_html\n"
        "from . import demo_data\n"
        "def f():\n    from playpen_attribution.render import markdown_html\n"
    )
    assert imported_modules(module) == {"report", "demo_data", "render"}
