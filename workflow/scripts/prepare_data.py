# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.core.smk import run_step


def main(snakemake):
    from playpen_attribution.data.prepare import prepare_to_files

    ds = snakemake.params.dataset
    prepare_to_files(
        dataset_path=ds["path"],
        dataset_name=ds.get("name"),
        dataset_revision=ds.get("revision"),
        game=snakemake.wildcards.game,
        role=snakemake.wildcards.role,
        drop_outcomes=ds["drop_outcomes"],
        target_word_patterns=ds["target_word_patterns"],
        keep_empty_completions=ds["keep_empty_completions"],
        extra_files=ds.get("extra_files") or [],
        train_path=snakemake.output.train,
        val_path=snakemake.output.val,
        eval_path=snakemake.output.eval,
        split=snakemake.params.split,
        summary_path=snakemake.output.summary,
        # A resource, not a param: it turns warnings into errors and changes no output.
        strict=bool(snakemake.resources.dataset_strict),
    )


run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))  # noqa: F821
