# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers already prints.
from playpen_attribution.core.smk import run_step


def main(snakemake):
    from playpen_attribution.words.hardness import write_hardness

    templates = snakemake.params.templates or {}
    write_hardness(
        words_path=snakemake.input.words,
        val_path=snakemake.input.val,
        generated_path=snakemake.input.generated,
        adapter_dir=snakemake.input.adapter,
        tokenizer_dir=snakemake.input.tokenizer,
        max_turns=snakemake.params.max_turns,
        max_length=snakemake.params.max_length,
        describer_template=templates.get("describer"),
        guesser_template=templates.get("guesser"),
        game=snakemake.wildcards.game,
        role=snakemake.wildcards.role,
        table_out=snakemake.output.table,
        plot_out=snakemake.output.plot,
        markdown_out=snakemake.output.summary,
        html_out=snakemake.output.html,
    )


run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))  # noqa: F821
