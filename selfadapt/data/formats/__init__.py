"""One reader per data format; each module lists what it reads in ``FORMATS`` (see :mod:`selfadapt.data.registry`)."""
