"""Errors of the dataset tool."""


class DataError(Exception):
    """Bad input or a failed step; the message names the file involved."""
