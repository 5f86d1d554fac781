from playpen_attribution.models import bootstrap_adapter
from playpen_attribution.smk import run_step


def main(snakemake):
    model = snakemake.params.model
    bootstrap_adapter(
        snakemake.input.adapter, snakemake.output[0], model["name_or_path"], model.get("revision")
    )


run_step(snakemake, main)  # noqa: F821
