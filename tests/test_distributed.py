"""Real gloo processes on CPU: the target store stays identical on every replica, and training with
N processes x batch B/N gives what one process with batch B gives (DistributedDataParallel)."""
import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from selfadapt.distributed import teardown
from selfadapt.targets import TargetStore


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join(rank, world, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)


def store_worker(rank, world, port, out):
    join(rank, world, port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        store = TargetStore(torch.zeros(7, 2), momentum=0.5)
        # uneven batches: rank 0 updates samples 0-3, rank 1 samples 4-6
        index = torch.tensor([0, 1, 2, 3]) if rank == 0 else torch.tensor([4, 5, 6])
        prediction = torch.full((len(index), 2), float(rank + 1))
        local = store.update(index, prediction)
        torch.save({"values": store.values, "local": local}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        teardown()


@pytest.mark.slow
def test_target_store_replicas_agree_across_processes_with_uneven_batches(tmp_path):
    mp.spawn(store_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    expected = torch.tensor([[0.5, 0.5]] * 4 + [[1.0, 1.0]] * 3)
    for rank, result in enumerate(results):
        assert torch.equal(result["values"], expected)
        rows = slice(0, 4) if rank == 0 else slice(4, 7)
        assert torch.equal(result["local"], expected[rows]), "update returns this process's rows"


# Digits (1,297 training images; batch 64 leaves an uneven last batch of 17, split 9 + 8), an MLP
# without batch norm or dropout, SAT from epoch 1 with the targets gathered from both processes; a
# constant learning rate, so that a run extended from 2 to 3 epochs is the same as 3 epochs straight.
SETTING = {"dataset": "digits", "model": "mlp", "width": 64, "method": "sat", "sat_start_epoch": 1,
           "sat_momentum": 0.8, "noise": "symmetric", "noise_rate": 0.4, "epochs": 3, "batch_size": 64,
           "lr": 0.05, "schedule": "constant", "augment": "none", "device": "cpu", "progress": False}


def train_worker(rank, world, port, out, epochs):
    join(rank, world, port)
    from selfadapt.config.run import RunConfig
    from selfadapt.experiment import train_run
    from selfadapt.targets import label_distribution_store

    result = train_run(RunConfig.from_flat({**SETTING, "epochs": epochs}), os.path.join(out, "run"), verbose=False)
    np.save(os.path.join(out, f"targets-rank{rank}.npy"), label_distribution_store(result.objective).values.numpy())
    teardown()


def metrics(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_with_half_batches_train_like_one_process_and_resume(tmp_path):
    from selfadapt.config.run import RunConfig
    from selfadapt.experiment import run_experiment

    torch.set_num_threads(1)
    run_experiment(RunConfig.from_flat(SETTING), tmp_path / "single", verbose=False)
    # 2 epochs, then the same command with 3: the run resumes from its checkpoint and extends
    mp.spawn(train_worker, args=(2, free_port(), str(tmp_path), 2), nprocs=2, join=True)
    mp.spawn(train_worker, args=(2, free_port(), str(tmp_path), 3), nprocs=2, join=True)
    single, double = metrics(tmp_path / "single"), metrics(tmp_path / "run")
    assert [m["epoch"] for m in double] == [0, 1, 2]
    for a, b in zip(single, double):
        assert a["test_accuracy"] == b["test_accuracy"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["train_accuracy_given"] == b["train_accuracy_given"]
    ranks = [np.load(tmp_path / f"targets-rank{r}.npy") for r in range(2)]
    assert np.array_equal(ranks[0], ranks[1]), "both processes hold the same target table"
    np.testing.assert_allclose(ranks[0], np.load(tmp_path / "single" / "targets.npy"), atol=1e-5)
    written = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert written == ["checkpoint.pt", "config.json", "metrics.jsonl", "noise.npz", "provenance.json", "summary.json",
                       "targets.npy"]
