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


def check_range(name: str, value: float, low: float, high: float, *, low_open=False, high_open=False):
    """``value`` as a float when it lies in the interval from ``low`` to ``high`` (each end closed
    unless ``*_open``); otherwise one :class:`SelfAdaptError` naming ``name``.

    >>> check_range("rate", 0.5, 0.0, 1.0)
    0.5
    """
    inside = (low < value if low_open else low <= value) and (value < high if high_open else value <= high)
    if not inside:  # also catches NaN
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise SelfAdaptError(f"{name} must lie in {interval}, got {value}")
    return float(value)
