from playpen_attribution.models import prepare_demo_model
from playpen_attribution.smk import run_step

run_step(snakemake, lambda smk: prepare_demo_model(smk.output[0]))  # noqa: F821
