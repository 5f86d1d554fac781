# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.core.smk import run_step


def main(snakemake):
    # The memory check runs first and imports nothing heavy: over budget, the job stops
    # before torch, the model or the data are loaded.
    from playpen_attribution.attribution.query_memory import check_query_budget, count_token_rows

    pipeline = snakemake.params.pipeline
    section = "trak" if pipeline["method"] == "trak" else "trackstar"
    check_query_budget(
        snakemake.input.adapter,
        count_token_rows(snakemake.input.val),
        count_token_rows(snakemake.input.train),
        pipeline["projection_dim"],
        snakemake.params.attribution.get("filter_modules"),
        # a check, not a setting of the result: a resource, so changing it reruns nothing
        float(snakemake.resources.memory_budget_gb),
        projection_target="global" if section == "trak" else "per_module",
        precision=snakemake.params.attribution.get("precision") or "auto",
        pipeline=pipeline["method"],
        projection_key=f"attribution.{section}.projection_dim",
    )

    from playpen_attribution.attribution.pipelines import PipelineSettings, pipeline_scores
    from playpen_attribution.attribution.scoring import AttributionSettings
    from playpen_attribution.core.settings import from_params

    settings = from_params(
        AttributionSettings,
        snakemake.params.attribution,
        # the pipeline's projection_dim is its own (PipelineSettings); set from it there
        absent={"projection_dim"},
        # a resource: it changes no score, so it is not a param that would rerun the job
        nproc_per_node=snakemake.resources.nproc_per_node,
        sparse_logits=snakemake.params.compute["sparse_logits"],
    )
    pipeline_scores(
        snakemake.input.adapter,
        snakemake.input.train,
        snakemake.input.val,
        snakemake.output.run,
        snakemake.output.scores,
        snakemake.output.matrix,
        snakemake.output.matrix_ids,
        settings,
        PipelineSettings.from_params(snakemake.params.pipeline),
    )


run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))  # noqa: F821
