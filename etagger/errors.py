"""The project's own error types: what the command line reports as one line, exit status 2."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input or a bad command line that the user can fix: a malformed file, an invalid
    job spec, an option that neither etagger nor Beam knows."""


class UsageError(InputError):
    """Options that do not fit together, or one that no parser knows."""
