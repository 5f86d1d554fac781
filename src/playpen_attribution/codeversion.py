"""A content hash of the package code that a rule's script runs.

Snakemake's code trigger sees only a rule's `script:` file, and ours are thin: the logic
lives in this package. Each rule therefore gets a `code` param: a hash of the modules its
script imports, followed transitively through the package's own imports (including imports
inside functions). Parameters are stored with each output, so a change of the hash plans
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


def _imported_modules(tree: ast.AST, current: str | None) -> set[str]:
    """Names of package modules imported anywhere in `tree` (`current`: the module's name)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == PACKAGE and len(parts) > 1:
                    found.add(parts[1])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.split(".")[0] == PACKAGE:
                parts = node.module.split(".")
                names = [parts[1]] if len(parts) > 1 else [a.name for a in node.names]
            elif node.level == 1 and current is not None:
                names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
            else:
                continue
            found.update(names)
    return found


def module_closure(script: str | Path, package_dir: str | Path) -> list[Path]:
    """The package modules that `script` runs: its imports and theirs, sorted."""
    package_dir = Path(package_dir)
    seen: dict[str, Path] = {}
    todo = {"__init__", *_parsed(Path(script), None)[0]}
    while todo:
        name = todo.pop()
        path = package_dir / f"{name}.py"
        if name in seen or not path.exists():  # a name imported from __init__, not a module
            continue
        seen[name] = path
        todo |= _parsed(path, name)[0] - set(seen)
    return [seen[name] for name in sorted(seen)]


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
    for path in module_closure(script, package_dir):
        digest.update(path.name.encode() + b"\0")
        digest.update(_parsed(path, path.stem)[1].encode() + b"\0")
    return digest.hexdigest()[:16]


def _parsed(path: Path, current: str | None) -> tuple[frozenset[str], str]:
    """The package modules that the file at `path` imports, and the dump of its syntax tree
    without docstrings. Parsed once per process and file version: the Snakefile hashes
    some 30 scripts at every parse, most of them over the same modules, and every job
    parses the Snakefile again (seconds each)."""
    stat = path.stat()
    return _parse(str(path), current, stat.st_mtime_ns, stat.st_size)


@functools.cache
def _parse(path: str, current: str | None, mtime_ns: int, size: int) -> tuple[frozenset[str], str]:
    tree = ast.parse(Path(path).read_text())
    imported = frozenset(_imported_modules(tree, current))
    return imported, ast.dump(_without_docstrings(tree))
