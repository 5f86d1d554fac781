"""Errors a researcher should see as one clear message, not a stack trace."""


class WorkflowInputError(Exception):
    """Bad input data, config or environment; the message says what to change."""
