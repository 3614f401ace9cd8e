"""Shared test setup: one intra-op thread per test process; caches in a temporary folder.

The suite runs in two pytest-xdist workers on a 2-core machine; with PyTorch's default of one
thread per core each, small CPU models slow down many times over from oversubscription.
"""
import os
import tempfile

import torch

torch.set_num_threads(1)

# The image cache and the Hugging Face cache of tests live in a temporary folder, not the user's.
_CACHES = tempfile.mkdtemp(prefix="selfadapt-test-caches-")
os.environ["XDG_CACHE_HOME"] = os.path.join(_CACHES, "xdg")
os.environ["HF_HOME"] = os.path.join(_CACHES, "hf")
