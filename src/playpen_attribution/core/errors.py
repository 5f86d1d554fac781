"""Errors a researcher should see as one clear message, not a stack trace."""

import logging


class WorkflowInputError(Exception):
    """Bad input data, config or environment; the message says what to change."""


def warn_user(logger: logging.Logger, message: str) -> None:
    """A WARNING that the terminal shows too (one line, `<rule>: WARNING: ...`), not only
    the job's log: for what changes what the results mean (see smk.run_step)."""
    logger.warning(message, extra={"terminal": True})
