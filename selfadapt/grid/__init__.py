"""Benchmark grids: a TOML file of settings swept over seeds (:mod:`~selfadapt.grid.spec`), run
(:mod:`~selfadapt.grid.runner`, :mod:`~selfadapt.grid.launchers`) and tabulated
(:mod:`~selfadapt.grid.aggregate`, with the applications' :mod:`~selfadapt.grid.reports`)."""
