"""How many of clembench's own taboo related words does one WordNet step reproduce?

Reads a clembench taboo instances.json (default: the reference sample in
../shared/reference, which is read, never copied) and, per related word, asks whether its
Snowball stem is the stem of a lemma one WordNet 3.0 step from the target word: the
target's synsets (any part of speech, any sense), their synonyms and every pointer
(hypernyms, hyponyms, similar-to, derivations, meronyms, ...). Also with only the
relations the generator uses (synonyms, similar-to, hypernyms, derivations, hyponyms).

    uv run python benchmarks/wordnet_related_coverage.py [instances.json]
"""

import argparse
import json
from pathlib import Path

from playpen_attribution.words.generate import stem
from playpen_attribution.words.wordnet import POS_ORDER, wordnet

DEFAULT = (
    Path(__file__).resolve().parents[2] / "shared/reference/playpen-sample/clembench/taboo/in/instances.json"
)
GENERATOR_POINTERS = {"@", "@i", "~", "~i", "&", "+"}


def neighbour_stems(word: str, pointers: set | None) -> set[str]:
    """Stems of the lemmas one step from `word`; pointers=None: every pointer type."""
    wn = wordnet()
    lemmas = []
    for pos in POS_ORDER:
        for synset in wn.synsets(word, pos):
            lemmas += synset.lemmas
            for symbol, offset, target_pos, _, _ in synset.pointers:
                if pointers is None or symbol in pointers:
                    lemmas += wn.synset(target_pos, offset).lemmas
    return {stem(lemma.lower()) for lemma in lemmas}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("instances", nargs="?", default=str(DEFAULT))
    args = parser.parse_args()
    data = json.loads(Path(args.instances).read_text())
    rows = []
    for experiment in data["experiments"]:
        for instance in experiment["game_instances"]:
            target = instance["target_word"]
            in_wordnet = bool(wordnet().synsets(target))
            every, ours = neighbour_stems(target, None), neighbour_stems(target, GENERATOR_POINTERS)
            for related in instance["related_word"]:
                s = stem(related.lower())
                rows.append((experiment["name"], in_wordnet, s in every, s in ours))
    n = len(rows)
    print(f"{n} related words of {n // 3} instances in {args.instances}")
    print("| subset | related words | one WordNet step (any relation) | generator's relations |")
    print("|---|---|---|---|")
    subsets = [("all", rows), ("target in WordNet", [r for r in rows if r[1]])]
    subsets += [(name, [r for r in rows if r[0] == name]) for name in dict.fromkeys(r[0] for r in rows)]
    for name, subset in subsets:
        k = len(subset)
        print(f"| {name} | {k} | {sum(r[2] for r in subset) / k:.0%} | {sum(r[3] for r in subset) / k:.0%} |")


if __name__ == "__main__":
    main()
