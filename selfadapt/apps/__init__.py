"""Applications built on the library, each a ``selfadapt`` command (``add_arguments`` and ``run``)."""
