"""What is measured during and after training: evaluators by name (see :mod:`selfadapt.evaluators.registry`)."""
