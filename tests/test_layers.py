"""The package's layers point one way: a module imports only from its own package or from a lower layer
(function-level imports included), so the site runtime never drags in training, and export never reaches up
into deployment choices."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "elasticnet"
# lowest first; a package may import from its own layer's modules only if it is that package
LAYERS = [
    {"elasticnet", "errors"},
    {"options", "hardware", "files", "runtime", "run_files", "subnet_row", "shapes"},
    {"models"},
    {"config", "reporting"},
    {"data"},
    {"site"},  # the hospital runtime: images, bundles, predict (no torch)
    {"sliding_window"},
    {"checkpoint"},
    {"training"},
    {"export"},
    {"deploy", "tune"},
    {"cli"},
    {"__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def top(module: str) -> str:
    """The package (or top-level module) of ``elasticnet.X...``; the package's own __init__ is ``elasticnet``."""
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else parts[0]
    return "elasticnet" if name == "__init__" else name


def imports() -> list[tuple[str, str, int]]:
    """(importing file, imported elasticnet module, line) for every import in the package."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            found += [
                (str(path.relative_to(PACKAGE.parent)), n, node.lineno) for n in names if n.startswith("elasticnet")
            ]
    return found


def test_every_package_has_a_layer():
    packages = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if p.suffix == ".py" or (p / "__init__.py").exists()
    }
    packages = {"elasticnet" if p == "__init__" else p for p in packages}
    assert packages <= set(RANK), f"give these a layer in tests/test_layers.py: {sorted(packages - set(RANK))}"


def test_imports_point_down_the_layers():
    wrong = []
    for file, module, line in imports():
        here = top(".".join(Path(file).with_suffix("").parts))
        there = top(module)
        if here != there and RANK[there] >= RANK[here]:
            wrong.append(f"{file}:{line} imports {module} ({here} is layer {RANK[here]}, {there} layer {RANK[there]})")
    assert not wrong, "\n".join(wrong)
