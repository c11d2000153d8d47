"""Loading the user's calibration and validation images (and labels) into the model's input units."""

from __future__ import annotations

import csv
import hashlib
import math
import os
import re
import stat
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobilepre.image_headers import ImageHeader, read_header
from mobilepre.errors import MobilepreError, param
from mobilepre.toml_reader import read_regular_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npy", ".npz")
LABEL_TEXT_SUFFIXES = (".txt", ".csv")
MODEL_DTYPES = ("uint8", "float32")
DEFAULT_MAX_DATA_BYTES = 2 * 1024**3
MAX_LABELS_BYTES = 64 * 1024 * 1024

# Decoded images are resized in batches (one TF call per group of same-sized images): one eager
# antialiased resize costs ~0.75 ms whatever the size, a batch of 64 small images ~5 ms in all.
# A chunk holds at most this many decoded uint8 values, so memory stays bounded for large photos.
_CHUNK_VALUES = 1 << 26
_FLOAT32_EXACT_INT = 1 << 24


@dataclass(frozen=True)
class ModelInput:
    """What the model takes for one image.

    Attributes:
        shape (tuple[int, int, int]): (height, width, channels) of one image, without the batch axis.
        dtype (str): `"uint8"` (raw pixels 0..255) or `"float32"` (pixels mapped to `input_range`).
    """

    shape: tuple[int, int, int]
    dtype: str

    def __post_init__(self):
        shape = tuple(self.shape)
        if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise MobilepreError(f"model input shape must be three positive integers (H, W, C), got {self.shape}")
        if self.dtype not in MODEL_DTYPES:
            raise MobilepreError(f"model input dtype must be one of {', '.join(MODEL_DTYPES)}, got {self.dtype!r}")
        object.__setattr__(self, "shape", shape)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images ready to feed the model, in a stable order.

    Attributes:
        images (np.ndarray): (N, H, W, C) in the model's dtype and units, N >= 1.
        labels (np.ndarray | None): (N,) int64 class indices, or None when no labels were given.
        source (str): the folder or file the images came from.
        files (tuple[str, ...]): for a folder, the image file of each row of `images`, in order;
            empty for a `.npy` / `.npz` file.
        class_names (tuple[str, ...]): the name of each class index, when the data names them (class
            sub-folders, or a CSV of file,class-name); empty otherwise.
        warnings (tuple[str, ...]): what may be wrong with the data without being provably wrong.
    """

    images: np.ndarray
    labels: np.ndarray | None
    source: str
    files: tuple[str, ...]
    class_names: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.images.shape[0])


def load_dataset(
    path,
    model_input: ModelInput,
    input_range: tuple[float, float] = (0.0, 1.0),
    convert_channels: bool = False,
    limit: int | None = None,
    seed: int = 0,
    labels_path=None,
) -> Dataset:
    """Load images for `model_input` from a folder of PNG/JPEG files, a `.npy` or a `.npz` file.

    A folder: its own `.png`, `.jpg`, `.jpeg` files (any case) in sorted name order; sub-folders,
    hidden files (`.name`) and other files are ignored. A single PNG/JPEG file is a set of one. Each
    image is checked from its header first (size within `MAX_IMAGE_PIXELS`, channel count), all of
    them before any is decoded, then decoded, converted to the model's channels if
    `convert_channels` (grey <-> RGB, alpha dropped), resized to (H, W) (bilinear, antialiased) and
    mapped to the model's units: raw 0..255 for a uint8 model, `low + pixel / 255 * (high - low)`
    for a float32 model with `input_range=(low, high)`.

    A `.npy`, or a `.npz` with an `images` array (or exactly one array) and optional `labels`: a
    4-D (N, H, W, C) array already in the model's units, cast to its dtype only when that loses
    nothing; with `convert_channels`, one-channel arrays for a 3-channel model are repeated into R, G
    and B. Never unpickled.

    `limit`: if there are more images, `limit` of them are chosen with `seed` (kept in order); the
    same inputs always give the same choice. `labels_path`: labels for all the images (see
    `load_labels`), selected along with them.
    """
    path = Path(path)
    low, high = _check_range(input_range)
    _check_limit(limit)
    if not path.exists():
        raise MobilepreError(f"calibration data {path} does not exist: pass a folder of PNG/JPEG images, a .npy or a .npz")
    _check_kind(path, "calibration data")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in IMAGE_SUFFIXES:
        files, labels, class_names = _list_images(path)
        if labels is not None and labels_path is not None:
            raise MobilepreError(f"the class sub-folders of {path} already label its images: do not also pass a labels file")
        warnings = ()
        if labels_path is not None:
            labels, class_names, warnings = _labels_for_files(Path(labels_path), files)
        chosen = _choose(len(files), limit, seed)
        labels = None if labels is None else labels[chosen]
        files = [files[i] for i in chosen]
        images, converted = _load_images(files, model_input, low, high, convert_channels)
        if converted:
            warnings = (*warnings, f"{converted} in {path.name}: converted to the model's {model_input.shape[2]} channels")
        return Dataset(images, labels, str(path), tuple(str(f) for f in files), class_names, warnings)
    if suffix in ARRAY_SUFFIXES:
        images, labels = _load_arrays(path, model_input, limit, seed, labels_path, convert_channels, (low, high))
        return Dataset(images, labels, str(path), ())
    raise MobilepreError(
        f"calibration data {path} is a {suffix or 'suffix-less'} file: pass a folder of PNG/JPEG images, a .npy or a .npz"
    )


def load_labels(path, count: int) -> np.ndarray:
    """Read `count` integer class labels (>= 0) as an (count,) int64 array.

    From a `.npy`, a `.npz` (its `labels` array, or its only array), or a `.txt` / `.csv` file of one
    integer per line in the images' order (sorted file names for a folder); blank lines are skipped.
    `filename,label` lines are not accepted: order is the contract, so a second column is refused.
    """
    path = Path(path)
    if not path.exists():
        raise MobilepreError(f"labels file {path} does not exist: pass a .npy, .npz, or a text file of one integer per line")
    _check_kind(path, "labels file", folder=False)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        labels = _load_npy(path)
    elif suffix == ".npz":
        with _open_npz(path) as archive:
            key = "labels" if "labels" in archive.files else _only_key(archive, path, "labels")
            labels = _npz_member(archive, key, path)
    elif suffix in LABEL_TEXT_SUFFIXES:
        labels = _labels_from_text(path)
    else:
        raise MobilepreError(f"labels file {path} is a {suffix or 'suffix-less'} file: pass a .npy, .npz, .txt or .csv")
    return _check_labels(labels, count, str(path))


# --- folders of images -------------------------------------------------------------------------


def _images_in(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as e:
        raise MobilepreError(f"cannot list calibration folder {folder}: {e.strerror or e}") from None
    return [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()]


def _list_images(path: Path) -> tuple[list[Path], np.ndarray | None, tuple[str, ...]]:
    """The images of `path` in sorted order, and their labels and class names when the folder holds one
    sub-folder per class (the `keras.utils.image_dataset_from_directory` layout, classes sorted by name)."""
    if not path.is_dir():
        return [path], None, ()
    files = _images_in(path)
    if files:
        return files, None, ()
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_class = [(c.name, _images_in(c)) for c in classes]
    per_class = [(name, found) for name, found in per_class if found]
    if not per_class:
        raise MobilepreError(
            f"calibration folder {path} holds no .png, .jpg or .jpeg images, neither itself nor in class sub-folders: add some"
        )
    files = [f for _, found in per_class for f in found]
    labels = np.concatenate([np.full(len(found), i, np.int64) for i, (_, found) in enumerate(per_class)])
    return files, labels, tuple(name for name, _ in per_class)


def _labels_for_files(path: Path, files: list[Path]) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """Labels for a folder's images: a CSV of `file,label` matched by file name (labels are class indices
    or class names), or a plain list in the images' sorted order (with a warning when the names hold
    unpadded numbers, which sort as text: img10 before img2)."""
    pairs = _label_pairs(path)
    if pairs is None:
        return load_labels(path, len(files)), (), _unpadded_warning(files, path)
    by_name = {}
    for file_name, label in pairs:
        by_name.setdefault(Path(file_name).name, label)
    missing = [f.name for f in files if f.name not in by_name]
    if missing:
        raise MobilepreError(f"image {missing[0]} has no line in labels file {path}: give every image a file,label line")
    raw = [by_name[f.name] for f in files]
    if all(_INTEGER.fullmatch(v) for v in raw):
        return _check_labels(np.array([int(v) for v in raw]), len(files), str(path)), (), ()
    names = tuple(sorted(set(by_name.values())))
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[v] for v in raw], np.int64), names, ()


def _label_pairs(path: Path) -> list[tuple[str, str]] | None:
    """`file,label` lines of a .csv (an optional header first), or None when the file is one label per line."""
    if path.suffix.lower() != ".csv":
        return None
    raw = read_regular_file(path, "labels file", MAX_LABELS_BYTES)
    try:
        rows = [row for row in csv.reader(raw.decode("utf-8-sig").splitlines()) if row and any(cell.strip() for cell in row)]
    except (UnicodeDecodeError, csv.Error) as e:
        raise MobilepreError(f"labels file {path} is not a UTF-8 CSV: {e}") from None
    if not rows or len(rows[0]) < 2:
        return None
    if any(len(row) != 2 for row in rows):
        bad = next(i for i, row in enumerate(rows, 1) if len(row) != 2)
        raise MobilepreError(f"row {bad} of labels file {path} does not have two columns: write file,label on every line")
    if rows[0][0].strip().lower() in ("file", "filename", "image", "path", "name"):
        rows = rows[1:]
    return [(a.strip(), b.strip()) for a, b in rows]


_NUMBERED = re.compile(r"^(.*?)(\d+)\D*$")


def _unpadded_warning(files: list[Path], path: Path) -> tuple[str, ...]:
    widths: dict = {}
    for f in files:
        match = _NUMBERED.match(f.stem)
        if match:
            widths.setdefault(match.group(1), set()).add(len(match.group(2)))
    if any(len(w) > 1 for w in widths.values()):
        return (f"labels file {path} is matched to the images in sorted name order, and the names number them without "
                "padding (img10 sorts before img2): check the order, pad the numbers, or give a CSV of file,label",)
    return ()


# What an image of each channel count is, for saying what was converted.
_CHANNEL_NAMES = {1: "grayscale", 2: "grayscale with alpha", 3: "RGB", 4: "with alpha"}


def _load_images(files, model_input: ModelInput, low: float, high: float, convert: bool) -> tuple[np.ndarray, str]:
    """(images in model units, what was converted: e.g. "3 of 40 images (2 grayscale, 1 with alpha)", or "")."""
    height, width, channels = model_input.shape
    if channels not in (1, 3, 4):
        raise MobilepreError(
            f"the model takes {channels}-channel images, which PNG/JPEG cannot provide: pass a .npy or .npz instead"
        )
    headers = [read_header(f) for f in files]
    for f, header in zip(files, headers):  # fail fast: all headers before any decoding
        _check_channels(f, header.channels, channels, convert)
    other = Counter(h.channels for h in headers if h.channels != channels)
    converted = "" if not other else (
        f"{sum(other.values())} of {len(files)} images ("
        + ", ".join(f"{n} {_CHANNEL_NAMES.get(c, f'{c}-channel')}" for c, n in sorted(other.items())) + ")")

    from mobilepre._tf import quiet_tensorflow

    tf = quiet_tensorflow()
    out = np.empty((len(files), height, width, channels), dtype=model_input.dtype)
    for start, stop in _chunks(headers):
        decoded = [_decode(tf, files[i], headers[i], channels, convert) for i in range(start, stop)]
        groups: dict[tuple[int, ...], list[int]] = {}
        for offset, image in enumerate(decoded):
            groups.setdefault(image.shape, []).append(offset)
        for offsets in groups.values():
            batch = np.stack([decoded[o] for o in offsets])
            if batch.shape[-1] != channels:
                batch = _convert_channels(tf, tf.constant(batch.astype(np.float32)), channels).numpy()
            out[[start + o for o in offsets]] = _to_model_units(tf, batch, model_input, low, high)
    return out, converted


def _chunks(headers):
    """Yield (start, stop) runs of images holding at most `_CHUNK_VALUES` decoded values (one image at least)."""
    start = 0
    while start < len(headers):
        stop, values = start + 1, headers[start].values
        while stop < len(headers) and values + headers[stop].values <= _CHUNK_VALUES:
            values += headers[stop].values
            stop += 1
        yield start, stop
        start = stop


def _check_channels(path: Path, image_channels: int, model_channels: int, convert: bool) -> None:
    if image_channels == model_channels or convert:
        return
    raise MobilepreError(
        f"image {path} has {image_channels} channel{'s' if image_channels != 1 else ''}, the model expects "
        f"{model_channels}: pass {param('convert_channels')} to convert"
    )


def _decode(tf, path: Path, header: ImageHeader, model_channels: int, convert: bool) -> np.ndarray:
    """Decode one image to uint8 (h, w, c), its channels as stored."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise MobilepreError(f"cannot read image {path}: {e.strerror or e}") from None
    try:
        # A tensor, not bytes: bytes send the op down TF's slow eager fallback path (3x the time).
        image = tf.io.decode_image(tf.constant(data), channels=0, dtype=tf.uint8, expand_animations=False).numpy()
    except tf.errors.OpError as e:
        reason = (e.message or type(e).__name__).split("}}")[-1].split("[Op:")[0].strip().rstrip(".")
        raise MobilepreError(f"image {path} cannot be decoded ({reason}): it is truncated or corrupt") from None
    height, width, channels = image.shape
    if (width, height) != (header.width, header.height):
        raise MobilepreError(
            f"image {path} declares {header.width}x{header.height} pixels but decodes to {width}x{height}: it is corrupt"
        )
    _check_channels(path, channels, model_channels, convert)
    return image


def _convert_channels(tf, images, model_channels: int):
    """Convert a float32 (N, h, w, c) batch to `model_channels`: drop alpha, grey <-> RGB, add opaque alpha."""
    channels = int(images.shape[-1])
    if channels in (2, 4):
        images, channels = images[..., : channels - 1], channels - 1
    if model_channels == 1 and channels == 3:
        return tf.image.rgb_to_grayscale(images)
    if model_channels in (3, 4) and channels == 1:
        images = tf.image.grayscale_to_rgb(images)
    if model_channels == 4:
        images = tf.concat([images, tf.fill(tf.concat([tf.shape(images)[:-1], [1]], 0), 255.0)], axis=-1)
    return images


def _to_model_units(tf, batch: np.ndarray, model_input: ModelInput, low: float, high: float) -> np.ndarray:
    height, width, _ = model_input.shape
    if batch.shape[1:3] != (height, width):
        batch = tf.image.resize(batch.astype(np.float32), (height, width), method="bilinear", antialias=True).numpy()
    if model_input.dtype == "uint8":
        if batch.dtype == np.uint8:
            return batch
        return np.clip(np.rint(batch), 0, 255).astype(np.uint8)
    return (low + batch.astype(np.float32) * np.float32((high - low) / 255.0)).astype(np.float32)


# --- arrays --------------------------------------------------------------------------------------


def _load_arrays(path: Path, model_input: ModelInput, limit, seed: int, labels_path, convert_channels: bool = False,
                 input_range: tuple[float, float] = (0.0, 1.0)):
    if path.suffix.lower() == ".npy":
        images, labels = _load_npy(path, mmap=True), None
        _check_declared_size(images.shape, images.dtype, path)
    else:
        with _open_npz(path) as archive:
            key = "images" if "images" in archive.files else _only_key(archive, path, "images")
            _check_declared_size(*_npz_header(archive, key, path), path)
            images = _npz_member(archive, key, path)
            labels = _npz_member(archive, "labels", path) if "labels" in archive.files and key != "labels" else None
    where = str(path)
    expected = (model_input.shape[0], model_input.shape[1], model_input.shape[2])
    grey_to_rgb = convert_channels and images.ndim == 4 and images.shape[-1] == 1 and expected[2] == 3
    if grey_to_rgb:
        expected = (expected[0], expected[1], 1)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise MobilepreError(
            f"images in {where} have shape {tuple(images.shape)}, the model expects (N, {expected[0]}, "
            f"{expected[1]}, {expected[2]}): reshape or resize them"
        )
    count = int(images.shape[0])
    if count == 0:
        raise MobilepreError(f"{where} holds zero images: add some")
    if labels is not None and labels_path is not None:
        raise MobilepreError(f"{where} already holds labels: do not also pass a labels file")
    if labels is not None:
        labels = _check_labels(labels, count, f"{where} (labels)")
    elif labels_path is not None:
        labels = load_labels(labels_path, count)
    chosen = _choose(count, limit, seed)
    images = np.asarray(images[chosen] if len(chosen) < count else images)
    if grey_to_rgb:  # grey as a camera gives it: the same value in R, G and B
        images = np.repeat(images, 3, axis=-1)
    images = _array_in_model_units(images, model_input.dtype, where)
    if model_input.dtype != "uint8":
        _check_within_range(images, input_range, where)
    return images, None if labels is None else labels[chosen]


def _load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    try:
        loaded = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError, MemoryError) as e:
        raise MobilepreError(f"cannot load {path} as a numeric array ({_first_line(e)}): object arrays are refused") from None
    if not isinstance(loaded, np.ndarray):  # np.load goes by content: this .npy is really a .npz
        loaded.close()
        raise MobilepreError(f"{path} is a .npz archive named .npy: rename it to .npz")
    return loaded


def max_data_bytes() -> int:
    """The largest image array a build reads (`MOBILEPRE_MAX_DATA_BYTES`, default 2 GiB)."""
    text = os.environ.get("MOBILEPRE_MAX_DATA_BYTES", "")
    return int(text) if text.isdigit() and int(text) > 0 else DEFAULT_MAX_DATA_BYTES


def _check_declared_size(shape, dtype, path: Path) -> None:
    """Refuse, from its header and before anything is allocated, an array larger than the cap."""
    declared = math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize
    cap = max_data_bytes()
    if declared > cap:
        raise MobilepreError(
            f"{path} declares an array of shape {tuple(shape)} {np.dtype(dtype).name}, {declared:,} bytes, over the "
            f"{cap:,}-byte limit for image data: use fewer images, or raise MOBILEPRE_MAX_DATA_BYTES"
        )


def _npz_header(archive, key: str, path: Path) -> tuple:
    """(shape, dtype) of a .npz member, read from its .npy header without reading the array."""
    try:
        with archive.zip.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in readers:
                raise ValueError(f".npy format version {version} is not supported")
            shape, _fortran, dtype = readers[version](f)
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise MobilepreError(f"cannot read array {key!r} in {path} ({_first_line(e)})") from None
    return shape, dtype


def _check_kind(path: Path, what: str, folder: bool = True) -> None:
    """A regular file (or a folder, where one is accepted): a FIFO or a device would block or never end."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise MobilepreError(f"{what} {path} cannot be read: {e.strerror or e}") from None
    if stat.S_ISREG(mode) or (folder and stat.S_ISDIR(mode)):
        return
    kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)"
    raise MobilepreError(f"{what} {path} is {kind}: pass a {'folder of images or a ' if folder else ''}file")


def _open_npz(path: Path):
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise MobilepreError(f"cannot open {path} as a .npz archive ({_first_line(e)})") from None
    if isinstance(loaded, np.ndarray):
        raise MobilepreError(f"{path} is a single .npy array named .npz: rename it to .npy")
    return loaded


def _only_key(archive, path: Path, wanted: str) -> str:
    if len(archive.files) == 1:
        return archive.files[0]
    raise MobilepreError(
        f"{path} holds arrays {sorted(archive.files)} and none is named {wanted!r}: name it {wanted!r}"
    )


def _npz_member(archive, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except (ValueError, OSError, EOFError, MemoryError, KeyError, zipfile.BadZipFile) as e:
        raise MobilepreError(
            f"cannot load array {key!r} from {path} as numbers ({_first_line(e)}): object arrays are refused"
        ) from None


# Ranges float image models are commonly trained on, smallest first: what a refusal suggests.
COMMON_RANGES = ((0.0, 1.0), (-1.0, 1.0), (0.0, 255.0), (-128.0, 127.0))


def _check_within_range(images: np.ndarray, input_range: tuple[float, float], where: str) -> None:
    """Arrays for a float model are taken as they are; the input range is what every bundle's I/O contract
    (and its TFLite normalisation metadata) tells apps to feed. Data outside it means the contract would
    be wrong: refused, naming the range the data holds and the flag that states it."""
    low, high = input_range
    seen_low, seen_high = float(images.min()), float(images.max())
    slack = 1e-3 * (high - low)  # rounding in the user's own scaling
    if seen_low >= low - slack and seen_high <= high + slack:
        return
    # a common range the data fills at least half of, else the range it holds
    fits = next((r for r in COMMON_RANGES if r[0] <= seen_low and seen_high <= r[1] and seen_high - seen_low >= (r[1] - r[0]) / 2), None)
    suggest = f"{fits[0]:g}:{fits[1]:g}" if fits else f"{seen_low:.4g}:{seen_high:.4g}"
    raise MobilepreError(
        f"images in {where} hold values from {seen_low:.4g} to {seen_high:.4g}, outside the input range {low:g}:{high:g} "
        f"that every bundle's I/O contract would state: pass {param('input_range')} {suggest} if the model was trained "
        f"on that range, or rescale the images to {low:g}:{high:g}"
    )


def _array_in_model_units(array: np.ndarray, dtype: str, where: str) -> np.ndarray:
    kind = array.dtype.kind
    if kind not in "uif":
        raise MobilepreError(f"images in {where} are {array.dtype}, not numbers: save them as uint8 or float32")
    if kind == "f":
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise MobilepreError(f"images in {where} hold {bad} NaN or infinite value{'s' if bad != 1 else ''}: fix or drop those images")
    if dtype == "uint8":
        low, high = array.min(), array.max()
        if low < 0 or high > 255:
            raise MobilepreError(
                f"images in {where} range from {low} to {high}, a uint8 model takes raw pixels 0..255: rescale them"
            )
        if kind == "f" and not np.array_equal(array, np.floor(array)):
            raise MobilepreError(
                f"images in {where} hold fractional values, a uint8 model takes whole pixels 0..255: round or rescale them"
            )
        return array.astype(np.uint8)
    if kind in "ui" and max(-int(array.min()), int(array.max())) > _FLOAT32_EXACT_INT:
        raise MobilepreError(f"images in {where} hold integers beyond 2**24, which float32 cannot hold exactly")
    converted = array.astype(np.float32)
    if kind == "f" and not np.all(np.isfinite(converted)):
        raise MobilepreError(f"images in {where} hold values beyond the float32 range: rescale them")
    return converted


# --- labels --------------------------------------------------------------------------------------

_INTEGER = re.compile(r"[+-]?[0-9]+")


def _labels_from_text(path: Path) -> np.ndarray:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise MobilepreError(f"cannot read labels file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise MobilepreError(f"labels file {path} is not UTF-8 text: write one integer per line") from None
    values = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if not _INTEGER.fullmatch(line):
            raise MobilepreError(
                f"line {number} of labels file {path} is {line[:40]!r}: write one integer label per line, in the images' sorted order"
            )
        values.append(int(line))
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError:
        raise MobilepreError(f"labels file {path} holds an integer too large for a class label") from None


def _check_labels(labels: np.ndarray, count: int, where: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise MobilepreError(
            f"labels in {where} have shape {labels.shape}: expected one integer class index per image, shape ({count},)"
        )
    if labels.dtype.kind not in "uif":
        raise MobilepreError(f"labels in {where} are {labels.dtype}, not integers: save class indices")
    if labels.dtype.kind == "f" and not (np.all(np.isfinite(labels)) and np.array_equal(labels, np.floor(labels))):
        raise MobilepreError(f"labels in {where} are not all whole numbers: save integer class indices")
    if labels.shape[0] != count:
        raise MobilepreError(f"{where} has {labels.shape[0]} labels but there are {count} images: give one label per image")
    if count and labels.min() < 0:
        raise MobilepreError(f"labels in {where} include {labels.min()}: class indices must be 0 or more")
    if labels.dtype.kind in "uf" and count and labels.max() > np.iinfo(np.int64).max:
        raise MobilepreError(f"labels in {where} include values too large for a class index")
    return labels.astype(np.int64)


# --- shared --------------------------------------------------------------------------------------


def _check_range(input_range) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise MobilepreError(f"input range must be two numbers (low, high), got {input_range!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise MobilepreError(f"input range must be two finite numbers with low < high, got ({low:g}, {high:g})")
    return low, high


def _check_limit(limit) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise MobilepreError(f"limit must be a positive number of images, got {limit!r}")


def _choose(count: int, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=limit, replace=False))


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:160]


# ------------------------------------------------------------------------------------------ options


@dataclass(frozen=True)
class DataOptions:
    """Where calibration images come from and how they map to the model's input.

    Attributes:
        path (Path | None): folder of PNG/JPEG images, `.npy` or `.npz`.
        input_range (tuple[float, float]): float models' input range for decoded images. Default (0, 1).
        convert_channels (bool): convert grey <-> RGB instead of refusing a mismatch. Default False.
        limit (int | None): at most this many images (seeded choice). Default 500.
        seed (int): sampling seed. Default 0.
        labels (Path | None): labels file, for accuracy.
    """

    path: Path | None = None
    input_range: tuple[float, float] = (0.0, 1.0)
    convert_channels: bool = False
    limit: int | None = 500
    seed: int = 0
    labels: Path | None = None

    def load(self, source, required_for: str | None = None):
        if self.path is None:
            if required_for:
                raise MobilepreError(f"{required_for} needs images: pass {param('calibration')} DATA (a folder of images, .npy or .npz)")
            return None
        return load_dataset(
            self.path,
            ModelInput(source.input_shape, source.input_dtype),
            input_range=self.input_range,
            convert_channels=self.convert_channels,
            limit=self.limit,
            seed=self.seed,
            labels_path=self.labels,
        )


MAX_CLASS_NAMES_BYTES = 4 * 1024 * 1024


def load_class_names(path) -> tuple[str, ...]:
    """Class names from a UTF-8 text file, one per line in class-index order (`--class-names FILE`);
    surrounding whitespace is dropped, a trailing empty line ignored, an empty or repeated name refused."""
    path = Path(path)
    _check_kind(path, "class names file", folder=False)
    if path.stat().st_size > MAX_CLASS_NAMES_BYTES:
        raise MobilepreError(f"class names file {path} is larger than {MAX_CLASS_NAMES_BYTES // 1024**2} MiB: give one name per line")
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise MobilepreError(f"class names file {path} is not UTF-8 text: save it as UTF-8, one name per line") from None
    names = [line.strip() for line in lines]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise MobilepreError(f"class names file {path} holds no names: one name per line, in class-index order")
    seen = {}
    for number, name in enumerate(names, start=1):
        if not name:
            raise MobilepreError(f"class names file {path}, line {number}: empty name (one name per line, in class-index order)")
        if name in seen:
            raise MobilepreError(f"class names file {path}, line {number}: {name!r} repeats line {seen[name]}")
        seen[name] = number
    return tuple(names)


def parse_range(text: str) -> tuple[float, float]:
    """`"0:1"` or `"-1:1"` -> (low, high) with low < high."""
    low, sep, high = text.partition(":")
    try:
        values = (float(low), float(high))
    except ValueError:
        values = None
    if not sep or values is None or not values[0] < values[1]:
        raise MobilepreError(f"{param('input_range')} {text!r}: expected LOW:HIGH with LOW < HIGH, e.g. 0:1 or -1:1")
    return values


def dataset_info(dataset: Dataset) -> dict:
    """Which images a measurement used: a content hash, so `check` can tell whether it re-validates on the same."""
    return {
        "images": len(dataset),
        "labels": dataset.labels is not None,
        "sha256": hashlib.sha256(dataset.images.tobytes()).hexdigest(),
        "source": Path(dataset.source).name,
    }
