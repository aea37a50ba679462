"""Decodes that cost more than their pixels (issue 34, class 4): refused from the header,
and held to a deadline. The real Preprocessor on crafted and ordinary files, no server.

The old code decoded 2,000 scans of a 6000×6000 JPEG for 36 s and built 1,000,000 TIFF
tiles (3.9 s, +343 MB) inside ``Image.open``; the bounds below are a small fraction of that.
"""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from artifact import decode_cost
from artifact.card import ResizePolicy
from artifact.decode_cost import MAX_JPEG_SCANS, DecodeTimedOut
from artifact.errors import ImageTooComplex
from artifact.preprocess import Preprocessor
from tests.artifact.crafted import progressive_jpeg, tiff_strips

PREPROCESS = Preprocessor.for_policy(
    (299, 299), ResizePolicy(mode="crop", crop_pct=0.875), max_pixels=40_000_000
)
QUICK_S = 0.5


def refused(data: bytes) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(ImageTooComplex) as raised:
        PREPROCESS(data, "crafted")
    return str(raised.value), time.monotonic() - started


def test_a_jpeg_of_more_scans_than_the_cap_is_refused_from_the_header() -> None:
    message, took = refused(progressive_jpeg(6000, MAX_JPEG_SCANS + 1))
    assert f"has {MAX_JPEG_SCANS + 1} scans; at most {MAX_JPEG_SCANS}" in message
    assert took < QUICK_S  # decoded, 65 scans of 36 MP take ~1.4 s on an Intel Xeon (AMX)


def test_jpegs_within_the_cap_decode() -> None:
    """The cap itself, and what encoders write: baseline, and Pillow's progressive (10 scans)."""
    assert PREPROCESS(progressive_jpeg(512, MAX_JPEG_SCANS), "at-cap").shape == (299, 299, 3)
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 600, 3), np.uint8))
    for progressive in (False, True):
        buffer = io.BytesIO()
        photo.save(buffer, "JPEG", progressive=progressive)
        assert PREPROCESS(buffer.getvalue(), "photo").shape == (299, 299, 3)


@pytest.mark.parametrize(
    ("order", "big"), [("<", False), (">", False), ("<", True)], ids=["II", "MM", "BigTIFF"]
)
def test_a_tiff_listing_more_strips_than_its_rows_is_refused_from_the_header(
    order: str, big: bool
) -> None:
    message, took = refused(tiff_strips(1, 2, 200_000, order, big))
    assert "this 1×2 TIFF lists 200,000 strips where its size needs 2" in message
    assert took < QUICK_S
    # The same file with the strips its rows need decodes, to the same grey.
    pixels = PREPROCESS(tiff_strips(1, 2, 2, order, big), "honest")
    assert pixels.shape == (299, 299, 3) and (pixels == 200).all()


def test_planar_tiffs_need_a_strip_per_plane() -> None:
    """Samples stored as separate planes: the rows' strips for each plane, and not one more;
    stored together (contiguous), the rows' strips only."""
    decode_cost.check_structure(tiff_strips(4, 5, 3 * 5, samples=3, planar=True), "planar")
    with pytest.raises(ImageTooComplex, match="lists 16 strips where its size needs 15"):
        decode_cost.check_structure(tiff_strips(4, 5, 16, samples=3, planar=True), "planar")
    with pytest.raises(ImageTooComplex, match="lists 15 strips where its size needs 5"):
        decode_cost.check_structure(tiff_strips(4, 5, 3 * 5, samples=3), "contiguous")


def test_strips_of_several_rows_and_tiles_are_counted_by_what_covers_the_picture() -> None:
    decode_cost.check_structure(tiff_strips(4, 5, 3, rows=2), "rows")  # 2 + 2 + 1 rows
    with pytest.raises(ImageTooComplex, match="lists 4 strips where its size needs 3"):
        decode_cost.check_structure(tiff_strips(4, 5, 4, rows=2), "rows")
    decode_cost.check_structure(tiff_strips(40, 50, 3 * 4, tile=(16, 16)), "tiles")
    with pytest.raises(ImageTooComplex, match="lists 13 tiles where its size needs 12"):
        decode_cost.check_structure(tiff_strips(40, 50, 13, tile=(16, 16)), "tiles")


@pytest.mark.parametrize(
    "save",
    [{}, {"compression": "tiff_lzw"}, {"compression": "tiff_adobe_deflate"}, {"big_tiff": True}],
    ids=["raw", "lzw", "deflate", "bigtiff"],
)
def test_tiffs_as_pillow_writes_them_decode(save: dict) -> None:
    """17 strips for LZW and deflate, one for raw: each count is what the rows need."""
    photo = Image.fromarray(np.random.default_rng(1).integers(0, 255, (700, 500, 3), np.uint8))
    buffer = io.BytesIO()
    photo.save(buffer, "TIFF", **save)
    assert PREPROCESS(buffer.getvalue(), "photo").shape == (299, 299, 3)


@pytest.fixture
def slow_jpeg(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A decode of seconds the scan cap would refuse, let through to time the deadline."""
    monkeypatch.setattr(decode_cost, "MAX_JPEG_SCANS", 10**6)
    return progressive_jpeg(3000, 1500)  # ~6 s of decoding here


def test_a_decode_stops_at_the_deadline(slow_jpeg: bytes) -> None:
    started = time.monotonic()
    with pytest.raises(DecodeTimedOut, match="deadline passed"):
        PREPROCESS(slow_jpeg, "slow", deadline=started + 0.3)
    assert time.monotonic() - started < 0.3 + 1.0


def test_a_decode_stops_when_abandoned(slow_jpeg: bytes) -> None:
    abandoned = threading.Event()
    threading.Timer(0.3, abandoned.set).start()
    started = time.monotonic()
    with pytest.raises(DecodeTimedOut, match="abandoned"):
        PREPROCESS(slow_jpeg, "slow", abandoned=abandoned)
    assert time.monotonic() - started < 0.3 + 1.0
