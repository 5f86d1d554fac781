from playpen_attribution.attribution import AttributionSettings, score_train
from playpen_attribution.smk import run_step


def main(snakemake):
    score_train(
        snakemake.input.adapter,
        snakemake.input.train,
        snakemake.input.query,
        snakemake.output.run,
        snakemake.output.scores,
        AttributionSettings(
            **snakemake.params.attribution, sparse_logits=snakemake.params.compute["sparse_logits"]
        ),
    )


run_step(snakemake, main)  # noqa: F821
