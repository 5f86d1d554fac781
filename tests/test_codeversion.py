"""The code hash (codeversion.py): what counts as a code change and what does not."""

from conftest import REPO

from playpen_attribution.core.codeversion import code_version, module_closure

PACKAGE = REPO / "src" / "playpen_attribution"
MODULE = '''"""A module docstring."""


class Tokens:
    """A class docstring."""

    def count(self, rows):
        """A method docstring."""
        return len(rows)


def total(rows):
    """A function docstring."""
    return sum(rows)
'''


def _hash(tmp_path, module_text):
    package = tmp_path / "pkg"
    (package / "data").mkdir(parents=True, exist_ok=True)
    (package / "data/tokens.py").write_text(module_text)
    script = tmp_path / "script.py"
    script.write_text("from playpen_attribution.data.tokens import total\n")
    assert [name for name, _ in module_closure(script, package)] == ["data.tokens"]
    return code_version(script, package)


def test_docstrings_comments_and_formatting_change_no_hash(tmp_path):
    """Issue 21, finding 10: a docstring-only edit (module, class, function) reran 26 jobs."""
    before = _hash(tmp_path, MODULE)
    edited = (
        MODULE.replace("A module docstring.", "The module, documented\nat length.")
        .replace("A class docstring.", "Another class docstring.")
        .replace("A method docstring.", "Counts.")
        .replace("A function docstring.", "Sums the rows.")
        .replace("return sum(rows)", "return sum(rows)  # a comment")
    )
    assert _hash(tmp_path, edited) == before


def test_a_string_that_is_code_changes_the_hash(tmp_path):
    before = _hash(tmp_path, MODULE)
    assert _hash(tmp_path, MODULE.replace("return len(rows)", 'return len(rows) + len("x")')) != before
    # a string after the first statement is no docstring: it stays in the hash
    assert (
        _hash(tmp_path, MODULE.replace("return sum(rows)", 'x = 1\n    "a string"\n    return sum(rows)'))
        != before
    )


def test_the_package_hashes_without_error():
    assert len(code_version(REPO / "workflow/scripts/tokenize.py", PACKAGE)) == 16


def test_the_closure_follows_subpackages_relative_imports_and_their_inits(tmp_path):
    """A module of a stage subpackage runs that subpackage's __init__ and what it
    imports, relative or absolute, and a name imported from a module is no module."""
    package = tmp_path / "pkg"
    for path, text in {
        "__init__.py": "",
        "core/__init__.py": "",
        "core/io.py": "def read(): ...\n",
        "data/__init__.py": "",
        "data/tokens.py": "from ..core.io import read\nfrom . import split\n",
        "data/split.py": "def f():\n    from playpen_attribution.core import io\n",
        "words/__init__.py": "",
        "words/play.py": "",
    }.items():
        (package / path).parent.mkdir(parents=True, exist_ok=True)
        (package / path).write_text(text)
    script = tmp_path / "script.py"
    script.write_text("from playpen_attribution.data.tokens import tokenize\n")
    names = [name for name, _ in module_closure(script, package)]
    assert names == ["", "core", "core.io", "data", "data.split", "data.tokens"]
    before = code_version(script, package)
    (package / "words/play.py").write_text("X = 1\n")
    assert code_version(script, package) == before
    (package / "core/io.py").write_text("def read(): return 1\n")
    assert code_version(script, package) != before
