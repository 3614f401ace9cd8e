"""The ``selfadapt`` command: parse, build, run. Bad input ends in one line and exit status 2.

The core commands are here (train, bench, eval and the listings); the applications add theirs
(:func:`selfadapt.apps.registry.commands`). Every ``train`` flag is derived from a declaration
(:mod:`selfadapt.config.flags`), so the flags, presets and grid files cannot drift apart.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from selfadapt.apps.registry import commands, grid_reports
from selfadapt.config.fields import did_you_mean
from selfadapt.config.flags import add_run_flags, field_default, flag, run_config_from, show_default
from selfadapt.errors import SelfAdaptError
from selfadapt.version import __version__

TRAIN_EXAMPLES = """examples (CPU-sized):
  selfadapt train --dataset digits --model mlp --method sat --noise symmetric --noise-rate 0.4 \\
      --epochs 60 --batch-size 64 --lr 0.05 --weight-decay 0 --augment none --sat-start-epoch 5 \\
      --device cpu --out runs/digits-sat
  selfadapt train --dataset fashion-mnist --subset 5000 --model cnn --method gce --gce-q 0.5 \\
      --noise asymmetric --noise-rate 0.4 --epochs 30 --lr 0.05 --device cpu --out runs/fm-gce
the paper's setting (GPU):
  selfadapt train --preset cifar10-paper:sat-symmetric-0.4 --data-dir data --out runs/c10-sat-40
several processes (DistributedDataParallel; --batch-size is the global batch):
  torchrun --nproc-per-node 8 -m selfadapt train --preset cifar10-paper:sat-symmetric-0.4 --out runs/c10
Run the same command again to resume; a larger --epochs extends a finished run."""


def cmd_train(args) -> int:
    from selfadapt import distributed
    from selfadapt.experiment import run_experiment

    run_experiment(run_config_from(args), args.out)
    distributed.teardown()
    return 0


def cmd_bench(args) -> int:
    from selfadapt.engine.loggers import parse_logger_names
    from selfadapt.grid.runner import run_grid

    resources = None
    if args.launcher != "local":
        from selfadapt.grid.launchers import JobResources

        resources = JobResources(partition=args.partition, gpus_per_run=args.gpus_per_run,
                                 cpus_per_run=args.cpus_per_run, time_limit_min=args.time_limit)
    logger = None if args.logger is None else parse_logger_names(args.logger)
    run_grid(args.grid, args.out, jobs=args.jobs, launcher=args.launcher, resources=resources,
             reports=grid_reports(), logger=logger)
    return 0


def cmd_eval(args) -> int:
    from selfadapt.experiment import evaluate_checkpoint

    evaluators = [e for e in args.evaluators.split(",") if e] if args.evaluators else None
    if args.attack is not None:
        evaluators = [*(evaluators or []), args.attack]
    options = {}
    if args.n_ex is not None:
        options.update(robust_subset=args.n_ex, autoattack_n_ex=args.n_ex)
    if args.eps is not None:
        options["robust_eps"] = args.eps
    result = evaluate_checkpoint(args.checkpoint, device=args.device, data_dir=args.data_dir, evaluators=evaluators,
                                 options=options)
    print(f"{result['dataset']}, {result['model']}, {result['method']}, after {result['epochs_trained']} epochs:")
    for key, value in result["metrics"].items():
        shown = "not measured (no data for it)" if value is None else f"{value:.4f}" if isinstance(value, float) \
            else value
        print(f"  {key}: {shown}")
    return 0


def cmd_presets(args) -> int:
    from selfadapt.grid.presets import describe_presets

    last = None
    for name, description, paper in describe_presets():
        preset = name.partition(":")[0]
        if preset != last:
            print(f"{preset}: {description}")
            last = preset
        numbers = ", ".join(f"{metric} {value:.2f}%" for metric, value in paper.items())
        print(f"    --preset {name}" + (f" (paper: {numbers})" if numbers else ""))
    return 0


def cmd_methods(args) -> int:
    from selfadapt.objectives.registry import methods

    for method in sorted(methods().values(), key=lambda m: m.name):
        needs = f"{method.outputs(10)} outputs for 10 classes, {method.views} view(s)"
        needs += "" if method.uses_labels else ", no labels"
        print(f"{method.name}: {method.summary} [{needs}; evaluators: {', '.join(method.evaluators)}]")
        for f in dataclasses.fields(method.options):
            print(f"    {flag(f.name)} {show_default(method.default(f.name))}: {f.metadata.get('help', '')}")
    return 0


def cmd_evaluators(args) -> int:
    from selfadapt.evaluators.registry import evaluators

    for spec in sorted(evaluators().values(), key=lambda s: s.name):
        print(f"{spec.name}: {spec.summary}")
        for f in dataclasses.fields(spec.options):
            print(f"    {flag(f.name)} {show_default(field_default(f))}: {f.metadata.get('help', '')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="selfadapt", description="Self-adaptive training (SAT) for PyTorch.")
    parser.add_argument("--version", action="version", version=f"selfadapt {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_core_commands(subparsers)
    for command in commands():
        sub = subparsers.add_parser(command.name, help=command.help, description=command.description or None)
        command.add_arguments(sub)
        sub.set_defaults(func=command.run)
    return parser


def _add_core_commands(commands) -> None:
    _add_train(commands)
    _add_bench(commands)
    _add_eval(commands)
    commands.add_parser("presets", help="list the paper presets").set_defaults(func=cmd_presets)
    commands.add_parser("methods", help="list the methods with their options").set_defaults(func=cmd_methods)
    commands.add_parser("evaluators", help="list the evaluators with their options").set_defaults(func=cmd_evaluators)




def _add_train(commands) -> None:
    train = commands.add_parser("train", help="train one run (resumes when --out holds it)",
                                description="Train one run. Defaults are the paper's CIFAR-10 protocol "
                                            "(ResNet-34, 200 epochs, batch 256, SGD lr 0.1 cosine, SAT).",
                                epilog=TRAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--out", required=True, help="run directory (required; the same DIR resumes the run)")
    add_run_flags(train)
    train.set_defaults(func=cmd_train)


def _add_bench(commands) -> None:
    bench = commands.add_parser("bench", help="run a grid of runs from a TOML file (any setting as an axis)")
    bench.add_argument("grid", help="grid file (TOML), e.g. docs/grids/fashion-mnist-cpu.toml, or a preset's name")
    bench.add_argument("--out", required=True, help="output directory (runs/, results.md, results.csv, plots/)")
    bench.add_argument("--jobs", type=int, default=1, help="runs trained in parallel processes; default 1")
    bench.add_argument("--launcher", choices=("local", "slurm", "submitit-local"), default="local",
                       help="local: a process pool here (default); slurm: one Slurm job per run through submitit "
                            "(extra `slurm`); submitit-local: the same jobs as local processes")
    bench.add_argument("--partition", help="Slurm partition of the jobs")
    bench.add_argument("--gpus-per-run", type=int, default=1, help="GPUs per job (default 1)")
    bench.add_argument("--cpus-per-run", type=int, default=8, help="CPU cores per job (default 8)")
    bench.add_argument("--time-limit", type=int, default=24 * 60, help="minutes per job (default 1440); a run "
                       "stopped by it resumes from its checkpoint on the next call")
    bench.add_argument("--logger", help="trackers for every run and the grid's plots and results table: "
                                        "tensorboard, mlflow, wandb, csv (comma-separated); default the grid's logger")
    bench.set_defaults(func=cmd_bench)


def _add_eval(commands) -> None:
    evaluate = commands.add_parser("eval", help="evaluate a trained run (its directory or checkpoint)")
    evaluate.add_argument("checkpoint", metavar="RUN", help="run directory or checkpoint.pt")
    evaluate.add_argument("--evaluators", default=None,
                          help="comma-separated evaluators (`selfadapt evaluators`); default: the run's")
    evaluate.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto; default auto")
    evaluate.add_argument("--data-dir", dest="data_dir", default=None, help="override the run's data directory")
    evaluate.add_argument("--attack", default=None, help="run this attack evaluator (pgd, fgsm, autoattack; after --evaluators if given)")
    evaluate.add_argument("--n-ex", dest="n_ex", type=int, default=None,
                          help="attack a fixed subset of N test images (seed 0; robust_subset and autoattack_n_ex)")
    evaluate.add_argument("--eps", type=float, default=None, help="L-inf radius of the attacks (robust_eps)")
    evaluate.set_defaults(func=cmd_eval)


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (no usage block) and a guess for a mistyped flag."""

    def error(self, message: str):
        if message.startswith("the following arguments are required"):
            raise MissingArguments(message)  # a mistyped flag, if any, is the better thing to say
        print(f"selfadapt: error: {message}", file=sys.stderr)
        sys.exit(2)


class MissingArguments(Exception):
    """argparse found a required flag missing (raised so that :func:`main` can name a typo first)."""


def _unknown_flags(parser: argparse.ArgumentParser, command: str, unknown: list[str]) -> str:
    """One line naming each unknown flag with the closest real one of the command."""
    sub = parser._subparsers._group_actions[0].choices[command]
    known = [o for action in sub._actions for o in action.option_strings]
    parts = []
    for word in (w.split("=", 1)[0] for w in unknown if w.startswith("-")):
        normal = word.replace("_", "-")
        hint = f" (did you mean {normal}?)" if normal in known and normal != word else did_you_mean(word, known)
        parts.append(f"{word}{hint}")
    return ("unknown flag(s) " + "; ".join(parts)) if parts else f"unexpected argument(s): {' '.join(unknown)}"


def _say_missing(parser: argparse.ArgumentParser, argv: list[str], message: str) -> int:
    """A required flag is missing: name the command's mistyped flags if there are any (the missing
    one may be among them), else the missing ones."""
    commands = parser._subparsers._group_actions[0].choices
    command = argv[0] if argv and argv[0] in commands else None
    known = [o for action in commands[command]._actions for o in action.option_strings] if command else []
    unknown = [w for w in argv[1:] if command and w.startswith("--")
               and not any(o.startswith(w.split("=", 1)[0]) for o in known)]  # argparse takes unique prefixes
    print(f"selfadapt: error: {_unknown_flags(parser, command, unknown) if unknown else message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
    except MissingArguments as missing:
        return _say_missing(parser, sys.argv[1:] if argv is None else argv, str(missing))
    if unknown:
        print(f"selfadapt: error: {_unknown_flags(parser, args.command, unknown)}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except SelfAdaptError as e:
        print(f"selfadapt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"selfadapt: interrupted; {e or 'run the same command again to resume'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
