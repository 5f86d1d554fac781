"""Glue between Snakemake's `script:` directive and the package.

`run_step(snakemake, fn)` sends logging to the rule's log file (and stderr), and turns a
WorkflowInputError into one readable line instead of a stack trace. Outputs are written
atomically by the steps themselves, so a failure leaves none behind.
"""

from __future__ import annotations

import logging
import sys
import time

from .errors import WorkflowInputError

log = logging.getLogger("playpen_attribution")


def setup_logging(log_file: str | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def run_step(snakemake, step) -> None:
    """Run `step(snakemake)` as a Snakemake script body."""
    setup_logging(snakemake.log[0] if len(snakemake.log) else None)
    name = getattr(snakemake, "rule", "step")
    start = time.perf_counter()
    try:
        step(snakemake)
    except WorkflowInputError as exc:
        log.error("%s failed: %s", name, exc)
        sys.exit(1)
    log.info("%s finished in %.1f s", name, time.perf_counter() - start)
