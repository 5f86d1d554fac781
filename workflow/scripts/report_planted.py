# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.core.smk import log, run_step


def main(snakemake):
    from playpen_attribution.attribution.report import write_planted_report

    table = write_planted_report(
        snakemake.input.planted,
        snakemake.input.scores,
        snakemake.params.methods,
        snakemake.input.train,
        snakemake.wildcards.game,
        snakemake.wildcards.role,
        snakemake.output.table,
        snakemake.output.summary,
        eval_path=snakemake.input.eval,
    )
    log.info("planted copies:\n%s", table.to_string(index=False))


run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))  # noqa: F821
