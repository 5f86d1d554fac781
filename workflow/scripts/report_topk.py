# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.core.smk import run_step


def main(snakemake):
    from playpen_attribution.attribution.report import write_topk_report

    write_topk_report(
        scores_path=snakemake.input.scores,
        train_path=snakemake.input.train,
        val_path=snakemake.input.val,
        matrix_path=snakemake.input.matrix,
        matrix_ids_path=snakemake.input.matrix_ids,
        words_path=snakemake.input.words or None,
        data_summary_path=snakemake.input.data_summary,
        tokens_summary_path=snakemake.input.tokens_summary,
        k=snakemake.params.k,
        unit_normalize=snakemake.params.unit_normalize,
        method=snakemake.params.method,
        aggregation=snakemake.params.aggregation,
        game=snakemake.wildcards.game,
        role=snakemake.wildcards.role,
        topk_out=snakemake.output.topk,
        markdown_out=snakemake.output.summary,
        html_out=snakemake.output.html,
        plot_out=snakemake.output.plot,
        proponents_out=snakemake.output.proponents,
    )


run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))  # noqa: F821
