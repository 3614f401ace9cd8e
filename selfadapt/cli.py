"""The ``selfadapt`` command: parse, build, run. Bad input ends in one line and exit status 2.

Every ``train`` flag is derived from a setting's declaration (:mod:`selfadapt.settings`) or from a
method's or evaluator's typed options, so the flags, presets and grid files cannot drift apart.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from selfadapt.errors import SelfAdaptError

TRAIN_EXAMPLES = """examples (CPU-sized):
  selfadapt train --dataset digits --model mlp --method sat --noise symmetric --noise-rate 0.4 \\
      --epochs 60 --batch-size 64 --lr 0.05 --weight-decay 0 --augment none --sat-start-epoch 5 \\
      --device cpu --out runs/digits-sat
  selfadapt train --dataset fashion-mnist --subset 5000 --model cnn --method gce --gce-q 0.5 \\
      --noise asymmetric --noise-rate 0.4 --epochs 30 --lr 0.05 --device cpu --out runs/fm-gce
the paper's setting (GPU):
  selfadapt train --preset cifar10-sat-sym0.4 --data-dir data --out runs/c10-sat-40
several processes (DistributedDataParallel; --batch-size is the global batch):
  torchrun --nproc-per-node 8 -m selfadapt train --preset cifar10-sat-sym0.4 --out runs/c10
Run the same command again to resume; a larger --epochs extends a finished run."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _help(f: dataclasses.Field, default_text: str | None = None) -> str:
    from selfadapt.settings import describe_type

    text = f.metadata.get("help", "")
    choices = f.metadata.get("choices")
    if choices is not None:
        text += f" ({', '.join(choices())})"
    elif describe_type(f) not in ("STR", "BOOL"):
        text += f" [{describe_type(f)}]"
    if default_text is None and "default" in text:
        return text.replace("%", "%%")
    default = default_text if default_text is not None else _default(f)
    return f"{text}; default {default}".replace("%", "%%")


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return "none" if f.default is None else f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else "none"


def _add(group, f: dataclasses.Field, default_text: str | None = None) -> None:
    kind = str(f.type)
    if kind == "bool":
        group.add_argument(_flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                           help=_help(f, default_text))
    else:
        group.add_argument(_flag(f.name), dest=f.name, default=None, metavar=f.name.upper().split("_")[-1],
                           help=_help(f, default_text))


def option_fields() -> dict[str, tuple[dataclasses.Field, list[str]]]:
    """Every method and evaluator option: name -> (a declaring field, "owner=default" strings)."""
    from selfadapt.evaluators import EVALUATORS
    from selfadapt.objectives.registry import METHODS, get_method

    get_method("ce")  # registers every method
    out: dict[str, tuple[dataclasses.Field, list[str]]] = {}
    owners = [(m.name, m.options) for m in METHODS.values()] + [(e.name, e.options) for e in EVALUATORS.values()]
    for owner, options in sorted(owners):
        for f in dataclasses.fields(options):
            out.setdefault(f.name, (f, []))[1].append(f"{owner} {_default(f)}")
    return out


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    from selfadapt.settings import SECTIONS, declared_settings

    parser.add_argument("--preset", help="start from a paper experiment (`selfadapt presets` lists them); "
                                         "flags given override it")
    groups = {name: parser.add_argument_group(f"{name} settings", cls.__doc__) for name, cls in SECTIONS.items()}
    for name, (section, f) in declared_settings().items():
        _add(groups[section], f)
    options = parser.add_argument_group("method and evaluator options",
                                        "each belongs to the methods/evaluators named in its default "
                                        "(`selfadapt methods`, `selfadapt evaluators`)")
    for name, (f, owners) in option_fields().items():
        _add(options, f, "; ".join(owners))
    options.add_argument("--method-option", dest="method_options", action="append", default=None,
                         metavar="KEY=VALUE", help="any option above as KEY=VALUE (repeatable)")


def run_config_from(args: argparse.Namespace, defaults: dict | None = None):
    """The checked :class:`~selfadapt.settings.RunConfig`: ``defaults``, the preset, then the flags given."""
    from selfadapt.presets import load_preset
    from selfadapt.settings import RunConfig, declared_settings, parse_text

    values = {**(defaults or {}), **(load_preset(args.preset) if args.preset else {})}
    for name in [*declared_settings(), *option_fields()]:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value if isinstance(value, bool) else parse_text(name, value)
    for text in args.method_options or []:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise SelfAdaptError(f"--method-option wants KEY=VALUE, got {text!r}")
        values[key] = parse_text(key, value)
    return RunConfig.from_flat(values)


def cmd_train(args) -> int:
    from selfadapt import distributed
    from selfadapt.experiment import run_experiment

    run_experiment(run_config_from(args), args.out)
    distributed.teardown()
    return 0


def cmd_find_label_issues(args) -> int:
    from selfadapt.find_issues import find_label_issues, finder_defaults

    defaults = {} if args.preset else finder_defaults(args.dataset, args.device, args.model)
    used = {k: v for k, v in defaults.items() if getattr(args, k, None) is None}
    if used:
        print("find-label-issues defaults: " + " ".join(f"{_flag(k)} {v}" for k, v in used.items()))
    find_label_issues(run_config_from(args, defaults), args.out, top=args.top)
    return 0


def cmd_bench(args) -> int:
    from selfadapt.grid import run_grid

    resources = None
    if args.launcher != "local":
        from selfadapt.launchers import JobResources

        resources = JobResources(partition=args.partition, gpus_per_run=args.gpus_per_run,
                                 cpus_per_run=args.cpus_per_run, time_limit_min=args.time_limit)
    run_grid(args.grid, args.out, jobs=args.jobs, launcher=args.launcher, resources=resources)
    return 0


def cmd_eval(args) -> int:
    from selfadapt.evaluate import evaluate_checkpoint

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
        print(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}")
    return 0


def cmd_demo(args) -> int:
    from selfadapt.demo import run_demo

    run_demo(args.out)
    return 0


def cmd_presets(args) -> int:
    from selfadapt.presets import describe_presets

    for name, description, paper in describe_presets():
        numbers = ", ".join(f"{metric} {value:.2f}%" for metric, value in paper.items())
        print(f"{name:28s} {description}" + (f" (paper: {numbers})" if numbers else ""))
    return 0


def cmd_methods(args) -> int:
    from selfadapt.objectives.registry import METHODS, get_method

    get_method("ce")
    for method in sorted(METHODS.values(), key=lambda m: m.name):
        needs = f"{method.outputs(10)} outputs for 10 classes, {method.views} view(s)"
        needs += "" if method.uses_labels else ", no labels"
        print(f"{method.name}: {method.summary} [{needs}; evaluators: {', '.join(method.evaluators)}]")
        for f in dataclasses.fields(method.options):
            print(f"    {_flag(f.name)} {_default(f)}: {f.metadata.get('help', '')}")
    return 0


def cmd_evaluators(args) -> int:
    from selfadapt.evaluators import EVALUATORS

    for spec in sorted(EVALUATORS.values(), key=lambda s: s.name):
        print(f"{spec.name}: {spec.summary}")
        for f in dataclasses.fields(spec.options):
            print(f"    {_flag(f.name)} {_default(f)}: {f.metadata.get('help', '')}")
    return 0


FINDER_DESCRIPTION = ("Train once with SAT and list the labels that are probably wrong. Without --preset, the "
                      "defaults differ from train's: on a CPU (--device cpu, or auto without a GPU) --model cnn "
                      "--epochs 30 --batch-size 128 --lr 0.05; for features: data --model linear --augment none; "
                      "with --model hf:ID_OR_FOLDER --freeze-backbone --augment none. "
                      "Flags given override them. SAT's start epoch and momentum are automatic unless given.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfadapt", description="Self-adaptive training (SAT) for PyTorch.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one run (resumes when --out holds it)",
                                description="Train one run. Defaults are the paper's CIFAR-10 protocol "
                                            "(ResNet-34, 200 epochs, batch 256, SGD lr 0.1 cosine, SAT).",
                                epilog=TRAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--out", required=True, help="run directory (required; the same DIR resumes the run)")
    add_run_flags(train)
    train.set_defaults(func=cmd_train)

    finder = commands.add_parser("find-label-issues", help="train once with SAT; write label_issues.csv",
                                 description=FINDER_DESCRIPTION)
    finder.add_argument("--out", required=True, help="run directory (required; gets label_issues.csv)")
    finder.add_argument("--top", type=int, default=None, metavar="K",
                        help="list the K most suspicious samples in label_issues.csv (a review budget) instead of "
                             "every flagged one; label_scores.csv always scores every sample")
    add_run_flags(finder)
    finder.set_defaults(func=cmd_find_label_issues)

    bench = commands.add_parser("bench", help="run a grid of runs from a TOML file (any setting as an axis)")
    bench.add_argument("grid", help="grid file (TOML), e.g. docs/grids/fashion-mnist-cpu.toml")
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
    bench.set_defaults(func=cmd_bench)

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

    from selfadapt.apps import embed
    embedder = commands.add_parser("embed", help="features of a data set's images through a pretrained backbone "
                                                 "(an .npz for features:)", description=embed.DESCRIPTION)
    embed.add_arguments(embedder)
    embedder.set_defaults(func=embed.run)

    demo = commands.add_parser("demo", help="CE vs SAT on digits with 40%% label noise (under a minute)")
    demo.add_argument("--out", default="runs/demo", help="default runs/demo")
    demo.set_defaults(func=cmd_demo)

    commands.add_parser("presets", help="list the paper presets").set_defaults(func=cmd_presets)
    commands.add_parser("methods", help="list the methods with their options").set_defaults(func=cmd_methods)
    commands.add_parser("evaluators", help="list the evaluators with their options").set_defaults(func=cmd_evaluators)
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
