"""User-facing errors. The CLI prints one line for these and exits 1; anything else is a bug."""


class DPMDError(Exception):
    """Base class of every error caused by user input (files, keys, shapes, models)."""


class DataError(DPMDError):
    """A training/test system is missing, inconsistent or holds non-finite values."""


class ConfigError(DPMDError):
    """An input.json key is unknown, unsupported or has a bad value."""


class ModelFileError(DPMDError):
    """A model or checkpoint file is missing, corrupt or of an unknown format."""


class NeighborError(DPMDError):
    """More neighbors inside rcut than `sel` allows."""
