"""Catch the host waiting for the device inside a training loop.

A training step should only queue work on the GPU. A ``.item()``, a ``bool(tensor)``, a boolean-mask
index or a tensor built from Python numbers on the device makes the host wait until the GPU has
finished everything queued so far, once per step: the GPU then idles while the host prepares the
next step. Two tools find such places:

* :func:`forbid_host_sync` (any device, CPU included, so tests can run it): inside it, every
  operation that synchronises on a GPU raises :class:`HostSyncError` naming it. It watches the
  operators PyTorch dispatches (``aten._local_scalar_dense`` is behind ``.item()``, ``bool``,
  ``int`` and ``float``; ``aten.nonzero`` and boolean-mask indexing need the count of true
  elements on the host) and a few Python entry points (``.tolist()``, ``.numpy()``,
  ``torch.tensor(..., device=...)``). On CUDA it also turns on ``torch.cuda.set_sync_debug_mode``,
  which sees every synchronising copy the CPU cannot.
* :func:`count_host_syncs` (CUDA): how many synchronising CUDA calls a piece of code makes,
  counted by ``torch.cuda.set_sync_debug_mode("warn")``.

On the CPU every tensor lives on the host, so the guard is conservative: it also refuses a
``.item()`` of a tensor that a GPU run keeps on the host (a CPU generator's draw) and checks that
PyTorch runs only on the CPU (``F.one_hot`` validates its input with ``.item()`` there, not on
CUDA). Such a report is read, not obeyed blindly; the training step of SAT and CE passes as it is.

Example
-------
>>> import torch
>>> x = torch.arange(6.0)
>>> with forbid_host_sync():
...     y = (x * 2).sum()            # fine: stays a tensor
>>> with forbid_host_sync():
...     if y > 0:                    # bool(tensor): the host needs the value
...         pass
Traceback (most recent call last):
...
selfadapt.testing.host_sync.HostSyncError: .item(), bool(), int() or float() of a tensor [aten._local_scalar_dense] synchronises ...
"""
from __future__ import annotations

import contextlib
import warnings

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# Operators that read a result on the host before they can return (on a GPU: a synchronisation).
_SYNCING_OPS = {
    aten._local_scalar_dense.default: ".item(), bool(), int() or float() of a tensor",
    aten.nonzero.default: "nonzero / torch.where(mask) (the count of true elements)",
    aten.masked_select.default: "masked_select (the count of true elements)",
    aten.repeat_interleave.Tensor: "repeat_interleave without output_size",
    aten._unique2.default: "unique",
    aten.unique_dim.default: "unique",
    aten.unique_consecutive.default: "unique_consecutive",
    aten.bincount.default: "bincount (its output size)",
    aten.equal.default: "torch.equal",
}
# Indexing operators that sync when an index is a boolean mask (they count its true elements).
_MASK_INDEXING = {aten.index.Tensor, aten.index_put_.default, aten.index_put.default, aten._index_put_impl_.default}


class HostSyncError(RuntimeError):
    """An operation that makes the host wait for the device ran where none may."""


class _SyncWatch(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        what = _SYNCING_OPS.get(func)
        if what is None and func in _MASK_INDEXING and _has_mask(args[1]):
            what = "indexing with a boolean mask (the count of true elements)"
        if what is not None:
            raise HostSyncError(f"{what} [{func.name().replace('::', '.')}] synchronises the host "
                                "with the device; keep the value a tensor")
        return func(*args, **(kwargs or {}))


def _has_mask(indices) -> bool:
    return any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in indices)


def _raising(what: str):
    def refuse(*args, **kwargs):
        raise HostSyncError(f"{what} synchronises the host with the device; keep the value a tensor")
    return refuse


def _tensor_without_device_copy(original):
    def tensor(data, *args, device=None, **kwargs):
        if device is not None and not isinstance(data, torch.Tensor):
            raise HostSyncError("torch.tensor(..., device=...) copies host data to the device and waits for it; "
                                "build the value on the device (tensor.new_full, torch.full)")
        return original(data, *args, device=device, **kwargs)
    return tensor


@contextlib.contextmanager
def forbid_host_sync(device: torch.device | str | None = None):
    """Raise :class:`HostSyncError` at any operation inside that would synchronise the host with a GPU.

    Works on the CPU (the checks are on what is asked, not on where it runs); on CUDA ``device``
    (or the current device) additionally runs under ``torch.cuda.set_sync_debug_mode("error")``.
    """
    patches = {(torch.Tensor, "item"): _raising(".item()"), (torch.Tensor, "tolist"): _raising(".tolist()"),
               (torch.Tensor, "numpy"): _raising(".numpy()"), (torch, "tensor"): _tensor_without_device_copy(torch.tensor)}
    saved = {key: getattr(*key) for key in patches}
    cuda = device is not None and torch.device(device).type == "cuda"
    previous = torch.cuda.get_sync_debug_mode() if cuda else None
    try:
        for (owner, name), replacement in patches.items():
            setattr(owner, name, replacement)
        if cuda:
            torch.cuda.set_sync_debug_mode("error")
        with _SyncWatch():
            yield
    finally:
        for (owner, name), original in saved.items():
            setattr(owner, name, original)
        if cuda:
            torch.cuda.set_sync_debug_mode(previous)


def count_host_syncs(fn, *args, **kwargs) -> tuple[int, object]:
    """``(number of synchronising CUDA calls, result)`` of ``fn(*args, **kwargs)`` (0 calls off CUDA,
    where nothing can be counted)."""
    if not torch.cuda.is_available():
        return 0, fn(*args, **kwargs)
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = fn(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return sum("synchronizing" in str(w.message) for w in caught), result
