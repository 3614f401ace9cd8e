"""The training loop and what keeps a run safe: :mod:`~selfadapt.engine.trainer` (the loop),
:mod:`~selfadapt.engine.rundir` (run directories, atomic writes, checkpoints),
:mod:`~selfadapt.engine.optim` (optimisers, learning-rate schedule),
:mod:`~selfadapt.engine.profiling` (where an epoch's time goes) and
:mod:`~selfadapt.engine.loggers` (``--logger``: TensorBoard, MLflow, W&B, CSV)."""
