#!/bin/sh
# Every measurement of docs/results/backbones.md (each script prints the load average beside its
# timings). Output: runs/backbones-bench/*.log. The page's numbers: torch's default threads (2) on
# the idle 2-core machine, except the table-dtype and table-build runs, made earlier with
# OMP_NUM_THREADS=1 while the machine was shared.
set -e
OUT=runs/backbones-bench
mkdir -p $OUT
PY=.venv/bin/python
$PY benchmarks/cifar_features.py --out runs/cifar-features --rows 100000 1000000 > $OUT/tables.log 2>&1
$PY benchmarks/table_build_memory.py --rows 200000 --classes 1000 > $OUT/table-build.log 2>&1
$PY benchmarks/table_dtype.py --seeds 1 2 --out $OUT/table-dtype > $OUT/table-dtype.log 2>&1
$PY benchmarks/feature_finder.py runs/cifar-features/table-100000.npz --out $OUT/finder-100k > $OUT/finder-100k.log 2>&1
$PY benchmarks/cleanlab_from_sat.py $OUT/finder-100k/sat-run --truth runs/cifar-features/table-100000-truth.npy > $OUT/cleanlab-from-sat-100k.log 2>&1
$PY benchmarks/feature_finder.py synthetic:1000000x384x1000 --methods sat --out $OUT/finder-synthetic-1m > $OUT/finder-synthetic-1m.log 2>&1
$PY benchmarks/embed_throughput.py --images 256 --batch-size 32 --repeats 3 > $OUT/embed.log 2>&1
$PY benchmarks/feature_finder.py runs/cifar-features/table-1000000.npz --out $OUT/finder-1m > $OUT/finder-1m.log 2>&1
$PY benchmarks/cleanlab_from_sat.py $OUT/finder-1m/sat-run --truth runs/cifar-features/table-1000000-truth.npy > $OUT/cleanlab-from-sat-1m.log 2>&1
