# Helpers and wildcard constraints shared by every rule. Light imports only.
import hashlib
import os
import re
import sys
from pathlib import Path

from playpen_attribution.core import runroot
from playpen_attribution.core.codeversion import code_version
from playpen_attribution.checks.counterfactual import (
    RANKED_KINDS,
    REMOVAL_PATTERN,
    parse_removal,
    removal_names,
)
from playpen_attribution.core.manifest import write_manifest
from playpen_attribution.attribution.pipelines import (
    PIPELINE_METHODS as BERGSON_PIPELINES,
)
from playpen_attribution.core.paths import (
    hub_id_problem,
    looks_like_local_path,
    tracked_data_files,
)
from playpen_attribution.checks.selection import arm_names as selection_arm_names
from playpen_attribution.checks.selection import arm_pattern as selection_arm_pattern
from playpen_attribution.checks.selection import parse_arm
from playpen_attribution.checks.selection import rankings as selection_rankings

# One result tree per run setup (config `results`): the demo writes under results/demo/,
# the research config under results/, so neither run ever touches the other's outputs.
# `results/demo/` and `./results/demo` are the same root (no `//` in any path).
RESULTS = config["results"] = runroot.normalise(config["results"])
if (_root_problem := runroot.problem_with_root(RESULTS)) is not None:
    raise WorkflowError(_root_problem)
if workflow.is_main_process:
    # A run killed by SIGKILL or SIGHUP left its record and Snakemake's locks: remove both
    # before Snakemake checks its locks, so a plain rerun needs no --unlock.
    runroot.clear_stale_runs(RESULTS)
    _LOCKS_BEFORE = runroot.snakemake_locks(os.getcwd())


def claim_results_root():
    """onstart (a real run, not a dry run; Snakemake holds its locks): stop if another
    checkout's live run writes this tree or a folder in it cannot be written, remove what
    killed jobs left, and record this run."""
    if not workflow.is_main_process:  # a job's own Snakemake (SLURM, --no-hooks aside)
        return
    here = os.path.abspath(os.getcwd())
    others = runroot.other_live_runs(RESULTS)
    elsewhere = [r for r in others if r.get("workdir") != here]
    if elsewhere:
        raise WorkflowError(
            f"results: {os.path.abspath(RESULTS)} is in use by another run "
            f"({runroot.describe(elsewhere[0])}); wait for it, or give this checkout its own "
            f"`results:` (if that run is gone, delete {RESULTS}/{runroot.RUNS_DIR}/)"
        )
    read_only = runroot.read_only_folders(RESULTS)
    if read_only:
        raise WorkflowError(
            f"{read_only[0]} cannot be written (read-only or immutable), so no job can replace "
            f"an output in it: make {RESULTS} writable (chmod -R u+w, chattr -R -i) or set "
            "`results:` to another directory"
        )
    if not others:
        runroot.remove_temporaries(RESULTS)
    runroot.claim(RESULTS, here, runroot.snakemake_locks(here) - _LOCKS_BEFORE)


# Outputs of the offline demo's own rules; a config that names them gets them built.
DEMO_DATA_DIR = "results/demo/playpen-data"
DEMO_DATA_FILES = [f"{DEMO_DATA_DIR}/train.jsonl", f"{DEMO_DATA_DIR}/validation.jsonl"]
# Which training rows are planted copies of validation rows: read only by the check of
# whether the attribution finds them, never by a ranking rule.
DEMO_PLANTED_FILE = f"{DEMO_DATA_DIR}/planted.json"
PLANTED = (
    config["dataset"]["path"] == DEMO_DATA_DIR
    and config.get("demo_data", {}).get("planted_copies", 0) > 0
)
DEMO_MODEL_DIR = "results/demo/models/gemma-3-270m"
# The content manifest of the demo's model directory: written with it by prepare_demo_model.
DEMO_MODEL_MANIFEST = f"{DEMO_MODEL_DIR}.manifest.json"

# Threads for the torch-heavy jobs; Snakemake scales this down to --cores and exports it
# as OMP_NUM_THREADS, which torch follows.
MAX_THREADS = config["threads"]
# Each rule's `runtime` (minutes) is its wall-time limit on a cluster, sized for the
# research config on one GPU; local runs ignore it. Threads are set here, from the config,
# and nowhere else; memory, partitions and GPUs only in the cluster profile
# (profiles/slurm), which is where a cluster's sizes are known.

# `targets` is a list, so a config overlay replaces it whole (Snakemake merges dicts
# key by key, so a dict could never drop a game). The schema refuses an empty list.
TARGETS = [(t["game"], t["role"]) for t in config["targets"]]
GAMES = sorted({game for game, _ in TARGETS})
ROLES = sorted({role for _, role in TARGETS})


# Attribution methods run side by side under attribution/{method}/; `none` needs no Hessian.
METHODS = config["attribution"]["methods"]
REPORT_METHOD = config["attribution"]["report_method"]
if REPORT_METHOD not in METHODS:
    raise ValueError(
        f"attribution.report_method: {REPORT_METHOD!r} is not in attribution.methods {METHODS}"
    )
# Bergson's pipelines (trackstar*, trak) run as one job each (rule pipeline_attribution);
# the other methods reduce the query and score (rules reduce_query, score_train), the
# factored ones after fitting their Hessian (rule hessian).
PIPELINE_METHODS = [m for m in METHODS if m in BERGSON_PIPELINES]
FACTORED_METHODS = [m for m in METHODS if m != "none" and m not in BERGSON_PIPELINES]
REDUCE_SCORE_METHODS = [m for m in METHODS if m not in BERGSON_PIPELINES]


# A role only after its own game (a lookbehind): with taboo/WordGuesser and wordle/Guesser
# configured, taboo/Guesser matches no rule and is explained (rule unknown_target).
wildcard_constraints:
    game="|".join(GAMES),
    role="|".join(f"(?<={re.escape(game)}/){re.escape(role)}" for game, role in TARGETS),
    method="|".join(METHODS),


def per_target(pattern):
    """Expand a {results}/{game}/{role}/... pattern over the configured game x role pairs."""
    return [pattern.format(game=game, role=role) for game, role in TARGETS]


def all_targets():
    targets = per_target(f"{RESULTS}/{{game}}/{{role}}/topk.parquet")
    # Per-word influence needs target words, which only taboo has.
    targets += [
        f"{RESULTS}/{game}/{role}/words.parquet"
        for game, role in TARGETS
        if game == "taboo"
    ]
    if len(METHODS) > 1:
        targets += per_target(
            f"{RESULTS}/{{game}}/{{role}}/attribution/compare.parquet"
        )
    if PLANTED:
        targets += [
            f"{RESULTS}/{game}/{role}/attribution/planted.parquet"
            for game, role in TARGETS
            if game == "taboo"
        ]
    return targets


def _local_reference(key, path, rule_outputs, kind):
    """Check a configured path before any job starts: a path that is neither built by a
    rule nor on disk is a typo, not a hub id; so is a name that cannot be a hub id here
    (the shape of a path, or the hub offline and the name not in its cache)."""
    if path in rule_outputs or os.path.exists(path):
        return
    if looks_like_local_path(path):
        raise ValueError(
            f"{key}: {path!r} looks like a local path (it starts with ./ ../ or /, or has more "
            f"than one slash) but does not exist relative to {os.getcwd()}; a hub id is owner/name"
        )
    problem = hub_id_problem(key, path, kind)
    if problem is not None and problem[1]:
        raise WorkflowError(problem[0])
    if problem is not None and workflow.is_main_process:
        print(f"WARNING {problem[0]}: a job that loads it will fail", file=sys.stderr)


_local_reference("dataset.path", config["dataset"]["path"], [DEMO_DATA_DIR], "datasets")
_local_reference(
    "model.name_or_path", config["model"]["name_or_path"], [DEMO_MODEL_DIR], "models"
)
if config["model"].get("chat_template") and not os.path.isfile(
    config["model"]["chat_template"]
):
    raise ValueError(
        f"model.chat_template: {config['model']['chat_template']!r} is not a file"
    )


def dataset_input(wildcards):
    """The data files themselves, not their directory: rewriting a file inside a
    directory does not change the directory's mtime, so Snakemake would not see it."""
    path = config["dataset"]["path"]
    extra = list(config["dataset"].get("extra_files") or [])
    if path == DEMO_DATA_DIR:
        return DEMO_DATA_FILES + extra
    if looks_like_local_path(path) or os.path.exists(path):
        return (tracked_data_files(path) or [path]) + extra
    return extra  # a hub id: pinned by dataset.revision


def prepared_data(wildcards):
    """Nothing, once prepare_data (a checkpoint) is done for this target; until then it
    defers the job. Every job after prepare_data takes it, so that all of them are planned
    again when it has run: a prepare_data whose outputs came out unchanged (an edit of
    another game's rows) then reruns nothing after it. A dry run cannot know that yet and
    lists them all."""
    checkpoints.prepare_data.get(game=wildcards.game, role=wildcards.role)
    return []


def _model_manifest():
    """Where the manifest of a local model directory lives (manifest.py), or None for a
    hub id (pinned by model.revision)."""
    path = config["model"]["name_or_path"]
    if path == DEMO_MODEL_DIR:
        return DEMO_MODEL_MANIFEST
    if os.path.isdir(path):
        return f"{RESULTS}/models/{Path(path).name}.manifest.json"
    return None


MODEL_MANIFEST = _model_manifest()
# Refreshed at parse time, dry runs included: rewritten only when a file of the model
# directory changed (hashing only files whose size or mtime changed), so that the rules
# that load the model see the change. Not in a cluster job's own parse of the Snakefile.
if (
    MODEL_MANIFEST
    and getattr(workflow.exec_mode, "name", "DEFAULT") == "DEFAULT"
    and os.path.isdir(config["model"]["name_or_path"])
    and (MODEL_MANIFEST != DEMO_MODEL_MANIFEST or os.path.exists(MODEL_MANIFEST))
):
    write_manifest(config["model"]["name_or_path"], MODEL_MANIFEST)


def model_input(wildcards):
    """The model directory's content manifest, not the directory: Snakemake sees a
    directory as one file, blind to an edit of the chat template or the weights in it.
    """
    return MODEL_MANIFEST or []


def chat_template_input(wildcards):
    return config["model"].get("chat_template") or []


def words_input(wildcards):
    """words.parquet for taboo (it needs target words), nothing for other games."""
    if wildcards.game != "taboo":
        return []
    return f"{RESULTS}/{wildcards.game}/{wildcards.role}/words.parquet"


def log_path(name):
    return f"{RESULTS}/logs/{{game}}/{{role}}/{name}.log"


def benchmark_path(name):
    """Snakemake's per-job wall time and peak memory, read by benchmarks/."""
    return f"{RESULTS}/benchmarks/{{game}}/{{role}}/{name}.tsv"


# Settings that change a gradient or a score. nproc_per_node (how many processes compute
# them) and the memory budget (a check) change nothing, so they are read from the config
# by the scripts, not passed as params that would rerun the jobs.
ATTRIBUTION_KEYS = (
    "unit_normalize",
    "projection_dim",
    "precision",
    "token_batch_size",
    "loss_reduction",
    "filter_modules",
)
# What the Hessian fit reads; reduce and score also read how it is inverted.
HESSIAN_FIT_KEYS = ("data", "use_dataset_labels", "hessian_dtype", "module_partitions")
INVERSION_KEYS = ("inversion", "damping_factor")


def attribution_resources(budget):
    """How an attribution job runs, not what it computes: resources never rerun a job.
    The memory budget (GB) is text because Snakemake truncates a float resource to an
    int (2.5 would become 2); the script parses it."""
    return {
        "nproc_per_node": config["attribution"]["nproc_per_node"],
        "memory_budget_gb": str(budget),
    }


def attribution_params(keys=ATTRIBUTION_KEYS):
    settings = config["attribution"]
    return canonical({key: settings.get(key) for key in keys})


# The Hessian fit does not depend on how the gradients are normalised afterwards.
HESSIAN_ATTRIBUTION_KEYS = tuple(k for k in ATTRIBUTION_KEYS if k != "unit_normalize")


def _preconditioner(method, keys):
    if method == "none":
        return None
    settings = config["attribution"]["preconditioner"]
    return canonical(
        {"method": method, "seed": config["seed"]}
        | {key: settings[key] for key in keys}
    )


def hessian_params(wildcards):
    """What the Hessian fit depends on (not how it is inverted afterwards)."""
    return _preconditioner(wildcards.method, HESSIAN_FIT_KEYS)


def preconditioner_params(wildcards):
    """The method's Hessian settings, or None for `none`: changing a preconditioner
    setting reruns the preconditioned methods' jobs only."""
    return _preconditioner(wildcards.method, HESSIAN_FIT_KEYS + INVERSION_KEYS)


def pipeline_params(wildcards):
    """One pipeline's settings: attribution.trackstar for the three TrackStar methods,
    attribution.trak for TRAK; changing them reruns that pipeline's job only."""
    section = "trak" if wildcards.method == "trak" else "trackstar"
    settings = dict(config["attribution"][section])
    if section == "trackstar" and wildcards.method != "trackstar":
        del settings["target_downweight_components"]  # only the mixed R uses it
    return canonical({"method": wildcards.method, "seed": config["seed"]} | settings)


def trak_checkpoints(wildcards):
    return (
        config["attribution"]["trak"]["checkpoints"]
        if wildcards.method == "trak"
        else []
    )


def hessian_tokens_input(wildcards):
    data = config["attribution"]["preconditioner"]["data"]
    splits = ["train", "val"] if data == "both" else [data]
    return [
        f"{RESULTS}/{wildcards.game}/{wildcards.role}/tokens/{split}"
        for split in splits
    ]


def hessian_input(wildcards):
    if wildcards.method == "none":
        return []
    return f"{RESULTS}/{wildcards.game}/{wildcards.role}/attribution/{wildcards.method}/hessian"


def report_scores(wildcards):
    """The scores that topk.parquet and words.parquet report (attribution.report_method)."""
    return f"{RESULTS}/{wildcards.game}/{wildcards.role}/attribution/{REPORT_METHOD}/scores.parquet"


def report_matrix(wildcards):
    return f"{RESULTS}/{wildcards.game}/{wildcards.role}/attribution/{REPORT_METHOD}/matrix.npy"


def report_matrix_ids(wildcards):
    return f"{RESULTS}/{wildcards.game}/{wildcards.role}/attribution/{REPORT_METHOD}/matrix_ids.json"


def method_scores(wildcards):
    return [
        f"{RESULTS}/{wildcards.game}/{wildcards.role}/attribution/{method}/scores.parquet"
        for method in METHODS
    ]


PACKAGE_DIR = Path(workflow.basedir) / "src" / "playpen_attribution"
SCRIPTS_DIR = Path(workflow.basedir) / "workflow" / "scripts"


def code(script_name):
    """Hash of the package modules that a rule's script runs (see codeversion.py): a
    param, so that editing e.g. tokens.py reruns tokenize and what depends on it."""
    return code_version(SCRIPTS_DIR / script_name, PACKAGE_DIR)


def canonical(value):
    """Dicts with sorted keys, recursively. Snakemake compares params by their text, so key
    order (which differs between config files) must not look like a parameter change."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


def config_section(name):
    """A config section as rule params, in canonical form."""
    return canonical(config.get(name, {}))


# Counterfactual check (workflow/rules/counterfactual.smk).
COUNTERFACTUAL = config["counterfactual"]
# The scores that rank the removals: those of topk.parquet unless configured.
COUNTERFACTUAL_METHOD = COUNTERFACTUAL.get("method") or REPORT_METHOD
if COUNTERFACTUAL_METHOD not in METHODS:
    raise ValueError(
        f"counterfactual.method: {COUNTERFACTUAL_METHOD!r} is not in attribution.methods {METHODS}"
    )
REMOVALS = removal_names(COUNTERFACTUAL)


wildcard_constraints:
    removal=REMOVAL_PATTERN,


def counterfactual_path(name):
    return f"{RESULTS}/{{game}}/{{role}}/counterfactual/{{removal}}/{name}"


def counterfactual_scores(wildcards):
    return f"{RESULTS}/{wildcards.game}/{wildcards.role}/attribution/{COUNTERFACTUAL_METHOD}/scores.parquet"


def _ranked(wildcards):
    return parse_removal(wildcards.removal)["kind"] in RANKED_KINDS


def removal_scores(wildcards):
    """Only a ranked removal reads the scores: random ones and the baseline stay put when
    the attribution changes."""
    return counterfactual_scores(wildcards) if _ranked(wildcards) else []


def removal_ranking(wildcards):
    """What orders a ranked removal (not report.k: changing it reruns no retrain)."""
    if not _ranked(wildcards):
        return None
    return {
        "method": COUNTERFACTUAL_METHOD,
        "aggregation": config["report"]["aggregation"],
    }


def retrained_adapter(path):
    return directory(path) if COUNTERFACTUAL["keep_adapters"] else temp(directory(path))


def counterfactual_inputs(name):
    return expand(
        f"{RESULTS}/{{game}}/{{role}}/counterfactual/{{removal}}/{name}",
        removal=REMOVALS,
        allow_missing=True,
    )


# Generated taboo instances (generate.smk).
GENERATE = config["generate"]
TABOO_INSTANCES_SCHEMA = (
    f"{workflow.basedir}/workflow/schemas/taboo_instances.schema.yaml"
)
# The schema is code, not data: a param by its content (as `code` is), not an input by
# its path, so a checkout elsewhere reruns nothing (an input's path is part of the
# input-set trigger). generate_instances.py reads it beside itself.
TABOO_INSTANCES_SCHEMA_SHA256 = hashlib.sha256(
    Path(TABOO_INSTANCES_SCHEMA).read_bytes()
).hexdigest()[:16]


def generate_files(wildcards):
    """The exclude list and template files, when configured: tracked inputs."""
    templates = GENERATE.get("templates") or {}
    paths = [
        GENERATE.get("exclude_words"),
        templates.get("describer"),
        templates.get("guesser"),
    ]
    return [path for path in paths if path]


# Folders of a result tree that are not a game/role pair.
NOT_PAIRS = ("logs", "benchmarks", "playpen-data", "models", "demo", runroot.RUNS_DIR)
UNKNOWN_PAIR = (
    rf"(?!(?:{'|'.join(map(re.escape, NOT_PAIRS))})/)"
    rf"(?!(?:{'|'.join(re.escape(f'{g}/{r}') for g, r in TARGETS)})/)[^/]+/[^/]+"
)
# What only taboo has: per-word influence and generated instances need target words.
TABOO_ONLY = r"words\.(?:parquet|md|html|png)|generated/.+"
NOT_TABOO = [game for game in GAMES if game != "taboo"]


def unknown_target(wildcards):
    """The input of unknown_target (Snakefile): a game/role pair that is not in `targets`
    fails at once, naming the pairs that are."""
    pairs = ", ".join(f"{g}/{r}" for g, r in TARGETS)
    raise WorkflowError(
        f"{RESULTS}/{wildcards.pair}/{wildcards.name}: {wildcards.pair} is not in targets "
        f"({pairs}); add {{game: ..., role: ...}} for it to `targets`"
    )


def taboo_only_target(wildcards):
    """The input of taboo_only (Snakefile): words and generated instances of another game."""
    raise WorkflowError(
        f"{RESULTS}/{wildcards.game}/{wildcards.role}/{wildcards.name}: taboo only (it needs "
        f"the target words that only taboo has); {wildcards.game} has topk.parquet and the "
        "attribution/, counterfactual/ and selection/ outputs"
    )


def other_results_root(wildcards):
    """The input of other_results_root (Snakefile): a target in another setup's tree fails at once,
    naming the path this config writes (nothing is written)."""
    path = f"results/{wildcards.game}/{wildcards.role}/{wildcards.name}"
    raise WorkflowError(
        f"{path} is in the research config's result tree; this config writes under "
        f"{RESULTS}/: ask for {RESULTS}/{wildcards.game}/{wildcards.role}/{wildcards.name}"
    )


# The held-out split of the validation rows (split.py): query rows build the attribution's
# query, eval rows are read only by evaluations.
def split_params():
    settings = config["split"]
    seed = settings.get("seed")
    return canonical(settings | {"seed": config["seed"] if seed is None else seed})


# Selection check (workflow/rules/selection.smk).
SELECTION = config["selection"]
SELECTION_RANKINGS = selection_rankings(
    SELECTION, REPORT_METHOD, config["report"]["aggregation"]
)
for _ranking in SELECTION_RANKINGS:
    if _ranking["method"] not in METHODS:
        raise ValueError(
            f"selection.rankings: method {_ranking['method']!r} is not in attribution.methods {METHODS}"
        )
ARMS = selection_arm_names(SELECTION, REPORT_METHOD, config["report"]["aggregation"])


wildcard_constraints:
    arm=selection_arm_pattern(METHODS, ["mean", "nearest", "rank_mean"]),


def selection_path(name):
    return f"{RESULTS}/{{game}}/{{role}}/selection/{{arm}}/{name}"


def arm_scores(wildcards):
    """Only an arm whose rows depend on a ranking reads its scores."""
    spec = parse_arm(wildcards.arm)
    if spec["method"] is None:
        return []
    return f"{RESULTS}/{wildcards.game}/{wildcards.role}/attribution/{spec['method']}/scores.parquet"


def arm_adapter(wildcards):
    if wildcards.arm == "base":
        return []
    return (
        f"{RESULTS}/{wildcards.game}/{wildcards.role}/selection/{wildcards.arm}/adapter"
    )


def selection_adapter(path):
    return directory(path) if SELECTION["keep_adapters"] else temp(directory(path))


def selection_inputs(name, trained_only=False):
    arms = [arm for arm in ARMS if not (trained_only and arm == "base")]
    return [f"{RESULTS}/{{game}}/{{role}}/selection/{arm}/{name}" for arm in arms]


# Playing taboo through clemcore (play.smk).
PLAY = config["play"]
PLAY_ROLES = {"describer": "WordDescriber", "guesser": "WordGuesser"}


def play_adapter_roles():
    """The roles whose own adapter plays (play.players: adapter)."""
    players = PLAY.get("players") or {}
    return sorted(
        role
        for key, role in PLAY_ROLES.items()
        if players.get(key, "adapter") == "adapter"
    )


def play_adapters(wildcards):
    missing = [r for r in play_adapter_roles() if ("taboo", r) not in TARGETS]
    if missing:
        raise WorkflowError(
            f"play.players: an `adapter` player needs this workflow's adapter of {missing}: "
            "add {game: taboo, role: ...} to targets, or play `base` or a clemcore model"
        )
    return [f"{RESULTS}/taboo/{role}/adapter" for role in play_adapter_roles()]


def play_code():
    """code("play.py") plus the game master's code, its own and its imports' (clemcore
    loads it by path, so no import leads there): editing the rules reruns play."""
    import ast
    import hashlib

    master = PACKAGE_DIR / "words" / "clemgame" / "taboo" / "master.py"
    own = hashlib.sha256(ast.dump(ast.parse(master.read_text())).encode()).hexdigest()[
        :16
    ]
    return "-".join([code("play.py"), own, code_version(master, PACKAGE_DIR)])


def play_registry(wildcards):
    """The user's own clemcore model registry, when configured: a tracked input."""
    return [PLAY["model_registry"]] if PLAY.get("model_registry") else []
