"""User-facing errors.

Anything a user can cause (a bad config key, a missing file, a corrupt label) raises a
subclass of :class:`ZooError`. The command-line tools catch it and print one line
(``error: <message>``) with a non-zero exit instead of a traceback.
"""


class ZooError(Exception):
    """An error caused by user input; its message is the whole explanation."""


class ConfigError(ZooError):
    """A config file or override is invalid (names the file and the key)."""


class DataError(ZooError):
    """A dataset file or layout is missing or invalid (names the file)."""


class CheckpointError(ZooError):
    """A checkpoint is missing, corrupt or does not fit the model."""
