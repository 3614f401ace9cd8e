#!/bin/bash
# Validation settings (docs/results/label-issues/validation-settings.md): auto (no SAT flag) vs the paper's fixed values.
# Run from the repository root.
export OMP_NUM_THREADS=1
run() { name=$1; shift; echo "== $name: $*"; /usr/bin/time -f "%e s wall, %U s user" nice -n 10 selfadapt find-label-issues "$@" --device cpu --no-progress --out runs/val/$name 2>&1 | grep -v "^most frequent\|^every sample"; }
v1="--dataset fashion-mnist --subset 4000 --model mlp --augment none --noise symmetric --noise-rate 0.4 --noise-seed 0 --seed 1 --epochs 100 --batch-size 256 --lr 0.1"  # train's defaults, as measured
run v1-auto $v1
run v1-fixed $v1 --sat-start-epoch 60 --sat-momentum 0.9
v2="--dataset cifar10 --data-dir data --subset 3000 --test-subset 2000 --model cnn --augment crop-flip --noise human --noise-variant worse --epochs 30 --batch-size 128 --lr 0.05 --evaluators accuracy"
run v2-auto $v2
run v2-fixed $v2 --sat-start-epoch 9 --sat-momentum 0.9
v3="--dataset fashion-mnist --subset 3000 --test-subset 2000 --data-seed 5 --model cnn --augment crop --noise asymmetric --noise-rate 0.3 --epochs 20 --batch-size 128 --lr 0.05 --evaluators accuracy"
run v3-auto $v3
run v3-fixed $v3 --sat-start-epoch 6 --sat-momentum 0.9
v4="--dataset fashion-mnist --subset 2000 --test-subset 2000 --data-seed 7 --model resnet18 --width 8 --augment none --noise symmetric --noise-rate 0.3 --epochs 15 --batch-size 128 --lr 0.05 --evaluators accuracy"
run v4-auto $v4
run v4-fixed $v4 --sat-start-epoch 4 --sat-momentum 0.9
