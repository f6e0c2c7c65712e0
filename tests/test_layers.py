"""The flow is one-directional: data -> model -> train -> sweep -> report. Nothing imports "up"."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "hpcdlrm"
# Each stage may import itself, the stages to its left and the foundation (errors, io, env).
ORDER = ["data", "model", "train", "plan", "sweep", "report"]
FOUNDATION = {"errors", "io", "env", "__init__"}


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "hpcdlrm" or len(parts) < 2:
        return None
    return parts[1]


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    rel_pkg = ".".join(["hpcdlrm", *path.relative_to(PKG).with_suffix("").parts[:-1]])
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = rel_pkg.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append(mod)
            out += [f"{mod}.{a.name}" for a in node.names]
    return out


def test_no_module_imports_a_later_stage() -> None:
    bad = []
    for path in PKG.rglob("*.py"):
        own = path.relative_to(PKG).parts[0].removesuffix(".py")
        if own not in ORDER:
            continue  # bench, CLIs and the foundation sit outside the chain
        for mod in imports_of(path):
            st = stage_of(mod)
            if st in ORDER and ORDER.index(st) > ORDER.index(own):
                bad.append(f"{path.relative_to(PKG)} imports {mod}")
            if own in ("data", "model") and mod.split(".")[0] in ("submitit", "nevergrad", "matplotlib"):
                bad.append(f"{path.relative_to(PKG)} imports {mod}")
    assert not bad, "imports against the data->model->train->sweep->report flow:\n" + "\n".join(bad)


def test_foundation_imports_no_stage() -> None:
    for name in FOUNDATION - {"__init__"}:
        for mod in imports_of(PKG / f"{name}.py"):
            assert stage_of(mod) not in ORDER, f"{name}.py imports {mod}"
