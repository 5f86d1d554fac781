# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.smk import run_step


def main(snakemake):
    from playpen_attribution.attribution import reduce_query, settings_from_params

    settings, preconditioner = settings_from_params(snakemake)
    reduce_query(
        snakemake.input.adapter,
        snakemake.input.val,
        snakemake.output[0],
        settings,
        preconditioner,
        hessian_dir=snakemake.input.hessian or None,
    )


run_step(snakemake, main)  # noqa: F821
