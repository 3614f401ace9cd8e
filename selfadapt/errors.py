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


class MissingExtra(SelfAdaptError, ImportError):
    """An optional feature whose extra is not installed; the message names the extra.

    Both a :class:`SelfAdaptError` (the CLI prints one line, exit status 2) and an ``ImportError``
    (``except ImportError`` in a user's code catches it).
    """


def require(module: str, extra: str, feature: str, *, alone: bool = False):
    """Import ``module`` for ``feature``, or raise :class:`MissingExtra` naming the extra to install
    (and with ``alone=True``, that the package by itself is enough).

    >>> require("math", "none", "arithmetic").__name__
    'math'
    >>> require("no_such_module", "lightning", "the Lightning callback")
    Traceback (most recent call last):
    selfadapt.errors.MissingExtra: the Lightning callback needs no_such_module: pip install 'selfadapt[lightning]'
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise MissingExtra(f"{feature} needs {package}: pip install 'selfadapt[{extra}]'"
                           + (f" (or {package} alone)" if alone else "")) from None
