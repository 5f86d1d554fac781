"""New taboo instances whose target words resemble the hard, high-impact ones.

1. Seeds (`select_seeds`): per target word of `words.parquet`, *hardness* is 1 minus its
   success rate shrunk toward the overall rate by a Beta prior (val outcomes where the word
   has them, else train), *impact* the percentile of its attribution score (`mean_score` by
   default). Hard seeds: the top `quantile` of hardness x impact among words with at least
   `min_count` training rows; easy controls: the top `quantile` of (1-hardness) x
   (1-impact), minus any hard seed.
2. Features (`word_features`): zipf frequency, length, main part of speech (the one with
   most WordNet senses), WordNet lexical category of its first sense, log(1 + senses),
   hypernym depth of that sense.
3. Candidates (`candidate_pool`): the `candidate_top_n` most frequent words of wordfreq's
   English list that are lowercase alphabetic, 3-15 letters, a WordNet lemma as written,
   not proper-noun-only, and share neither the word nor its Snowball stem with any target
   word in train, val or the exclude list (no leakage).
4. Matching (`match`): Euclidean distance of standardised numeric features, plus penalties
   for another part of speech and another category. Seeds take turns in an order shuffled
   by `seed`; each gets its nearest unused candidate that has 3 related words.
5. Related words (`related_words`): from the chosen sense, in this order: synonyms,
   similar-to, hypernyms, derivations (of the word itself), hyponyms. Each must be one
   lowercase word with zipf >= `zipf_min`, share no stem with the target or an earlier
   pick, and neither contain nor be contained in either. Fewer than 3: the candidate is
   rejected (counted) and the next nearest is tried.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from playpen_attribution.core.errors import WorkflowInputError
from playpen_attribution.core.prompts import DESCRIBER_PROMPT, GUESSER_PROMPT

log = logging.getLogger(__name__)

NUMERIC_FEATURES = ("zipf", "length", "log_senses", "depth")
FEATURES = (*NUMERIC_FEATURES, "pos", "category")
RELATION_ORDER = ("synonym", "similar", "hypernym", "derivation", "hyponym")
N_RELATED = 3
WORD_RE = re.compile(r"^[a-z]{3,15}$")
RELATED_RE = re.compile(r"^[a-z]+$")
SETS = ("hard", "easy")

# The project's own prompts (the demo generator's), with clembench's placeholders.
_MAX_TURNS_TEXT = "three"


def _project_templates() -> dict[str, str]:
    describer = DESCRIBER_PROMPT.format(word="$TARGET_WORD$", related="$REL_WORD$")
    assert f"within {_MAX_TURNS_TEXT} guesses" in describer
    describer = describer.replace(f"within {_MAX_TURNS_TEXT} guesses", "within $N$ guesses")
    guesser = GUESSER_PROMPT.split("\n\nHINT:")[0]
    assert "Three tries" in guesser
    guesser = guesser.replace("Three tries", "$N$ tries") + "\n"
    return {"describer": describer, "guesser": guesser}


PROJECT_TEMPLATES = _project_templates()
PLACEHOLDERS = {"describer": ("$TARGET_WORD$", "$REL_WORD$", "$N$"), "guesser": ("$N$",)}


@dataclass(frozen=True)
class GenerateSettings:
    """Config `generate` (no defaults here: the schema holds them; see settings.py)."""

    CONFIG_SECTION = "generate"

    quantile: float
    min_count: int
    prior_strength: float
    impact: str
    per_seed: int
    candidate_top_n: int
    zipf_min: float
    pos_penalty: float
    category_penalty: float
    max_turns: int
    seed: int = field(metadata={"config": "seed"})

    @classmethod
    def from_params(cls, section: dict, seed: int) -> GenerateSettings:
        """From the rule's `generate` params (which also hold exclude_words, templates)."""
        known = {k: v for k, v in section.items() if k in cls.__dataclass_fields__}
        return cls(**(known | {"seed": seed}))


@cache
def stemmer():
    from nltk.stem.snowball import SnowballStemmer

    return SnowballStemmer("english")


def stem(word: str) -> str:
    return stemmer().stem(word.lower())


def zipf(word: str) -> float:
    from wordfreq import zipf_frequency

    return zipf_frequency(word, "en")


# --------------------------------------------------------------------------- seeds


def select_seeds(words: pd.DataFrame, settings: GenerateSettings) -> pd.DataFrame:
    """Per word: hardness, impact, the two scores, and `set` (hard / easy / None).

    `words` has report_words' columns: target_word, count, mean_score, sum_score,
    train_success_rate, val_count, val_success_rate.
    """
    if settings.impact not in ("mean_score", "sum_score"):
        raise WorkflowInputError(f"generate.impact must be mean_score or sum_score, got {settings.impact!r}")
    frame = words.copy()
    use_val = frame["val_count"].fillna(0) > 0
    frame["outcome_source"] = np.where(use_val, "val", "train")
    n = np.where(use_val, frame["val_count"], frame["count"]).astype(float)
    rate = np.where(use_val, frame["val_success_rate"], frame["train_success_rate"]).astype(float)
    successes = n * rate
    overall = successes.sum() / n.sum() if n.sum() else 0.5
    m = settings.prior_strength
    frame["outcome_n"] = n.astype("int64")
    frame["success_rate"] = rate
    frame["shrunk_success_rate"] = (successes + m * overall) / (n + m)
    frame["hardness"] = 1.0 - frame["shrunk_success_rate"]
    frame["impact"] = frame[settings.impact].rank(pct=True, method="average")
    frame["hard_score"] = frame["hardness"] * frame["impact"]
    frame["easy_score"] = (1 - frame["hardness"]) * (1 - frame["impact"])
    eligible = frame["count"] >= settings.min_count
    frame["set"] = None
    hard = _top_quantile(frame[eligible], "hard_score", settings.quantile)
    easy = [w for w in _top_quantile(frame[eligible], "easy_score", settings.quantile) if w not in set(hard)]
    frame.loc[frame["target_word"].isin(hard), "set"] = "hard"
    frame.loc[frame["target_word"].isin(easy), "set"] = "easy"
    return frame


def _top_quantile(frame: pd.DataFrame, column: str, quantile: float) -> list[str]:
    """The ceil(quantile * n) words with the highest `column` (ties by word)."""
    n = math.ceil(quantile * len(frame))
    ordered = frame.sort_values([column, "target_word"], ascending=[False, True], kind="stable")
    return ordered["target_word"].head(n).tolist()


# --------------------------------------------------------------------------- features


def word_features(word: str, wn=None) -> dict | None:
    """Features of `word`, or None if WordNet has no sense of it."""
    from playpen_attribution.words.wordnet import POS_ORDER, wordnet

    wn = wn or wordnet()
    by_pos = {pos: wn.synsets(word, pos) for pos in POS_ORDER}
    n_senses = sum(len(s) for s in by_pos.values())
    if not n_senses:
        return None
    # main POS: most senses; ties in WordNet's order n, v, a, r
    pos = max(POS_ORDER, key=lambda p: (len(by_pos[p]), -POS_ORDER.index(p)))
    first = by_pos[pos][0]
    return {
        "zipf": zipf(word),
        "length": len(word),
        "log_senses": math.log1p(n_senses),
        "depth": wn.depth(first),
        "pos": pos,
        "category": first.lexname,
    }


def forbidden_words(train: pd.DataFrame, val: pd.DataFrame, exclude: list[str]) -> tuple[set, set]:
    """Every target word of train and val and every excluded word, and their stems."""
    words = set()
    for frame in (train, val):
        if "target_word" in frame.columns:
            words |= {str(w).strip().lower() for w in frame["target_word"].dropna()}
    words |= {w.strip().lower() for w in exclude if w.strip()}
    return words, {stem(w) for w in words}


def read_exclude_words(path) -> list[str]:
    """A text file (one word a line, # comments) or a clembench instances.json."""
    if not path:
        return []
    path = Path(path)
    if not path.is_file():
        raise WorkflowInputError(f"generate.exclude_words: {path} is not a file")
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        try:
            return [g["target_word"] for e in data["experiments"] for g in e["game_instances"]]
        except (KeyError, TypeError):
            raise WorkflowInputError(
                f"{path}: not a clembench instances.json (experiments/game_instances)"
            ) from None
    return [
        line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()
    ]


def candidate_pool(top_n: int, forbidden: set, forbidden_stems: set, wn=None) -> pd.DataFrame:
    """Candidate words with their features, in frequency order (see the module doc)."""
    from wordfreq import top_n_list

    from playpen_attribution.words.wordnet import wordnet

    wn = wn or wordnet()
    rows = []
    counts = {"listed": 0, "shape": 0, "not_lemma": 0, "proper_noun": 0, "leak": 0}
    for word in top_n_list("en", top_n, "large"):
        counts["listed"] += 1
        if not WORD_RE.match(word):
            counts["shape"] += 1
            continue
        if not wn.is_lemma(word):
            counts["not_lemma"] += 1
            continue
        if wn.proper_noun_only(word):
            counts["proper_noun"] += 1
            continue
        if word in forbidden or stem(word) in forbidden_stems:
            counts["leak"] += 1
            continue
        features = word_features(word, wn)
        if features is not None:
            rows.append({"word": word, **features})
    log.info("candidates: %d of %s", len(rows), counts)
    pool = pd.DataFrame(rows, columns=["word", *FEATURES])
    pool.attrs["counts"] = counts
    return pool


# --------------------------------------------------------------------------- related words


def related_words(word: str, pos: str, zipf_min: float, wn=None) -> tuple[list[str], list[str]]:
    """Up to 3 related words of the first `pos` sense of `word`, and the relation of each."""
    from playpen_attribution.words.wordnet import wordnet

    wn = wn or wordnet()
    synsets = wn.synsets(word, pos)
    if not synsets:
        return [], []
    sense = synsets[0]
    proposals: list[tuple[str, str]] = [(lemma, "synonym") for lemma in sense.lemmas]
    proposals += [(lemma, "similar") for s in wn.related(sense, "similar") for lemma in s.lemmas]
    proposals += [(lemma, "hypernym") for s in wn.related(sense, "hypernym") for lemma in s.lemmas]
    proposals += [(lemma, "derivation") for lemma in wn.lexical_targets(sense, "derivation", word)]
    proposals += [(lemma, "hyponym") for s in wn.related(sense, "hyponym") for lemma in s.lemmas]
    chosen, relations = [], []
    stems = {stem(word)}
    for lemma, relation in proposals:
        if not RELATED_RE.match(lemma) or lemma == word:
            continue
        lemma_stem = stem(lemma)
        if lemma_stem in stems:
            continue
        if any(lemma in other or other in lemma for other in [word, *chosen]):
            continue
        if zipf(lemma) < zipf_min:
            continue
        chosen.append(lemma)
        relations.append(relation)
        stems.add(lemma_stem)
        if len(chosen) == N_RELATED:
            break
    return chosen, relations


# --------------------------------------------------------------------------- matching


def match(
    seeds: pd.DataFrame, pool: pd.DataFrame, settings: GenerateSettings, wn=None
) -> tuple[pd.DataFrame, dict]:
    """One (or `per_seed`) generated word per seed. `seeds` has target_word, set, experiment
    and the features; returns the provenance rows and counts."""
    if pool.empty:
        raise WorkflowInputError("no candidate words left after filtering; raise generate.candidate_top_n")
    numeric = pool[list(NUMERIC_FEATURES)].to_numpy(float)
    mean, std = numeric.mean(axis=0), numeric.std(axis=0)
    std[std == 0] = 1.0
    pool_z = (numeric - mean) / std
    pool_pos = pool["pos"].to_numpy()
    pool_category = pool["category"].to_numpy()
    used = np.zeros(len(pool), dtype=bool)
    rejected_words: set[str] = set()
    n_rejected = 0
    order = list(seeds.index)
    random.Random(settings.seed).shuffle(order)
    rows = []
    for round_ in range(settings.per_seed):
        for i in order:
            seed_row = seeds.loc[i]
            z = (seed_row[list(NUMERIC_FEATURES)].to_numpy(float) - mean) / std
            distance = np.sqrt(((pool_z - z) ** 2).sum(axis=1))
            distance = distance + settings.pos_penalty * (pool_pos != seed_row["pos"])
            distance = distance + settings.category_penalty * (pool_category != seed_row["category"])
            distance[used] = np.inf
            tried = 0
            for j in np.lexsort((pool["word"].to_numpy(), distance)):
                if not np.isfinite(distance[j]):
                    break
                word = pool.at[j, "word"]
                if word in rejected_words:
                    continue
                related, relations = related_words(word, pool_pos[j], settings.zipf_min, wn)
                if len(related) < N_RELATED:
                    rejected_words.add(word)
                    n_rejected += 1
                    tried += 1
                    continue
                used[j] = True
                rows.append(
                    {
                        "set": seed_row["set"],
                        "experiment": seed_row["experiment"],
                        "round": round_,
                        "word": word,
                        "seed_word": seed_row["target_word"],
                        "distance": float(distance[j]),
                        "related_words": related,
                        "relations": relations,
                        "rejected_before": tried,
                        **{f: pool.at[j, f] for f in FEATURES},
                        **{f"seed_{f}": seed_row[f] for f in FEATURES},
                        **{
                            f"seed_{c}": seed_row[c]
                            for c in ("hardness", "impact", "hard_score", "easy_score", "count", "outcome_n")
                        },
                    }
                )
                break
            else:
                log.warning("no candidate left for seed %r", seed_row["target_word"])
    out = pd.DataFrame(rows)
    if not out.empty:
        out["related_stems"] = [[stem(w) for w in ws] for ws in out["related_words"]]
        out["stem"] = [stem(w) for w in out["word"]]
    return out, {"rejected_candidates": n_rejected}


# --------------------------------------------------------------------------- instances


def seed_experiments(train: pd.DataFrame, val: pd.DataFrame) -> dict[str, str]:
    """Each target word's experiment (band), the most common one over train and val."""
    both = pd.concat([train, val], ignore_index=True).dropna(subset=["target_word"])
    counts = both.groupby(["target_word", "experiment"]).size().reset_index(name="n")
    counts = counts.sort_values(["target_word", "n", "experiment"], ascending=[True, False, True])
    return counts.drop_duplicates("target_word").set_index("target_word")["experiment"].to_dict()


def band_order(name: str) -> tuple:
    bands = ("high", "medium", "low")
    band = name.split("_")[0]
    return (bands.index(band) if band in bands else len(bands), name)


def build_instances(generated: pd.DataFrame, templates: dict[str, str], max_turns: int) -> dict:
    """clembench's taboo instances.json (v2.0 keys and order) for the generated rows."""
    experiments = []
    for name in sorted(generated["experiment"].unique(), key=band_order):
        rows = generated[generated["experiment"] == name]
        instances = [
            {
                "game_id": game_id,
                "target_word": r.word,
                "related_word": list(r.related_words),
                "target_word_stem": r.stem,
                "related_word_stem": list(r.related_stems),
            }
            for game_id, r in enumerate(rows.itertuples())
        ]
        experiments.append(
            {
                "name": name,
                "game_instances": instances,
                "max_turns": max_turns,
                "describer_initial_prompt": templates["describer"],
                "guesser_initial_prompt": templates["guesser"],
            }
        )
    return {"experiments": experiments}


def read_templates(describer_path=None, guesser_path=None) -> dict[str, str]:
    templates = dict(PROJECT_TEMPLATES)
    for role, path in (("describer", describer_path), ("guesser", guesser_path)):
        if path:
            templates[role] = Path(path).read_text()
    for role, needed in PLACEHOLDERS.items():
        missing = [p for p in needed if p not in templates[role]]
        if missing:
            raise WorkflowInputError(f"generate.templates.{role}: the template lacks {missing}")
    return templates


def validate_instances(instances: dict, schema_path) -> None:
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    try:
        jsonschema.validate(instances, schema)
    except jsonschema.ValidationError as exc:
        raise WorkflowInputError(f"generated instances break the clembench schema: {exc.message}") from None


def generate(
    words: pd.DataFrame,
    train: pd.DataFrame,
    val: pd.DataFrame,
    settings: GenerateSettings,
    exclude: list[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Seeds, then generated words. Returns (scored words, generated rows, summary)."""
    from playpen_attribution.words.wordnet import wordnet

    wn = wordnet()
    scored = select_seeds(words, settings)
    experiments = seed_experiments(train, val)
    scored["experiment"] = scored["target_word"].map(experiments)
    forbidden, forbidden_stems = forbidden_words(train, val, list(exclude))
    features = {w: word_features(w, wn) for w in scored["target_word"]}
    for f in FEATURES:
        scored[f] = [None if features[w] is None else features[w][f] for w in scored["target_word"]]
    # a seed that WordNet does not know has no part of speech to match: skipped, reported
    no_wordnet = sorted(scored.loc[scored["set"].notna() & scored["pos"].isna(), "target_word"])
    seeds = scored[scored["set"].notna() & scored["pos"].notna()].reset_index(drop=True)
    pool = candidate_pool(settings.candidate_top_n, forbidden, forbidden_stems, wn)
    generated, counts = match(seeds, pool, settings, wn)
    summary = {
        "settings": asdict(settings),
        "words": len(scored),
        "seeds": {s: int((seeds["set"] == s).sum()) for s in SETS},
        "generated": {s: int((generated.get("set", pd.Series(dtype=str)) == s).sum()) for s in SETS},
        "seeds_without_wordnet_sense": no_wordnet,
        "candidates": len(pool),
        "candidate_filter": pool.attrs.get("counts", {}),
        "forbidden_words": len(forbidden),
        **counts,
    }
    return scored, generated, summary


# --------------------------------------------------------------------------- report


def standardized_mean_differences(generated: pd.DataFrame) -> dict[str, float]:
    """|mean(seed) - mean(generated)| / pooled sd, per numeric feature."""
    out = {}
    for f in NUMERIC_FEATURES:
        a, b = generated[f"seed_{f}"].astype(float), generated[f].astype(float)
        pooled = math.sqrt((a.var(ddof=0) + b.var(ddof=0)) / 2) or 1.0
        out[f] = abs(a.mean() - b.mean()) / pooled
    return out


def words_markdown(generated: pd.DataFrame, summary: dict, game: str, role: str) -> str:
    s = summary["settings"]
    lines = [
        f"# Generated taboo instances: {game} / {role}",
        "",
        f"Seeds: hardness (1 - success rate, Beta prior of strength {s['prior_strength']} toward the "
        f"overall rate; val outcomes where a word has them) x impact (percentile of `{s['impact']}`), "
        f"top {s['quantile']:.0%} of words with >= {s['min_count']} training rows; easy controls from "
        "the other end. Each seed gets its nearest unused candidate (standardised zipf, length, "
        "log senses, hypernym depth; +{pos} for another part of speech, +{cat} for another "
        "WordNet category).".format(pos=s["pos_penalty"], cat=s["category_penalty"]),
        "",
        f"- words in words.parquet: {summary['words']}; seeds: {summary['seeds']}; generated: {summary['generated']}",
        f"- candidates after filtering: {summary['candidates']} (of wordfreq's top {s['candidate_top_n']}; "
        f"removed: {summary['candidate_filter']})",
        f"- candidates rejected for fewer than 3 related words: {summary['rejected_candidates']}",
        f"- forbidden target words (train, val, exclude list; and their stems): {summary['forbidden_words']}",
    ]
    if summary["seeds_without_wordnet_sense"]:
        lines.append(f"- seeds skipped, no WordNet sense: {summary['seeds_without_wordnet_sense']}")
    if not generated.empty:
        smd = standardized_mean_differences(generated)
        pos_match = (generated["pos"] == generated["seed_pos"]).mean()
        lines += [
            "- seed vs generated, standardised mean difference: "
            + ", ".join(f"{k} {v:.2f}" for k, v in smd.items())
            + f"; same part of speech: {pos_match:.0%}",
            "",
            "| set | experiment | seed | hardness | impact | generated | related words | pos | category | distance |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in generated.sort_values(["set", "experiment", "seed_word"]).itertuples():
            lines.append(
                f"| {r.set} | {r.experiment} | {r.seed_word} | {r.seed_hardness:.2f} | {r.seed_impact:.2f} | "
                f"**{r.word}** | {', '.join(r.related_words)} | {r.seed_pos}→{r.pos} | "
                f"{r.seed_category}→{r.category} | {r.distance:.2f} |"
            )
    return "\n".join(lines) + "\n"


def write_generated(
    words_path,
    train_path,
    val_path,
    schema_path,
    settings: GenerateSettings,
    exclude_path,
    describer_template,
    guesser_template,
    game,
    role,
    instances_out,
    control_out,
    words_out,
    markdown_out,
    summary_out,
    html_out=None,
):
    """The generate_instances rule."""
    from playpen_attribution.core.io import write_json, write_parquet, write_text

    templates = read_templates(describer_template, guesser_template)
    words = pd.read_parquet(words_path)
    train, val = pd.read_parquet(train_path), pd.read_parquet(val_path)
    scored, generated, summary = generate(words, train, val, settings, read_exclude_words(exclude_path))
    if generated.empty or not (generated["set"] == "hard").any():
        raise WorkflowInputError(
            f"no hard seed got a generated word (summary: {summary}); lower generate.min_count or raise quantile"
        )
    outputs = {}
    for name, subset in (
        ("hard", generated[generated["set"] == "hard"]),
        ("easy", generated[generated["set"] == "easy"]),
    ):
        outputs[name] = build_instances(subset, templates, settings.max_turns)
        validate_instances(outputs[name], schema_path)
    # clembench's key order (write_json would sort the keys)
    write_text(json.dumps(outputs["hard"], indent=2) + "\n", instances_out)
    write_text(json.dumps(outputs["easy"], indent=2) + "\n", control_out)
    provenance = generated.merge(
        scored[["target_word", "shrunk_success_rate", "success_rate", "outcome_source"]].rename(
            columns=lambda c: c if c == "target_word" else f"seed_{c}"
        ),
        left_on="seed_word",
        right_on="target_word",
        how="left",
    ).drop(columns="target_word")
    write_parquet(provenance, words_out)
    write_json(summary, summary_out)
    text = words_markdown(generated, summary, game, role)
    write_text(text, markdown_out)
    if html_out:
        from playpen_attribution.core.render import markdown_html

        write_text(markdown_html(text, f"generated words: {game} / {role}"), html_out)
    log.info("generated %s", summary["generated"])
