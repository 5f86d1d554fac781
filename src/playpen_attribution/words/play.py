"""Play taboo through clemcore (issue 22): the rule `play`.

Three sets are played with the same players and decoding: `hard` (generated/instances.json),
`easy` (generated/control_instances.json) and `eval` (the held-out episodes' own words, or
the validation episodes' where there is no eval split, with the related words their
describer prompts name). Each set's instances are copied to played/{set}/instances.json
with the experiments renamed `{set}_{name}` (so that (experiment, task_id, model) keys an
episode across the sets) and clemcore's records are kept under played/{set}/records/.

Players (config `play.players.{describer,guesser}`): `adapter` (the base model with this
workflow's adapter of that role), `base` (the base model alone), or the name of any model
in clemcore's registry (its packaged one, or the user's `play.model_registry` file; API
keys come from the user's own clemcore key file, ~/.clemcore/key.json, never from this
repository). The first two are entries of clemcore's `huggingface_local`
backend in a model_registry.json that the rule writes under played/; clemcore reads it
from the working directory, so the games run from there.

played/episodes.jsonl: both players' views of every episode in the hub schema (`messages`,
`meta` with game, game_role, outcome, experiment, task_id, model, player_name): a dataset
that prepare_data reads unchanged, e.g. as the next round's extra training data.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from playpen_attribution.core.errors import WorkflowInputError

log = logging.getLogger(__name__)

GAME_DIR = Path(__file__).parent / "clemgame" / "taboo"
SETS = ("hard", "easy", "eval")
ROLES = ("WordDescriber", "WordGuesser")
PLAYER_KEYS = {"describer": "WordDescriber", "guesser": "WordGuesser"}
# Gemma's end of turn and anything after it; other models' markers are kept verbatim.
EOS_TO_CULL = r"(<end_of_turn>|<eos>)[\s\S]*$"


def import_clemcore():
    """Import clemcore without its logging setup: at import it points the root logger at a
    clembench.log in the working directory and disables the loggers that exist by then
    (ours). Call before any clemcore import."""
    import sys

    if "clemcore" in sys.modules:
        return sys.modules["clemcore"]
    import logging.config

    original = logging.config.dictConfig
    logging.config.dictConfig = lambda *args, **kwargs: None
    try:
        import clemcore
    finally:
        logging.config.dictConfig = original
    # Its per-key and per-score INFO records would bury ours in the job's log.
    for name in ("clemcore.clemgame", "clemcore.backends"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return clemcore


@contextlib.contextmanager
def working_directory(path):
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


# --------------------------------------------------------------------------- players


def registry_entry(name: str, base_model: str, chat_template: str | None, adapter: str | None) -> dict:
    """A clemcore model registry entry of the huggingface_local backend."""
    config = {
        "premade_chat_template": chat_template is None,
        "eos_to_cull": EOS_TO_CULL,
        "padding_side": "left",
    }
    if chat_template is not None:
        config["custom_chat_template"] = chat_template
    if adapter is not None:
        config["peft_model"] = str(adapter)
    return {
        "model_name": name,
        "backend": "huggingface_local",
        "huggingface_id": str(base_model),
        "release_date": "",
        "open_weight": True,
        "parameters": "",
        "languages": ["en"],
        "context_size": "",
        "license": {"name": "", "url": ""},
        "model_config": config,
    }


def player_models(players: dict, base_model: str, chat_template: str | None, adapters: dict) -> tuple:
    """(model names in player order, registry entries) for `play.players`.

    `adapters` maps a role to its adapter directory (for `adapter` players)."""
    names, entries = [], {}
    for key, role in PLAYER_KEYS.items():
        kind = players[key]
        if kind == "adapter":
            if role not in adapters:
                raise WorkflowInputError(
                    f"play.players.{key}: adapter needs this workflow's {role} adapter; "
                    f"add {{game: taboo, role: {role}}} to targets"
                )
            name = f"{role}-adapter"
            entries[name] = registry_entry(name, base_model, chat_template, adapters[role])
        elif kind == "base":
            name = "base"
            entries[name] = registry_entry(name, base_model, chat_template, None)
        else:
            name = kind  # any model of clemcore's registry
        names.append(name)
    return names, list(entries.values())


def resolve_base_model(name_or_path: str, revision: str | None) -> str:
    """A local directory for the base model: clemcore's backend takes no revision."""
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return str(local.resolve())
    if revision is None:
        return name_or_path
    from huggingface_hub import snapshot_download

    return snapshot_download(name_or_path, revision=revision)


def load_player_models(names: list[str], entries: list[dict], workdir: Path, gen_args: dict, threads: int):
    """Write workdir/model_registry.json and load the players' models through clemcore."""
    import_clemcore()
    from clemcore import backends

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "model_registry.json").write_text(json.dumps(entries, indent=2) + "\n")
    with working_directory(workdir):
        models = backends.load_models(list(names), gen_args)
    # Stop at the end of the turn, as the held-out check's decoding does (games.py): a
    # generation config may name <eos> alone.
    from playpen_attribution.words.games import stop_token_ids

    for model in models:
        if hasattr(model, "model") and hasattr(model, "tokenizer"):
            model.model.generation_config.eos_token_id = stop_token_ids(model.tokenizer)
    # clemcore's huggingface backend sets torch to one thread; give the job its threads back.
    import torch

    torch.set_num_threads(max(1, threads))
    return models


# --------------------------------------------------------------------------- instances


def set_instances(instances: dict, set_name: str, clue_prefix: str | None = None) -> dict:
    """A set's copy of a clembench taboo instances.json: experiments renamed {set}_{name},
    `clue_prefix` added where configured."""
    out = {"experiments": []}
    for experiment in instances["experiments"]:
        experiment = dict(experiment)
        experiment["name"] = f"{set_name}_{experiment['name']}"
        if clue_prefix:
            experiment["clue_prefix"] = clue_prefix
        out["experiments"].append(experiment)
    return out


def eval_words(keys: set, validation_rows: list[dict], target_word_patterns) -> list[dict]:
    """The target word and related words of each episode in `keys` ((experiment, task_id,
    model) of the eval rows), from its describer's first prompt in the validation split;
    each word once (its first episode's related words and experiment)."""
    from playpen_attribution.data.prepare import extract_target_word

    out, seen = [], set()
    for row in validation_rows:
        meta = row["meta"]
        if meta["game"] != "taboo" or meta["game_role"] != "WordDescriber":
            continue
        if (meta["experiment"], meta["task_id"], meta["model"]) not in keys:
            continue
        prompt = next((m["content"] for m in row["messages"] if m["role"] == "user"), "")
        word = extract_target_word(prompt, target_word_patterns)
        related = related_from_prompt(prompt)
        if not word or not related or word in seen:
            continue
        seen.add(word)
        out.append({"word": word, "related": related, "experiment": meta["experiment"]})
    return sorted(out, key=lambda r: r["word"])


def eval_instances(words: list[dict], templates: dict, max_turns: int) -> dict:
    """clembench's taboo instances of `eval_words`, with the project's (or configured) prompts."""
    import pandas as pd

    from playpen_attribution.words.generate import build_instances, stem

    if not words:
        raise WorkflowInputError("no eval episode has a describer prompt naming its word and related words")
    frame = pd.DataFrame(
        {
            "word": [w["word"] for w in words],
            "related_words": [w["related"] for w in words],
            "stem": [stem(w["word"]) for w in words],
            "related_stems": [[stem(r) for r in w["related"]] for w in words],
            "experiment": [w["experiment"] for w in words],
        }
    )
    return build_instances(frame, templates, max_turns)


def related_from_prompt(prompt: str) -> list[str] | None:
    """The related words a describer prompt names (clembench's `- word` lines or the demo's
    comma list)."""
    import re

    match = re.search(r"Related words are:\s*\n\s*\n((?:- [^\n]+\n?)+)", prompt)
    if match:
        return [line[2:].strip() for line in match.group(1).strip().splitlines()]
    match = re.search(r"\(or any form of them\):\s*([^\n]+?)\.\s*\n", prompt)
    if match:
        return [w.strip() for w in match.group(1).split(",") if w.strip()]
    return None


# --------------------------------------------------------------------------- games


def game_spec(game_dir: Path | None = None):
    import_clemcore()
    from clemcore.clemgame import GameSpec

    return GameSpec.from_directory(str(game_dir or GAME_DIR))[0]


def play_set(spec, instances_path: Path, models: list, results_dir: Path) -> list[Path]:
    """Play every instance of `instances_path` with `models` (describer, guesser) through
    clemcore, keep its records under results_dir, score them; returns the interactions files."""
    import_clemcore()
    from clemcore.backends import Model
    from clemcore.clemgame import (
        ExperimentFileSaver,
        GameBenchmark,
        GameBenchmarkCallbackList,
        GameInstances,
        InstanceFileSaver,
        InteractionsFileSaver,
        ResultsFolder,
        RunFileSaver,
    )
    from clemcore.clemgame.runners import dispatch

    results_dir = Path(results_dir).resolve()
    folder = ResultsFolder(results_dir, run_dir=Model.to_identifier(models))
    infos = Model.to_infos(models)
    callbacks = GameBenchmarkCallbackList(
        [
            InstanceFileSaver(folder),
            ExperimentFileSaver(folder, player_model_infos=infos),
            InteractionsFileSaver(folder, player_model_infos=infos),
            RunFileSaver(folder, player_model_infos=infos),
        ]
    )
    instances_path = Path(instances_path).resolve()
    with GameBenchmark.load_from_spec(spec) as benchmark:
        instances = GameInstances.from_file(spec.game_name, str(instances_path.parent), instances_path.stem)
        dispatch.run(benchmark, instances, models, callbacks=callbacks, batch_size=1)
        files = sorted(results_dir.rglob("interactions.json"))
        benchmark.compute_scores(files)
    return files


def _player(description) -> tuple[str, str]:
    """(game role, model name) of a record's player: clemcore's dict or clembench's string."""
    if isinstance(description, dict):
        return description["game_role"], description["model_name"]
    role, _, model = description.partition(", ")
    return role, model


def episode_rows(interactions_file: Path) -> list[dict]:
    """Both players' views of one recorded episode, in the hub schema."""
    interactions_file = Path(interactions_file)
    record = json.loads(interactions_file.read_text())
    instance = json.loads((interactions_file.parent / "instance.json").read_text())
    experiment = json.loads((interactions_file.parent.parent / "experiment.json").read_text())
    outcome = record.get("outcome")
    if outcome is None:  # another game master's records: clemcore's episode flags
        outcome = (
            "aborted"
            if record.get("Aborted")
            else "success"
            if record.get("Success")
            else "failure"
            if record.get("Lose")
            else None
        )
    players = {name: _player(d) for name, d in sorted(record["players"].items()) if name != "GM"}
    models = [model for _, model in players.values()]
    pair = "--".join(models) if len(set(models)) > 1 else models[0]
    views = {name: {"role": role, "messages": []} for name, (role, _) in players.items()}
    for round_events in record["turns"]:
        for event in round_events:
            action = event["action"]
            if action["type"] == "send message" and event["to"] in views:
                views[event["to"]]["messages"].append({"role": "user", "content": action["content"]})
            elif action["type"] == "get message" and event["from"] in views:
                views[event["from"]]["messages"].append({"role": "assistant", "content": action["content"]})
    rows = []
    for name, view in views.items():
        if not view["messages"]:
            continue  # a player that never got its turn (an abort before it)
        rows.append(
            {
                "messages": view["messages"],
                "meta": {
                    "experiment": experiment.get("name", instance.get("experiment", "")),
                    "game": "taboo",
                    "game_role": view["role"],
                    "model": pair,
                    "outcome": outcome,
                    "player_name": name,
                    "task_id": int(instance["game_id"]),
                },
            }
        )
    return rows


def limit_instances(instances: dict, max_instances: int | None) -> dict:
    """The first `max_instances` game instances (in file order), or all."""
    if max_instances is None:
        return instances
    out, left = {"experiments": []}, max_instances
    for experiment in instances["experiments"]:
        if left <= 0:
            break
        kept = experiment["game_instances"][:left]
        left -= len(kept)
        out["experiments"].append(dict(experiment, game_instances=kept))
    return out


def read_episodes(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def run_play(
    settings: dict,
    seed: int,
    threads: int,
    base_model: str,
    revision: str | None,
    tokenizer_dir,
    adapters: dict,
    hard_path,
    easy_path,
    eval_path,
    val_path,
    dataset: dict,
    templates: dict,
    max_turns: int,
    out_dir,
    episodes_out,
) -> dict:
    """The play rule: three sets, the same players and decoding; records under
    out_dir/{set}/, both views of every episode in episodes_out. Returns a summary."""
    import pandas as pd
    import torch

    from playpen_attribution.core.io import write_text
    from playpen_attribution.data.prepare import load_splits
    from playpen_attribution.sft.models import load_tokenizer

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    chat_template = load_tokenizer(str(tokenizer_dir)).chat_template
    # Absolute paths: clemcore loads the models from out_dir (its model_registry.json).
    adapters = {role: str(Path(path).resolve()) for role, path in adapters.items()}
    names, entries = player_models(
        settings["players"], resolve_base_model(base_model, revision), chat_template, adapters
    )
    if settings.get("model_registry"):  # the user's own entries, after ours
        entries += json.loads(Path(settings["model_registry"]).read_text())
    temperature = float(settings["temperature"])
    gen_args = {"temperature": temperature, "max_tokens": int(settings["max_new_tokens"])}
    models = load_player_models(names, entries, out_dir, gen_args, threads)
    spec = game_spec(Path(settings["game_path"]).resolve() if settings.get("game_path") else None)

    frame = pd.read_parquet(eval_path)
    if frame.empty:
        log.info("no eval rows: the eval set takes the validation episodes' words")
        frame = pd.read_parquet(val_path)
    keys = set(zip(frame["experiment"], frame["task_id"].astype(int), frame["model"], strict=True))
    validation = load_splits(dataset["path"], dataset.get("name"), dataset.get("revision"))["validation"]
    sources = {
        "hard": json.loads(Path(hard_path).read_text()),
        "easy": json.loads(Path(easy_path).read_text()),
        "eval": eval_instances(
            eval_words(keys, validation.to_list(), dataset["target_word_patterns"]), templates, max_turns
        ),
    }
    rows, summary = (
        [],
        {"players": dict(zip(PLAYER_KEYS, names, strict=True)), "gen_args": gen_args, "sets": {}},
    )
    for name in SETS:
        instances = set_instances(
            limit_instances(sources[name], settings.get("max_instances")), name, settings.get("clue_prefix")
        )
        set_dir = out_dir / name
        set_dir.mkdir(parents=True, exist_ok=True)
        path = set_dir / "instances.json"
        path.write_text(json.dumps(instances, indent=2) + "\n")
        torch.manual_seed(seed)  # sampling (temperature > 0) is seeded per set; greedy ignores it
        with working_directory(out_dir):
            files = play_set(spec, path, models, set_dir / "records")
        set_rows = [row for f in files for row in episode_rows(f)]
        log.info("%s: %d episodes, %d rows", name, len(files), len(set_rows))
        summary["sets"][name] = {"episodes": len(files), "rows": len(set_rows)}
        rows += set_rows
    write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), episodes_out)
    return summary
