"""One row per artifact format: where its artifact lives, how it is verified, run, labelled and measured.

A table beats a branch: code that differs by format looks its row up (`FORMATS[fmt]`) instead of
asking `if fmt == "tflite"`. A new format is a new row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mobilepre.errors import MobilepreError
from mobilepre.artifacts import litertjs_problem, verify_tflite, verify_tfjs_folder
from mobilepre.quantize.settings import Format
from mobilepre.sdk_metadata import litertjs_contract, tflite_with_metadata, tfjs_with_metadata
from mobilepre.web_bundle import litertjs_page_files, runtime_download, tfjs_page_files


def _tflite_metadata(files: dict, sdk) -> tuple[dict, dict]:
    written = tflite_with_metadata(files["model.tflite"], sdk)
    return {**files, "model.tflite": written.data}, {"carries": written.carries, "mediapipe_task": sdk.mediapipe_task, "note": written.note}


def _tfjs_metadata(files: dict, sdk) -> tuple[dict, dict]:
    carries = "userDefinedMetadata: I/O contract" + (" and class names" if sdk.class_names else "")
    return {**files, "model.json": tfjs_with_metadata(files["model.json"], sdk)}, {"carries": [carries], "note": None}


def _litertjs_metadata(files: dict, sdk) -> tuple[dict, dict]:
    """The .tflite exactly as a TFLite bundle ships it (its drift in LiteRT carries over), and beside it
    `contract.json`: the I/O contract the browser loader reads (it cannot parse TFLite metadata)."""
    files, metadata = _tflite_metadata(files, sdk)
    carries = [*metadata["carries"], "contract.json: I/O contract" + (" and class names" if sdk.class_names else "")]
    return {**files, "contract.json": litertjs_contract(files["model.tflite"], sdk)}, {**metadata, "carries": carries}


def _verify_tflite(path: Path, where: str) -> None:
    verify_tflite(path.read_bytes(), where)


def _verify_tfjs(path: Path, where: str) -> None:
    verify_tfjs_folder(path.parent, where)


def _verify_litertjs(path: Path, where: str) -> None:
    content = path.read_bytes()
    verify_tflite(content, where)
    problem = litertjs_problem(content, where)
    if problem:
        raise MobilepreError(problem)


@dataclass(frozen=True)
class FormatRow:
    """What differs by format.

    Attributes:
        format (Format).
        artifact (str): the artifact's path in a bundle (`model.tflite`, `tfjs/model.json`).
        folder (str): the bundle folder the artifact's files go into ("" for the bundle itself).
        runtime (str): the runtime a build validates it in, as messages name it.
        memory_source (str): what its peak memory is: "host" (resident memory on this machine, varies by
            host) or "measured" (tensor bytes, exact).
        with_metadata (callable): (files, SdkContract) -> (files with the I/O contract written in, what
            the metadata carries).
        verify (callable): (artifact path, where) -> None, or a `MobilepreError` naming the problem, before
            any runtime parses it.
        served_compressed (bool): what a device downloads is the gzip of the files (a web server's), so a
            size preference weighs gzip bytes first; a .tflite in an app ships as it is.
        page_files (callable | None): () -> the files a web bundle carries beside the artifact (loader
            page, `loader.mjs`, and the runtime when the bundle serves its own), by bundle path.
        web_runtime (str | None): the browser runtime whose download `sizes.runtime_download` adds.
    """

    format: Format
    artifact: str
    folder: str
    runtime: str
    memory_source: str
    with_metadata: Callable
    verify: Callable
    served_compressed: bool = False
    page_files: Callable | None = None
    web_runtime: str | None = None

    def prefix(self) -> str:
        """The artifact's files' path prefix in a bundle ("", "tfjs/" or "litertjs/")."""
        return f"{self.folder}/" if self.folder else ""

    def run_path(self, folder: Path) -> Path:
        """What a runtime is given for an artifact written into `folder`: the .tflite file, or the folder
        (TF.js: model.json and shards; LiteRT.js: model.tflite and contract.json)."""
        return Path(folder) / self.artifact if not self.folder else Path(folder)

    def write(self, files: dict, folder: Path) -> Path:
        """Write the artifact's `files` into `folder`; return what a runtime is given (`run_path`)."""
        for name, data in files.items():
            (Path(folder) / name).write_bytes(data)
        return self.run_path(folder)


FORMATS = {
    Format.TFLITE: FormatRow(Format.TFLITE, "model.tflite", "", "LiteRT", "host", _tflite_metadata, _verify_tflite),
    Format.TFJS: FormatRow(Format.TFJS, "tfjs/model.json", "tfjs", "TF.js (Node, wasm)", "measured", _tfjs_metadata, _verify_tfjs,
                           served_compressed=True, page_files=tfjs_page_files, web_runtime="tfjs"),
    Format.LITERTJS: FormatRow(Format.LITERTJS, "litertjs/model.tflite", "litertjs", "LiteRT.js (Chromium, wasm)", "host",
                               _litertjs_metadata, _verify_litertjs, served_compressed=True, page_files=litertjs_page_files,
                               web_runtime="litertjs"),
}


def row(fmt) -> FormatRow:
    """The row of `fmt` (a `Format` or its name); KeyError for a format no row describes."""
    return FORMATS[Format(fmt)]


def download_bytes(fmt: str, gzip_bytes: int) -> int | None:
    """What a browser downloads on a first visit for an artifact of `fmt`: its gzip bytes and its web
    runtime's (`web_bundle.runtime_download`); None for a format no browser loads (.tflite in an app)."""
    runtime = row(fmt).web_runtime
    return None if runtime is None else gzip_bytes + runtime_download(runtime)[1]
