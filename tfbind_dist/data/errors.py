"""The error every data reader and writer raises for unusable input."""


class DataError(ValueError):
    """Unusable input data; the message names the file, row and field."""
