"""Applications of SAT, each a module or package that only imports downward: its commands
(``COMMANDS``) and its tables and figures for benchmark grids (``GRID_REPORTS``), found by
:mod:`selfadapt.apps.registry`."""
