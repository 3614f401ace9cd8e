#!/usr/bin/env bash
# Installed size of optional extras (or single packages) over the core, each in a fresh virtual
# environment: torch==2.13.0 (CPU) first, then this checkout, then the extra under a constraint that
# keeps torch. Prints KiB of site-packages before and after and checks torch was not replaced.
#   bash benchmarks/extras_size.sh '.[lightning]' '.[loggers]' tensorboard mlflow-skinny wandb
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "torch==2.13.0" > "$work/constraints.txt"
for spec in "$@"; do
    venv="$work/venv"
    rm -rf "$venv" && python3 -m venv "$venv"
    "$venv/bin/pip" install -q torch==2.13.0 2>/dev/null
    "$venv/bin/pip" install -q "$root" 2>/dev/null
    before=$(du -sk "$venv"/lib/python3*/site-packages | cut -f1)
    "$venv/bin/pip" install -q -c "$work/constraints.txt" "${spec/#./$root}" 2>/dev/null
    after=$(du -sk "$venv"/lib/python3*/site-packages | cut -f1)
    torch=$("$venv/bin/python" -c "import torch; print(torch.__version__)")
    echo "$spec: core $before KiB, +$((after - before)) KiB ($(( (after - before) / 1024 )) MiB), torch $torch"
done
