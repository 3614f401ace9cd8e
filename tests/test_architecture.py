"""The package's shape: no import cycle, layers that only import downward, small modules, every
option declared once, and a help text that says what parsing applies."""
import ast
import dataclasses
from pathlib import Path

import pytest

from selfadapt.cli import build_parser
from selfadapt.config.fields import describe_type
from selfadapt.config.flags import option_defaults, show_default
from selfadapt.config.run import option_fields, parse_text
from selfadapt.evaluators.registry import evaluators
from selfadapt.objectives.registry import methods

PACKAGE = Path(__file__).resolve().parent.parent / "selfadapt"

# Lower layers never import higher ones (a module may import its own layer or below).
LAYERS = [
    ("selfadapt.errors", "selfadapt.version", "selfadapt.distributed", "selfadapt.plugins", "selfadapt.config",
     "selfadapt.batch", "selfadapt.targets", "selfadapt.indexed", "selfadapt.label_errors", "selfadapt.testing",
     "selfadapt.hub"),
    ("selfadapt.data", "selfadapt.models", "selfadapt.attacks"),
    ("selfadapt.objectives",),
    ("selfadapt.evaluators",),
    ("selfadapt.config.sections", "selfadapt.config.run", "selfadapt.engine"),
    ("selfadapt.experiment", "selfadapt.summary", "selfadapt.plots", "selfadapt.embedding", "selfadapt.frozen_backbone"),
    ("selfadapt.grid", "selfadapt.config.flags"),
    ("selfadapt.apps", "selfadapt.integrations"),
    ("selfadapt.cli", "selfadapt.__main__"),
]


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (at any depth of its code), plus, for a registry
    that discovers the modules of a package (``collect("selfadapt.x", ...)``), every one of them."""
    mods = modules()

    def resolve(name):
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in mods.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "collect" and node.args:
                package = getattr(node.args[0], "value", "")
                targets = [m for m in mods if isinstance(package, str) and m.startswith(package + ".")]
            edges |= {resolve(t) for t in targets if t.startswith("selfadapt")}
        graph[name] = edges - {None, name, "selfadapt"}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))
    for v in graph:
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int | None:
    best = None
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (rank, len(prefix))
    return None if best is None else best[0]


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_every_module_has_a_layer_and_imports_only_downward():
    graph = import_graph()
    unplaced = [m for m in graph if m != "selfadapt" and layer(m) is None]
    assert unplaced == [], "place new modules in LAYERS"
    upward = [(m, t) for m, targets in graph.items() if m != "selfadapt"
              for t in targets if layer(t) is not None and layer(t) > layer(m)]
    assert upward == []


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > 400}
    assert long == {}


def test_every_option_has_one_declaration():
    declared = option_fields()   # raises where two owners declare one name differently
    owners = [*methods().values(), *evaluators().values()]
    for owner in owners:
        for f in dataclasses.fields(owner.options):
            assert declared[f.name] is f, (owner.name, f.name)


def _train_parser():
    return next(a for a in build_parser()._subparsers._group_actions[0].choices.values() if a.prog.endswith("train"))


@pytest.mark.parametrize("method", sorted(methods()))
def test_the_help_of_every_methods_options_is_what_parsing_applies(method):
    """For each option: the help shows its declaration (help, type) and this method's default,
    and that default, written as a user would, parses back to itself."""
    actions = {a.dest: a for a in _train_parser()._actions}
    spec = methods()[method]
    parsed = dataclasses.asdict(spec.parse())
    for f in dataclasses.fields(spec.options):
        help_text = " ".join(actions[f.name].help.split())
        assert help_text.startswith(" ".join(f.metadata["help"].split())), f.name
        kind = describe_type(f)
        assert f"[{kind}]" in help_text or kind in ("STR", "BOOL") or f.metadata.get("choices"), f.name
        shown = f"{method} {show_default(spec.default(f.name))}"
        assert shown in option_defaults(f.name) and shown in help_text, (f.name, help_text)
        default = parsed[f.name]
        text = ",".join(map(str, default)) if isinstance(default, list) else show_default(default)
        assert parse_text(f.name, text) == default, f.name
