"""Evaluate a saved checkpoint on its data set's test split (``selfadapt eval``)."""
from __future__ import annotations

from pathlib import Path

from selfadapt.data.datasets import load_dataset
from selfadapt.data.loader import DeviceLoader
from selfadapt.engine import evaluate
from selfadapt.errors import SelfAdaptError
from selfadapt.experiment import RunConfig, make_model_factory, resolve_device
from selfadapt.rundir import load_checkpoint


def evaluate_checkpoint(path: str | Path, *, device: str = "auto", data_dir: str | None = None) -> dict:
    """Rebuild the run's model from the checkpoint (loaded with ``weights_only=True``) and test it.

    Example: ``evaluate_checkpoint("runs/demo/sat/checkpoint.pt")["test_accuracy"]``.
    """
    state = load_checkpoint(path)
    config = RunConfig.from_dict(state["config"])
    if data_dir is not None:
        config.data_dir = data_dir
    device = resolve_device(device)
    dataset = load_dataset(config.dataset, config.data_dir)
    model = make_model_factory(config, dataset)()
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise SelfAdaptError(f"{path} does not match its own configuration: {str(e).splitlines()[0]}") from None
    model.to(device)
    loader = DeviceLoader(dataset.test.images, dataset.test.labels, batch_size=1024, device=device)
    accuracy = evaluate(model, loader, amp=config.amp)
    if accuracy is None:
        raise SelfAdaptError(f"{config.dataset} has no test split to evaluate on")
    return {"test_accuracy": accuracy, "test_samples": len(loader.labels), "dataset": config.dataset,
            "model": config.model, "method": config.method, "epochs_trained": state["epoch"]}
