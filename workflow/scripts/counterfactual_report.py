# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.core.smk import run_step


def main(snakemake):
    from playpen_attribution.checks.counterfactual_report import write_counterfactual_report

    write_counterfactual_report(
        removed_paths=snakemake.input.removed,
        summary_paths=snakemake.input.summaries,
        scores_path=snakemake.input.scores,
        method=snakemake.params.method,
        aggregation=snakemake.params.aggregation,
        game=snakemake.wildcards.game,
        role=snakemake.wildcards.role,
        table_out=snakemake.output.table,
        markdown_out=snakemake.output.summary,
        html_out=snakemake.output.html,
        plot_out=snakemake.output.plot,
    )


run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))  # noqa: F821
