"""The package as users install it: a small core, extras named in one line, the data files in the wheel.

Fast tests read the source (module-level imports against the core, package data against the tracked
files) and hide an extra's package in this process; the slow ones build the sdist and the wheel,
install the wheel with the core only in a fresh virtual environment and run the CLI from it.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from selfadapt.cli import main
from selfadapt.version import __version__

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "selfadapt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CORE = {  # import name -> the core distribution that provides it
    "torch": "torch", "numpy": "numpy", "tqdm": "tqdm", "matplotlib": "matplotlib", "sklearn": "scikit-learn",
    "scipy": "scipy", "PIL": "pillow", "tomli": "tomli",
}
# Modules that exist for an extra and import it at their top (a missing extra is one MissingExtra line).
EXTRA_MODULES = {"selfadapt.integrations.lightning": "lightning"}
USER_EXTRAS = ("hf", "ssl", "adversarial", "slurm", "review", "lightning", "loggers")
TINY = ["--dataset", "digits", "--model", "mlp", "--width", "32", "--epochs", "2", "--batch-size", "128",
        "--augment", "none", "--device", "cpu", "--no-progress"]


def name_of(requirement: str) -> str:
    """``"scikit-learn>=1.2"`` -> ``"scikit-learn"``."""
    return re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0].lower()


def module_level_imports(path: Path) -> set[str]:
    """Top-level names of the third-party modules ``path`` imports outside any function."""
    found = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name.split(".")[0] for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.add(child.module.split(".")[0])
            visit(child)

    visit(ast.parse(path.read_text()))
    return {n for n in found if n not in sys.stdlib_module_names and n not in ("selfadapt", "__future__")}


def tracked_package_files() -> list[str]:
    """Every file under selfadapt/ that git tracks, relative to the repository root."""
    try:
        result = subprocess.run(["git", "ls-files", "selfadapt"], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [line for line in result.stdout.splitlines() if (ROOT / line).is_file()]


# --------------------------------------------------------------------------------------------
# The core and the extras, from the source


def test_the_core_list_is_what_the_modules_import_at_their_top():
    core = {name_of(r) for r in PYPROJECT["project"]["dependencies"]}
    assert core == set(CORE.values())
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        outside = module_level_imports(path) - set(CORE)
        assert not outside, f"{module} imports {sorted(outside)} at its top: import it inside the function " \
                            "that needs it, through selfadapt.errors.require (naming the extra)"


def test_every_extra_named_in_the_package_is_declared():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert set(USER_EXTRAS) | {"all", "test", "bench"} == set(extras)
    assert extras["all"] == [f"selfadapt[{','.join(USER_EXTRAS)}]"]
    named = set()
    for path in set(PACKAGE.rglob("*.py")) - {PACKAGE / "errors.py"}:   # errors.py: require's own examples
        text = path.read_text()
        named |= set(re.findall(r"selfadapt\[(\w+)\]", text))
        named |= set(re.findall(r"require\(\s*[\"'][\w.]+[\"'],\s*[\"'](\w+)[\"']", text))
    assert named and named <= set(USER_EXTRAS), f"undeclared extras named in the package: {named - set(USER_EXTRAS)}"


def test_every_tracked_data_file_is_package_data():
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["selfadapt"]
    matched = {str(p.relative_to(ROOT)) for pattern in patterns for p in PACKAGE.glob(pattern)}
    data = [f for f in tracked_package_files() if not f.endswith(".py")]
    assert any(f.endswith(".toml") for f in data)
    missing = [f for f in data if f not in matched]
    assert not missing, f"tracked files the wheel would leave out (add a glob to package-data): {missing}"


def hide(monkeypatch, package: str) -> None:
    """Import ``package`` (and its submodules) fails from now on in this process, as if not installed."""
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")] + [package]:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize("package, argv, extra", [
    ("tensorboard", ["train", *TINY, "--logger", "tensorboard"], "loggers"),
    ("mlflow", ["train", *TINY, "--logger", "csv,mlflow"], "loggers"),
    ("wandb", ["find-label-issues", *TINY, "--logger", "wandb"], "loggers"),
    ("pyautoattack", ["train", *TINY, "--evaluators", "accuracy,autoattack"], "adversarial"),
    ("kornia", ["train", *TINY, "--method", "simclr"], "ssl"),
    ("submitit", ["bench", "GRID", "--launcher", "slurm"], "slurm"),
])
def test_a_feature_without_its_extra_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, package, argv,
                                                                       extra):
    hide(monkeypatch, package)
    grid = tmp_path / "grid.toml"
    grid.write_text('name = "g"\nmethods = ["ce"]\nseeds = [0]\n[settings]\ndataset = "digits"\nmodel = "mlp"\n'
                    'epochs = 1\ndevice = "cpu"\n')
    out = tmp_path / "out"
    assert main([str(grid) if a == "GRID" else a for a in argv] + ["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("selfadapt: error: ") and f"pip install 'selfadapt[{extra}]'" in err[0]
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# The built wheel, installed with the core only in a fresh virtual environment


def run(argv, *, cwd, env=None, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def build(dist: Path) -> None:
    """The sdist and the wheel of this checkout in ``dist``, as ``python -m build`` makes them."""
    pytest.importorskip("build", reason="needs the test extra: pip install -e '.[test]'")
    run([sys.executable, "-m", "build", "--outdir", dist, ROOT], cwd=dist)


def core_venv(folder: Path, wheel: Path) -> dict:
    """The environment of a fresh venv in ``folder`` with torch==2.13.0 (first: never an unpinned torch),
    then ``wheel`` and the core it requires; this checkout off the path, matplotlib's cache inside."""
    venv = folder / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=folder)
    run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-compile", "torch==2.13.0"], cwd=folder)
    run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-compile", wheel], cwd=folder)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "MPLCONFIGDIR": str(folder / "mpl"), "OMP_NUM_THREADS": "1",
            "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}"}


@pytest.mark.slow
def test_the_wheel_installs_with_the_core_alone_and_runs(tmp_path):
    """One venv for every check (installing torch is most of this test's time)."""
    build(tmp_path)
    check_archives(tmp_path)
    env = core_venv(tmp_path, next(tmp_path.glob("selfadapt-*.whl")))
    assert run(["selfadapt", "--version"], cwd=tmp_path, env=env).stdout.strip() == f"selfadapt {__version__}"
    absent = run(["python", "-c", "import importlib.util as u; print([m for m in ('lightning', 'kornia', "
                  "'pyautoattack', 'submitit', 'tensorboard', 'mlflow', 'wandb', 'transformers', 'datasets', "
                  "'cleanlab') if u.find_spec(m)])"], cwd=tmp_path, env=env).stdout.strip()
    assert absent == "[]", f"the core pulled in extras: {absent}"
    check_every_module_imports(tmp_path, env)
    presets = run(["selfadapt", "presets"], cwd=tmp_path, env=env).stdout     # TOML files: package data
    assert all(f"--preset {p.stem}:" in presets for p in (PACKAGE / "presets").glob("*.toml"))
    out = tmp_path / "issues"
    run(["selfadapt", "find-label-issues", *TINY, "--noise", "symmetric", "--noise-rate", "0.3", "--out", out],
        cwd=tmp_path, env=env)
    assert (out / "label_issues.png").stat().st_size > 0 and (out / "summary.json").is_file()
    check_missing_extras(tmp_path, env)


def check_archives(dist: Path) -> None:
    """Every tracked file of the package is in the sdist and the wheel; the wheel requires the core alone."""
    tracked = set(tracked_package_files())
    wheel = zipfile.ZipFile(next(dist.glob("selfadapt-*.whl")))
    in_wheel = set(wheel.namelist())
    assert tracked <= in_wheel, f"missing from the wheel: {sorted(tracked - in_wheel)}"
    assert not [n for n in in_wheel if n.endswith(".pyc")]
    with tarfile.open(next(dist.glob("selfadapt-*.tar.gz"))) as sdist:
        in_sdist = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    assert tracked <= in_sdist, f"missing from the sdist: {sorted(tracked - in_sdist)}"
    metadata = wheel.read(f"selfadapt-{__version__}.dist-info/METADATA").decode()
    core = {name_of(line.split(": ", 1)[1]) for line in metadata.splitlines()
            if line.startswith("Requires-Dist: ") and "extra ==" not in line}
    assert core == set(CORE.values())


IMPORT_ALL = """
import importlib, pkgutil, selfadapt
from selfadapt.errors import MissingExtra
print(selfadapt.__file__)
for info in sorted(pkgutil.walk_packages(selfadapt.__path__, 'selfadapt.'), key=lambda i: i.name):
    if info.name.endswith('.__main__'):   # `python -m selfadapt`: importing it runs the CLI
        continue
    try:
        importlib.import_module(info.name)
    except MissingExtra as e:
        print(info.name, 'MissingExtra', e)
    except Exception as e:
        print(info.name, type(e).__name__, e)
"""


def check_every_module_imports(folder: Path, env: dict) -> None:
    """Each module of the installed package imports; those of :data:`EXTRA_MODULES` name their extra."""
    lines = run(["python", "-c", IMPORT_ALL], cwd=folder, env=env).stdout.splitlines()
    assert lines[0].startswith(str(folder / "venv")), f"imported from {lines[0]}, not the installed wheel"
    failed = dict(line.split(" ", 1) for line in lines[1:])
    assert set(failed) == set(EXTRA_MODULES), f"modules that do not import with the core alone: {failed}"
    for module, extra in EXTRA_MODULES.items():
        assert failed[module].startswith("MissingExtra ") and f"pip install 'selfadapt[{extra}]'" in failed[module]


def check_missing_extras(folder: Path, env: dict) -> None:
    """``--logger wandb`` and ``--launcher slurm`` without their extras: one line, status 2, nothing written."""
    grid = folder / "grid.toml"
    grid.write_text('name = "g"\nmethods = ["ce"]\nseeds = [0]\n[settings]\ndataset = "digits"\nmodel = "mlp"\n')
    cases = [(["train", *TINY, "--logger", "wandb"], "--logger wandb needs wandb: pip install 'selfadapt[loggers]' "
              "(or wandb alone)"),
             (["bench", grid, "--launcher", "slurm"], "--launcher slurm needs submitit: pip install 'selfadapt[slurm]'")]
    for argv, message in cases:
        out = folder / "not-written"
        result = run(["selfadapt", *argv, "--out", out], cwd=folder, env=env, check=False)
        assert (result.returncode, result.stderr.strip().splitlines()) == (2, [f"selfadapt: error: {message}"])
        assert not out.exists()
