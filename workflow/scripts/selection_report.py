# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.core.smk import run_step


def main(snakemake):
    from playpen_attribution.checks.selection import write_selection_report

    p = snakemake.params
    write_selection_report(
        arm_names_=p.arms,
        summary_paths=snakemake.input.summaries,
        eval_summary_paths=snakemake.input.evaluations,
        eval_rows_paths=snakemake.input.rows,
        data_summary_path=snakemake.input.data_summary,
        settings=p.settings | {"rankings": p.rankings},
        game=snakemake.wildcards.game,
        role=snakemake.wildcards.role,
        table_out=snakemake.output.table,
        markdown_out=snakemake.output.summary,
        html_out=snakemake.output.html,
        plot_out=snakemake.output.plot,
    )


run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))  # noqa: F821
