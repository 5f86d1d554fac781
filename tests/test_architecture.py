"""The package's layering (issue 24): config reaches code by one route, the rule's params
and resources; the package never sees the Snakemake object; stages import one way."""

from __future__ import annotations

import ast
from pathlib import Path

from playpen_attribution.core.codeversion import imported_modules as imported_modules_of

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


def module_name(path: Path) -> str | None:
    """The dotted name of a package file below the package root ("" for its __init__),
    or None for a file outside the package."""
    if not path.is_relative_to(PACKAGE):
        return None
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, name: str | None = None) -> set[str]:
    """Dotted names (below the package root) of what a module imports from the package,
    relative or absolute, at any depth; resolved as the code hash resolves them, so this
    layering is the one that decides what reruns. `name`: the module's dotted name, where
    `path` is not inside the package."""
    name = module_name(path) if name is None else name
    return imported_modules_of(ast.parse(path.read_text()), name, path.name == "__init__.py")


# The stages, in the order the data flows (workflow/rules/ is grouped the same way): a
# module may import its own stage and earlier ones, never a later one.
STAGES = ["core", "data", "sft", "attribution", "checks", "words"]


def stage_breaks(path: Path, name: str | None = None) -> list[str]:
    """What `path` (of stage name.split(".")[0]) imports from a later stage."""
    name = module_name(path) if name is None else name
    own = STAGES.index(name.split(".")[0])
    later = {imported for imported in imported_modules(path, name) if imported}
    return sorted(m for m in later if STAGES.index(m.split(".")[0]) > own)


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


# The training scripts also keep glibc's default heap (run_step's map_allocations).
TRAINING_SCRIPTS = {"train_lora.py", "retrain.py", "train_arm.py"}


def test_every_script_runs_its_body_under_run_step_with_the_rule_its_log_and_outputs():
    call = "run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake)"
    for script in SCRIPTS.glob("*.py"):
        text = script.read_text()
        ending = ", map_allocations=False)" if script.name in TRAINING_SCRIPTS else ")"
        assert call + ending in text, script.name


def test_every_module_sits_in_a_stage_and_imports_no_later_stage():
    modules = [p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py"]
    assert sorted({module_name(p).split(".")[0] for p in modules}) == sorted(STAGES)
    assert {p.name: stage_breaks(p) for p in modules if stage_breaks(p)} == {}


def test_the_stage_check_sees_a_later_stage_imported(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "from playpen_attribution.core.io import write_json\n"
        "def f():\n    from playpen_attribution.words.generate import x\n"
    )
    assert stage_breaks(module, "data.m") == ["words.generate", "words.generate.x"]
    assert stage_breaks(module, "words.m") == []


def test_reports_render_through_render_and_prompts_live_in_prompts():
    # a stage never imports a later stage's report to render its own summary, and the
    # prompts of generated instances are not the demo data's
    for module in (
        "words/generate.py",
        "words/hardness.py",
        "checks/selection.py",
        "checks/counterfactual_report.py",
        "words/play_report.py",
    ):
        imports = imported_modules(PACKAGE / module)
        assert "attribution.report" not in imports, module
        assert "data.demo_data" not in imports, module
    importers_of_demo_data = sorted(
        p.name for p in PACKAGE.rglob("*.py") if "data.demo_data" in imported_modules(p)
    )
    assert importers_of_demo_data == []
    assert "core.render" in imported_modules(PACKAGE / "words/generate.py")
    assert "core.prompts" in imported_modules(PACKAGE / "words/generate.py")
    assert "core.prompts" in imported_modules(PACKAGE / "data/demo_data.py")


def test_the_import_check_sees_relative_and_absolute_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "from .report import markdown_html\n"
        "from .. import demo_data\n"
        "def f():\n    from playpen_attribution.core.render import markdown_html\n"
    )
    assert imported_modules(module, "attribution.m") == {
        "attribution.report",
        "attribution.report.markdown_html",
        "",
        "demo_data",
        "core.render",
        "core.render.markdown_html",
    }
