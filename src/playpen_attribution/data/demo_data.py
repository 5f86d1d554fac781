"""A deterministic, offline stand-in for the playpen `interactions` data.

It writes rows in exactly the hub schema (see `data.hub_features`) for two games:
- taboo: a WordDescriber gives clues, a WordGuesser guesses; both views of each episode;
- wordle: a single Guesser.

Prompts, words and clues are this project's own. Words come in three frequency bands;
rarer words are harder to guess, so outcomes carry a signal attribution can find.
Episodes include one-turn and multi-turn chats, repeated guesses (the same assistant
string twice in one chat), and aborted episodes (malformed replies).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from playpen_attribution.core.prompts import DESCRIBER_PROMPT, GUESSER_PROMPT, WORDLE_PROMPT

# word: (band, forbidden related words, clues from most to least helpful)
TABOO_WORDS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "bread": (
        "high",
        ("bake", "loaf", "flour"),
        ("A staple food you slice for sandwiches.", "Toasted in the morning.", "Sold at a bakery."),
    ),
    "river": (
        "high",
        ("water", "stream", "flow"),
        ("It runs from the mountains to the sea.", "Boats travel along it.", "The Nile is one."),
    ),
    "chair": (
        "high",
        ("sit", "seat", "table"),
        ("Furniture with four legs and a back.", "You pull it up to a desk.", "Found around a dining table."),
    ),
    "money": (
        "high",
        ("cash", "coin", "bank"),
        ("What you pay with in a shop.", "Dollars and euros.", "It is said to not grow on trees."),
    ),
    "window": (
        "high",
        ("glass", "pane", "view"),
        (
            "You look through it to see outside.",
            "Opened for fresh air.",
            "Part of a wall that lets light in.",
        ),
    ),
    "doctor": (
        "high",
        ("nurse", "hospital", "medicine"),
        ("Someone you visit when you are ill.", "Wears a white coat at work.", "Writes prescriptions."),
    ),
    "garden": (
        "high",
        ("plant", "flower", "grow"),
        (
            "An outdoor space behind a house with beds of roses.",
            "Where you grow vegetables.",
            "Needs watering in summer.",
        ),
    ),
    "winter": (
        "high",
        ("icy", "december", "chilly"),
        ("The months with frost and short days.", "Comes after autumn.", "When people go skiing."),
    ),
    "kitchen": (
        "high",
        ("cook", "food", "oven"),
        ("The room where meals are made.", "Has a sink, a fridge and a stove.", "Chefs work in one."),
    ),
    "letter": (
        "high",
        ("mail", "write", "post"),
        ("You put it in an envelope.", "A message sent on paper.", "Also a symbol of the alphabet."),
    ),
    "ladder": (
        "medium",
        ("climb", "step", "rung"),
        (
            "A tool you use to reach high shelves.",
            "Painters lean it against a wall.",
            "Firefighters carry a tall one.",
        ),
    ),
    "candle": (
        "medium",
        ("wax", "flame", "light"),
        ("It burns slowly on a birthday cake.", "Used when the power goes out.", "Has a wick."),
    ),
    "harbor": (
        "medium",
        ("port", "ship", "dock"),
        ("A sheltered place where boats stay.", "Ferries leave from it.", "Sailors come home to it."),
    ),
    "pepper": (
        "medium",
        ("salt", "spice", "hot"),
        (
            "Ground over pasta from a mill.",
            "Black or white, it makes you sneeze.",
            "Also a red or green vegetable.",
        ),
    ),
    "helmet": (
        "medium",
        ("head", "protect", "hat"),
        ("Cyclists wear it for safety.", "Hard shell worn by builders.", "Knights wore one of metal."),
    ),
    "puzzle": (
        "medium",
        ("piece", "solve", "game"),
        (
            "A picture cut into many parts.",
            "Something that needs thinking to work out.",
            "A crossword is one.",
        ),
    ),
    "saddle": (
        "medium",
        ("horse", "ride", "seat"),
        ("A rider sits on it.", "Strapped to the back of an animal.", "Bicycles have one too."),
    ),
    "anchor": (
        "medium",
        ("ship", "boat", "sea"),
        (
            "Heavy metal object that keeps a vessel in place.",
            "Dropped to the sea floor.",
            "Sailors have it tattooed.",
        ),
    ),
    "blanket": (
        "medium",
        ("bed", "warm", "cover"),
        (
            "Soft and woolly, you pull it over you at night.",
            "Keeps you cozy on the sofa.",
            "Spread out for a picnic.",
        ),
    ),
    "whistle": (
        "medium",
        ("blow", "sound", "referee"),
        (
            "A small tool that makes a sharp noise.",
            "Used in football to stop play.",
            "A kettle does it when boiling.",
        ),
    ),
    "lantern": (
        "low",
        ("lamp", "light", "candle"),
        (
            "Portable light with a handle, often for camping.",
            "Hung outside at a festival.",
            "Old miners carried one.",
        ),
    ),
    "thimble": (
        "low",
        ("sew", "finger", "needle"),
        (
            "A small cap that protects a fingertip.",
            "Used with a needle and thread.",
            "A piece in an old board game.",
        ),
    ),
    "walrus": (
        "low",
        ("tusk", "seal", "arctic"),
        ("A large sea mammal with long teeth.", "Lives on arctic ice.", "Has whiskers and blubber."),
    ),
    "compass": (
        "low",
        ("north", "direction", "needle"),
        ("It always points one way.", "Hikers use it with a map.", "Also draws circles in geometry."),
    ),
    "quarry": (
        "low",
        ("stone", "mine", "rock"),
        ("A pit where stone is dug out.", "Also the animal a hunter chases.", "Marble comes from one."),
    ),
    "gutter": (
        "low",
        ("rain", "roof", "drain"),
        (
            "A channel along the edge of a roof.",
            "Leaves clog it in autumn.",
            "Where a bowling ball goes when missed.",
        ),
    ),
    "bellows": (
        "low",
        ("air", "fire", "blow"),
        ("A device you squeeze to blow on a fire.", "A blacksmith uses it.", "An accordion has one."),
    ),
    "trowel": (
        "low",
        ("garden", "dig", "tool"),
        ("A small hand tool for planting.", "Masons spread mortar with it.", "Like a tiny spade."),
    ),
    "sextant": (
        "low",
        ("navigate", "star", "ship"),
        (
            "An old tool to measure the angle of the sun at sea.",
            "Used by navigators before GPS.",
            "Has a mirror and an arc.",
        ),
    ),
    "plinth": (
        "low",
        ("base", "statue", "column"),
        ("The block a statue stands on.", "Bottom of a column.", "A low stand in a museum."),
    ),
}
# Plausible wrong guesses, used when the guesser misses.
DISTRACTORS = (
    "table",
    "ocean",
    "lamp",
    "coin",
    "boat",
    "tool",
    "house",
    "stone",
    "road",
    "cup",
    "hat",
    "bird",
    "door",
    "rope",
    "shelf",
    "fire",
    "shell",
    "glass",
    "wheel",
    "clock",
)
GUESS_PROBABILITY = {"high": 0.45, "medium": 0.25, "low": 0.1}

WORDLE_WORDS = ("crane", "plant", "stone", "light", "bread", "chair", "sweet", "grass", "flame", "river")
WORDLE_OPENERS = ("arise", "slate", "crane", "audio", "stare")

MODELS = ("demo-model-a", "demo-model-b")


def _wordle_feedback(guess: str, target: str) -> str:
    marks = []
    for g, t in zip(guess, target):
        marks.append("G" if g == t else ("Y" if g in target else "X"))
    return " ".join(f"{c}={m}" for c, m in zip(guess, marks))


def _meta(experiment, role, model, outcome, player, task_id, game="taboo"):
    return {
        "experiment": experiment,
        "game": game,
        "game_role": role,
        "model": model,
        "outcome": outcome,
        "player_name": player,
        "task_id": task_id,
    }


def taboo_episode(rng: random.Random, word: str, model: str, task_id: int) -> list[dict]:
    """Both players' views of one taboo episode."""
    band, related, clues = TABOO_WORDS[word]
    experiment = f"{band}_en"
    describer = [{"role": "user", "content": DESCRIBER_PROMPT.format(word=word, related=", ".join(related))}]
    guesser: list[dict] = []
    outcome = "failure"
    guesses: list[str] = []
    for turn, clue in enumerate(clues):
        hint = f"HINT: {clue}"
        describer.append({"role": "assistant", "content": hint})
        guesser.append({"role": "user", "content": GUESSER_PROMPT.format(clue=clue) if turn == 0 else hint})
        if rng.random() < 0.04:  # a malformed reply aborts the episode, as in clembench
            guesser.append({"role": "assistant", "content": f"I think the answer is {word}!"})
            outcome = "aborted"
            break
        if rng.random() < GUESS_PROBABILITY[band] * (0.6 + 0.4 * turn):
            guess = word
        elif guesses and rng.random() < 0.35:
            guess = guesses[-1]  # stubborn guessers repeat themselves verbatim
        else:
            guess = rng.choice(DISTRACTORS)
        guesses.append(guess)
        reply = f"GUESS: {guess.upper() if rng.random() < 0.5 else guess}"
        guesser.append({"role": "assistant", "content": reply})
        if guess == word:
            outcome = "success"
            break
        if turn < len(clues) - 1:
            describer.append({"role": "user", "content": reply})
    return [
        {
            "messages": describer,
            "meta": _meta(experiment, "WordDescriber", model, outcome, "Player 1", task_id),
        },
        {"messages": guesser, "meta": _meta(experiment, "WordGuesser", model, outcome, "Player 2", task_id)},
    ]


def wordle_episode(rng: random.Random, target: str, model: str, task_id: int) -> dict:
    messages = [{"role": "user", "content": WORDLE_PROMPT}]
    outcome = "failure"
    for turn in range(3):
        guess = target if rng.random() < 0.3 * (turn + 1) else rng.choice(WORDLE_OPENERS)
        messages.append({"role": "assistant", "content": f"GUESS: {guess}"})
        if guess == target:
            outcome = "success"
            break
        if turn < 2:
            messages.append({"role": "user", "content": "Feedback: " + _wordle_feedback(guess, target)})
    if rng.random() < 0.05:
        outcome = "aborted"
    return {
        "messages": messages,
        "meta": _meta("standard", "Guesser", model, outcome, "Player 1", task_id, game="wordle"),
    }


def generate_split(seed: int, n_taboo_episodes: int, n_wordle_episodes: int) -> list[dict]:
    rng = random.Random(seed)
    words = sorted(TABOO_WORDS)
    rows: list[dict] = []
    # task_id is the index within an experiment (band), as in clembench's instance files.
    next_task_id: dict[str, int] = {}
    for i in range(n_taboo_episodes):
        word = words[i % len(words)] if i < len(words) else rng.choice(words)
        model = MODELS[i % len(MODELS)]
        band = TABOO_WORDS[word][0]
        task_id = next_task_id.get(band, 0)
        next_task_id[band] = task_id + 1
        rows.extend(taboo_episode(rng, word, model, task_id))
    for i in range(n_wordle_episodes):
        rows.append(wordle_episode(rng, rng.choice(WORDLE_WORDS), MODELS[i % len(MODELS)], i))
    return rows


PLANTED_FILE = "planted.json"


def plant_copies(
    train: list[dict], validation: list[dict], n: int, seed: int
) -> tuple[list[dict], list[dict]]:
    """Copy `n` validation taboo episodes (both roles) into train under new task ids.

    The copies are appended, so every other training row keeps its position (and its
    row_id). Only episodes that the workflow keeps (not aborted) are copied. Returns the
    new training rows and the sidecar records that say which rows are copies.
    """
    rng = random.Random(seed)
    episodes: dict[tuple, list[dict]] = {}
    for row in validation:
        meta = row["meta"]
        if meta["game"] == "taboo" and meta["outcome"] != "aborted":
            episodes.setdefault((meta["experiment"], meta["task_id"], meta["model"]), []).append(row)
    keys = sorted(k for k, rows in episodes.items() if len(rows) == 2)
    if n > len(keys):
        raise ValueError(f"planted_copies={n}, but validation has only {len(keys)} complete taboo episodes")
    chosen = rng.sample(keys, n)
    next_task_id = {}
    for row in train:
        meta = row["meta"]
        if meta["game"] == "taboo":
            exp = meta["experiment"]
            next_task_id[exp] = max(next_task_id.get(exp, 0), meta["task_id"] + 1)
    planted_rows, sidecar = [], []
    for experiment, task_id, model in chosen:
        new_id = next_task_id.get(experiment, 0)
        next_task_id[experiment] = new_id + 1
        for row in episodes[(experiment, task_id, model)]:
            copy = json.loads(json.dumps(row))
            copy["meta"]["task_id"] = new_id
            planted_rows.append(copy)
            sidecar.append(
                {
                    "game": "taboo",
                    "game_role": row["meta"]["game_role"],
                    "experiment": experiment,
                    "model": model,
                    "task_id": new_id,
                    "copy_of_validation_task_id": task_id,
                }
            )
    return train + planted_rows, sidecar


def write_demo_dataset(
    out_dir: str | Path,
    *,
    seed: int,
    train_episodes: int,
    validation_episodes: int,
    wordle_episodes: int,
    planted_copies: int,
) -> dict[str, int]:
    """Write train.jsonl, validation.jsonl and planted.json under out_dir; return row counts.

    `planted_copies` validation episodes are copied into train (see `plant_copies`);
    planted.json names them, for the check that the attribution finds them.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, n_taboo, split_seed in (
        ("train", train_episodes, seed),
        ("validation", validation_episodes, seed + 1),
    ):
        splits[split] = generate_split(
            split_seed, n_taboo, max(1, wordle_episodes * n_taboo // train_episodes)
        )
    splits["train"], sidecar = plant_copies(splits["train"], splits["validation"], planted_copies, seed + 2)
    for split, rows in splits.items():
        with open(out_dir / f"{split}.jsonl", "w") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    (out_dir / PLANTED_FILE).write_text(json.dumps(sidecar, indent=2) + "\n")
    return {split: len(rows) for split, rows in splits.items()} | {"planted_rows": len(sidecar)}
