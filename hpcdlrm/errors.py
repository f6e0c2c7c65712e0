"""The project's error hierarchy. Library code raises these; only CLIs turn them into exit codes."""

from __future__ import annotations


class HpcDlrmError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(HpcDlrmError, ValueError):
    """A bad option, flag, config or search-space file. The message names the field."""


class DataError(HpcDlrmError):
    """Bad or missing input data. The message names the file (and line or field when known)."""


class DistributedError(HpcDlrmError, RuntimeError):
    """Ranks, launcher or collective backend could not be set up."""
