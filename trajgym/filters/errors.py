"""Errors of the quality filters (part of trajgym's one error hierarchy, :mod:`trajgym.errors`)."""

from __future__ import annotations

from trajgym.errors import ConfigFileError, TrajgymError


class FilterError(TrajgymError):
    """A filter was used badly: a missing extra, an input that is no scored file, --out = the input."""


class FilterConfigError(ConfigFileError):
    """A filter chain file is broken. Carries every problem found, each located as file:line:col."""
