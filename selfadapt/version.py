"""The package's version, declared here only (``pyproject.toml`` reads it; ``selfadapt --version`` prints it)."""

__version__ = "0.2.0"
