"""The package's own exception types.

Every error a user can cause (a missing file, a corrupt checkpoint, a bad
hyper-parameter) is raised as an :class:`AekitError` whose message says what
is wrong and how to fix it. The CLI prints that message as one line and exits
with status 2; anything else is a bug in aekit.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AekitError(Exception):
    """Base class of every error aekit raises on purpose."""


class ConfigError(AekitError, ValueError):
    """An invalid hyper-parameter, option or model name."""


class DataError(AekitError, ValueError):
    """Data that cannot be read or used: missing, corrupt, empty, non-finite, wrong shape."""


class DownloadError(DataError):
    """A download failed or its checksum did not match."""


class CheckpointError(AekitError):
    """A checkpoint or run folder that is missing, truncated, tampered with or mismatched."""


class TrainingError(AekitError):
    """Training cannot go on (for example, the loss became NaN or infinite)."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""
