"""The package's shape: no import cycles, data flowing one way, the engine knowing nothing of the tool,
and a wheel that carries its profiles and installs no bare top-level `quantize`."""

import ast
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"mobilepre": ROOT / "mobilepre", "mobilepre.quantize": ROOT / "quantize"}

# The chain of the brief, lowest first: a module imports only from its own layer or lower ones.
LAYERS = [
    {"mobilepre.quantize", "mobilepre.errors", "mobilepre.metrics", "mobilepre.sizes", "mobilepre._tf"},
    {"mobilepre.toml_reader", "mobilepre.fsutil", "mobilepre.macs", "mobilepre.artifacts", "mobilepre.safety",
     "mobilepre.budgets", "mobilepre.demo", "mobilepre.tfjs_runner"},
    {"mobilepre.profiles", "mobilepre.data", "mobilepre.models", "mobilepre.runtimes", "mobilepre.frontend",
     "mobilepre.manifest", "mobilepre.latency", "mobilepre.candidates"},
    {"mobilepre.layers", "mobilepre.validate", "mobilepre.report"},
    {"mobilepre.evaluate", "mobilepre.compress"},
    {"mobilepre.search"},
    {"mobilepre.builder", "mobilepre.check"},
    {"mobilepre.config"},
    {"mobilepre", "mobilepre.cli", "mobilepre.__main__"},
]


def _modules():
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            if "node_modules" in path.parts:
                continue
            relative = path.relative_to(folder).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            yield ".".join([package, *parts]), path


def _module_level_imports(path: Path, name: str) -> set[str]:
    """Imports at module level (not inside functions), resolved to mobilepre module names."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mobilepre")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module.startswith("mobilepre"):
                continue
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                found.add(candidate if candidate in ALL else module)
    return {_owner(m) for m in found if m != name}


ALL = dict(_modules())


def _owner(module: str) -> str:
    """`mobilepre.quantize.settings` belongs to the `mobilepre.quantize` layer unit."""
    return "mobilepre.quantize" if module.startswith("mobilepre.quantize") else module


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in ALL.items():
        owner = _owner(name)
        edges = {m for m in _module_level_imports(path, name) if _owner(m) != owner or owner != "mobilepre.quantize"}
        graph.setdefault(owner, set()).update(e for e in edges if e != owner)
    return graph


def test_every_module_has_a_layer():
    placed = set().union(*LAYERS)
    assert {_owner(n) for n in ALL} <= placed, {_owner(n) for n in ALL} - placed


def test_imports_flow_one_way_down_the_chain():
    rank = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    upward = [(a, b) for a, edges in _graph().items() for b in edges if rank[b] > rank[a]]
    assert upward == []


def test_no_import_cycles():
    graph = _graph()
    state = {}

    def visit(node, trail):
        if state.get(node) == "open":
            raise AssertionError("import cycle: " + " -> ".join(trail + [node]))
        if state.get(node) == "done":
            return
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, trail + [node])
        state[node] = "done"

    for node in sorted(graph):
        visit(node, [])


def test_the_engine_knows_nothing_of_the_tool():
    """`mobilepre.quantize` imports nothing of mobilepre and speaks in parameters, never in CLI flags."""
    for name, path in ALL.items():
        if not name.startswith("mobilepre.quantize"):
            continue
        text = path.read_text()
        assert "from mobilepre" not in text and "import mobilepre" not in text, name
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Raise):
                words = [c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
                assert not any(re.search(r"(^|[\s'\"(])--[a-z]", w) for w in words), (name, words)
