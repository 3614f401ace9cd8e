"""Data flows one way: read (:mod:`~selfadapt.data.registry`, :mod:`~selfadapt.data.formats`) ->
subset and corrupt (:mod:`~selfadapt.data.splits`, :mod:`~selfadapt.data.corruption`) -> batches on
the training device (:mod:`~selfadapt.data.loader`, :mod:`~selfadapt.data.augment`)."""
