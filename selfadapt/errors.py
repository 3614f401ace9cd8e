"""The one exception type the command line turns into a one-line message and a non-zero exit."""


class SelfAdaptError(Exception):
    """A problem with the user's input (a missing file, an unknown name, a value out of range).

    The CLI prints ``selfadapt: error: <message>`` and exits with status 2, no traceback.

    Example
    -------
    >>> raise SelfAdaptError("noise rate must lie in [0, 1], got 1.5")
    Traceback (most recent call last):
    selfadapt.errors.SelfAdaptError: noise rate must lie in [0, 1], got 1.5
    """
