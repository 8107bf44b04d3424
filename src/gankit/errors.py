"""Typed errors raised at gankit's boundaries; the CLI prints them as one line and exits with code 2."""


class GankitError(Exception):
    """Base class: the message is a complete, user-facing sentence."""


class DataError(GankitError):
    """A dataset is missing, unreadable or malformed."""


class ConfigError(GankitError):
    """A configuration value or key is invalid."""


class CheckpointError(GankitError):
    """A run folder or checkpoint is missing or unreadable."""


class NonFiniteLoss(GankitError):
    """Training produced NaN or Inf; the last good checkpoint is kept."""


class Interrupted(GankitError):
    """The user stopped training (Ctrl-C); a checkpoint at the step reached was written."""


class DistributedFailure(GankitError):
    """Another process of a torchrun job died or the process group broke; the last checkpoint is intact."""
