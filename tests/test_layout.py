"""The package's shape: no import cycles, data flowing one way, the engine knowing nothing of the tool,
and a wheel that carries its profiles and installs no bare top-level `quantize`."""

import ast
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"mobilepre": ROOT / "mobilepre", "mobilepre.quantize": ROOT / "quantize"}

# The chain of the brief, lowest first: a module imports only from its own layer or lower ones.
LAYERS = [
    {"mobilepre.quantize", "mobilepre.errors", "mobilepre.metrics", "mobilepre.intervals", "mobilepre.sizes", "mobilepre._tf", "mobilepre.versions",
     "mobilepre.litert_child", "mobilepre.sandbox", "mobilepre.progress", "mobilepre.guards", "mobilepre.tflite_reader",
     "mobilepre.image_headers"},
    {"mobilepre.graph_scan", "mobilepre.signing", "mobilepre.toml_reader", "mobilepre.fsutil", "mobilepre.macs", "mobilepre.artifacts",
     "mobilepre.budgets", "mobilepre.demo", "mobilepre.tfjs_runner", "mobilepre.sdk_metadata",
     "mobilepre.web_bundle"},
    {"mobilepre.safety", "mobilepre.formats", "mobilepre.facts"},
    {"mobilepre.profiles", "mobilepre.data", "mobilepre.models", "mobilepre.runtimes", "mobilepre.frontend",
     "mobilepre.manifest", "mobilepre.latency", "mobilepre.candidates", "mobilepre.overview", "mobilepre.results",
     "mobilepre.output", "mobilepre.measured"},
    {"mobilepre.layers", "mobilepre.validate", "mobilepre.report", "mobilepre.mixed", "mobilepre.cache", "mobilepre.keys",
     "mobilepre.variants", "mobilepre.converting"},
    {"mobilepre.evaluate", "mobilepre.compress", "mobilepre.running", "mobilepre.options", "mobilepre.writing"},
    {"mobilepre.search", "mobilepre.plan", "mobilepre.inputs"},
    {"mobilepre.builder", "mobilepre.check"},
    {"mobilepre.config", "mobilepre.merge", "mobilepre.deliver", "mobilepre.sign", "mobilepre.check_files"},
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


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """The wheel built from the repository's tracked files, installed into a fresh virtual environment
    that sees the pinned stack (the project's own site-packages) but not the editable checkout."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (t.decode() for t in tracked)):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name).read_bytes())
    dist = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", dist, source],
        check=True, capture_output=True,
    )
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stack = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "pinned_stack.pth").write_text(stack + "\n")  # a path line: the stack's own .pth files stay unread
    wheel = next(dist.glob("mobilepre-*.whl"))
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel], check=True, capture_output=True)
    return env_dir, wheel, site


def test_the_wheel_carries_profiles_and_no_bare_quantize(wheel_env):
    import zipfile

    _, wheel, site = wheel_env
    names = zipfile.ZipFile(wheel).namelist()
    assert not any(n.startswith("quantize/") for n in names)
    assert "mobilepre/quantize/settings.py" in names and "mobilepre/device_profiles/npu-int8.toml" in names
    assert "mobilepre/demo/demo.keras" in names and "mobilepre/tfjs_runner/package-lock.json" in names
    assert not Path(site, "quantize").exists()


@pytest.mark.slow
def test_the_installed_wheel_builds_the_demo_outside_the_repository(wheel_env, tmp_path):
    env_dir, _, _ = wheel_env
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["MOBILEPRE_TFJS_RUNNER"] = str(ROOT / "mobilepre" / "tfjs_runner")  # its node_modules, as `npm ci` makes them
    cli = str(env_dir / "bin" / "mobilepre")
    where = subprocess.run([env_dir / "bin" / "python", "-c", "import mobilepre, mobilepre.quantize as q; print(mobilepre.__file__, q.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    assert str(ROOT) not in where and "site-packages" in where
    listed = subprocess.run([cli, "profiles", "list"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert listed.returncode == 0 and "npu-int8" in listed.stdout and "web-mobile" in listed.stdout, listed.stderr
    # a shipped profile, and a LiteRT.js one (its page files and runtime come from the package and the runner)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    shutil.copy(ROOT / "device_profiles" / "npu-int8.toml", profiles)
    (profiles / "web-lite.toml").write_text('name = "web-lite"\ndescription = "A browser bundle of the .tflite."\nformats = ["litertjs"]\n'
                                            'quantization = ["float32"]\n[budget]\nmax_size = "8 MiB"\n[drift]\nmin_top1_agreement = 0.97\n')
    built = subprocess.run([cli, "build", "--out", "out", "--profiles", profiles, "--latency-runs", "3", "--json"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["npu-int8", "report.html", "report.json", "report.md", "timings.json", "web-lite"]
    shipped = {p.relative_to(tmp_path / "out" / "web-lite").as_posix() for p in (tmp_path / "out" / "web-lite").rglob("*")}
    assert {"index.html", "loader.mjs", "outputs.mjs", "litertjs/model.tflite", "runtime/litertjs/core/index.js"} <= shipped  # package data


def test_importing_the_engine_or_the_package_imports_nothing_else():
    """`mobilepre/__init__` is lazy: the engine's settings load without the tool, and the package itself
    loads no module of the tool (nor TensorFlow) until a name is asked for."""
    code = ("import sys, importlib; importlib.import_module(sys.argv[1]); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('mobilepre', 'tensorflow', 'keras')))))")
    for module, allowed in (("mobilepre.quantize.settings", ("mobilepre.quantize",)), ("mobilepre", ())):
        loaded = subprocess.run([sys.executable, "-c", code, module], capture_output=True, text=True, check=True).stdout.split()
        assert [m for m in loaded if m != "mobilepre" and not m.startswith(allowed)] == [], (module, loaded)
    done = subprocess.run([sys.executable, "-c", "import mobilepre; print(mobilepre.BuildOptions.__module__, mobilepre.check.__module__)"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["mobilepre.options", "mobilepre.check"]
