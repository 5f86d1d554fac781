# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.core.smk import log, run_step


def main(snakemake):
    from playpen_attribution.attribution.compare import write_comparison

    table = write_comparison(
        snakemake.input.scores,
        snakemake.params.methods,
        snakemake.params.k,
        snakemake.output.table,
        snakemake.output.plot,
        aggregation=snakemake.params.aggregation,
    )
    log.info("rankings compared:\n%s", table.to_string(index=False))


run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))  # noqa: F821
