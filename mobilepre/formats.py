"""One row per artifact format: where its artifact lives, how it is verified, run, labelled and measured.

A table beats a branch: code that differs by format looks its row up (`FORMATS[fmt]`) instead of
asking `if fmt == "tflite"`. A new format is a new row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mobilepre.artifacts import verify_tflite, verify_tfjs_folder
from mobilepre.quantize.settings import Format
from mobilepre.sdk_metadata import tflite_with_metadata, tfjs_with_metadata


def _tflite_metadata(files: dict, sdk) -> tuple[dict, dict]:
    written = tflite_with_metadata(files["model.tflite"], sdk)
    return {**files, "model.tflite": written.data}, {"carries": written.carries, "mediapipe_task": sdk.mediapipe_task, "note": written.note}


def _tfjs_metadata(files: dict, sdk) -> tuple[dict, dict]:
    carries = "userDefinedMetadata: I/O contract" + (" and class names" if sdk.class_names else "")
    return {**files, "model.json": tfjs_with_metadata(files["model.json"], sdk)}, {"carries": [carries], "note": None}


def _verify_tflite(path: Path, where: str) -> None:
    verify_tflite(path.read_bytes(), where)


def _verify_tfjs(path: Path, where: str) -> None:
    verify_tfjs_folder(path.parent, where)


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
            size preference weighs gzip bytes first; a .tflite ships as it is.
        web_page (bool): its bundle carries the loader page (`index.html`, `loader.mjs`) beside it.
    """

    format: Format
    artifact: str
    folder: str
    runtime: str
    memory_source: str
    with_metadata: Callable
    verify: Callable
    served_compressed: bool = False
    web_page: bool = False

    def prefix(self) -> str:
        """The artifact's files' path prefix in a bundle ("" or "tfjs/")."""
        return f"{self.folder}/" if self.folder else ""

    def run_path(self, folder: Path) -> Path:
        """What a runtime is given for an artifact written into `folder`: the .tflite file, or the TF.js folder."""
        return Path(folder) / self.artifact if not self.folder else Path(folder)

    def write(self, files: dict, folder: Path) -> Path:
        """Write the artifact's `files` into `folder`; return what a runtime is given (`run_path`)."""
        for name, data in files.items():
            (Path(folder) / name).write_bytes(data)
        return self.run_path(folder)


FORMATS = {
    Format.TFLITE: FormatRow(Format.TFLITE, "model.tflite", "", "LiteRT", "host", _tflite_metadata, _verify_tflite),
    Format.TFJS: FormatRow(Format.TFJS, "tfjs/model.json", "tfjs", "TF.js (Node, wasm)", "measured", _tfjs_metadata, _verify_tfjs,
                           served_compressed=True, web_page=True),
}


def row(fmt) -> FormatRow:
    """The row of `fmt` (a `Format` or its name); KeyError for a format no row describes."""
    return FORMATS[Format(fmt)]
