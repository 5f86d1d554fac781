# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.smk import run_step


def main(snakemake):
    from playpen_attribution.attribution import AttributionSettings
    from playpen_attribution.pipelines import PipelineSettings, pipeline_scores

    settings = AttributionSettings(
        **snakemake.params.attribution,
        # a resource: it changes no score, so it is not a param that would rerun the job
        nproc_per_node=snakemake.config["attribution"]["nproc_per_node"],
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


run_step(snakemake, main)  # noqa: F821
