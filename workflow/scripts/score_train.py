# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.smk import run_step


def main(snakemake):
    from playpen_attribution.attribution import AttributionSettings, score_train

    score_train(
        snakemake.input.adapter,
        snakemake.input.train,
        snakemake.input.query,
        snakemake.output.run,
        snakemake.output.scores,
        AttributionSettings(**snakemake.params.attribution),
    )


run_step(snakemake, main)  # noqa: F821
