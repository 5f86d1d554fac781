# Package imports live inside main(): run_step sends the job's output to its log first.
from playpen_attribution.core.smk import run_step


def main(snakemake):
    from playpen_attribution.words.play_report import write_played_hardness

    write_played_hardness(
        episodes_path=snakemake.input.episodes,
        proxy_path=snakemake.input.proxy,
        target_word_patterns=snakemake.params.target_word_patterns,
        game=snakemake.wildcards.game,
        role=snakemake.wildcards.role,
        table_out=snakemake.output.table,
        markdown_out=snakemake.output.summary,
        plot_out=snakemake.output.plot,
        outcomes_out=snakemake.output.outcomes,
    )


run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))  # noqa: F821
