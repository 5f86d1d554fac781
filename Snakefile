# Training-data attribution on playpen game-play chats.
# Keep heavy imports (torch, transformers, bergson) out of this file and the .smk files:
# they cost ~26 s per process and a dry run should take seconds.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/sft.smk"
include: "workflow/rules/attribution.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
