# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.core.smk import run_step


def main(snakemake):
    from playpen_attribution.sft.models import bootstrap_adapter

    model = snakemake.params.model
    bootstrap_adapter(
        snakemake.input.adapter, snakemake.output[0], model["name_or_path"], model.get("revision")
    )


run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))  # noqa: F821
