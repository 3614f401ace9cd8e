"""Two real gloo processes on CPU: every replica of the target store sees every process's updates."""
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from selfadapt.targets import TargetStore


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        store = TargetStore(torch.zeros(6, 2), momentum=0.5)
        index = torch.tensor([0, 1, 2]) + 3 * rank          # each process owns half the samples
        prediction = torch.full((3, 2), float(rank + 1))
        local = store.update(index, prediction)
        torch.save({"values": store.values, "local": local}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_target_store_replicas_agree_across_processes(tmp_path):
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    expected = torch.tensor([[0.5, 0.5]] * 3 + [[1.0, 1.0]] * 3)
    for rank, result in enumerate(results):
        assert torch.equal(result["values"], expected)
        assert torch.equal(result["local"], expected[3 * rank:3 * rank + 3]), "update returns this process's rows"
