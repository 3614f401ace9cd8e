"""Tools for selfadapt's own tests and benchmarks (not needed to train)."""
