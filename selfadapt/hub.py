"""The Hugging Face hub as selfadapt meets it: whether it can be reached, and its client quiet.

Offline, the hub client retries every request for about 25 s and logs each retry; selfadapt asks
once (:func:`unreachable`, a 3 s connection) and then reads the local cache only, or says in one
line what is missing.

>>> with quiet():
...     pass
"""
from __future__ import annotations

import contextlib
import logging
import socket
from urllib.parse import urlsplit


def unreachable(timeout: float = 3.0) -> str:
    """Why the hub's host cannot be connected to within ``timeout`` seconds ("" when it can)."""
    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
    except OSError as e:
        return f"{url.hostname}: {e.strerror or type(e).__name__}"
    return ""


@contextlib.contextmanager
def quiet():
    """The hub client's warnings (failed requests, retries) silenced meanwhile: a failure is said in one line."""
    hub = logging.getLogger("huggingface_hub")
    level = hub.level
    hub.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub.setLevel(level)


@contextlib.contextmanager
def cache_only(*modules):
    """``HF_HUB_OFFLINE`` set in ``huggingface_hub.constants`` and in each of ``modules``' settings
    (e.g. ``datasets.config``) meanwhile, so that reads come from the local cache at once."""
    from huggingface_hub import constants

    holders = [constants, *modules]
    saved = [holder.HF_HUB_OFFLINE for holder in holders]
    for holder in holders:
        holder.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for holder, value in zip(holders, saved):
            holder.HF_HUB_OFFLINE = value
