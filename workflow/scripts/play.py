# Package imports live inside main(): run_step sends the job's output to its log first.
from playpen_attribution.core.smk import run_step


def main(snakemake):
    from playpen_attribution.core.io import write_json
    from playpen_attribution.words.generate import read_templates
    from playpen_attribution.words.play import run_play

    templates = snakemake.params.templates or {}
    roles = snakemake.params.adapter_roles
    adapters = dict(zip(roles, snakemake.input.adapters, strict=True))
    model = snakemake.params.model
    summary = run_play(
        settings=snakemake.params.play,
        seed=snakemake.params.play.get("seed") or snakemake.params.seed,
        threads=snakemake.threads,
        base_model=model["name_or_path"],
        revision=model.get("revision"),
        tokenizer_dir=snakemake.input.tokenizer,
        adapters=adapters,
        hard_path=snakemake.input.hard,
        easy_path=snakemake.input.easy,
        eval_path=snakemake.input.eval,
        val_path=snakemake.input.val,
        dataset=snakemake.params.dataset,
        templates=read_templates(templates.get("describer"), templates.get("guesser")),
        max_turns=snakemake.params.max_turns,
        out_dir=snakemake.output.registry.rsplit("/", 1)[0],
        episodes_out=snakemake.output.episodes,
    )
    write_json(summary, snakemake.output.summary)


run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))  # noqa: F821
