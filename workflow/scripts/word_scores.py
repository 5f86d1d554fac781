# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.core.smk import run_step


def main(snakemake):
    from playpen_attribution.attribution.report import write_word_scores

    write_word_scores(
        scores_path=snakemake.input.scores,
        train_path=snakemake.input.train,
        val_path=snakemake.input.val,
        aggregation=snakemake.params.aggregation,
        words_out=snakemake.output.words,
    )


run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))  # noqa: F821
