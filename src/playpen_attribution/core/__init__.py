"""Shared pieces every stage uses: errors, file io, result paths, the Snakemake glue, settings from the validated config, the code hash, rendering and prompts."""
