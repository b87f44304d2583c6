"""Errors of trajgym.serving (the CLI prints them as one line, like every TrajgymError)."""

from __future__ import annotations

from trajgym.errors import TrajgymError


class ServingError(TrajgymError):
    """A model could not be converted or served: says why and, where it can, what to install."""
