"""The load test's HEIC and AVIF kinds: real files of their format that the worker turns into upright thumbnails."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from loadtest import corpus
from loadtest.corpus import DEFAULT_MIX, KINDS, PHONE_MIX, Kind, _sources, parse_mix, render
from pipeline.imaging import ImageOptions, make_thumbnails
from pipeline.resources import SUPPORTED_CONTENT_TYPES


@pytest.fixture(scope="module")
def sources() -> list[Image.Image]:
    return _sources()


@pytest.mark.parametrize(("name", "fmt"), [("heic12mp", "HEIF"), ("avif", "AVIF")])
def test_phone_formats_are_real_files_the_worker_accepts(
    name: str, fmt: str, sources: list[Image.Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    kind = KINDS[name]
    # Same format and content type, fewer pixels: a 12 MP HEIC takes ~10 s to encode.
    monkeypatch.setitem(corpus.KINDS, name, Kind(640, 480, kind.format, kind.content_type, kind.extension))
    data, orientation = render(name, 0, 1, sources)
    result = make_thumbnails(data, ImageOptions())
    assert result.format == fmt
    assert kind.content_type in SUPPORTED_CONTENT_TYPES  # the presign API hands out URLs for it
    assert orientation in (1, 6, 8)
    upright = (480, 640) if orientation in (6, 8) else (640, 480)
    assert (result.width, result.height) == upright
    with Image.open(io.BytesIO(result.thumbnails[-1].data)) as thumbnail:
        assert (thumbnail.width > thumbnail.height) == (upright[0] > upright[1])


def test_heic_photos_are_held_upright_now_and_then(sources: list[Image.Image], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(corpus.KINDS, "heic12mp", Kind(320, 240, "HEIF", "image/heic", "heic"))
    orientations = {render("heic12mp", index, 7, sources)[1] for index in range(12)}
    assert 1 in orientations
    assert orientations & {6, 8}


def test_the_default_mix_is_unchanged_and_the_phone_mix_parses() -> None:
    assert parse_mix(DEFAULT_MIX) == {"jpeg12mp": 0.6, "jpeg1080": 0.25, "png": 0.1, "webp": 0.05}
    phone = parse_mix(PHONE_MIX)
    assert {"heic12mp", "avif"} <= set(phone)
    assert sum(phone.values()) == pytest.approx(1.0)
