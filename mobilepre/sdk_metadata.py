"""Metadata that mobile SDKs and TF.js read from a bundle's model, so an app needs no glue code.

TFLite: LiteRT/TFLite model metadata, written with MediaPipe's metadata writers (the schema MediaPipe
Tasks, ML Kit and Android Studio's ML Model Binding read): the input image's colour space and, for a
float input only, the normalisation that maps 0..255 pixels to what the model takes; per output what it
is; for an image classifier the class names as an associated `labels.txt`. TF.js: the same contract
under `model.json`'s `userDefinedMetadata` (TF.js exposes it as `model.metadata`).

MediaPipe is imported only when a TFLite file is written.
"""

from __future__ import annotations

import io
import json
import sys
import types
import zipfile
from dataclasses import dataclass, field

from mobilepre.errors import MobilepreError
from mobilepre.metrics import CLASS_SCORES, OutputKind

DESCRIPTION = "Built by mobilepre: takes raw camera pixels, preprocessing inside the model."


@dataclass(frozen=True)
class SdkContract:
    """What an app needs to feed the model and read its outputs.

    Attributes:
        name (str): the model's name, shown by SDK tools.
        input_dtype (str): "uint8" (raw pixels) or "float32".
        input_shape (tuple[int, int, int]): height, width, channels of one image.
        input_range (tuple[float, float]): a float input's values for pixels 0..255 (ignored for uint8).
        outputs (tuple[tuple[str, str], ...]): (name, kind) per output, in the model's order.
        class_names (tuple[str, ...]): the name of each class index of a classifier; empty when unknown.
        luma (bool): the model turns RGB into luma inside (its grayscale core sees one channel).
    """

    name: str
    input_dtype: str
    input_shape: tuple
    input_range: tuple = (0.0, 1.0)
    outputs: tuple = ()
    class_names: tuple = ()
    luma: bool = False

    @property
    def classifier(self) -> bool:
        """One output of class scores: what MediaPipe's ImageClassifier and ML Kit's labelers take."""
        return len(self.outputs) == 1 and OutputKind(self.outputs[0][1]) in CLASS_SCORES

    @property
    def mediapipe_task(self) -> str | None:
        """The MediaPipe Tasks vision API a TFLite bundle of this contract fits as it is: ImageClassifier for
        one class-score output, ImageSegmenter for one segmentation output; None otherwise (a detector's
        several heads, an embedding, a regression: run it with the LiteRT interpreter)."""
        if len(self.outputs) != 1:
            return None
        kind = OutputKind(self.outputs[0][1])
        return "ImageClassifier" if kind in CLASS_SCORES else "ImageSegmenter" if kind is OutputKind.SEGMENTATION else None

    @property
    def normalization(self) -> tuple[float, float] | None:
        """(mean, std) with (pixel - mean) / std = the model's float input; None for a uint8 input."""
        if self.input_dtype == "uint8":
            return None
        low, high = self.input_range
        std = 255.0 / (high - low)
        return -low * std, std

    def to_dict(self) -> dict:
        normalization = self.normalization
        return {
            "input": {
                "dtype": self.input_dtype,
                "shape": [1, *self.input_shape],
                "color_space": "RGB" if self.input_shape[-1] == 3 else "GRAYSCALE" if self.input_shape[-1] == 1 else "OTHER",
                "value_range": [0, 255] if self.input_dtype == "uint8" else list(self.input_range),
                "normalization": None if normalization is None else {"mean": normalization[0], "std": normalization[1]},
                "luma_in_model": self.luma,
            },
            "outputs": [{"name": name, "kind": kind} for name, kind in self.outputs],
            "class_names": list(self.class_names),
        }


@dataclass
class Written:
    """A model with metadata: its bytes, and what it carries or why it carries none."""

    data: bytes
    carries: list = field(default_factory=list)
    note: str | None = None


def tflite_with_metadata(model: bytes, contract: SdkContract) -> Written:
    """`model` (a .tflite flatbuffer) with TFLite metadata for `contract`; for an output kind no writer
    describes, the model unchanged and a note saying so."""
    if contract.input_shape[-1] not in (1, 3):
        return Written(model, [], f"TFLite metadata describes 1- or 3-channel images; the model takes {contract.input_shape[-1]} channels")
    metadata_writer, metadata_fb = _writers()

    class Writer(metadata_writer.MetadataWriter):
        def __del__(self):  # its temporary folder, removed at once below, not at interpreter exit (where
            pass            # the stock __del__ fails on a torn-down `os` and prints a traceback)

    writer = Writer.create(bytearray(model))
    writer.add_general_info(contract.name, DESCRIPTION)
    normalization = contract.normalization
    colour = metadata_fb.ColorSpaceType.RGB if contract.input_shape[-1] == 3 else metadata_fb.ColorSpaceType.GRAYSCALE
    mean, std = ([normalization[0]], [normalization[1]]) if normalization else ([], [])
    writer.add_image_input(norm_mean=mean, norm_std=std, color_space_type=colour)
    carries = ["image input" + (" with normalization" if normalization else "")]
    labels = metadata_writer.Labels().add(list(contract.class_names)) if contract.class_names else None
    for name, kind in outputs_in_file_order(model, contract):  # the writer describes the file's outputs by position
        kind = OutputKind(kind)
        if kind in CLASS_SCORES:
            writer.add_classification_output(labels if contract.classifier else None, name=name)
            carries.append("classification output" + (" with class names" if labels and contract.classifier else ""))
        elif kind is OutputKind.SEGMENTATION:
            writer.add_segmentation_output(labels, name=name)
            carries.append("segmentation output" + (" with class names" if labels else ""))
        else:
            writer.add_feature_output(name=name, description=f"{kind.value} output")
            carries.append(f"{kind.value} output")
    try:
        data, _ = writer.populate()
    except (ValueError, RuntimeError) as error:  # the writer's own refusal: the model ships without metadata
        return Written(model, [], f"MediaPipe's metadata writer refused the model: {error}")
    finally:
        writer._temp_folder.cleanup()
    return Written(_finished(bytes(data)), carries)


def outputs_in_file_order(model: bytes, contract: SdkContract) -> list:
    """The contract's (name, kind) outputs in the order of the .tflite's own outputs, which the metadata's
    output entries describe by position: the Keras order is not the file's (the converter orders a
    signature's outputs by name), and a two-output model's heads would otherwise be read under each
    other's names (MediaPipe reported `box` holding the 10 class scores)."""
    from mobilepre.litert_child import ordered_keys
    from mobilepre.quantize.export import signature_output_keys
    from mobilepre.tflite_reader import tflite_io

    outputs = list(contract.outputs)
    io = tflite_io(model)
    signature = io["signature"]["outputs"]
    if len(outputs) < 2 or len(signature) != len(outputs):
        return outputs
    keys = ordered_keys(signature, list(signature_output_keys([name for name, _ in outputs])))
    position = {tensor["index"]: i for i, tensor in enumerate(io["outputs"])}
    return [output for _, output in sorted(zip((position[signature[key]] for key in keys), outputs))]


# The populator appends the associated files (labels.txt) as a zip stamped with the time of writing;
# a build's bytes must not depend on the clock, so the entries are written again with zip's earliest date.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _finished(data: bytes) -> bytes:
    """The populated file made as the converter's files are: the populator writes the flatbuffer out again
    one vector per table, so its identical vectors are stored once again (`share_vectors`), and the zip
    after it is written again with its entries dated `_ZIP_EPOCH`."""
    from mobilepre.quantize.tflite import share_vectors

    entries, contents = [], []
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
            contents = [archive.read(entry) for entry in entries]
    if not entries:
        return share_vectors(data)
    out = io.BytesIO(share_vectors(data[:min(entry.header_offset for entry in entries)]))
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a") as archive:  # as the populator appends: a zip after the flatbuffer
        for entry, content in zip(entries, contents):
            info = zipfile.ZipInfo(entry.filename, date_time=_ZIP_EPOCH)
            info.external_attr = 0o600 << 16
            archive.writestr(info, content, compress_type=entry.compress_type)
    return out.getvalue()


def tfjs_with_metadata(model_json: bytes, contract: SdkContract) -> bytes:
    """`model.json` with the contract under `userDefinedMetadata` (TF.js: `model.metadata`)."""
    try:
        document = json.loads(model_json)
    except ValueError as error:
        raise MobilepreError(f"TF.js model.json is not JSON: {error}") from None
    user = document.get("userDefinedMetadata")
    user = dict(user) if isinstance(user, dict) else {}
    user["mobilepre"] = contract.to_dict()  # beside the converter's own (structuredOutputKeys: predict's dict keys)
    document["userDefinedMetadata"] = user
    return json.dumps(document, separators=(",", ":")).encode()


def _writers():
    """MediaPipe's metadata writer module and metadata schema, importable even where the PyPI wheel
    lacks the compiled `_pywrap_metadata_version` its `metadata.py` imports (mediapipe 0.10.30 to 1.2.x
    ship without it); `_install_parser_version` stands in for that one function."""
    _install_parser_version()
    try:
        from mediapipe.tasks.metadata import metadata_schema_py_generated as metadata_fb
        from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer
    except ImportError as error:
        raise MobilepreError(f"TFLite metadata needs MediaPipe's metadata writers (pip install mediapipe): {error}") from None
    return metadata_writer, metadata_fb


_VERSION_MODULE = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"


def _install_parser_version() -> None:
    try:
        __import__(_VERSION_MODULE)
        return
    except ImportError:
        pass
    import importlib.util

    parts = _VERSION_MODULE.split(".")
    for depth in range(3, len(parts)):  # mediapipe.tasks.cc ... : empty packages where the wheel has none
        name = ".".join(parts[:depth])
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            package = types.ModuleType(name)
            package.__path__ = []
            sys.modules[name] = package
    module = types.ModuleType(_VERSION_MODULE)
    module.GetMinimumMetadataParserVersion = minimum_parser_version
    sys.modules[_VERSION_MODULE] = module


# The metadata schema members added after 1.0.0 and the parser version that reads each: MediaPipe's
# tasks/cc/metadata/metadata_version.cc, which the populator asks through `_pywrap_metadata_version`.
def minimum_parser_version(buffer: bytes) -> str:
    """The lowest metadata parser version that reads `buffer` (a ModelMetadata flatbuffer)."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    metadata = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAsModelMetadata(bytes(buffer), 0))
    version = [(1, 0, 0)]

    def need(v):
        version[0] = max(version[0], v)

    def files(items):
        for item in items or ():
            if item.type == fb.AssociatedFileType.VOCABULARY:
                need((1, 0, 1))
            if item.type == getattr(fb.AssociatedFileType, "SCANN_INDEX_FILE", -1):
                need((1, 4, 0))
            if item.version is not None:
                need((1, 4, 1))

    def units(items):
        for item in items or ():
            if item.optionsType in (fb.ProcessUnitOptions.BertTokenizerOptions, fb.ProcessUnitOptions.SentencePieceTokenizerOptions):
                need((1, 1, 0))
            if item.optionsType == fb.ProcessUnitOptions.RegexTokenizerOptions:
                need((1, 2, 1))

    def tensors(items):
        for item in items or ():
            files(item.associatedFiles)
            units(item.processUnits)
            if item.content is not None and item.content.contentPropertiesType == fb.ContentProperties.AudioProperties:
                need((1, 3, 0))

    for subgraph in metadata.subgraphMetadata or ():
        tensors(subgraph.inputTensorMetadata)
        tensors(subgraph.outputTensorMetadata)
        files(subgraph.associatedFiles)
        for units_of in (subgraph.inputProcessUnits, subgraph.outputProcessUnits):
            if units_of is not None:
                need((1, 1, 0))
                units(units_of)
        if subgraph.inputTensorGroups is not None or subgraph.outputTensorGroups is not None:
            need((1, 2, 0))
    files(metadata.associatedFiles)
    return ".".join(str(n) for n in version[0])


def litertjs_contract(model: bytes, contract: SdkContract) -> bytes:
    """`contract.json` of a LiteRT.js bundle: `{"mobilepre": contract}` as TF.js's model.json carries it,
    plus what the browser loader needs of the .tflite itself (it reads no TFLite metadata): the input
    tensor's dtype and quantization, and each integer output's quantization by signature key."""
    from mobilepre.tflite_reader import tflite_io

    io = tflite_io(model, "the LiteRT.js model")
    (first, *_) = io["inputs"]
    by_index = {t["index"]: t for t in io["outputs"]}
    tensors = {"input_dtype": first["dtype"],
               "outputs": {key: list(by_index[i]["quantization"]) for key, i in sorted(io["signature"]["outputs"].items())
                           if by_index[i]["dtype"] != "float32" and by_index[i]["quantization"][0]}}
    if first["dtype"] != "float32" and first["quantization"][0]:
        tensors["input"] = list(first["quantization"])
    return json.dumps({"mobilepre": {**contract.to_dict(), "quantization": tensors}}, indent=1, sort_keys=True).encode()
