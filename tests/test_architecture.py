"""The package boundary of ARCHITECTURE.md, checked on the source: the layer table, import direction, no
cycles, and no private name used outside the module that defines it."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "labsupport"

# Known exceptions (importer, imported) and why; each goes away with the rest of issue 15.
KNOWN_UPWARD: dict[tuple[str, str], str] = {}
KNOWN_CYCLE: dict[tuple[str, str], str] = {}  # edges left out of the cycle check
KNOWN_PRIVATE: dict[tuple[str, str], str] = {}  # (file relative to the repo, module.name)
MODEL_MODULES = ("attention", "gpt")  # models load weights from a directory; asset names resolve in assets


def layer_table() -> dict[str, int]:
    """module -> layer, from the table in ARCHITECTURE.md."""
    text = (REPO / "ARCHITECTURE.md").read_text()
    layers = {}
    for line in text.splitlines():
        m = re.match(r"\|\s*(\d+)\s*\|[^|]*\|([^|]*)\|", line)
        if m:
            for name in re.findall(r"`([\w.]+)`", m.group(2)):
                assert name not in layers, f"{name} appears twice in ARCHITECTURE.md's layer table"
                layers[name] = int(m.group(1))
    return layers


def module_name(path: Path) -> str:
    """labsupport/gpt.py -> "gpt"; labsupport/checks/__init__.py -> "checks"; checks/lab03.py -> "checks.lab03"."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def layer_of(module: str, layers: dict[str, int]) -> int:
    return layers[module] if module in layers else layers[module.split(".")[0]]


def package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def labsupport_imports(tree: ast.AST) -> set[str]:
    """Top modules of labsupport imported anywhere in the file (`labsupport.x.y` -> "x")."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "labsupport":
                continue
            if len(parts) > 1:
                found.add(".".join(parts[1:3]))
            else:  # from labsupport import assets, check (modules; RELEASE and the like are names of __init__)
                found.update(a.name for a in node.names if (PACKAGE / f"{a.name}.py").exists()
                             or (PACKAGE / a.name).is_dir())
                if any(not ((PACKAGE / f"{a.name}.py").exists() or (PACKAGE / a.name).is_dir()) for a in node.names):
                    found.add("__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "labsupport" and len(parts) > 1:
                    found.add(".".join(parts[1:3]))
    return found


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in package_files():
        name = module_name(path)
        graph.setdefault(name, set()).update(
            m for m in labsupport_imports(ast.parse(path.read_text())) if m != name)
    return graph


def test_every_module_has_one_layer():
    layers, modules = layer_table(), {m.split(".")[0] for m in import_graph()}
    assert modules - set(layers) == set(), "add these modules to ARCHITECTURE.md's layer table"
    assert set(layers) - modules == set(), "ARCHITECTURE.md lists modules that do not exist"


def test_imports_go_down_the_layers():
    layers, bad = layer_table(), []
    for importer, imported in import_graph().items():
        for dep in imported:
            high, low = layer_of(dep, layers), layer_of(importer, layers)
            if high > low and (importer, dep) not in KNOWN_UPWARD:
                bad.append(f"{importer} (layer {low}) imports {dep} (layer {high})")
    assert not bad, "lower layers must not import higher ones (see ARCHITECTURE.md):\n" + "\n".join(bad)


def test_import_graph_has_no_cycle():
    known = KNOWN_UPWARD.keys() | KNOWN_CYCLE.keys()
    graph = {m: {d for d in deps if (m, d) not in known} for m, deps in import_graph().items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep] if dep in path else [node, dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_models_do_not_import_the_asset_registry():
    graph = import_graph()
    for model in MODEL_MODULES:
        uses = graph[model] & {"assets", "offline", "fixtures"}
        assert not uses, f"{model} imports {uses}: load by asset name in labsupport.assets instead"


def test_labsupport_never_imports_grading():
    for path in package_files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            assert not any(n.split(".")[0] == "grading" for n in names), f"{path} imports grading"


# ---------------------------------------------------------------------------------------------- private names


PACKAGES = ("labsupport", "grading")  # both are checked: grading is a package with modules of its own


def private_uses(tree: ast.AST) -> set[str]:
    """`module._name` uses of labsupport/grading modules and `from labsupport.x import _name` imports, as "x._name"."""
    aliases: dict[str, str] = {}  # local name -> labsupport module
    uses = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            parts = node.module.split(".")
            for alias in node.names:
                if len(parts) == 1:  # from labsupport import weather [as w]; from grading import sandbox
                    aliases[alias.asname or alias.name] = alias.name
                elif alias.name.startswith("_") and not alias.name.startswith("__"):
                    uses.add(f"{parts[-1]}.{alias.name}")
                else:  # from labsupport.checks import lab03
                    aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in PACKAGES and len(parts) > 1 and alias.asname:
                    aliases[alias.asname] = parts[-1]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            uses.add(f"{aliases[node.value.id]}.{node.attr}")
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name) and node.value.value.id in PACKAGES
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            uses.add(f"{node.value.attr}.{node.attr}")  # labsupport.weather._x
    return uses


def notebook_code(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    code = []
    for cell in cells:
        if cell["cell_type"] == "code":
            lines = "".join(cell["source"]).splitlines()
            # IPython magics and shell lines become `pass`, so the cell stays valid Python
            code.append("\n".join(line[: len(line) - len(line.lstrip())] + "pass"
                                  if line.lstrip().startswith(("%", "!")) else line for line in lines))
    return "\n".join(code)


def sources() -> list[tuple[str, str]]:
    files = [*package_files(), *sorted((REPO / "grading").rglob("*.py")), *sorted((REPO / "benchmarks").glob("*.py")),
             *sorted((REPO / "tests").rglob("*.py"))]
    out = [(str(p.relative_to(REPO)), p.read_text()) for p in files]
    out += [(str(p.relative_to(REPO)), notebook_code(p)) for p in sorted((REPO / "notebooks").glob("*.ipynb"))]
    return out


def test_no_private_name_crosses_a_module_boundary():
    bad = []
    for rel, text in sources():
        for use in sorted(private_uses(ast.parse(text))):
            module = use.split(".")[0]
            if rel.startswith("tests/") and Path(rel).stem.startswith("test_") and Path(rel).stem.endswith(module):
                continue  # a module's own tests (test_weather.py, test_checks_lab04.py) may test its internals
            if (rel, use) not in KNOWN_PRIVATE:
                bad.append(f"{rel} uses {use}")
    assert not bad, "private names used outside their module (make them public or move the code):\n" + "\n".join(bad)


def test_the_private_name_checker_finds_each_form():
    tree = ast.parse("from labsupport import weather as w\nfrom labsupport.hmm import _viterbi\nimport labsupport.gpt\n"
                     "w._draw(1)\nlabsupport.gpt._resolve_config(2)\nw.__name__\n")
    assert private_uses(tree) == {"weather._draw", "hmm._viterbi", "gpt._resolve_config"}
    tree = ast.parse("from grading import sandbox\nfrom grading.sandbox import _vm_size\nsandbox._cap(1)\n")
    assert private_uses(tree) == {"sandbox._vm_size", "sandbox._cap"}


def test_benchmarks_and_notebooks_do_not_edit_sys_path():
    for rel, text in sources():
        if rel.startswith(("benchmarks/", "notebooks/")):
            assert "sys.path" not in text, f"{rel} edits sys.path; import the installed package instead"
