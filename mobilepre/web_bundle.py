"""What a web bundle carries beside its model, per runtime, and what a browser downloads to run it.

A TF.js bundle carries the loader page (`index.html`, `loader.mjs`) and loads TF.js 4.22 from jsDelivr
(an app hosts those files itself to work offline). A LiteRT.js bundle serves the runtime from its own
files: the page, LiteRT.js's loader (`loader.mjs`), its two ES modules and three of its four wasm
builds under `runtime/` (relaxed SIMD, what current Chrome and Edge run; `compat` for browsers without
it; JSPI, which WebGPU needs for a model with an integer input such as uint8 camera pixels; not the
threaded build, which needs cross-origin isolation), all copied from the pinned `@litertjs/core` 2.5.3
in the runner's node_modules. A browser downloads one of them.

The total download (`runtime_download`) is what a browser fetches on a first visit besides the model,
gzip as a web server sends it: the files of the build it loads.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from mobilepre.errors import MobilepreError

WEB_DIR = Path(__file__).resolve().parent / "web"
PAGE_FILES = ("index.html", "loader.mjs", "outputs.mjs")  # every web bundle's page: what makes a folder one
RUNTIME_MARK = ("<!-- runtime -->", "<!-- /runtime -->")  # the page's <head> part that loads its runtime

# LiteRT.js's files in a bundle (its path) from the runner's node_modules (its path there)
LITERTJS_RUNTIME = {
    "runtime/litertjs/core/index.js": "@litertjs/core/dist/index.js",
    "runtime/litertjs/wasm-utils/index.js": "@litertjs/wasm-utils/dist/index.js",
    **{f"runtime/litertjs/wasm/{name}": f"@litertjs/core/wasm/{name}"
       for build in ("litert_wasm_internal", "litert_wasm_compat_internal", "litert_wasm_jspi_internal")
       for name in (f"{build}.js", f"{build}.wasm")},
}
# What a browser with relaxed SIMD fetches of each runtime (TF.js's wasm backend: its SIMD build)
DOWNLOADED = {
    "tfjs": ("@tensorflow/tfjs/dist/tf.min.js", "@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js",
             "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm"),
    "litertjs": ("@litertjs/core/dist/index.js", "@litertjs/wasm-utils/dist/index.js",
                 "@litertjs/core/wasm/litert_wasm_internal.js", "@litertjs/core/wasm/litert_wasm_internal.wasm"),
}
LITERTJS_HEAD = """<!-- runtime -->
<!-- LiteRT.js 2.5.3, served from this bundle's runtime/ folder (no CDN): the import map resolves its modules. -->
<script type="importmap">
{"imports": {"@litertjs/core": "./runtime/litertjs/core/index.js", "@litertjs/wasm-utils": "./runtime/litertjs/wasm-utils/index.js"}}
</script>
<!-- /runtime -->"""


def runner_dir() -> Path:
    override = os.environ.get("MOBILEPRE_TFJS_RUNNER")
    return Path(override) if override else Path(__file__).resolve().parent / "tfjs_runner"


def _node_modules() -> Path:
    return runner_dir() / "node_modules"


def _read(relative: str) -> bytes:
    path = _node_modules() / relative
    try:
        return path.read_bytes()
    except OSError:
        raise MobilepreError(f"{path} is missing: the browser runtimes are installed by `npm ci` in {path.parent.parent} "
                             "(`make install` does it)") from None


def page(runtime: str) -> bytes:
    """The loader page for `runtime` ("tfjs" or "litertjs"): one page, its <head> loading that runtime."""
    text = (WEB_DIR / "index.html").read_text()
    if runtime == "litertjs":
        start, end = text.index(RUNTIME_MARK[0]), text.index(RUNTIME_MARK[1]) + len(RUNTIME_MARK[1])
        text = text[:start] + LITERTJS_HEAD + text[end:]
    return text.encode()


def tfjs_page_files() -> dict[str, bytes]:
    """What a TF.js bundle carries beside `tfjs/`: the loader page, `loader.mjs` and `outputs.mjs`."""
    return {"index.html": page("tfjs"), "loader.mjs": (WEB_DIR / "loader.mjs").read_bytes(), "outputs.mjs": (WEB_DIR / "outputs.mjs").read_bytes()}


def litertjs_page_files(runtime: bool = True) -> dict[str, bytes]:
    """What a LiteRT.js bundle carries beside `litertjs/`: the loader page, LiteRT.js's `loader.mjs`, `outputs.mjs` and
    (`runtime`) LiteRT.js itself under `runtime/litertjs/`."""
    files = {"index.html": page("litertjs"), "loader.mjs": (WEB_DIR / "litert.mjs").read_bytes(), "outputs.mjs": (WEB_DIR / "outputs.mjs").read_bytes()}
    if runtime:
        files.update(_litertjs_runtime())
    return files


@functools.cache
def _litertjs_runtime() -> dict[str, bytes]:
    return {name: _read(relative) for name, relative in LITERTJS_RUNTIME.items()}


@functools.cache
def runtime_download(runtime: str) -> tuple[int, int]:
    """(bytes, gzip bytes) a browser downloads of `runtime` ("tfjs" or "litertjs") on a first visit."""
    from mobilepre.quantize.artifact import gzip_size

    contents = [_read(relative) for relative in DOWNLOADED[runtime]]
    return sum(len(c) for c in contents), sum(gzip_size(c) for c in contents)


RUNTIME_PACKAGES = {"tfjs": ("TF.js", "@tensorflow/tfjs"), "litertjs": ("LiteRT.js", "@litertjs/core")}


def runtime_entry(runtime: str, model_gzip_bytes: int, backends: dict | None = None) -> dict:
    """What a manifest says of a web artifact's runtime: its name, npm package and version (as pinned in
    the runner's node_modules), where the page loads it from, the first visit's download, and with
    `backends` (a profile's `web_backends` run) each backend as "ok" or "refused: why", which the
    loaders read: they never pick a refused backend."""
    import json

    name, package = RUNTIME_PACKAGES[runtime]
    version = json.loads(_read(f"{package}/package.json"))["version"]
    raw, gzip = runtime_download(runtime)
    return {"download_bytes": model_gzip_bytes + gzip, "name": name, "package": package, "runtime_bytes": raw,
            "runtime_gzip_bytes": gzip, "served_from": "the bundle (runtime/)" if runtime == "litertjs" else "jsDelivr (index.html)",
            "version": version,
            **({"backends": {b: "ok" if v["passed"] else f"refused: {v['note']}" for b, v in sorted(backends.items())}} if backends else {})}
