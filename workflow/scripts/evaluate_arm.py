# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.core.smk import run_step


def main(snakemake):
    from playpen_attribution.words.games import run_evaluation

    p = snakemake.params
    run_evaluation(
        model_name_or_path=p.model["name_or_path"],
        revision=p.model.get("revision"),
        adapter_dir=snakemake.input.adapter or None,
        tokenizer_dir=snakemake.input.tokenizer,
        eval_parquet=snakemake.input.eval,
        eval_tokens_dir=snakemake.input.eval_tokens,
        game=snakemake.wildcards.game,
        role=snakemake.wildcards.role,
        max_new_tokens=p.evaluation["max_new_tokens"],
        batch_size=p.evaluation["batch_size"],
        loss_reduction=p.loss_reduction,
        rows_out=snakemake.output.rows,
        summary_out=snakemake.output.summary,
        arm=snakemake.wildcards.arm,
    )


run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))  # noqa: F821
