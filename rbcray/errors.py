"""User-facing errors.

Everything a user can cause (bad file, bad value, bad config) raises :class:`RbcrayError` with a
one-line message naming the file or value and what is wrong; the CLI prints it and exits non-zero.
Any other exception escaping to the CLI is a bug in rbcray.
"""

from __future__ import annotations


class RbcrayError(Exception):
    """An error caused by input the user gave; its message is one line, shown as is."""


class ConfigError(RbcrayError, ValueError):
    """A configuration value or file is invalid."""


class DataError(RbcrayError, ValueError):
    """A data file (image, mask, annotation, dataset folder) is missing or invalid."""
