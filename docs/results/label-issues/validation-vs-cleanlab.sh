#!/bin/bash
# SAT (automatic start and momentum) against cleanlab (5-fold) in the 8 validation settings x 3 seeds
# of docs/results/label-issues/validation-settings.md, two runs at a time. Run from the repository
# root, with `data/` holding the CIFAR-10 batches and cifar-n/CIFAR-10_human.pt. Results:
# runs/li-val/<setting>-s<seed>/results.json; a finished one is skipped.
export OMP_NUM_THREADS=1
declare -A SETTINGS=(
  [v1]="--dataset fashion-mnist --subset 4000 --model mlp --augment none --noise symmetric --noise-rate 0.4 --epochs 100 --batch-size 256 --lr 0.1"
  [v2]="--dataset cifar10 --data-dir data --subset 3000 --test-subset 2000 --model cnn --augment crop-flip --noise human --noise-variant worse --epochs 30"
  [v3]="--dataset fashion-mnist --subset 3000 --test-subset 2000 --model cnn --augment crop --noise asymmetric --noise-rate 0.3 --epochs 20"
  [v4]="--dataset fashion-mnist --subset 2000 --test-subset 2000 --model resnet18 --width 8 --augment none --noise symmetric --noise-rate 0.3 --epochs 15"
  [v5]="--dataset cifar10 --data-dir data --subset 3000 --test-subset 2000 --model cnn --augment crop-flip --noise symmetric --noise-rate 0.4 --epochs 30"
  [v6]="--dataset digits --subset 100000 --model mlp --augment none --noise asymmetric --noise-rate 0.3 --epochs 200"
  [v7]="--dataset cifar10 --data-dir data --subset 2000 --test-subset 2000 --model resnet18 --width 8 --augment crop-flip --noise asymmetric --noise-rate 0.3 --epochs 20"
  [v8]="--dataset fashion-mnist --subset 4000 --test-subset 2000 --model mlp --augment crop --noise symmetric --noise-rate 0.6 --epochs 50"
)
one() {
  name=$1 seed=$2 out=runs/li-val/$1-s$2
  [ -f "$out/results.json" ] && return
  python benchmarks/label_issues_vs_cleanlab.py ${SETTINGS[$name]} --seed "$seed" --data-seed "$seed" \
      --noise-seed "$seed" --threads 1 --out "$out" > "$out.log" 2>&1 || echo "FAILED $name seed $seed (see $out.log)"
}
export -f one
export SETTINGS_DUMP="$(declare -p SETTINGS)"
mkdir -p runs/li-val
for seed in 0 1 2; do for name in v1 v2 v3 v4 v5 v6 v7 v8; do echo "$name $seed"; done; done |
  xargs -P 2 -L 1 bash -c 'eval "$SETTINGS_DUMP"; one "$0" "$1"'
