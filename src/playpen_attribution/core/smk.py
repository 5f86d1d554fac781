"""Glue between Snakemake's `script:` directive and the package.

`run_step(rule, log, outputs, body)` runs `body()` and sends everything the job emits to the rule's log file: our
logging, library logging and warnings, progress bars, output of C extensions and of child
processes (file descriptors 1 and 2 are redirected, not only Python's streams; bergson
also resets the root logger to stdout when imported). The terminal gets one line:
`<rule> failed: <reason> (log: <path>)`; the full traceback is in the log. A WARNING that
changes what the results mean (errors.warn_user) is a line there too,
`<rule>: WARNING: <what> (log: <path>)`.

Each output is written atomically by the steps themselves (io.py); a job that fails or is
interrupted (Ctrl-C, SIGTERM, SIGHUP) after writing some of its outputs removes them, so
it leaves none of them behind, not only no half-written one.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from playpen_attribution.core.errors import WorkflowInputError

log = logging.getLogger("playpen_attribution")


def setup_logging(stream=None) -> None:
    """Our records on `stream` (default stderr), in our format, whatever libraries do to
    the root logger; library records propagate to the root as usual."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    if not logging.root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)


@contextmanager
def output_to_file(path) -> Iterator:
    """Redirect file descriptors 1 and 2 to `path`; yield a stream to the original stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(2), "w", buffering=1)
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(target, 1)
    os.dup2(target, 2)
    os.close(target)
    try:
        yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)
        terminal.close()


def _reason(exc: BaseException) -> str:
    """One line: the message of a WorkflowInputError, else `Type: first line`."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, WorkflowInputError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the job is so that its cleanup runs."""


def _interrupt(signum, frame):
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}")


def remove_outputs(paths) -> None:
    """Remove a job's outputs (files or directories) that exist."""
    for path in paths:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.unlink(path)


class _TerminalHandler(logging.Handler):
    """Records logged with extra={"terminal": True}: one line each on the terminal."""

    def __init__(self, stream, rule: str, log_file: str):
        super().__init__(logging.WARNING)
        self.stream, self.rule, self.log_file = stream, rule, log_file

    def emit(self, record):
        if getattr(record, "terminal", False):
            message = record.getMessage().splitlines()[0]
            self.stream.write(f"{self.rule}: WARNING: {message} (log: {self.log_file})\n")


def peak_rss_bytes() -> int:
    """The job's peak resident memory so far, in bytes: the kernel's ru_maxrss (kB on
    Linux), the figure `/usr/bin/time -v` reports, of this process or of its largest
    finished child (Bergson may start workers)."""
    import resource

    peak_kb = max(
        resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return peak_kb * 1024


def peak_rss_gb() -> float:
    """peak_rss_bytes() in GB (1e9 bytes)."""
    return peak_rss_bytes() / 1e9


# mallopt's parameter number for the mmap threshold, from glibc's malloc.h.
_M_MMAP_THRESHOLD = -3
# Smaller than most of a training or attribution step's tensors (an MLP activation of one
# 100-token row of Gemma 3 270M is 0.8 MB), larger than Python's objects.
MMAP_THRESHOLD_BYTES = 256 * 1024


def map_large_allocations(threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Make glibc's malloc give every allocation of `threshold_bytes` or more its own memory
    map, returned to the system when freed. Returns whether the C library took the setting.

    By default glibc raises that threshold to the size of each large block freed (up to 32
    MiB) and serves later blocks from its heap, which keeps freed memory resident. A job's
    CPU tensors (activations, per-batch temporaries) are such blocks: in the demo's
    reduce_query the freed ones held 0.9 GB at its peak (4.0 GB with the default, 2.9 GB
    with this; docs/benchmarks.md). It changes where memory lives, not a value computed.
    It costs time: every mapped block is fresh pages the kernel faults in and zeroes. The
    demo's train_lora took 111 s with it against 71 s without (2.92 against 3.25 GB;
    docs/benchmarks.md, 2026-12-03 late), so the training jobs go without it (run_step). A no-op where the C library is not glibc
    (macOS, musl)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # not glibc: musl's mallopt is a stub
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold_bytes)))


def run_step(rule: str, log_files, outputs, body, map_allocations: bool = True) -> None:
    """Run `body()` as the job of `rule`, its output in the rule's log (`log_files[0]`).

    The script passes Snakemake's `rule`, `log` and `output` and a closure over the rest:
    the package never receives the Snakemake object itself. `outputs` are removed if the
    body fails or is interrupted. `map_allocations`: map_large_allocations() first; the
    training scripts turn it off, where it costs most (train_lora 84-95 s against 50-56 s)
    and activation checkpointing holds the memory instead (docs/benchmarks.md)."""
    name = rule or "step"
    if map_allocations:
        map_large_allocations()  # before the job allocates anything large
    log_file = log_files[0] if len(log_files) else None
    if log_file is None:  # no log declared: run in the open
        setup_logging()
        body()
        return
    os.makedirs(os.path.dirname(log_file) or ".", exist_ok=True)
    # Put back what the job changes in the process, for a caller that goes on after it
    # (a test, a notebook): the terminal stream closes when the job ends.
    saved_handlers = list(log.handlers)
    saved_signals = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        failed = _run_logged(name, log_file, outputs, body)
    finally:
        log.handlers[:] = saved_handlers
        for signum, handler in saved_signals.items():
            signal.signal(signum, handler)
    if failed:
        sys.exit(1)


def _run_logged(name: str, log_file: str, outputs, body) -> bool:
    """run_step's job with its output in `log_file`; returns whether the body failed."""
    with output_to_file(log_file) as terminal:
        sys.stdout.reconfigure(line_buffering=True)  # the log follows the job as it runs
        setup_logging(sys.stderr)
        log.addHandler(_TerminalHandler(terminal, name, log_file))
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _interrupt)
        if os.environ.get("SLURM_JOB_ID"):  # proof, in the log, of where the job ran
            log.info("%s runs as SLURM job %s on %s", name, os.environ["SLURM_JOB_ID"], os.uname().nodename)
        start = time.perf_counter()
        try:
            body()
        except (Exception, KeyboardInterrupt) as exc:
            if isinstance(exc, WorkflowInputError):
                log.error("%s failed: %s", name, exc)
            else:
                log.error("%s failed:\n%s", name, traceback.format_exc())
            remove_outputs(list(outputs))
            terminal.write(f"{name} failed: {_reason(exc)} (log: {log_file})\n")
            failed = True
        else:
            log.info(
                "%s finished in %.1f s, peak RSS %.2f GB", name, time.perf_counter() - start, peak_rss_gb()
            )
            failed = False
    return failed
