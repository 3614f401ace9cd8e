"""A typical PyTorch CIFAR-10 loop against selfadapt's engine, same network and data, timed in one run.

The baseline is the loop research code is written as (the SAT authors' included): torchvision's
``CIFAR10`` dataset read from the offline files, a ``DataLoader`` with 8 worker processes doing
PIL ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip`` + ``ToTensor`` + ``Normalize``, fp32
(PyTorch's default TF32 convolutions on a GPU), cuDNN autotuning on, SGD, cross-entropy, and the
running loss read with ``loss.item()`` every step. Where torchvision cannot be imported (the CPU
wheel here) the same loop runs on a Dataset written with PIL and torch alone that does exactly
those operations; the output says which one ran. selfadapt's side is ``selfadapt train --preset``
built by :func:`selfadapt.experiment.build_run`: uint8 data on the device, batched crop + flip
there, bf16 autocast and channels_last on CUDA, SAT's target update in every step (its start
epoch is set to 0 so every timed epoch pays for it), a checkpoint after every epoch.

Printed, and written to ``--out`` as JSON: images/s of each and their ratio, the projected
training time of the paper's protocol (200 epochs x 50,000 images = 10M images), SAT step / CE
step on identical batches, each evaluator's time and the evaluation's share of an epoch as the
preset schedules it, the engine's ``--profile`` breakdown of one epoch, on CUDA the number of
host synchronisations in one training epoch, with ``--compile`` the compile time against the
time it saves over the protocol, and with ``--methods`` other methods' training loops in images/s.

    python benchmarks/gpu_throughput.py --data-dir data --out gpu-throughput.json     # a GPU, full size
    python benchmarks/gpu_throughput.py --data-dir data --device cpu --subset 512 --test-subset 500 \\
        --width 8 --workers 2 --threads 2 --out cpu-throughput.json                   # CPU, smoke size
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import nn

from selfadapt.config.provenance import processor_name
from selfadapt.config.run import RunConfig
from selfadapt.engine.rundir import RunDir
from selfadapt.engine.trainer import Trainer
from selfadapt.experiment import build_run, resolve_device
from selfadapt.grid.presets import load_preset
from selfadapt.objectives import CrossEntropy, SelfAdaptiveTraining
from selfadapt.objectives.registry import get_method
from selfadapt.testing.host_sync import count_host_syncs

sys.path.insert(0, str(Path(__file__).parent))
from step_overhead import alternate_ce_and_sat, sync  # noqa: E402  (the SAT/CE step timing, shared)

PROTOCOL_EPOCHS = 200        # SPEC section 3: 200 epochs over the 50,000 CIFAR-10 training images
PROTOCOL_IMAGES = PROTOCOL_EPOCHS * 50_000

# Extension point for the other applications' hot loops (issue 12): a method registered on main is
# timed in images/s through the same engine path with `--methods NAME[,NAME]`. TRADES (its 10-step
# attack runs inside its training step) and self-supervised SAT (two views augmented on the device)
# are not on main yet; once they are, add `--methods trades,ssl-sat` (their registered names) to the
# GPU command in docs/results/gpu.md. A hot loop that is not a method's training step gets its own
# timing function here.


# ------------------------------------------------------------------------------------------------
# the baseline: a typical PyTorch loop


class PILCIFAR10(torch.utils.data.Dataset):
    """torchvision's ``CIFAR10(transform=Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(),
    ToTensor(), Normalize(mean, std)]))`` written with PIL and torch alone: the same operations on
    the same HWC uint8 arrays, drawing from torch's generator as torchvision does."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, padding: int = 4):
        self.data = images.permute(0, 2, 3, 1).contiguous().numpy()   # N x H x W x C, as torchvision keeps it
        self.targets = labels.tolist()
        self.mean, self.std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
        self.padding = padding

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        img = ImageOps.expand(Image.fromarray(self.data[i]), border=self.padding, fill=0)  # RandomCrop's zero pad
        size = self.data.shape[1]
        top = int(torch.randint(0, 2 * self.padding + 1, (1,)))
        left = int(torch.randint(0, 2 * self.padding + 1, (1,)))
        img = img.crop((left, top, left + size, top + size))
        if torch.rand(1) < 0.5:                                                           # RandomHorizontalFlip
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div(255)  # ToTensor
        return (x - self.mean) / self.std, self.targets[i]                                  # Normalize


def baseline_dataset(kind: str, parts, data_dir: str):
    """The baseline's training set: the engine's rows and given labels, through torchvision or PIL."""
    train, mean, std = parts.data.dataset.train, parts.data.dataset.mean, parts.data.dataset.std
    if kind == "pil":
        return PILCIFAR10(train.images, parts.data.labels, mean, std)
    import torchvision
    import torchvision.transforms as T

    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    full = torchvision.datasets.CIFAR10(root=data_dir, train=True, download=False, transform=transform)
    targets = list(full.targets)
    for row, label in zip(train.source_index.tolist(), parts.data.labels.tolist()):
        targets[row] = label          # the same (noisy) labels the engine trains on
    full.targets = targets
    return torch.utils.data.Subset(full, train.source_index.tolist())


def baseline_kind(asked: str) -> str:
    if asked != "auto":
        return asked
    try:
        import torchvision  # noqa: F401
        return "torchvision"
    except Exception:  # noqa: BLE001  (missing, or built for another torch)
        return "pil"


@contextlib.contextmanager
def users_cuda_defaults():
    """What the authors' code runs under: cuDNN autotuning, non-deterministic kernels allowed."""
    saved = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=True)
        torch.backends.cudnn.benchmark = saved[1]


def time_baseline(args, parts, device, kind) -> dict:
    torch.manual_seed(parts.config.model.seed)
    model = parts_model_factory(parts)()
    model.normalize = nn.Identity()        # the baseline normalises in its transform, as users do
    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loader = torch.utils.data.DataLoader(baseline_dataset(kind, parts, args.data_dir), batch_size=parts.config.data.batch_size,
                                         shuffle=True, num_workers=args.workers, pin_memory=device.type == "cuda")
    seconds = []
    with users_cuda_defaults():
        for _ in range(args.epochs):
            sync(device)
            start = time.perf_counter()
            model.train()
            running = 0.0
            for x, y in loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                running += loss.item()
            sync(device)
            seconds.append(time.perf_counter() - start)
    return {"kind": kind, "workers": args.workers, "epoch_seconds": seconds, "final_running_loss": running,
            **rates(len(loader.dataset), seconds)}


def parts_model_factory(parts):
    from selfadapt.experiment import model_factory
    return model_factory(parts.config, parts.data.dataset, parts.method)


# ------------------------------------------------------------------------------------------------
# selfadapt's engine


def engine_config(args, device: str, **overrides) -> RunConfig:
    values = {**load_preset(args.preset), "data_dir": args.data_dir, "device": device, "progress": False,
              "epochs": args.epochs, "deterministic": args.deterministic, "sat_start_epoch": 0}
    for key in ("subset", "test_subset", "width", "batch_size"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    values.update(overrides)
    if values.get("method") != load_preset(args.preset).get("method"):   # another method: drop SAT's options
        values = {k: v for k, v in values.items() if k not in get_method(load_preset(args.preset)["method"]).option_names}
    return RunConfig.from_flat(values)


def time_engine(args, config: RunConfig, device: str, workdir: Path, *, profile_one_more: bool) -> tuple[dict, object]:
    """Train ``config.engine.epochs`` epochs as ``selfadapt train`` does; optionally one more with --profile."""
    parts = build_run(config, device=device, verbose=False)
    run = RunDir(workdir, config.to_dict()).create()
    trainer = Trainer(parts.model, parts.objective, parts.train_loader, config.engine,
                      evaluators=parts.evaluators, eval_data=parts.eval_data, run=run)
    start = time.perf_counter()
    history = trainer.fit()
    wall = time.perf_counter() - start
    run.close()
    out = {"epoch_train_seconds": [r["train_seconds"] for r in history],
           "epoch_seconds_with_evaluation": [r["seconds"] for r in history], "fit_seconds": wall,
           **rates(len(parts.data.labels), [r["train_seconds"] for r in history])}
    if profile_one_more:
        longer = RunConfig.from_flat({**config.flat(), "epochs": config.engine.epochs + 1, "profile": True})
        trainer = Trainer(parts.model, parts.objective, parts.train_loader, longer.engine,
                          evaluators=parts.evaluators, eval_data=parts.eval_data, run=RunDir(workdir, longer.to_dict()))
        trainer.fit()
        trainer.run.close()
        out["profile"] = json.loads((workdir / "profile.json").read_text())["epochs"][-1]
    return out, (parts, trainer)


def time_evaluators(parts, trainer, device) -> dict:
    """Each evaluator's seconds (the second of two calls) and its share of an epoch as scheduled."""
    out = {}
    for evaluator in parts.evaluators:
        calls = []
        for _ in range(2):
            sync(device)
            start = time.perf_counter()
            evaluator(trainer.forward_model, trainer.objective, parts.eval_data, 0)
            sync(device)
            calls.append(time.perf_counter() - start)
        every = PROTOCOL_EPOCHS if evaluator.final_only else evaluator.every
        out[evaluator.name] = {"seconds": calls[-1], "every": every}
    return out


def time_steps_sat_over_ce(args, parts, device) -> dict:
    """SAT step / CE step: forward + loss + backward + SGD on identical batches, alternating blocks."""
    model = copy.deepcopy(parts.model)
    amp = device.type == "cuda" and parts.config.engine.amp
    batches = list(itertools.islice(iter(parts.train_loader), args.step_batches))
    ce = CrossEntropy()
    sat = SelfAdaptiveTraining(parts.data.labels, parts.data.dataset.num_classes, momentum=0.9, start_epoch=0).to(device)
    ce_times, sat_times = alternate_ce_and_sat(model, ce, sat, batches, device, amp, args.step_repeats, warmup=2)
    ce_step, sat_step = (statistics.median(t) / len(batches) for t in (ce_times, sat_times))
    return {"ce_step_ms": 1e3 * ce_step, "sat_step_ms": 1e3 * sat_step, "sat_over_ce": sat_step / ce_step,
            "batches": len(batches), "repeats": args.step_repeats}


def rates(images: int, epoch_seconds: list[float]) -> dict:
    """Images/s of the steady epochs (all but the first, which pays for warm-up), and the first epoch."""
    steady = statistics.median(epoch_seconds[1:] or epoch_seconds)
    per_second = images / steady
    return {"images": images, "steady_epoch_seconds": steady, "first_epoch_seconds": epoch_seconds[0],
            "images_per_second": per_second, "projected_protocol_seconds": PROTOCOL_IMAGES / per_second}


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{processor_name()}, {torch.get_num_threads()} torch threads"


# ------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="data", help="the folder holding cifar-10-batches-py/")
    p.add_argument("--preset", default="cifar10:sat-symmetric-0.4")
    p.add_argument("--device", default="auto")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per side; the first is warm-up")
    p.add_argument("--subset", type=int, default=None, help="training images (default: all 50,000)")
    p.add_argument("--test-subset", type=int, default=None, help="test images (default: all 10,000)")
    p.add_argument("--width", type=int, default=None, help="ResNet base width (default 64)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the preset's (256)")
    p.add_argument("--workers", type=int, default=8, help="baseline DataLoader worker processes")
    p.add_argument("--baseline", choices=("auto", "torchvision", "pil"), default="auto",
                   help="torchvision's CIFAR10 where it imports, else the same loop in PIL + torch")
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=True,
                   help="the engine's deterministic CUDA kernels (the preset's default: on)")
    p.add_argument("--compile", action="store_true", help="also time the engine under torch.compile")
    p.add_argument("--methods", default="", help="other methods' training loops to time, comma-separated")
    p.add_argument("--step-batches", type=int, default=20, help="batches per SAT/CE timing block")
    p.add_argument("--step-repeats", type=int, default=5, help="alternating SAT/CE timing blocks")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device_name = resolve_device(args.device)
    device = torch.device(device_name)
    config = engine_config(args, device_name)
    result = {"command": " ".join(["python", "benchmarks/gpu_throughput.py", *(argv or sys.argv[1:])]),
              "device": hardware(device), "torch": torch.__version__, "preset": args.preset,
              "model": config.model.model, "width": config.model.width or 64, "batch_size": config.data.batch_size,
              "epochs_timed": args.epochs, "protocol_images": PROTOCOL_IMAGES}
    with tempfile.TemporaryDirectory() as tmp:
        engine, (parts, trainer) = time_engine(args, config, device_name, Path(tmp) / "eager", profile_one_more=True)
        evaluation = time_evaluators(parts, trainer, device)
        per_epoch = sum(e["seconds"] / e["every"] for e in evaluation.values())
        train_epoch = engine["steady_epoch_seconds"]
        checkpoint = engine["profile"]["phases"]["checkpoint"]
        engine["evaluation"] = {"by_evaluator": evaluation, "seconds_per_epoch": per_epoch,
                                "share_of_epoch": per_epoch / (train_epoch + per_epoch + checkpoint)}
        engine["checkpoint_seconds"] = checkpoint
        engine["projected_protocol_run_seconds"] = (engine["projected_protocol_seconds"]
                                                    + PROTOCOL_EPOCHS * (per_epoch + checkpoint))
        engine["settings"] = {"amp_bf16": device.type == "cuda" and config.engine.amp,
                              "channels_last": device.type == "cuda" and config.engine.channels_last,
                              "deterministic": config.engine.deterministic, "compile": False,
                              "sat_start_epoch": 0, "data_on_device": True}
        if device.type == "cuda":
            trainer.evaluators = []
            syncs, _ = count_host_syncs(trainer.train_epoch, config.engine.epochs + 1)
            result["host_syncs_per_training_epoch"] = {"syncs": syncs, "steps": len(parts.train_loader)}
        result["sat_over_ce_step"] = time_steps_sat_over_ce(args, parts, device)
        kind = baseline_kind(args.baseline)
        result["baseline"] = time_baseline(args, parts, device, kind)
        result["engine"] = engine
        result["ratio"] = engine["images_per_second"] / result["baseline"]["images_per_second"]
        if args.compile:
            compiled, _ = time_engine(args, engine_config(args, device_name, compile=True), device_name,
                                      Path(tmp) / "compiled", profile_one_more=False)
            result["compile"] = compile_gain(engine, compiled)
        result["methods"] = {}
        for name in filter(None, args.methods.split(",")):
            timed, _ = time_engine(args, engine_config(args, device_name, method=name, epochs=2),
                                   device_name, Path(tmp) / f"method-{name}", profile_one_more=False)
            result["methods"][name] = {"images_per_second": timed["images_per_second"]}
    report(result)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


def compile_gain(eager: dict, compiled: dict) -> dict:
    """Compile time (the compiled first epoch's extra warm-up) against the time saved over the protocol."""
    compile_seconds = ((compiled["first_epoch_seconds"] - compiled["steady_epoch_seconds"])
                       - (eager["first_epoch_seconds"] - eager["steady_epoch_seconds"]))
    saved = eager["projected_protocol_seconds"] - compiled["projected_protocol_seconds"]
    return {"images_per_second": compiled["images_per_second"], "compile_seconds": compile_seconds,
            "saved_over_protocol_seconds": saved, "pays": saved > compile_seconds,
            "epoch_train_seconds": compiled["epoch_train_seconds"]}


def report(r: dict) -> None:
    base, eng = r["baseline"], r["engine"]
    minutes = lambda s: f"{s / 60:.1f} min"  # noqa: E731
    which = {"torchvision": "torchvision CIFAR10", "pil": "PIL+torch CIFAR10 (torchvision not importable)"}
    print(f"{r['model']} (width {r['width']}) on {eng['images']} CIFAR-10 training images, batch {r['batch_size']}, "
          f"{r['epochs_timed']} epochs per side (the first is warm-up); {r['device']}; torch {r['torch']}")
    print(f"baseline ({which[base['kind']]} + DataLoader, {base['workers']} workers, PIL crop+flip, fp32, SGD): "
          f"{base['images_per_second']:,.0f} images/s  (epochs: {_seconds(base['epoch_seconds'])})")
    flags = ", ".join(k for k, v in eng["settings"].items() if v is True)
    print(f"selfadapt engine (--preset {r['preset']}, SAT from epoch 0; {flags}): {eng['images_per_second']:,.0f} "
          f"images/s  (training epochs: {_seconds(eng['epoch_train_seconds'])})")
    print(f"engine / baseline = {r['ratio']:.2f}x")
    print(f"projected {PROTOCOL_EPOCHS} epochs ({r['protocol_images'] / 1e6:.0f}M images): baseline "
          f"{minutes(base['projected_protocol_seconds'])}, engine {minutes(eng['projected_protocol_seconds'])} of "
          f"training, {minutes(eng['projected_protocol_run_seconds'])} with evaluation and checkpoints")
    s = r["sat_over_ce_step"]
    print(f"SAT step / CE step = {s['sat_over_ce']:.3f}  (CE {s['ce_step_ms']:.2f} ms, SAT {s['sat_step_ms']:.2f} ms "
          f"per batch, median of {s['repeats']} alternating blocks of {s['batches']} batches)")
    ev = eng["evaluation"]
    parts = ", ".join(f"{name} {e['seconds']:.3f} s every {e['every']}" for name, e in ev["by_evaluator"].items())
    print(f"evaluation: {parts} -> {ev['seconds_per_epoch']:.3f} s per epoch = {100 * ev['share_of_epoch']:.1f}% "
          f"of an epoch; checkpoint {eng['checkpoint_seconds']:.3f} s per epoch")
    prof = eng["profile"]
    shares = ", ".join(f"{k} {100 * v / prof['seconds']:.1f}%" for k, v in {**prof["phases"], "other": prof["other"]}.items())
    print(f"profile of one epoch ({prof['seconds']:.2f} s, synchronised at phase boundaries): {shares}")
    if "host_syncs_per_training_epoch" in r:
        h = r["host_syncs_per_training_epoch"]
        print(f"host synchronisations in one training epoch: {h['syncs']} over {h['steps']} steps")
    else:
        print("host synchronisations: counted on CUDA only (tests/test_host_sync.py checks the step on the CPU)")
    if "compile" in r:
        c = r["compile"]
        print(f"torch.compile: {c['images_per_second']:,.0f} images/s; compile {c['compile_seconds']:.1f} s against "
              f"{c['saved_over_protocol_seconds']:.1f} s saved over {PROTOCOL_EPOCHS} epochs -> "
              f"{'pays' if c['pays'] else 'does not pay'}")
    if r["methods"]:
        print("other methods' training loops: " + ", ".join(
            f"{name} {m['images_per_second']:,.0f} images/s" for name, m in r["methods"].items()))
    else:
        print("other applications' hot loops: none timed (--methods NAME,...; TRADES and SSL are not on main yet)")


def _seconds(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values) + " s"


if __name__ == "__main__":
    main()
