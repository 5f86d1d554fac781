# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
from playpen_attribution.core.smk import run_step


def main(snakemake):
    from playpen_attribution.data.tokens import tokenize_to_files
    from playpen_attribution.sft.models import load_tokenizer

    model = snakemake.params.model
    tokenizer = load_tokenizer(model["name_or_path"], model.get("revision"), model.get("chat_template"))
    settings = snakemake.params.tokenize
    tokenize_to_files(
        snakemake.input.train,
        snakemake.input.val,
        tokenizer,
        mode=settings["mask"],
        max_length=settings["max_length"],
        out_train=snakemake.output.train,
        out_val=snakemake.output.val,
        summary_path=snakemake.output.summary,
        eval_parquet=snakemake.input.eval,
        out_eval=snakemake.output.eval,
        strict=bool(snakemake.resources.dataset_strict),
    )
    # The exact tokenizer (and chat template) used: SFT and the adapter reuse it.
    tokenizer.save_pretrained(snakemake.output.tokenizer)


run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))  # noqa: F821
