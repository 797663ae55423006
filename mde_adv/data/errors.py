"""Errors of the data package: bad input files, unknown names, datasets that were never (fully)
built or were built from other source files."""


class DataFormatError(ValueError):
    """A dataset input file is missing, truncated, undecodable or holds invalid values.

    The message names the file (and the csv row, where there is one).
    """


class DatasetNotBuiltError(FileNotFoundError):
    """No finished TFDS dataset at the given data_dir (never built, or its build failed)."""


class UnknownDatasetError(ValueError):
    """A dataset name that is neither a registered 'builder/config' nor a prepared folder."""


class DatasetSourcesChangedError(ValueError):
    """A data_dir holds a dataset built from other source files than the ones given now."""
