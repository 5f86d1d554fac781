# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.smk import run_step


def main(snakemake):
    from playpen_attribution.attribution import score_train, settings_from_params

    settings, preconditioner = settings_from_params(snakemake)
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


run_step(snakemake, main)  # noqa: F821
