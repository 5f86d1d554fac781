"""The README is a front door and the docs/ pages hold the rest: the README stays short,
every relative link in README.md and docs/*.md reaches a file, every #anchor reaches a
heading of its target (GitHub's slugs), and every docs page is reachable from the README."""

import re
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
README_MAX_LINES = 200
FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\]`]|`[^`]*`)*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code spans blanked out (a `#` or a
    `[x](y)` in code is no heading and no link)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            lines.append("")
            continue
        lines.append("" if fenced else line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text (links reduced to their text, code
    and emphasis marks dropped), lower-cased, without punctuation, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading slug of a Markdown file, a repeated one suffixed -1, -2, ... as GitHub
    does."""
    seen: Counter[str] = Counter()
    found = set()
    for line in prose_lines(path.read_text()):
        match = HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(2))
        found.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
        seen[base] += 1
    return found


def links(path: Path) -> list[str]:
    """The link targets of a Markdown file, outside code."""
    targets = []
    for line in prose_lines(path.read_text()):
        line = re.sub(r"`[^`]*`", "``", line)
        targets += LINK.findall(line)
    return targets


def broken_links(path: Path) -> list[str]:
    """The relative links of `path` that reach no file, or no heading of their file."""
    broken = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{path.name}: {target} (no such file)")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            broken.append(f"{path.name}: {target} (no heading #{anchor} in {dest.name})")
    return broken


def pages() -> list[Path]:
    return sorted((REPO / "docs").glob("*.md"))


def test_the_readme_is_a_front_door():
    n = len(README.read_text().splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES})"


def test_every_relative_link_and_anchor_resolves():
    assert pages(), "no docs/*.md pages"
    broken = [b for path in [README, *pages()] for b in broken_links(path)]
    assert broken == []


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(REPO / t.partition("#")[0]).resolve() for t in links(README) if not t.startswith("#")}
    assert [p.name for p in pages() if p.resolve() not in linked] == []


def test_github_slugs():
    assert slug("TrackStar and TRAK (Bergson's pipelines)") == "trackstar-and-trak-bergsons-pipelines"
    assert slug("Sparse logits (`compute.sparse_logits`)") == "sparse-logits-computesparse_logits"
    assert slug("Preconditioned attribution (K-FAC, EK-FAC)") == "preconditioned-attribution-k-fac-ek-fac"
    assert slug("Selection check on the demo, 2026-12-01") == "selection-check-on-the-demo-2026-12-01"


def test_the_checker_finds_broken_links(tmp_path):
    """The same helpers, on a page with one good and three broken links: a missing file, a
    missing heading of another page, a missing heading of its own."""
    (tmp_path / "other.md").write_text("# Other\n\n## A section\n\n## A section\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n## Here (`x`)\n\n"
        "[ok](other.md#a-section-1) [ok](#here-x) [ok](https://example.org/#x)\n"
        "[gone](missing.md) [wrong](other.md#no-section) [self](#nowhere)\n"
        "```\n[in code](missing-too.md)\n# not a heading\n```\n"
        "`[inline](missing-three.md)`\n"
    )
    assert anchors(tmp_path / "other.md") == {"other", "a-section", "a-section-1"}
    assert broken_links(page) == [
        "page.md: missing.md (no such file)",
        "page.md: other.md#no-section (no heading #no-section in other.md)",
        "page.md: #nowhere (no heading #nowhere in page.md)",
    ]
