"""Installed size of a virtual environment, per distribution, with and without torch's share.

Run it on a fresh venv where the wheel was installed (pinned CPU torch first)::

    python -m venv /tmp/core && /tmp/core/bin/pip install torch==2.13.0
    /tmp/core/bin/pip install dist/selfadapt-*.whl            # or 'dist/selfadapt-...whl[all]'
    python benchmarks/install_size.py /tmp/core

It prints the whole folder (``du``), then every distribution's files (from its ``RECORD``), largest
first, and the total without torch and the packages only torch needs (its dependency closure minus
what anything else requires). pip and setuptools, which ``python -m venv`` installs itself, are never
counted as torch's share; the interpreter's own files count in the folder's size only.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

# Runs inside the measured venv: every distribution's size on disk and its requirements' names.
INSIDE = r"""
import json, os, re
from importlib import metadata
out = {}
for dist in metadata.distributions():
    size = 0
    for f in dist.files or ():
        path = dist.locate_file(f)
        if os.path.isfile(path):
            size += os.path.getsize(path)
    needs = [re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0] for r in dist.requires or () if "extra ==" not in r]
    out[dist.metadata["Name"].lower().replace("_", "-")] = {"size": size, "requires": [n.lower().replace("_", "-") for n in needs]}
print(json.dumps(out))
"""


VENV_OWN = ("pip", "setuptools")   # `python -m venv` installs them (Python 3.11), torch or not


def distributions(venv: Path) -> dict:
    """``{name: {"size": bytes, "requires": [names]}}`` of every distribution installed in ``venv``."""
    result = subprocess.run([str(venv / "bin" / "python"), "-c", INSIDE], check=True, capture_output=True, text=True)
    return json.loads(result.stdout)


def closure(dists: dict, roots: list[str]) -> set[str]:
    """``roots`` and everything they require, transitively (names installed in the venv only)."""
    seen, todo = set(), [r for r in roots if r in dists]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [n for n in dists[name]["requires"] if n in dists]
    return seen


def mib(size: int) -> str:
    return f"{size / 2 ** 20:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("venv", type=Path, help="the virtual environment's folder")
    parser.add_argument("--json", action="store_true", help="print the totals as JSON")
    args = parser.parse_args()
    dists = distributions(args.venv)
    folder = int(subprocess.run(["du", "-sb", str(args.venv)], check=True, capture_output=True, text=True).stdout.split()[0])
    torch_only = torch_share(dists)
    total = sum(d["size"] for d in dists.values())
    without = sum(d["size"] for n, d in dists.items() if n not in torch_only)
    if args.json:
        print(json.dumps({"folder_mib": folder / 2 ** 20, "distributions_mib": total / 2 ** 20,
                          "without_torch_mib": without / 2 ** 20, "count": len(dists),
                          "torch_share": sorted(torch_only)}))
        return
    print(f"{args.venv}: {mib(folder)} MiB on disk (du -sb), {len(dists)} distributions")
    for name, d in sorted(dists.items(), key=lambda kv: -kv[1]["size"]):
        print(f"  {mib(d['size']):>8} MiB  {name}{'  (torch share)' if name in torch_only else ''}")
    print(f"distributions: {mib(total)} MiB; without torch's share ({', '.join(sorted(torch_only))}): {mib(without)} MiB")


def torch_share(dists: dict) -> set[str]:
    """torch and its dependencies that no other installed distribution needs (directly or through
    another one, pip and setuptools excepted): what a venv without torch would not hold."""
    if "torch" not in dists:
        return set()
    without_torch = {n: d for n, d in dists.items() if n != "torch"}
    roots = [n for n in without_torch if n not in closure(dists, ["torch"])] + list(VENV_OWN)
    kept = closure(without_torch, roots)
    return {"torch"} | (closure(dists, ["torch"]) - kept)


if __name__ == "__main__":
    sys.exit(main())
