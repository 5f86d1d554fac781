# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.core.smk import run_step


def main(snakemake):
    # The memory check runs first and imports nothing heavy: over budget, the job stops
    # before torch, the model or the data are loaded.
    from playpen_attribution.attribution.hessian_memory import check_adapter_budget

    estimate = check_adapter_budget(
        snakemake.input.adapter,
        snakemake.params.preconditioner,
        snakemake.params.attribution.get("filter_modules"),
        # a check, not a setting of the result: a resource, so changing it reruns nothing
        float(snakemake.resources.memory_budget_gb),
    )

    from playpen_attribution.attribution.scoring import fit_hessian, settings_from_params

    settings, preconditioner = settings_from_params(snakemake.params, snakemake.resources.nproc_per_node)
    fit_hessian(
        snakemake.input.adapter,
        snakemake.input.tokens,
        snakemake.output[0],
        settings,
        preconditioner,
        estimate,
    )


run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))  # noqa: F821
