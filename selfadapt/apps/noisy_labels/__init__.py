"""Learning with noisy labels and finding the wrong ones: ``selfadapt find-label-issues`` and the
noisy-label tables and figures of benchmark grids."""
