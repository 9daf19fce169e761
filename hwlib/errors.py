"""Exceptions that carry one clear line for the user."""


class HwlibError(Exception):
    """Base class: the message is one line naming what is wrong and what is allowed."""


class ParameterError(HwlibError, ValueError):
    """An unknown profile, an unknown parameter name, or a value out of range."""


class DatasetMissingError(HwlibError, FileNotFoundError):
    """A dataset is not on disk and cannot be downloaded."""


class StoreError(HwlibError):
    """A result could not be stored or read back."""
