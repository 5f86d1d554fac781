from playpen_attribution.demo_data import write_demo_dataset
from playpen_attribution.io import atomic_path
from playpen_attribution.smk import log, run_step


def main(snakemake):
    with atomic_path(snakemake.output[0], is_dir=True) as tmp:
        counts = write_demo_dataset(tmp, **snakemake.params.settings)
    log.info("wrote demo dataset %s: %s", snakemake.output[0], counts)


run_step(snakemake, main)  # noqa: F821 (injected by Snakemake)
