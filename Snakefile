# Training-data attribution on playpen game-play chats.
# Keep heavy imports (torch, transformers, bergson) out of this file and the .smk files:
# they cost ~26 s per process and a dry run should take seconds.
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from playpen_attribution.core.configcheck import coerce_text_values, config_errors

min_version("9.0")


configfile: "config/config.yaml"


# The HTML report's front page (snakemake --report): what the workflow does, how to read it.
report: "workflow/report/workflow.rst"


CONFIG_SCHEMA = f"{workflow.basedir}/workflow/schemas/config.schema.yaml"
# --config "report={k: 5}" gives k as the text '5': typed here, as the schema asks.
coerce_text_values(config, CONFIG_SCHEMA)
_problems = config_errors(config, CONFIG_SCHEMA)
if _problems:
    raise WorkflowError(
        "invalid config (see workflow/schemas/config.schema.yaml):\n  "
        + "\n  ".join(_problems)
    )
validate(config, CONFIG_SCHEMA)  # fills in the schema's defaults


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/sft.smk"
include: "workflow/rules/attribution.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/counterfactual.smk"
include: "workflow/rules/selection.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/play.smk"


onstart:
    claim_results_root()


rule all:
    default_target: True
    input:
        all_targets(),


# A setup with its own result tree (the demo: results/demo/) never writes under results/:
# asking it for results/{game}/{role}/... stops with the path it does write.
if RESULTS != "results":

    rule other_results_root:
        input:
            other_results_root,
        output:
            "results/{game}/{role}/{name}",


# A target that this config can never make stops before any job, saying why, instead of
# "No rule to produce" (or, for words of another game, a failure after training).
rule unknown_target:
    input:
        unknown_target,
    output:
        f"{RESULTS}/{{pair}}/{{name}}",
    wildcard_constraints:
        pair=UNKNOWN_PAIR,
        name=".+",


if NOT_TABOO:

    rule taboo_only:
        input:
            taboo_only_target,
        output:
            f"{RESULTS}/{{game}}/{{role}}/{{name}}",
        wildcard_constraints:
            game="|".join(NOT_TABOO),
            name=TABOO_ONLY,
