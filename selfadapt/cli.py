"""The ``selfadapt`` command: parse, build, run. Bad input ends in one line and exit status 2.

    selfadapt train --preset cifar10-sat-sym0.4 --data-dir data --out runs/c10-sat-40
    selfadapt eval runs/c10-sat-40/checkpoint.pt
    selfadapt demo --out runs/demo
    selfadapt find-label-issues --dataset imagefolder:photos --model resnet18 --epochs 100 --out runs/photos
    selfadapt bench docs/grids/fashion-mnist-cpu.toml --out results/fmnist
"""
from __future__ import annotations

import argparse
import sys

from selfadapt.errors import SelfAdaptError

# Flags of `train` that map one-to-one onto RunConfig fields (dest -> type). Their argparse default
# is None, so a flag given on the command line overrides the preset, which overrides RunConfig.
RUN_FLAGS = {
    "dataset": (str, "cifar10, cifar100, mnist, fashion-mnist, digits, svhn, stl10 or imagefolder:PATH"),
    "data_dir": (str, "where the data set files are (default $SELFADAPT_DATA or ./data)"),
    "subset": (int, "train on a seeded class-balanced subset of N samples"),
    "test_subset": (int, "evaluate on a fixed class-balanced subset of N test samples"),
    "model": (str, "resnet18, resnet34, preact-resnet18, wrn-28-10, wrn-34-10, vgg16-bn, cnn, mlp"),
    "width": (int, "base width of a ResNet (64 is standard) or hidden size of the MLP"),
    "method": (str, "ce, sat, sat-sce or a baseline (see `selfadapt methods`)"),
    "noise": (str, "none, symmetric, symmetric-exclusive, asymmetric, human, gaussian, random_pixels, shuffled_pixels"),
    "noise_rate": (float, "fraction of training samples to corrupt, in [0, 1]"),
    "noise_seed": (int, "seed of the corruption (separate from --seed)"),
    "noise_variant": (str, "CIFAR-N label set for --noise human: aggre, worse, random1..3 (C10N), noisy (C100N)"),
    "seed": (int, "seed of the model initialisation"),
    "data_seed": (int, "seed of the subset, data order and augmentation (default: --seed)"),
    "epochs": (int, "number of epochs (a larger value extends a finished run)"),
    "batch_size": (int, "mini-batch size"),
    "optimizer": (str, "sgd or adam"),
    "lr": (float, "initial learning rate"),
    "momentum": (float, "SGD momentum"),
    "weight_decay": (float, "L2 weight decay"),
    "schedule": (str, "cosine, multistep or constant"),
    "gamma": (float, "multistep: factor at each milestone"),
    "sat_momentum": (float, "SAT target momentum alpha, in [0, 1)"),
    "sat_start_epoch": (int, "SAT start epoch Es (0-based; cross-entropy before it)"),
    "augment": (str, "crop-flip, flip, crop or none"),
    "device": (str, "cpu, cuda, cuda:N or auto"),
}


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", help="start from a paper experiment (`selfadapt presets` lists them)")
    for dest, (kind, text) in RUN_FLAGS.items():
        parser.add_argument("--" + dest.replace("_", "-"), dest=dest, type=kind, default=None, help=text)
    parser.add_argument("--milestones", type=lambda s: [int(v) for v in s.split(",") if v], default=None,
                        help="multistep: comma-separated epochs, e.g. 75,90")
    parser.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast on CUDA")
    parser.add_argument("--channels-last", dest="channels_last", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--method-option", dest="method_options", action="append", default=None, metavar="KEY=VALUE",
                        help="a method hyperparameter, e.g. gce_q=0.5 (repeatable)")


def run_config_from(args: argparse.Namespace):
    from selfadapt.experiment import RunConfig
    from selfadapt.presets import load_preset

    values = load_preset(args.preset) if args.preset else {}
    for dest in [*RUN_FLAGS, "milestones", "nesterov", "amp", "channels_last", "compile", "progress"]:
        if getattr(args, dest) is not None:
            values[dest] = getattr(args, dest)
    if args.method_options:
        values["method_options"] = dict(parse_option(o) for o in args.method_options)
    return RunConfig.from_dict(values)


def parse_option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SelfAdaptError(f"--method-option wants KEY=VALUE, got {text!r}")
    for convert in (int, float):
        try:
            return key, convert(value)
        except ValueError:
            pass
    return key, value


def cmd_train(args) -> int:
    from selfadapt.experiment import run_experiment

    if args.out is None:
        raise SelfAdaptError("train needs --out DIR (the run directory; the same DIR resumes the run)")
    run_experiment(run_config_from(args), args.out)
    return 0


def cmd_find_label_issues(args) -> int:
    from selfadapt.find_issues import find_label_issues

    if args.out is None:
        raise SelfAdaptError("find-label-issues needs --out DIR (where label_issues.csv goes)")
    find_label_issues(run_config_from(args), args.out)
    return 0


def cmd_bench(args) -> int:
    from selfadapt.grid import run_grid

    run_grid(args.grid, args.out, jobs=args.jobs)
    return 0


def cmd_eval(args) -> int:
    from selfadapt.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, device=args.device, data_dir=args.data_dir)
    print(f"test accuracy {100 * result['test_accuracy']:.2f}% on {result['test_samples']} images "
          f"({result['dataset']}, {result['model']}, {result['method']}, after {result['epochs_trained']} epochs)")
    return 0


def cmd_demo(args) -> int:
    from selfadapt.demo import run_demo

    run_demo(args.out)
    return 0


def cmd_presets(args) -> int:
    from selfadapt.presets import describe_presets

    for name, description, paper in describe_presets():
        print(f"{name:28s} {description}" + (f" (paper: {paper:.2f}%)" if paper is not None else ""))
    return 0


def cmd_methods(args) -> int:
    from selfadapt.objectives import OBJECTIVES

    print("\n".join(sorted(OBJECTIVES)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfadapt", description="Self-adaptive training (SAT) for PyTorch.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one run (resumes when --out holds it)")
    add_run_flags(train)
    train.add_argument("--out", help="run directory")
    train.set_defaults(func=cmd_train)

    finder = commands.add_parser("find-label-issues", help="train once with SAT; write label_issues.csv")
    add_run_flags(finder)
    finder.add_argument("--out", help="run directory (gets label_issues.csv)")
    finder.set_defaults(func=cmd_find_label_issues)

    bench = commands.add_parser("bench", help="run a grid of methods x corruptions x rates x seeds")
    bench.add_argument("grid", help="grid file (TOML), e.g. docs/grids/fashion-mnist-cpu.toml")
    bench.add_argument("--out", required=True, help="output directory (runs/, results.md, results.csv, plots/)")
    bench.add_argument("--jobs", type=int, default=1, help="runs trained in parallel processes")
    bench.set_defaults(func=cmd_bench)

    evaluate = commands.add_parser("eval", help="test accuracy of a checkpoint")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--data-dir", dest="data_dir", default=None, help="override the run's data directory")
    evaluate.set_defaults(func=cmd_eval)

    demo = commands.add_parser("demo", help="CE vs SAT on digits with 40%% label noise (under a minute)")
    demo.add_argument("--out", default="runs/demo")
    demo.set_defaults(func=cmd_demo)

    commands.add_parser("presets", help="list the paper presets").set_defaults(func=cmd_presets)
    commands.add_parser("methods", help="list the training methods").set_defaults(func=cmd_methods)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SelfAdaptError as e:
        print(f"selfadapt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("selfadapt: interrupted; run the same command again to resume from the last checkpoint",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
