"""A content hash of the package code that a rule's script runs.

Snakemake's code trigger sees only a rule's `script:` file, and ours are thin: the logic
lives in this package. Each rule therefore gets a `code` param: a hash of the modules its
script imports, followed transitively through the package's own imports (including imports
inside functions, and the __init__ of each stage subpackage on the way). Parameters are stored with each output, so a change of the hash plans
the rule again. The hash is over the parsed syntax tree without docstrings, so comments,
docstrings and formatting don't count, and over file contents rather than mtimes, so a
fresh checkout reruns nothing.

Light (stdlib only): the Snakefile imports it at parse time.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = "playpen_attribution"


def _resolve(package: str, names: list[str]) -> set[str]:
    """`package` (a dotted name below the package root, "" for the root) and those of
    `names` that are its submodules; which of them are files is decided by the caller."""
    return {package} | {f"{package}.{name}".lstrip(".") for name in names}


def imported_modules(tree: ast.AST, current: str | None, is_package: bool = False) -> set[str]:
    """Dotted names, below the package root, of the package modules (or subpackages)
    imported anywhere in `tree`. `current`: the module's own dotted name (None for a
    script outside the package), for relative imports; `is_package`: it is an __init__."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == PACKAGE and len(parts) > 1:
                    found.add(".".join(parts[1:]))
        elif isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
            if node.level == 0 and node.module and node.module.split(".")[0] == PACKAGE:
                found |= _resolve(".".join(node.module.split(".")[1:]), names)
            elif node.level and current is not None:
                parts = current.split(".")
                base = parts if is_package else parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                found |= _resolve(".".join(base + (node.module.split(".") if node.module else [])), names)
    return found


def _module_path(package_dir: Path, name: str) -> tuple[Path | None, bool]:
    """The file of the dotted module `name` ("" is the root's __init__), and whether it
    is a package; (None, False) for a name that is no module (one imported from it)."""
    base = package_dir.joinpath(*name.split(".")) if name else package_dir
    if (base / "__init__.py").exists():
        return base / "__init__.py", True
    if name and base.with_suffix(".py").exists():
        return base.with_suffix(".py"), False
    return None, False


def module_closure(script: str | Path, package_dir: str | Path) -> list[tuple[str, Path]]:
    """The package modules that `script` runs, (dotted name, file), sorted by name: its
    imports and theirs, and the __init__ of every package on the way (Python runs it)."""
    package_dir = Path(package_dir)
    seen: dict[str, Path] = {}
    todo = {"", *_parsed(Path(script), None, False)[0]}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path, is_package = _module_path(package_dir, name)
        if path is None:
            continue
        seen[name] = path
        parents = {".".join(name.split(".")[:i]) for i in range(name.count(".") + 1)} if name else set()
        todo |= (_parsed(path, name, is_package)[0] | parents) - set(seen)
    return [(name, seen[name]) for name in sorted(seen)]


_WITH_DOCSTRING = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _without_docstrings(tree: ast.AST) -> ast.AST:
    """`tree` with the docstrings of its module, classes and functions removed (in place):
    they document the code and change no output."""
    for node in ast.walk(tree):
        if not isinstance(node, _WITH_DOCSTRING):
            continue
        first = node.body[0] if node.body else None
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            node.body = node.body[1:]
    return tree


def code_version(script: str | Path, package_dir: str | Path) -> str:
    """Hash of the syntax trees of the modules `script` runs, without their docstrings
    (16 hex digits)."""
    digest = hashlib.sha256()
    for name, path in module_closure(script, package_dir):
        digest.update((name or "__init__").encode() + b"\0")
        digest.update(_parsed(path, name, path.name == "__init__.py")[1].encode() + b"\0")
    return digest.hexdigest()[:16]


def _parsed(path: Path, current: str | None, is_package: bool) -> tuple[frozenset[str], str]:
    """The package modules that the file at `path` imports, and the dump of its syntax tree
    without docstrings. Parsed once per process and file version: the Snakefile hashes
    some 30 scripts at every parse, most of them over the same modules, and every job
    parses the Snakefile again (seconds each)."""
    stat = path.stat()
    return _parse(str(path), current, is_package, stat.st_mtime_ns, stat.st_size)


@functools.cache
def _parse(
    path: str, current: str | None, is_package: bool, mtime_ns: int, size: int
) -> tuple[frozenset[str], str]:
    tree = ast.parse(Path(path).read_text())
    imported = frozenset(imported_modules(tree, current, is_package))
    return imported, ast.dump(_without_docstrings(tree))
