# Package imports live inside main(): run_step sends the job's output to its log first.
from pathlib import Path

from playpen_attribution.core.smk import run_step

# Beside this script (Snakemake sets __file__ to the script's own path); its content is
# the rule's schema_sha256 param.
SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "taboo_instances.schema.yaml"


def main(snakemake):
    from playpen_attribution.words.generate import GenerateSettings, write_generated

    templates = snakemake.params.generate.get("templates") or {}
    write_generated(
        words_path=snakemake.input.words,
        train_path=snakemake.input.train,
        val_path=snakemake.input.val,
        schema_path=SCHEMA,
        settings=GenerateSettings.from_params(snakemake.params.generate, snakemake.params.seed),
        exclude_path=snakemake.params.generate.get("exclude_words"),
        describer_template=templates.get("describer"),
        guesser_template=templates.get("guesser"),
        game=snakemake.wildcards.game,
        role=snakemake.wildcards.role,
        instances_out=snakemake.output.instances,
        control_out=snakemake.output.control,
        words_out=snakemake.output.words,
        markdown_out=snakemake.output.summary,
        html_out=snakemake.output.html,
        summary_out=snakemake.output.summary_json,
    )


run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))  # noqa: F821
