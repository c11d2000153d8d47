"""Loading calibration images: order, units, channels, hostile files, arrays, sampling and labels."""

import io
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from mobilepre.data import Dataset, ModelInput, load_dataset, load_labels
from mobilepre.errors import MobilepreError

RGB8 = ModelInput((8, 8, 3), "uint8")
RGB8_FLOAT = ModelInput((8, 8, 3), "float32")
GREY8 = ModelInput((8, 8, 1), "uint8")


def solid(path: Path, colour, size=(8, 8), mode=None, fmt=None) -> Path:
    """Write a solid-colour image; `colour` is an int (grey) or a tuple (RGB / RGBA); size is (w, h)."""
    mode = mode or ("L" if isinstance(colour, int) else {3: "RGB", 4: "RGBA"}[len(colour)])
    Image.new(mode, size, colour).save(path, format=fmt)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def forged_png(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height RGB pixels and that has no image data at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def message(excinfo) -> str:
    return excinfo.value.message


# --- folders of images ---------------------------------------------------------------------------


def test_folder_is_read_in_sorted_order_and_mapped_to_model_units(tmp_path):
    solid(tmp_path / "b.png", (51, 102, 153))
    solid(tmp_path / "a.png", (0, 0, 0))
    solid(tmp_path / "C.PNG", (255, 255, 255))
    solid(tmp_path / ".hidden.png", (1, 2, 3))  # macOS "._x.png" files are not images
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    solid(tmp_path / "sub" / "x.png", (9, 9, 9))

    data = load_dataset(tmp_path, RGB8)
    assert [Path(f).name for f in data.files] == ["C.PNG", "a.png", "b.png"]
    assert data.images.dtype == np.uint8 and data.images.shape == (3, 8, 8, 3)
    assert data.labels is None and len(data) == 3 and data.source == str(tmp_path)
    assert (data.images[0] == 255).all() and (data.images[1] == 0).all()
    assert (data.images[2] == [51, 102, 153]).all()

    unit = load_dataset(tmp_path, RGB8_FLOAT)
    assert unit.images.dtype == np.float32
    np.testing.assert_allclose(unit.images[2], np.broadcast_to([0.2, 0.4, 0.6], (8, 8, 3)), atol=1e-6)
    assert unit.images[0].min() == pytest.approx(1.0) and unit.images[1].max() == 0.0

    signed = load_dataset(tmp_path, RGB8_FLOAT, input_range=(-1.0, 1.0))
    np.testing.assert_allclose(signed.images[2], np.broadcast_to([-0.6, -0.2, 0.2], (8, 8, 3)), atol=1e-6)
    assert signed.images[1].min() == pytest.approx(-1.0) and signed.images[0].max() == pytest.approx(1.0)


def test_images_of_several_sizes_and_formats_are_resized_to_the_model(tmp_path):
    solid(tmp_path / "a.png", (10, 200, 30), size=(16, 12))
    solid(tmp_path / "b.jpg", (10, 200, 30), size=(5, 7))
    solid(tmp_path / "c.jpeg", (10, 200, 30), size=(8, 8))
    gradient = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (32, 1, 3))
    Image.fromarray(gradient).save(tmp_path / "d.png")

    data = load_dataset(tmp_path, RGB8)
    assert data.images.shape == (4, 8, 8, 3)
    np.testing.assert_allclose(data.images[0], np.broadcast_to([10, 200, 30], (8, 8, 3)), atol=0)
    np.testing.assert_allclose(data.images[1:3].astype(int), np.broadcast_to([10, 200, 30], (2, 8, 8, 3)), atol=3)
    row = data.images[3, 0, :, 0].astype(int)
    assert (np.diff(row) > 0).all() and row[0] < 20 and row[-1] > 235  # antialiased, not sampled


def test_grey_image_for_rgb_model_names_the_first_offender_before_decoding(tmp_path):
    solid(tmp_path / "a.png", (1, 2, 3))
    good = png_bytes(np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "a0.png").write_bytes(good[: len(good) - 20])  # decodes badly, but its header is fine
    solid(tmp_path / "b.png", 7)
    solid(tmp_path / "c.jpg", 7)

    with pytest.raises(MobilepreError) as excinfo:
        load_dataset(tmp_path, RGB8)
    assert message(excinfo) == (
        f"image {tmp_path / 'b.png'} has 1 channel, the model expects 3: pass convert_channels to convert"
    )
    assert excinfo.value.exit_code == 2


def test_rgb_image_for_grey_model_is_refused(tmp_path):
    solid(tmp_path / "a.png", (1, 2, 3, 4))
    with pytest.raises(MobilepreError, match=r"a.png has 4 channels, the model expects 1"):
        load_dataset(tmp_path, GREY8)


def test_convert_channels_converts_grey_rgb_and_rgba(tmp_path):
    solid(tmp_path / "a.png", 100)
    solid(tmp_path / "b.png", (51, 102, 153))
    solid(tmp_path / "c.png", (51, 102, 153, 0))
    solid(tmp_path / "d.jpg", 100)

    rgb = load_dataset(tmp_path, RGB8, convert_channels=True)
    assert (rgb.images[0] == 100).all()
    assert (rgb.images[1] == [51, 102, 153]).all() and (rgb.images[2] == [51, 102, 153]).all()
    assert np.abs(rgb.images[3].astype(int) - 100).max() <= 2

    grey = load_dataset(tmp_path, GREY8, convert_channels=True)
    luma = 0.2989 * 51 + 0.5870 * 102 + 0.1140 * 153
    assert grey.images.shape == (4, 8, 8, 1)
    assert (grey.images[0] == 100).all()
    assert np.abs(grey.images[1:3].astype(float) - luma).max() <= 1


def test_palette_png_with_transparency_counts_as_four_channels(tmp_path):
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 51, 102, 153] + [0] * 762)
    image.save(tmp_path / "a.png", transparency=0)
    with pytest.raises(MobilepreError, match=r"a\.png has 4 channels, the model expects 3"):
        load_dataset(tmp_path, RGB8)
    assert (load_dataset(tmp_path, RGB8, convert_channels=True).images == [51, 102, 153]).all()


def test_rgba_model_gets_an_opaque_alpha_channel(tmp_path):
    solid(tmp_path / "a.png", (1, 2, 3))
    solid(tmp_path / "b.png", (4, 5, 6, 7))
    data = load_dataset(tmp_path, ModelInput((8, 8, 4), "uint8"), convert_channels=True)
    assert (data.images[0] == [1, 2, 3, 255]).all() and (data.images[1] == [4, 5, 6, 7]).all()


def test_images_spread_over_several_chunks_stay_in_order(tmp_path, monkeypatch):
    import mobilepre.data

    monkeypatch.setattr(mobilepre.data, "_CHUNK_VALUES", 8 * 8 * 3 * 2)
    for i in range(5):
        solid(tmp_path / f"{i}.png", (i, i, i), size=(8 + i % 2, 8))
    data = load_dataset(tmp_path, RGB8)
    assert [int(im[0, 0, 0]) for im in data.images] == [0, 1, 2, 3, 4]


def test_truncated_png_is_named(tmp_path):
    solid(tmp_path / "a.png", (1, 2, 3))
    good = png_bytes(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    (tmp_path / "b.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(MobilepreError, match=r"b\.png cannot be decoded .*truncated or corrupt"):
        load_dataset(tmp_path, RGB8)


def test_header_only_png_is_named(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(MobilepreError, match=r"a\.png is not a valid PNG"):
        load_dataset(tmp_path, RGB8)


def test_decompression_bomb_is_refused_from_its_header(tmp_path):
    solid(tmp_path / "a.png", (1, 2, 3))
    (tmp_path / "bomb.png").write_bytes(forged_png(100_000, 100_000))
    with pytest.raises(MobilepreError) as excinfo:
        load_dataset(tmp_path, RGB8)
    assert "bomb.png is 100000x100000 pixels" in message(excinfo)
    assert "50-megapixel limit" in message(excinfo)


def test_jpeg_bomb_is_refused_from_its_frame_header(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)
    (tmp_path / "bomb.jpg").write_bytes(bytes(data))
    with pytest.raises(MobilepreError, match=r"bomb\.jpg is 60000x60000 pixels"):
        load_dataset(tmp_path, RGB8)


def test_empty_missing_and_unsupported_paths(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MobilepreError, match=r"empty holds no .png, .jpg or .jpeg images"):
        load_dataset(tmp_path / "empty", RGB8)
    with pytest.raises(MobilepreError, match=r"nowhere does not exist"):
        load_dataset(tmp_path / "nowhere", RGB8)
    (tmp_path / "images.gif").write_bytes(b"GIF89a")
    with pytest.raises(MobilepreError, match=r"images\.gif is a \.gif file"):
        load_dataset(tmp_path / "images.gif", RGB8)
    (tmp_path / "fake.png").write_bytes(b"GIF89a......")
    with pytest.raises(MobilepreError, match=r"fake\.png is neither a PNG nor a JPEG"):
        load_dataset(tmp_path / "fake.png", RGB8)


def test_limit_and_seed_choose_a_stable_sorted_subset(tmp_path):
    for i in range(20):
        solid(tmp_path / f"img{i:02d}.png", (i, i, i))
    first = load_dataset(tmp_path, RGB8, limit=5, seed=3)
    again = load_dataset(tmp_path, RGB8, limit=5, seed=3)
    other = load_dataset(tmp_path, RGB8, limit=5, seed=4)
    assert first.files == again.files and np.array_equal(first.images, again.images)
    assert first.files != other.files
    assert len(first) == 5 and list(first.files) == sorted(first.files)
    assert [int(im[0, 0, 0]) for im in first.images] == [int(Path(f).stem[3:]) for f in first.files]
    assert len(load_dataset(tmp_path, RGB8, limit=50)) == 20
    with pytest.raises(MobilepreError, match="limit must be a positive"):
        load_dataset(tmp_path, RGB8, limit=0)


def test_folder_labels_follow_the_sampled_images(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(10):
        solid(images / f"{i}.png", (i, i, i))
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{i * 10}\n" for i in range(10)))
    data = load_dataset(images, RGB8, limit=4, seed=1, labels_path=labels)
    assert data.labels.tolist() == [int(im[0, 0, 0]) * 10 for im in data.images]


# --- arrays --------------------------------------------------------------------------------------


def test_npy_with_object_dtype_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(MobilepreError, match=r"x\.npy.*object arrays are refused"):
        load_dataset(path, RGB8)
    archive = tmp_path / "x.npz"
    np.savez(archive, images=np.array([object()], dtype=object))
    with pytest.raises(MobilepreError, match=r"x\.npz.*object arrays are refused"):
        load_dataset(archive, RGB8)


def test_npz_with_images_and_labels(tmp_path):
    images = np.arange(6 * 8 * 8 * 3).reshape(6, 8, 8, 3).astype(np.float64) / 2000  # within the input range 0:1
    path = tmp_path / "cal.npz"
    np.savez(path, images=images, labels=np.array([5, 4, 3, 2, 1, 0]))
    data = load_dataset(path, RGB8_FLOAT)
    assert data.images.dtype == np.float32 and data.files == ()
    np.testing.assert_allclose(data.images, images, rtol=1e-6)
    assert data.labels.dtype == np.int64 and data.labels.tolist() == [5, 4, 3, 2, 1, 0]

    sample = load_dataset(path, RGB8_FLOAT, limit=3, seed=7)
    rows = [int(round(float(im[0, 0, 0]) * 2000)) // (8 * 8 * 3) for im in sample.images]
    assert rows == sorted(rows) and sample.labels.tolist() == [5 - r for r in rows]

    with pytest.raises(MobilepreError, match="already holds labels"):
        load_dataset(path, RGB8_FLOAT, labels_path=path)


def test_single_array_npz_and_lossless_uint8_cast(tmp_path):
    path = tmp_path / "only.npz"
    np.savez(path, calibration=np.full((2, 8, 8, 3), 7.0))
    data = load_dataset(path, RGB8)
    assert data.images.dtype == np.uint8 and (data.images == 7).all()

    np.save(tmp_path / "frac.npy", np.full((2, 8, 8, 3), 0.5))
    with pytest.raises(MobilepreError, match="fractional values, a uint8 model takes whole pixels"):
        load_dataset(tmp_path / "frac.npy", RGB8)
    np.save(tmp_path / "wide.npy", np.full((2, 8, 8, 3), 300, dtype=np.int32))
    with pytest.raises(MobilepreError, match="range from 300 to 300"):
        load_dataset(tmp_path / "wide.npy", RGB8)


def test_array_shape_mismatch_names_both_shapes(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((4, 28, 28), np.uint8))
    with pytest.raises(MobilepreError) as excinfo:
        load_dataset(path, RGB8)
    assert "(4, 28, 28)" in message(excinfo) and "(N, 8, 8, 3)" in message(excinfo)


def test_nan_in_npy_is_counted(tmp_path):
    images = np.zeros((3, 8, 8, 3), np.float32)
    images[1, 0, 0, 0] = np.nan
    images[2, 1, 1, 1] = np.inf
    np.save(tmp_path / "x.npy", images)
    with pytest.raises(MobilepreError, match=r"x\.npy hold 2 NaN or infinite values"):
        load_dataset(tmp_path / "x.npy", RGB8_FLOAT)


def test_zero_images_in_array_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((0, 8, 8, 3), np.float32))
    with pytest.raises(MobilepreError, match=r"x\.npy holds zero images"):
        load_dataset(tmp_path / "x.npy", RGB8_FLOAT)


# --- labels --------------------------------------------------------------------------------------


def test_labels_from_text_npy_and_npz(tmp_path):
    (tmp_path / "l.txt").write_text("3\n1\n\n 2 \n")
    assert load_labels(tmp_path / "l.txt", 3).tolist() == [3, 1, 2]
    np.save(tmp_path / "l.npy", np.array([[0], [4]], dtype=np.uint8))
    assert load_labels(tmp_path / "l.npy", 2).tolist() == [0, 4]
    np.savez(tmp_path / "l.npz", labels=np.array([1.0, 2.0]), other=np.zeros(3))
    assert load_labels(tmp_path / "l.npz", 2).dtype == np.int64


def test_labels_count_mismatch_and_bad_values(tmp_path):
    (tmp_path / "l.txt").write_text("1\n2\n")
    with pytest.raises(MobilepreError, match=r"l\.txt has 2 labels but there are 3 images"):
        load_labels(tmp_path / "l.txt", 3)
    (tmp_path / "pairs.csv").write_text("a.png,1\n")
    with pytest.raises(MobilepreError, match=r"line 1 of labels file .*pairs\.csv is 'a\.png,1'"):
        load_labels(tmp_path / "pairs.csv", 1)
    np.save(tmp_path / "f.npy", np.array([0.5, 1.0]))
    with pytest.raises(MobilepreError, match="not all whole numbers"):
        load_labels(tmp_path / "f.npy", 2)
    np.save(tmp_path / "neg.npy", np.array([-1, 1]))
    with pytest.raises(MobilepreError, match="class indices must be 0 or more"):
        load_labels(tmp_path / "neg.npy", 2)


# --- hostile bytes -------------------------------------------------------------------------------

_VALID_PNG = png_bytes(np.random.default_rng(1).integers(0, 255, (6, 5, 3), dtype=np.uint8))


@st.composite
def mutated_png(draw):
    data = bytearray(_VALID_PNG[: draw(st.integers(0, len(_VALID_PNG)))])
    for _ in range(draw(st.integers(0, 4))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=200).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
        st.binary(max_size=200).map(lambda b: b"\xff\xd8" + b),
        st.binary(max_size=200).map(lambda b: forged_png(5, 6)[:33] + b),
        mutated_png(),
    )
)
def test_arbitrary_bytes_load_or_raise_our_error(data):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "x.png").write_bytes(data)
        try:
            result = load_dataset(folder, RGB8)
        except MobilepreError:
            return
        assert isinstance(result, Dataset) and result.images.shape == (1, 8, 8, 3)


# --- the layouts users have: class folders, a CSV of file,label, a plain list with a warning -----------


def _png(path, value):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(path)


def test_class_sub_folders_label_the_images_by_sorted_folder_name(tmp_path):
    for name, value in (("dog/b.png", 10), ("cat/x.png", 20), ("cat/a.png", 30), ("zebra/q.png", 40)):
        _png(tmp_path / "data" / name, value)
    dataset = load_dataset(tmp_path / "data", ModelInput((4, 4, 3), "uint8"))
    assert dataset.class_names == ("cat", "dog", "zebra")
    assert list(dataset.labels) == [0, 0, 1, 2] and [int(i[0, 0, 0]) for i in dataset.images] == [30, 20, 10, 40]
    with pytest.raises(MobilepreError, match="already label its images"):
        load_dataset(tmp_path / "data", ModelInput((4, 4, 3), "uint8"), labels_path=tmp_path / "l.txt")


def test_a_csv_of_file_and_label_is_matched_by_name_not_order(tmp_path):
    for i in range(12):
        _png(tmp_path / "data" / f"img{i}.png", i)  # unpadded: img10 and img11 sort before img2
    (tmp_path / "labels.csv").write_text("file,label\n" + "".join(f"img{i}.png,{i % 3}\n" for i in range(12)))
    dataset = load_dataset(tmp_path / "data", ModelInput((4, 4, 3), "uint8"), labels_path=tmp_path / "labels.csv")
    assert [int(i[0, 0, 0]) % 3 for i in dataset.images] == list(dataset.labels) and dataset.warnings == ()
    (tmp_path / "names.csv").write_text("".join(f"img{i}.png,{'odd' if i % 2 else 'even'}\n" for i in range(12)))
    named = load_dataset(tmp_path / "data", ModelInput((4, 4, 3), "uint8"), labels_path=tmp_path / "names.csv")
    assert named.class_names == ("even", "odd") and [int(i[0, 0, 0]) % 2 for i in named.images] == list(named.labels)
    (tmp_path / "short.csv").write_text("img0.png,1\n")
    with pytest.raises(MobilepreError, match="image img1.png has no line in labels file"):
        load_dataset(tmp_path / "data", ModelInput((4, 4, 3), "uint8"), labels_path=tmp_path / "short.csv")


def test_a_plain_labels_file_with_unpadded_names_warns(tmp_path):
    for i in range(12):
        _png(tmp_path / "data" / f"img{i}.png", i)
    (tmp_path / "l.txt").write_text("".join(f"{i % 3}\n" for i in range(12)))
    dataset = load_dataset(tmp_path / "data", ModelInput((4, 4, 3), "uint8"), labels_path=tmp_path / "l.txt")
    assert "img10 sorts before img2" in dataset.warnings[0]
    for i in range(3):
        _png(tmp_path / "padded" / f"img{i:02d}.png", i)
    (tmp_path / "p.txt").write_text("0\n1\n2\n")
    assert load_dataset(tmp_path / "padded", ModelInput((4, 4, 3), "uint8"), labels_path=tmp_path / "p.txt").warnings == ()
