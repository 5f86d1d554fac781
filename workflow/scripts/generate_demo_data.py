# Package imports live inside main(): run_step sends the job's output to its log first,
# and importing transformers or bergson already prints.
import os
import tempfile
from pathlib import Path

from playpen_attribution.core.smk import log, run_step


def main(snakemake):
    from playpen_attribution.data.demo_data import write_demo_dataset

    # Written beside the outputs, then moved: an interrupted run leaves no partial file.
    out_dir = Path(snakemake.output[0]).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".generate.") as tmp:
        counts = write_demo_dataset(tmp, **snakemake.params.settings)
        for path in snakemake.output:
            os.replace(Path(tmp) / Path(path).name, path)
    log.info("wrote demo dataset %s: %s", out_dir, counts)


run_step(snakemake.rule, snakemake.log, snakemake.output, lambda: main(snakemake))  # noqa: F821
