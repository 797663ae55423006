"""Errors of the data package: bad input files, and datasets that were never (fully) built."""


class DataFormatError(ValueError):
    """A dataset input file is missing, truncated, undecodable or holds invalid values.

    The message names the file (and the csv row, where there is one).
    """


class DatasetNotBuiltError(FileNotFoundError):
    """No finished TFDS dataset at the given data_dir (never built, or its build failed)."""
