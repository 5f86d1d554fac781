# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.smk import run_step


def main(snakemake):
    from playpen_attribution.attribution import AttributionSettings, reduce_query

    reduce_query(
        snakemake.input.adapter,
        snakemake.input.val,
        snakemake.output[0],
        AttributionSettings(**snakemake.params.attribution),
    )


run_step(snakemake, main)  # noqa: F821
