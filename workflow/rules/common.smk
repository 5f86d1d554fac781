# Helpers and wildcard constraints shared by every rule. Light imports only.
import os

RESULTS = "results"
# Outputs of the offline demo's own rules; a config that names them gets them built.
DEMO_DATA_DIR = f"{RESULTS}/demo/playpen-data"
DEMO_MODEL_DIR = f"{RESULTS}/models/gemma-3-270m"

# Threads for the torch-heavy jobs; Snakemake scales this down to --cores and exports it
# as OMP_NUM_THREADS, which torch follows.
MAX_THREADS = config["threads"]

GAMES = sorted(config["targets"])
ROLES = sorted({role for roles in config["targets"].values() for role in roles})


wildcard_constraints:
    game="|".join(GAMES),
    role="|".join(ROLES),


def game_role_pairs():
    return [(game, role) for game in GAMES for role in config["targets"][game]]


def per_target(pattern):
    """Expand a results/{game}/{role}/... pattern over the configured game x role pairs."""
    return [pattern.format(game=game, role=role) for game, role in game_role_pairs()]


def all_targets():
    targets = per_target(f"{RESULTS}/{{game}}/{{role}}/topk.parquet")
    # Per-word influence needs target words, which only taboo has.
    targets += [
        t
        for t in per_target(f"{RESULTS}/{{game}}/{{role}}/words.parquet")
        if "/taboo/" in t
    ]
    return targets


def is_local_path(path):
    """A path the workflow reads from disk (and tracks), rather than a hub id."""
    return path in (DEMO_DATA_DIR, DEMO_MODEL_DIR) or os.path.exists(path)


def dataset_input(wildcards):
    path = config["dataset"]["path"]
    return path if is_local_path(path) else []


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


def model_input(wildcards):
    path = config["model"]["name_or_path"]
    return path if is_local_path(path) else []


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
