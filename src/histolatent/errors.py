"""Errors raised at the boundary where bad input enters.

Every message names the input (a path, a key, an argument) and what is wrong with it.
"""


class InputError(ValueError):
    """A user-supplied input (file, array, argument) is missing, malformed or out of range."""


class ConfigError(InputError):
    """A configuration file or override is invalid; the message names the key and the file."""


class TrainingError(RuntimeError):
    """Training cannot continue (e.g. a non-finite loss); the message names step and term."""
