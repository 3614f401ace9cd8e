"""Multi-process plumbing for ``torchrun``: process group, rank, and the few collectives SAT needs.

Everything here is a no-op in a single process, so the rest of the code calls it unconditionally.
``torchrun --nproc-per-node N -m selfadapt train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`setup` joins the group (``nccl`` on CUDA, ``gloo`` on CPU).

>>> world_size(), rank(), is_main()
(1, 0, True)
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

from selfadapt.errors import SelfAdaptError


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Only the main process (rank 0) writes files and prints."""
    return rank() == 0


def setup(device: str, timeout: float = 300.0) -> str:
    """Join the process group when launched by torchrun; return this process's device.

    ``device`` is the run's device (``cuda`` or ``cuda:N`` becomes ``cuda:LOCAL_RANK`` under torchrun).
    A collective that waits longer than ``timeout`` seconds for another process fails (see
    :func:`failure`) instead of hanging the job.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    on_cuda = device.startswith("cuda")
    if on_cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if on_cuda else "gloo", timeout=datetime.timedelta(seconds=timeout))
    return device


def failure(error: BaseException, timeout: float) -> SelfAdaptError | None:
    """The one line to say when a collective failed because another process stopped answering or
    died (``None`` for any other error, or in a single process).

    >>> failure(RuntimeError("Connection closed by peer"), 300.0) is None   # one process: not ours to explain
    True
    """
    text = str(error)
    if not active() or not any(s in text for s in ("Timed out", "timed out", "closed by peer", "Connection reset",
                                                   "Broken pipe", "Connection refused", "Socket Timeout")):
        return None
    others = [r for r in range(world_size()) if r != rank()]
    who = f"rank {others[0]}" if len(others) == 1 else f"one of ranks {', '.join(map(str, others))}"
    what = "stopped answering for more than --dist-timeout " + f"{timeout:g} s" if "imed out" in text \
        else "ended (or its connection broke)"
    return SelfAdaptError(f"rank {rank()} of {world_size()}: {who} {what}; the job stops here. Run the same "
                          "command again to resume from the last checkpoint")


def sum_and_count(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and number of ``values`` over every process's batch (SAT's weight normalisation).

    >>> sum_and_count(torch.tensor([1.0, 2.0]))
    (tensor(3.), tensor(2.))
    """
    # the count is filled on the device: torch.tensor(n, device=cuda) would wait for a host copy every step
    total = torch.stack([values.sum(), values.new_full((), float(values.numel()))])
    if active():
        dist.all_reduce(total)
    return total[0], total[1]


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``values`` over processes (a copy; the input is untouched)."""
    values = values.clone()
    if active():
        dist.all_reduce(values)
    return values


def all_gather_rows(values: torch.Tensor) -> torch.Tensor:
    """Every process's ``values`` concatenated along dim 0 in rank order; row counts may differ."""
    if not active():
        return values
    count = torch.tensor([values.shape[0]], device=values.device)
    counts = [torch.empty_like(count) for _ in range(world_size())]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    padded = values.new_zeros((max(counts), *values.shape[1:]))
    padded[:values.shape[0]] = values
    gathered = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:c] for g, c in zip(gathered, counts)])


def all_gather_object(obj) -> list:
    """``obj`` of every process, in rank order (a list of one in a single process)."""
    if not active():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    """Rank 0's ``obj`` on every process."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if active():
        dist.barrier()


def teardown() -> None:
    """Leave the process group once every process has finished (call it after a successful run).

    The barrier keeps one process from closing its connections while another still uses them, which
    gloo answers with an abort.
    """
    if active():
        dist.barrier()
        dist.destroy_process_group()
