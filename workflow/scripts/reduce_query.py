from playpen_attribution.attribution import AttributionSettings, reduce_query
from playpen_attribution.smk import run_step


def main(snakemake):
    reduce_query(
        snakemake.input.adapter,
        snakemake.input.val,
        snakemake.output[0],
        AttributionSettings(
            **snakemake.params.attribution, sparse_logits=snakemake.params.compute["sparse_logits"]
        ),
    )


run_step(snakemake, main)  # noqa: F821
