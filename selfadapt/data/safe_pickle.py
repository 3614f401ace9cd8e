"""Pickles of numpy arrays read without running code: only numpy's array reconstruction is admitted.

A pickle names the functions it calls when loaded, so an ordinary unpickler runs whatever a file
asks for. Both readers here admit :data:`NUMPY_ARRAY_GLOBALS`, the names a pickled ``ndarray``
uses (numpy 1.x and 2.x spellings), and raise :class:`pickle.UnpicklingError` on any other:

- :func:`load_array_pickle` reads a plain pickle (the CIFAR batches): dicts, lists, strings,
  numbers and arrays, nothing else (not even ``_codecs.encode``, which the official files never
  use);
- :func:`torch_load_arrays` reads a ``torch.save`` file (CIFAR-N) with torch's weights-only
  unpickler: its own allowlist (tensors, containers, ``_codecs.encode``) plus these arrays,
  numpy scalars and the dtypes of int32 and int64 arrays.

Example
-------
>>> import pickle
>>> load_array_pickle(pickle.dumps({"x": np.arange(3)}, protocol=4))["x"]
array([0, 1, 2])
>>> load_array_pickle(pickle.dumps(print))
Traceback (most recent call last):
...
_pickle.UnpicklingError: refusing to load builtins.print: only numpy arrays are allowed
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch

_reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy(._)core.multiarray._reconstruct
_scalar = np.int64(0).__reduce__()[0]                 # numpy(._)core.multiarray.scalar

#: ``"module.name"`` -> object, for every global a pickled numpy array may name.
NUMPY_ARRAY_GLOBALS = {
    "numpy.core.multiarray._reconstruct": _reconstruct,
    "numpy._core.multiarray._reconstruct": _reconstruct,
    "numpy.ndarray": np.ndarray,
    "numpy.dtype": np.dtype,
}

# torch's weights-only unpickler also needs the dtype classes it sees built, and admits scalars.
_TORCH_EXTRA = [(_scalar, "numpy.core.multiarray.scalar"), (_scalar, "numpy._core.multiarray.scalar"),
                type(np.dtype(np.int64)), type(np.dtype(np.int32))]


class ArrayUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` that admits :data:`NUMPY_ARRAY_GLOBALS` and no other global."""

    def find_class(self, module, name):
        try:
            return NUMPY_ARRAY_GLOBALS[f"{module}.{name}"]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed") from None


def load_array_pickle(data: bytes):
    """Unpickle ``data`` (Python 2 strings read as bytes) with :class:`ArrayUnpickler`."""
    return ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()


def torch_load_arrays(path: str | Path):
    """``torch.load(path, weights_only=True)`` on the CPU, numpy arrays admitted as well."""
    allowed = [(obj, name) for name, obj in NUMPY_ARRAY_GLOBALS.items()] + _TORCH_EXTRA
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)
