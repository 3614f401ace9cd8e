"""``find-label-issues`` on a large feature table: settings sized by the table, read from its headers.

>>> table_defaults(100_000, 10)
{'batch_size': 4096, 'epochs': 10, 'optimizer': 'adam', 'lr': 0.002}
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

LARGE_TABLE_ROWS = 50_000  # from here on the finder sizes its batches and epochs by the table


def table_defaults(rows: int, classes: int) -> dict:
    """Settings for a large feature table (on any device): about 25 batches an epoch (a power of two,
    4096 at 100,000 rows, at most 8192: a step's fixed cost, not its arithmetic, dominates a linear
    head) with Adam at ``1e-3 x sqrt(batch / 1024)``, epochs for about a million sample visits
    (10 at 100,000 rows, at least 4), and a bfloat16 target table where a float32 one would pass
    1 GiB. Smaller tables: none (the CPU defaults apply).

    >>> table_defaults(1_000_000, 1000)
    {'batch_size': 8192, 'epochs': 4, 'optimizer': 'adam', 'lr': 0.002828, 'sat_table_dtype': 'bfloat16'}
    >>> table_defaults(20_000, 10)
    {}
    """
    if rows < LARGE_TABLE_ROWS:
        return {}
    batch = min(8192, 1 << round(math.log2(rows / 25)))
    defaults = {"batch_size": batch, "epochs": min(30, max(4, math.ceil(1_000_000 / rows))), "optimizer": "adam",
                "lr": round(1e-3 * math.sqrt(batch / 1024), 6)}
    if rows * classes * 4 > 1 << 30:
        defaults["sat_table_dtype"] = "bfloat16"
    return defaults


def table_shape(path: str) -> tuple[int, int]:
    """``(rows, classes)`` of a ``features:`` table from its headers and labels (``(0, 0)`` when it
    cannot be read: loading it reports why)."""
    try:
        with np.load(Path(path).expanduser(), allow_pickle=False) as npz:
            with npz.zip.open("X.npy") as member:
                major, _ = np.lib.format.read_magic(member)
                header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                rows = header(member)[0][0]
            classes = len(npz["classes"]) if "classes" in npz.files else int(npz["y"].max()) + 1
        return int(rows), int(classes)
    except Exception:  # noqa: BLE001  (any unreadable table: the loader gives the one-line error)
        return 0, 0
