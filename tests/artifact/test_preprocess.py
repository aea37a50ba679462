"""Preprocessing: every image mode to RGB, orientation, limits, and timm's eval transform."""

from __future__ import annotations

import dataclasses
import io
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import timm.data
import torch
from PIL import Image

from artifact.card import ModelCard, ResizePolicy
from artifact.errors import (
    EmptyImage,
    ImageTooLarge,
    NotAnImage,
    UndecodableImage,
    UnsupportedAspectRatio,
)
from artifact.preprocess import Preprocessor
from tests.service.conftest import image_bytes

XCEPTION_RESIZE = ResizePolicy(mode="crop", crop_pct=0.8975, interpolation="bicubic")


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width×height (a decompression bomb's header, no pixels)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def xception() -> Preprocessor:
    card = ModelCard(
        name="x", version="1", arch="legacy_xception", weights="none", input_size=(299, 299),
        resize=XCEPTION_RESIZE, mean=(0.5,) * 3, std=(0.5,) * 3, num_classes=1,
        num_features=2048, labels=["a"], created_at="now",
    )  # fmt: skip
    return Preprocessor.for_card(card, max_pixels=40_000_000)


def tiny(max_pixels: int = 1_000_000) -> Preprocessor:
    """8×8 squash with nearest sampling: pixel values survive exactly."""
    return Preprocessor((8, 8), (8, 8), "squash", Image.Resampling.NEAREST, max_pixels)


def test_matches_timm_eval_transform(xception: Preprocessor) -> None:
    image = Image.open(io.BytesIO(image_bytes("coffee.png"))).convert("RGB")
    transform = timm.data.create_transform(
        input_size=(3, 299, 299), interpolation="bicubic", crop_pct=0.8975,
        mean=(0.5,) * 3, std=(0.5,) * 3,
    )  # fmt: skip
    want = transform(image).numpy()
    got = xception(image_bytes("coffee.png"), "coffee.png")
    assert got.shape == (299, 299, 3) and got.dtype == np.uint8
    normalized = (torch.from_numpy(got.copy()).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    assert np.abs(normalized.numpy() - want).max() < 1e-5


def test_jpeg_and_large_jpeg_draft(xception: Preprocessor) -> None:
    assert xception(image_bytes("chelsea.jpg")).shape == (299, 299, 3)
    big = Image.new("RGB", (3000, 2000), (10, 200, 30))
    out = xception(encode(big, "JPEG", quality=90))
    assert out.shape == (299, 299, 3)
    assert np.abs(out.astype(int) - (10, 200, 30)).max() <= 3


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (Image.new("L", (20, 10), 77), (77, 77, 77)),
        (Image.new("RGBA", (20, 10), (255, 0, 0, 0)), (255, 255, 255)),  # transparent → white
        (Image.new("RGBA", (20, 10), (255, 0, 0, 255)), (255, 0, 0)),
        (Image.new("LA", (20, 10), (0, 0)), (255, 255, 255)),
        (Image.new("1", (20, 10), 1), (255, 255, 255)),
    ],
    ids=["L", "RGBA-clear", "RGBA-opaque", "LA", "1-bit"],
)
def test_modes_to_rgb(image: Image.Image, expected: tuple[int, int, int]) -> None:
    out = tiny()(encode(image, "PNG"))
    assert out.shape == (8, 8, 3)
    assert (out == expected).all()


def test_palette_with_transparency_on_white() -> None:
    image = Image.new("P", (20, 10), 0)
    image.putpalette([0, 0, 255] + [0, 0, 0] * 255)
    out = tiny()(encode(image, "PNG", transparency=0))
    assert (out == 255).all()


@pytest.mark.parametrize(
    ("level", "expected"),
    [(65535, 255), (32896, 128), (65280, 254), (25828, 100), (1, 1)],
    ids=["white", "128x257", "255x256", "100x257+128", "8-bit-range"],
)
def test_sixteen_bit_png_scales_to_eight_bits_by_1_257(level: int, expected: int) -> None:
    """65535 → 255 is 1/257, exactly. The 3rd and 4th levels are where 1/256 rounds one step
    higher (65280/256 = 255, 25828/256 = 100.9); white and 128 × 257 agree under both. A
    16-bit image whose levels all fit in 8 bits keeps them (it is not a [0, 1] float image)."""
    values = np.full((10, 20), level, dtype=np.uint16)
    out = tiny()(encode(Image.fromarray(values), "PNG"))
    assert (out == expected).all(), np.unique(out)


def test_cmyk_jpeg() -> None:
    red_in_cmyk = Image.new("CMYK", (32, 16), (0, 255, 255, 0))
    out = tiny()(encode(red_in_cmyk, "JPEG", quality=95))
    assert np.abs(out.astype(int) - (255, 0, 0)).max() <= 8


def test_exif_orientation_is_applied() -> None:
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90° clockwise: left edge → top
    out = tiny()(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert np.abs(out[0].astype(int) - (255, 0, 0)).max() <= 8
    assert np.abs(out[-1].astype(int) - (0, 0, 255)).max() <= 8


def test_animated_gif_first_frame() -> None:
    out = tiny()(image_bytes("no_time_for_that_tiny.gif"))
    first = Image.open(io.BytesIO(image_bytes("no_time_for_that_tiny.gif"))).convert("RGB")
    want = np.asarray(first.resize((8, 8), Image.Resampling.NEAREST))
    assert (out == want).all()


def test_pixel_limit_checked_from_the_header() -> None:
    with pytest.raises(ImageTooLarge, match=r"7000×7000 = 49,000,000 pixels.*XCEPTION_MAX_PIXELS"):
        tiny(max_pixels=40_000_000)(png_header_only(7000, 7000), "bomb.png")


def test_pillow_bomb_limit_answers_as_our_limit() -> None:
    """Past Pillow's own net (~179 MP) Pillow refuses first: still ImageTooLarge, naming ours,
    and Pillow's global limit is left as Pillow sets it."""
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageTooLarge, match=r"bomb\.png.*XCEPTION_MAX_PIXELS"):
        tiny(max_pixels=40_000_000)(png_header_only(100_000, 100_000), "bomb.png")
    assert Image.MAX_IMAGE_PIXELS == before is not None


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", EmptyImage),
        (b"just some text, not an image\n", NotAnImage),
        (image_bytes("chelsea.jpg")[:5000], UndecodableImage),  # truncated
        (image_bytes("multipage_rgb.tif"), UndecodableImage),  # a TIFF Pillow cannot decode
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, UndecodableImage),  # PNG magic, garbage after
    ],
    ids=["empty", "text", "truncated-jpeg", "undecodable-tiff", "broken-png"],
)
def test_bad_bytes_raise_the_right_error(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"upload\.bin"):
        tiny()(data, "upload.bin")


def thin_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def test_extreme_aspect_ratio_is_refused_before_any_resize(xception: Preprocessor) -> None:
    # 274 bytes that would become a 333×33,300,000 image under the crop policy.
    bomb = thin_png(1, 100_000)
    assert len(bomb) < 500
    started = time.perf_counter()
    with pytest.raises(UnsupportedAspectRatio, match="XCEPTION_MAX_ASPECT_RATIO"):
        xception(bomb, "thin.png")
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(("width", "height"), [(20, 400), (400, 20), (299, 299)])
def test_aspect_ratio_at_the_limit_is_served(
    xception: Preprocessor, width: int, height: int
) -> None:
    assert xception(thin_png(width, height), "ok.png").shape == (299, 299, 3)


@pytest.mark.parametrize(("width", "height"), [(20, 401), (401, 20)])
def test_aspect_ratio_past_the_limit_is_refused(
    xception: Preprocessor, width: int, height: int
) -> None:
    with pytest.raises(UnsupportedAspectRatio, match=r"20:1"):
        xception(thin_png(width, height), "thin.png")


def test_float_grey_scales_like_the_formula_and_nan_is_zero() -> None:
    """Float images in [0, 1] scale by 255, rounded; NaN reads 0 and +inf 255 (the strips
    the conversion works in change nothing: a reference computed here in float64)."""
    values = np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(30, 40)
    values[0, 0], values[0, 1], values[0, 2] = np.nan, np.inf, -np.inf
    finite = np.nan_to_num(values.astype(np.float64), posinf=1e9, neginf=-1e9)
    reference = np.clip(np.rint(finite * 255), 0, 255)
    reference[0, 0] = 0
    from artifact import images

    converted = images.rgb_grey_or_transparent(Image.fromarray(values, mode="F"))
    assert converted.mode == "L"
    assert (np.asarray(converted) == reference.astype(np.uint8)).all()
    small_strips = pytest.MonkeyPatch()
    small_strips.setattr(images, "STRIP_VALUES", 64)  # many strips: the same answer
    try:
        assert (
            np.asarray(images.rgb_grey_or_transparent(Image.fromarray(values, "F"))) == reference
        ).all()
    finally:
        small_strips.undo()


def test_grey_is_resized_as_grey_with_the_same_pixels_as_rgb(xception: Preprocessor) -> None:
    """A grey image is resized before it becomes RGB: equal to resizing its RGB copy."""
    grey = Image.open(io.BytesIO(image_bytes("coffee.png"))).convert("L")
    as_grey = xception(encode(grey, "PNG"))
    as_rgb = xception(encode(grey.convert("RGB"), "PNG"))
    assert (as_grey == as_rgb).all()


def rle8_bmp(width: int, height: int) -> bytes:
    """An 8-bit RLE-compressed BMP (Pillow cannot write one): runs of 255, end of line."""
    runs = b"".join(bytes([255, i % 256]) for i in range(width // 255))
    row = runs + bytes([width % 255, 7]) + b"\x00\x00"
    data = row * height + b"\x00\x01"
    palette = b"".join(bytes([i, i, i, 0]) for i in range(256))
    offset = 14 + 40 + len(palette)
    header = b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(data), 2835, 2835, 256, 0)
    return header + info + palette + data


def test_formats_decoded_in_pure_python_are_refused_from_the_header() -> None:
    started = time.process_time()
    with pytest.raises(NotAnImage, match=r"\(bmp_rle\) decodes in pure Python"):
        tiny(max_pixels=40_000_000)(rle8_bmp(6000, 6000), "rle.bmp")
    assert time.process_time() - started < 0.5  # refused before any pixel is decoded
    with pytest.raises(NotAnImage):  # small ones too: the rule is the decoder, not the size
        tiny()(rle8_bmp(300, 8))


def test_formats_outside_the_allow_list_are_refused() -> None:
    only_png = dataclasses.replace(tiny(), formats=frozenset({"PNG"}))
    with pytest.raises(NotAnImage, match="GIF images are not accepted here"):
        only_png(encode(Image.new("RGB", (20, 10)), "GIF"), "a.gif")
    assert only_png(encode(Image.new("RGB", (20, 10)), "PNG")).shape == (8, 8, 3)


def decode_cost(path: Path) -> tuple[int, float]:
    """Peak RSS growth (MB) and CPU seconds of preprocessing one file, in a fresh process.

    The peak is the process's own high-water mark (VmHWM), not ``ru_maxrss``: Linux carries
    ``ru_maxrss`` over from the parent across fork and exec, so under a pytest that has
    imported torch it started above any decode's peak and every growth read as 0."""
    script = (
        "import re, sys, time\n"
        "def peak_kb():\n"
        "    status = open('/proc/self/status').read()\n"
        "    return int(re.search(r'VmHWM:\\s+(\\d+)', status).group(1))\n"
        "from artifact.card import ResizePolicy\n"
        "from artifact.preprocess import Preprocessor\n"
        f"data = open({str(path)!r}, 'rb').read()\n"
        "policy = ResizePolicy(mode='crop', crop_pct=0.8975, interpolation='bicubic')\n"
        "preprocess = Preprocessor.for_policy((299, 299), policy, 40_000_000)\n"
        "before = peak_kb()\n"
        "started = time.process_time()\n"
        f"preprocess(data, {path.name!r})\n"
        "cpu = time.process_time() - started\n"
        "peak = peak_kb()\n"
        "print((peak - before) // 1024, cpu)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    growth_mb, cpu_s = result.stdout.split()
    return int(growth_mb), float(cpu_s)


def test_a_large_float_tiff_costs_little_memory_and_cpu(tmp_path: Path) -> None:
    """36 MP of float32 with NaN and inf (a 250 kB file): decoded within 300 MB of peak RSS
    growth and 2 s of CPU (a float64 conversion once took ~1 GB and 2 s here)."""
    values = np.zeros((6000, 6000), dtype=np.float32)
    values[::97, ::89], values[1::101, ::83] = np.nan, np.inf
    path = tmp_path / "float.tiff"
    Image.fromarray(values, mode="F").save(path, "TIFF", compression="tiff_deflate")
    growth_mb, cpu_s = decode_cost(path)
    assert growth_mb <= 300 and cpu_s <= 2.0, (growth_mb, cpu_s)


def test_a_large_transparent_png_costs_one_decoded_copy(tmp_path: Path) -> None:
    """40 MP RGBA (the default pixel limit): the decoded picture (160 MB in Pillow) is the
    only full-size one — compositing it whole onto white took another 160 MB (317 MB peak
    growth), over the 300 MB target."""
    rows = np.linspace(0, 255, 5000, dtype=np.uint8)[:, None]
    values = np.empty((5000, 8000, 4), dtype=np.uint8)
    values[..., 0], values[..., 1] = rows, rows.T[:, :1]
    values[..., 2], values[..., 3] = 90, np.uint8(255) - rows
    path = tmp_path / "clear.png"
    Image.fromarray(values, "RGBA").save(path, "PNG", compress_level=1)
    del values
    growth_mb, cpu_s = decode_cost(path)
    assert growth_mb <= 250 and cpu_s <= 2.0, (growth_mb, cpu_s)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
@pytest.mark.parametrize(
    ("size", "resample"),
    [
        ((70, 41), Image.Resampling.BICUBIC),  # down, the service's usual case
        ((333, 190), Image.Resampling.BILINEAR),  # down, barely
        ((901, 517), Image.Resampling.LANCZOS),  # up
        ((120, 69), Image.Resampling.BOX),
    ],
)
def test_banded_resize_on_white_equals_compositing_then_resizing(
    mode: str, size: tuple[int, int], resample: Image.Resampling, small_bands: None
) -> None:
    """Band by band (many bands here) gives the pixels of flattening the whole picture on
    white and resizing it once, within one level of rounding, seams included."""
    from artifact.transparency import on_white, resized_on_white

    rng = np.random.default_rng(7)
    values = rng.integers(0, 256, (347, 600, 4), dtype=np.uint8)
    image = Image.fromarray(values, "RGBA")
    if mode == "LA":
        image = image.convert("LA")
    elif mode == "P":
        image = image.convert("RGB").quantize(64)
        image.info["transparency"] = 5
    reference = np.asarray(on_white(image).resize(size, resample), dtype=np.int16)
    banded = np.asarray(resized_on_white(image, size, resample), dtype=np.int16)
    assert banded.shape == reference.shape
    assert np.abs(banded - reference).max() <= 1
    assert (banded != reference).mean() < 0.001


@pytest.fixture
def small_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    from artifact import transparency

    monkeypatch.setattr(transparency, "BAND_PIXELS", 600 * 23)


def test_transparency_is_composited_on_white_exactly_as_pillow_composites() -> None:
    """Every alpha level of a gradient: the same pixels as Pillow's alpha_composite onto an
    opaque white RGBA background (the reference; ours pastes through the alpha, one copy)."""
    from artifact.images import to_rgb

    values = np.zeros((16, 256, 4), dtype=np.uint8)
    values[..., :3] = (200, 30, 90)
    values[..., 3] = np.arange(256, dtype=np.uint8)
    image = Image.fromarray(values, "RGBA")
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    reference = Image.alpha_composite(white, image).convert("RGB")
    assert (np.asarray(to_rgb(image)) == np.asarray(reference)).all()
    grey = Image.fromarray(values[..., [0, 3]].copy(), "LA")
    grey_reference = Image.alpha_composite(white, grey.convert("RGBA")).convert("RGB")
    assert (np.asarray(to_rgb(grey)) == np.asarray(grey_reference)).all()


def test_list_images_finds_image_files_only(tmp_path: Path) -> None:
    """Recursive and sorted; not a folder named like an image, not a hidden file (macOS's
    ``._x.jpg``), not another extension; the suffix in any case."""
    from artifact.images import list_images

    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / "folder.jpg").mkdir()
    for name in ("a.JPG", "b/deep/c.png", "b/._c.png", ".DS_Store", "notes.txt", "b/d.webp"):
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert found == ["a.JPG", "b/d.webp", "b/deep/c.png"]


def test_the_aspect_ratio_of_a_one_pixel_high_image_is_its_width() -> None:
    """150×1 is 150:1, over a 100:1 limit; 150×2 is 75:1, under it."""
    from artifact.images import open_image

    def png(width: int, height: int) -> bytes:
        return encode(Image.new("RGB", (width, height)), "PNG")

    with pytest.raises(UnsupportedAspectRatio, match=r"150\.0:1"):
        open_image(png(150, 1), "thin.png", 10_000, 100.0)
    assert open_image(png(150, 2), "thin.png", 10_000, 100.0).size == (150, 2)


def test_a_float_image_past_1_is_taken_as_8_bit_levels() -> None:
    """Only a float image within [0, 1] is scaled by 255: one whose largest value is 1.5 holds
    levels already (1.5 → 2, not 255)."""
    from artifact import images

    values = np.array([[0.0, 0.4, 1.0, 1.5]], dtype=np.float32)
    converted = images.rgb_grey_or_transparent(Image.fromarray(values, mode="F"))
    assert np.asarray(converted).tolist() == [[0, 0, 1, 2]]
