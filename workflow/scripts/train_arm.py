# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.core.smk import run_step


def main(snakemake):
    from playpen_attribution.checks.selection import run_arm_training
    from playpen_attribution.sft.train import settings_from_params

    p = snakemake.params
    lora, settings = settings_from_params(p)
    run_arm_training(
        model_name_or_path=p.model["name_or_path"],
        revision=p.model.get("revision"),
        tokenizer_dir=snakemake.input.tokenizer,
        train_tokens_dir=snakemake.input.train,
        selected_path=snakemake.input.selected,
        lora=lora,
        settings=settings,
        adapter_out=snakemake.output.adapter,
        metrics_out=snakemake.output.metrics,
        summary_out=snakemake.output.summary,
        budget=p.budget,
    )


# SFT at glibc's default heap (run_step): the mapping costs training the most time.
run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake), map_allocations=False)  # noqa: F821
