# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.core.smk import run_step


def main(snakemake):
    # The memory check runs first and imports nothing heavy: over budget, the job stops
    # before torch, the model or the data are loaded.
    from playpen_attribution.attribution.query_memory import check_query_budget, count_token_rows

    attribution = snakemake.params.attribution
    check_query_budget(
        snakemake.input.adapter,
        count_token_rows(snakemake.input.val),
        count_token_rows(snakemake.input.train),
        attribution.get("projection_dim") or 0,
        attribution.get("filter_modules"),
        # a check, not a setting of the result: a resource, so changing it reruns nothing
        float(snakemake.resources.memory_budget_gb),
        projection_target=attribution.get("projection_target") or "per_module",
        precision=attribution.get("precision") or "auto",
    )

    from playpen_attribution.attribution.scoring import score_train, settings_from_params

    settings, preconditioner = settings_from_params(snakemake.params, snakemake.resources.nproc_per_node)
    score_train(
        snakemake.input.adapter,
        snakemake.input.train,
        snakemake.input.query,
        snakemake.output.run,
        snakemake.output.scores,
        settings,
        preconditioner,
        hessian_dir=snakemake.input.hessian or None,
        val_tokens_dir=snakemake.input.val,
        matrix_path=snakemake.output.matrix,
        matrix_ids_path=snakemake.output.matrix_ids,
    )


run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))  # noqa: F821
