"""The code hash (codeversion.py): what counts as a code change and what does not."""

from conftest import REPO

from playpen_attribution.codeversion import code_version

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
    package.mkdir(exist_ok=True)
    (package / "tokens.py").write_text(module_text)
    script = tmp_path / "script.py"
    script.write_text("from playpen_attribution.tokens import total\n")
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
