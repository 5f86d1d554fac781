# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.core.smk import run_step


def main(snakemake):
    from playpen_attribution.core.manifest import write_manifest
    from playpen_attribution.sft.models import prepare_demo_model

    prepare_demo_model(snakemake.output[0])
    write_manifest(snakemake.output[0], snakemake.output[1])


run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))  # noqa: F821
