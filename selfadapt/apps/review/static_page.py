"""``selfadapt review RUN_DIR --static OUT.html``: the review page as one self-contained file.

The same page (``page/index.html``, ``review.css``, ``review.js``, ``static-backend.js``) with its
style, scripts and data inlined: every suspect with its thumbnail as a ``data:`` URI. Nothing is
fetched, so it opens from a mail attachment or a shared drive. Decisions are kept in the browser's
``localStorage`` and its "download review.csv" link saves them in the format ``selfadapt review``
writes, for ``selfadapt apply-review RUN_DIR --review review.csv``.

>>> write_static_page(ReviewApp(load_run("runs/digits")), "review.html")  # doctest: +SKIP
(412345, 239)
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from selfadapt.apps.review.app import ReviewApp, page_file
from selfadapt.apps.review.suspects import load_run  # noqa: F401  (for the example)
from selfadapt.engine.rundir import atomic_write_bytes

_STYLE_TAG = '<link rel="stylesheet" href="review.css">'
_SCRIPT_TAG = '<script src="static-backend.js"></script>\n<script src="review.js"></script>'


def write_static_page(app: ReviewApp, out: str | Path, *, limit: int | None = None) -> tuple[int, int]:
    """Write the page with the ``limit`` most suspicious samples (default all) to ``out``; returns
    (bytes written, samples included)."""
    run = app.run
    count = len(run.suspects) if limit is None else min(limit, len(run.suspects))
    items = []
    for position in range(count):
        item = run.describe(position)
        if app.thumbnails is not None:
            item["thumb"] = app.thumbnails.data_uri(int(run.suspects.rows[position]))
        items.append(item)
    meta = {k: v for k, v in app.meta().items() if k not in ("counts", "state")}
    meta.update(suspects=count, originals=False, static=True, id=_page_id(run, count))
    html = page_file("index.html").decode()
    for tag in (_STYLE_TAG, _SCRIPT_TAG):
        if tag not in html:
            raise RuntimeError(f"page/index.html lost its {tag} (the static page replaces it)")
    data = json.dumps({"meta": meta, "items": items}, separators=(",", ":")).replace("<", "\\u003c")
    html = html.replace(_STYLE_TAG, f"<style>\n{page_file('review.css').decode()}</style>")
    html = html.replace(_SCRIPT_TAG, f'<script id="review-data" type="application/json">{data}</script>\n'
                                     f"<script>\n{page_file('static-backend.js').decode()}</script>\n"
                                     f"<script>\n{page_file('review.js').decode()}</script>")
    body = html.encode()
    atomic_write_bytes(Path(out), body)
    return len(body), count


def _page_id(run, count: int) -> str:
    """Names the page's decisions in ``localStorage``: the same run and samples, the same id."""
    digest = hashlib.sha256((run.path / "config.json").read_bytes())
    digest.update(run.suspects.keys[:count].tobytes())
    return digest.hexdigest()[:16]
