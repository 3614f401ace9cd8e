#!/bin/bash
# Development runs for SAT's automatic momentum cap (docs/results/label-issues.md): MNIST only,
# the automatic start epoch, one run per momentum. Run from the repository root.
export OMP_NUM_THREADS=1
common_mlp="--dataset mnist --data-dir data --subset 3000 --test-subset 2000 --data-seed 11 --model mlp --augment none --noise symmetric --noise-rate 0.5 --epochs 60 --batch-size 128 --lr 0.05 --device cpu --no-progress"
for m in 0.9 0.8 0.7 0.6 0.5 0.3; do
  nice -n 10 selfadapt find-label-issues $common_mlp --sat-momentum $m --out runs/dev/mlp-m$m
done
common_cnn="--dataset mnist --data-dir data --subset 3000 --test-subset 2000 --data-seed 11 --model cnn --augment crop --noise asymmetric --noise-rate 0.3 --epochs 20 --batch-size 128 --lr 0.05 --device cpu --no-progress"
for m in 0.9 0.8 0.7 0.6; do
  nice -n 10 selfadapt find-label-issues $common_cnn --sat-momentum $m --out runs/dev/cnn-m$m
done
