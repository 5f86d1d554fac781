# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.core.smk import run_step


def main(snakemake):
    from playpen_attribution.checks.counterfactual import write_removal

    ranking = snakemake.params.ranking or {}
    write_removal(
        removal=snakemake.wildcards.removal,
        train_tokens_dir=snakemake.input.train,
        scores_path=snakemake.input.scores or None,
        method=ranking.get("method"),
        aggregation=ranking.get("aggregation"),
        base_seed=snakemake.params.seed,
        out=snakemake.output[0],
    )


run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))  # noqa: F821
