"""Evaluate a trained run (``selfadapt eval RUN``): rebuild it from its checkpoint and run evaluators."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from selfadapt.errors import SelfAdaptError
from selfadapt.evaluators import build_evaluators, resolve_evaluator_options
from selfadapt.experiment import build_run, resolve_device
from selfadapt.rundir import load_checkpoint
from selfadapt.settings import RunConfig


def evaluate_checkpoint(path: str | Path, *, device: str = "auto", data_dir: str | None = None,
                        evaluators: list[str] | None = None, options: dict | None = None) -> dict:
    """Rebuild the run's data, model and objective from a run directory or checkpoint (loaded with
    ``weights_only=True``) and run ``evaluators`` (default: the run's own) once; ``options`` override
    evaluator options (``{"autoattack_n_ex": 500}``).

    Example: ``evaluate_checkpoint("runs/demo/sat")["metrics"]["test_accuracy"]``.
    """
    state = load_checkpoint(path)
    config = RunConfig.from_dict(state["config"])
    if data_dir is not None:
        config.data.data_dir = data_dir
    names = evaluators if evaluators is not None else config.eval.evaluators
    options = resolve_evaluator_options(names, {**config.eval.options, **(options or {})})
    config = dataclasses.replace(config, eval=dataclasses.replace(config.eval, evaluators=names, options=options))
    parts = build_run(config, device=resolve_device(device), verbose=False)
    parts.eval_data.run_dir = Path(path) if Path(path).is_dir() else Path(path).parent
    for name, module in (("model", parts.model), ("objective", parts.objective)):
        try:
            module.load_state_dict(state[name])
        except RuntimeError as e:
            raise SelfAdaptError(f"{path} does not match its own configuration ({name}: "
                                 f"{str(e).splitlines()[0]})") from None
        module.to(parts.device)
    metrics = {}
    for evaluator in build_evaluators(names, options):
        metrics.update(evaluator(parts.model, parts.objective, parts.eval_data, state["epoch"] - 1))
    if not metrics:
        raise SelfAdaptError(f"the evaluators {', '.join(names)} have nothing to measure on this run")
    return {"metrics": metrics, "dataset": config.data.dataset, "model": config.model.model,
            "method": config.method.method, "epochs_trained": state["epoch"],
            "test_samples": len(parts.data.dataset.test)}
