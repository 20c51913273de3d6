"""The package's layers import one way (docs/architecture.md): a wrong import fails here.

    transforms < structures < io, ops < render, metrics; stats alone; data, models < evaluate < train < engine;
    report reads stored results; workflows (the application) compose them; cli on top.

Root modules (atomic, jsonable, runtime, seeding, config_io, distributed) are shared by every layer and may
import no layer.
"""

from __future__ import annotations

import ast
import pathlib

PKG = pathlib.Path(__file__).resolve().parents[1] / "sam3d_eval"

BELOW: dict[str, set[str]] = {
    "transforms": set(),
    "structures": {"transforms"},
    "io": {"structures", "transforms"},
    "ops": {"structures", "transforms"},
    "render": {"ops", "structures", "transforms"},
    "metrics": {"ops", "structures", "transforms"},
    "stats": set(),
    "data": {"render", "ops", "io", "structures", "transforms"},
    "models": {"render", "ops", "io", "structures", "transforms"},
    "report": {"stats", "render", "io", "structures", "transforms"},
}
BELOW["evaluate"] = {"models", "data", "metrics", "stats"} | BELOW["data"]
BELOW["train"] = {"evaluate"} | BELOW["evaluate"]
BELOW["engine"] = {"train"} | BELOW["train"]
BELOW["workflows"] = {"engine", "report"} | BELOW["engine"] | BELOW["report"]
BELOW["cli"] = set(BELOW) | {"workflows"}
LAYERS = set(BELOW)


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, top-level name under sam3d_eval) of every import in `path`, relative ones resolved."""
    rel = path.relative_to(PKG).parts
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(rel[:-1])[: len(rel[:-1]) - (node.level - 1)]
                mod = base + (node.module.split(".") if node.module else [])
                if not mod:  # "from . import x" at the package root: x is the module
                    mod = [node.names[0].name]
                names = ["sam3d_eval." + ".".join(mod)]
            elif node.module:
                names = [node.module]
        for name in names:
            bits = name.split(".")
            if bits[0] == "sam3d_eval" and len(bits) > 1:
                out.append((node.lineno, bits[1].removesuffix(".py")))
    return out


def test_every_sub_package_has_a_place_in_the_layer_order():
    packages = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= LAYERS, f"sub-packages without a layer: {sorted(packages - LAYERS)}; add them to BELOW"


def test_imports_point_down_the_layer_order():
    up = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).parts
        if rel in (("__init__.py",), ("__main__.py",)):
            continue
        me = rel[0].removesuffix(".py")
        for line, other in _imports(path):
            if me in LAYERS:
                if other != me and other in LAYERS and other not in BELOW[me]:
                    up.append(f"{path.relative_to(PKG.parent)}:{line}: {me} imports {other}")
            elif other in LAYERS:  # a root module shared by every layer imports none
                up.append(f"{path.relative_to(PKG.parent)}:{line}: root module {me} imports {other}")
    assert not up, "imports against the layer order:\n" + "\n".join(up)


def test_the_rule_catches_an_upward_import(tmp_path, monkeypatch):
    """The check itself: a metrics module importing evaluate is reported."""
    fake = tmp_path / "sam3d_eval"
    (fake / "metrics").mkdir(parents=True)
    (fake / "metrics" / "__init__.py").write_text("")
    (fake / "metrics" / "bad.py").write_text("from ..evaluate import scoring\nfrom ..ops import knn\n")
    monkeypatch.setattr(__import__(__name__), "PKG", fake)
    got = _imports(fake / "metrics" / "bad.py")
    assert got == [(1, "evaluate"), (2, "ops")]
    assert "evaluate" not in BELOW["metrics"] and "ops" in BELOW["metrics"]


def test_every_import_inside_the_package_resolves():
    """Imports inside functions run only on their path; a name moved or renamed breaks them silently."""
    import importlib

    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("").parts
        package = ".".join(rel[:-1])  # what a relative import starts from, for a module and an __init__ alike
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("sam3d_eval"):
                continue
            module = importlib.import_module(target)
            for alias in node.names:
                if alias.name == "*" or hasattr(module, alias.name):
                    continue
                try:
                    importlib.import_module(f"{target}.{alias.name}")
                except ModuleNotFoundError:
                    bad.append(f"{path.relative_to(PKG.parent)}:{node.lineno}: {target} has no {alias.name}")
    assert not bad, "\n".join(bad)
