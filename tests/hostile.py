"""Hostile uploads, generated at run time: what a careless client, a broken camera or an attacker sends.

Every file says what the worker must make of it under the default `ImageOptions` (thumbnails, or a refusal
whose reason contains a given phrase), so unit tests, functional tests and ad-hoc runs share one source of
truth. Nothing is read from disk or the network. The bombs are at most a few hundred kilobytes, because being
small on disk is what makes them bombs; the largest files (4 MB) are the ones with oversized metadata.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pillow_heif
from PIL import Image

__all__ = [
    "GIF_REASON",
    "QUADRANTS",
    "HostileFile",
    "avif_declaring",
    "declared_extent",
    "exif_oriented",
    "heic_declaring",
    "heic_sequence",
    "heif_encode",
    "hostile_corpus",
    "jpeg_declaring",
    "png_chunk",
    "png_declaring",
    "png_raw",
    "stored_for_orientation",
    "upright_quadrants",
    "webp_declaring",
]

Outcome = Literal["thumbnails", "rejected"]

# The picture every oriented file shows once turned upright: red, blue / green, yellow.
QUADRANTS: tuple[tuple[int, int, int], ...] = ((255, 0, 0), (0, 0, 255), (0, 160, 0), (255, 255, 0))
GIF_REASON = "unsupported image format GIF"


@dataclass(frozen=True)
class HostileFile:
    """One upload and what must become of it: `size` is the upright (width, height) for thumbnails."""

    name: str
    data: bytes = field(repr=False)
    filename: str
    content_type: str
    expect: Outcome
    reason: str = ""  # for "rejected": a phrase the reason must contain
    size: tuple[int, int] | None = None  # for "thumbnails": the image as shown, after EXIF orientation
    orientation: int = 1
    bomb: bool = False  # declares (or decodes to) far more pixels than its bytes suggest
    note: str = ""


# --- byte-level builders ---------------------------------------------------------------------------------


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_raw(
    width: int,
    height: int,
    *,
    bit_depth: int,
    color_type: int,
    row: Callable[[int], bytes] | None = None,
    extra: tuple[bytes, ...] = (),
) -> bytes:
    """A valid PNG written chunk by chunk, for what Pillow will not write (16-bit RGB, 1-bit bombs).

    Rows stream through one compressor, so a 20000×20000 image costs its compressed size, not its pixels.
    """
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    stride = (width * channels * bit_depth + 7) // 8
    blank = b"\0" * stride
    compressor = zlib.compressobj(9)
    parts = []
    block = 256  # rows per compressor call: bounded memory, few calls
    for top in range(0, height, block):
        rows = range(top, min(height, top + block))
        parts.append(compressor.compress(b"".join(b"\0" + (row(y) if row else blank) for y in rows)))
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + b"".join(extra)
        + png_chunk(b"IDAT", b"".join(parts))
        + png_chunk(b"IEND", b"")
    )


def png_declaring(width: int, height: int, *, color_type: int = 2) -> bytes:
    """An IHDR claiming any size followed by a token IDAT: a bomb's header without the bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 4096))
        + png_chunk(b"IEND", b"")
    )


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real 16×16 JPEG whose SOF0 frame header is rewritten to claim `width`×`height`."""
    data = _encode(Image.new("RGB", (16, 16), (200, 30, 30)), "JPEG", quality=90)
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


def webp_declaring(width: int, height: int) -> bytes:
    """A VP8X WebP whose canvas claims `width`×`height` (24-bit fields) around a 16×16 bitstream."""
    exif = Image.Exif()
    exif[0x010F] = "x"  # any metadata makes libwebp write the extended (VP8X) header
    data = _encode(Image.new("RGBA", (16, 16), (0, 0, 255, 128)), "WEBP", lossless=True, exif=exif.tobytes())
    vp8x = data.index(b"VP8X")
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return data[: vp8x + 12] + canvas + data[vp8x + 18 :]


def heif_encode(image: Image.Image, fmt: str = "HEIF", **params: object) -> bytes:
    """HEIC through pillow-heif (x265), AVIF through Pillow's own libavif (aom); an EXIF orientation given in
    `exif` is written as the container's rotation and mirroring (irot, imir), as phones do."""
    pillow_heif.register_heif_opener()  # the writer; make_thumbnails loads its reader itself
    return _encode(image, fmt, **params)


def _isobmff_boxes(data: bytes, start: int, end: int) -> dict[bytes, tuple[int, int]]:
    """First box of each type in data[start:end] → (body start, body end)."""
    found: dict[bytes, tuple[int, int]] = {}
    while start + 8 <= end:
        size = int.from_bytes(data[start : start + 4], "big")
        found.setdefault(data[start + 4 : start + 8], (start + 8, start + size))
        start += size
    return found


def _isobmff_find(data: bytes, path: tuple[bytes, ...]) -> tuple[int, int]:
    start, end = 0, len(data)
    for kind in path:
        start, end = _isobmff_boxes(data, start, end)[kind]
        if kind == b"meta":  # a full box: version and flags before its children
            start += 4
    return start, end


def declared_extent(data: bytes) -> tuple[int, int]:
    """The ispe of a one-image HEIF or AVIF file: its coded size, which libheif pads (x265 codes at least 64x64,
    in whole 8-pixel blocks) and crops back with a `clap` box; AVIF codes odd sizes as they are."""
    start, _ = _isobmff_find(data, (b"meta", b"iprp", b"ipco", b"ispe"))
    width, height = struct.unpack(">II", data[start + 4 : start + 12])
    return width, height


def _with_ispe(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the image spatial extent (ispe) of a one-image HEIF or AVIF file: the size it declares."""
    start, _ = _isobmff_find(data, (b"meta", b"iprp", b"ipco", b"ispe"))
    return data[: start + 4] + struct.pack(">II", width, height) + data[start + 12 :]


def heic_declaring(width: int, height: int) -> bytes:
    """A real 64×64 HEIC whose ispe property claims `width`×`height`."""
    return _with_ispe(heif_encode(Image.new("RGB", (64, 64), (200, 30, 30)), "HEIF", quality=50), width, height)


def avif_declaring(width: int, height: int) -> bytes:
    """A real 64×64 AVIF whose ispe property claims `width`×`height`."""
    return _with_ispe(heif_encode(Image.new("RGB", (64, 64), (200, 30, 30)), "AVIF", quality=50), width, height)


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full_box(kind: bytes, flags: int, body: bytes) -> bytes:
    return _box(kind, b"\0" + flags.to_bytes(3, "big") + body)


def heic_sequence(frames: list[Image.Image], *, still: bool) -> bytes:
    """A HEIF image sequence: an HEVC `pict` track of `frames` (ISO/IEC 23008-12, brand msf1), written box by
    box since no encoder here writes one; with `still`, the first frame is also the file's primary image item,
    as cameras write a burst."""
    coded = [heif_encode(frame, "HEIF", quality=60) for frame in frames]
    start, end = _isobmff_find(coded[0], (b"meta", b"iprp", b"ipco", b"hvcC"))
    hvcc = coded[0][start:end]
    samples = [data[slice(*_isobmff_find(data, (b"mdat",)))] for data in coded]
    width, height, count = *frames[0].size, len(samples)
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    entry = _box(
        b"hvc1",
        bytes(6)
        + struct.pack(">H", 1)  # data reference index
        + bytes(16)
        + struct.pack(">HHIIIH", width, height, 0x480000, 0x480000, 0, 1)
        + bytes(32)
        + struct.pack(">Hh", 24, -1)
        + _box(b"hvcC", hvcc),
    )

    def moov(offset: int) -> bytes:
        stbl = _box(
            b"stbl",
            _full_box(b"stsd", 0, struct.pack(">I", 1) + entry)
            + _full_box(b"stts", 0, struct.pack(">III", 1, count, 100))
            + _full_box(b"stsc", 0, struct.pack(">IIII", 1, 1, count, 1))
            + _full_box(b"stsz", 0, struct.pack(">II", 0, count) + b"".join(struct.pack(">I", len(s)) for s in samples))
            + _full_box(b"stco", 0, struct.pack(">II", 1, offset)),
        )
        dinf = _box(b"dinf", _full_box(b"dref", 0, struct.pack(">I", 1) + _full_box(b"url ", 1, b"")))
        minf = _box(b"minf", _full_box(b"vmhd", 1, bytes(8)) + dinf + stbl)
        mdhd = _full_box(b"mdhd", 0, struct.pack(">IIIIHH", 0, 0, 1000, 100 * count, 0x55C4, 0))
        hdlr = _full_box(b"hdlr", 0, bytes(4) + b"pict" + bytes(12) + b"\0")
        tkhd = _full_box(
            b"tkhd",
            3,
            struct.pack(">IIIII", 0, 0, 1, 0, 100 * count)
            + bytes(16)
            + matrix
            + struct.pack(">II", width << 16, height << 16),
        )
        mvhd = _full_box(
            b"mvhd",
            0,
            struct.pack(">IIIIIH", 0, 0, 1000, 100 * count, 0x10000, 0x100)
            + bytes(10)
            + matrix
            + bytes(24)
            + struct.pack(">I", 2),
        )
        return _box(b"moov", mvhd + _box(b"trak", tkhd + _box(b"mdia", mdhd + hdlr + minf)))

    # With a still: the one-image HEIC as it is (ftyp, meta, mdat), the track after it.
    head = coded[0] if still else _box(b"ftyp", b"msf1" + bytes(4) + b"msf1hevciso8")
    offset = len(head) + len(moov(0)) + 8  # the track's samples: the body of the last mdat
    return head + moov(offset) + _box(b"mdat", b"".join(samples))


def upright_quadrants(width: int, height: int) -> np.ndarray:
    """The upright picture: four flat quadrants, so orientation mistakes show as swapped colours."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    half_w, half_h = width // 2, height // 2
    pixels[:half_h, :half_w] = QUADRANTS[0]
    pixels[:half_h, half_w:] = QUADRANTS[1]
    pixels[half_h:, :half_w] = QUADRANTS[2]
    pixels[half_h:, half_w:] = QUADRANTS[3]
    return pixels


def stored_for_orientation(upright: np.ndarray, orientation: int) -> np.ndarray:
    """How a camera stores `upright` for each EXIF orientation, from the tag's definition (which visual side
    row 0 and column 0 hold), not from any transpose table the code under test might share."""
    stored: dict[int, Callable[[np.ndarray], np.ndarray]] = {
        1: lambda u: u,
        2: lambda u: u[:, ::-1],  # row 0 top, column 0 right
        3: lambda u: u[::-1, ::-1],  # row 0 bottom, column 0 right
        4: lambda u: u[::-1, :],  # row 0 bottom, column 0 left
        5: lambda u: u.transpose(1, 0, 2),  # row 0 left, column 0 top
        6: lambda u: np.rot90(u, 1),  # row 0 right, column 0 top
        7: lambda u: u.transpose(1, 0, 2)[::-1, ::-1],  # row 0 right, column 0 bottom
        8: lambda u: np.rot90(u, -1),  # row 0 left, column 0 bottom
    }
    return np.ascontiguousarray(stored[orientation](upright))


def exif_oriented(orientation: int, width: int = 320, height: int = 160, fmt: str = "JPEG") -> bytes:
    """A `width`×`height` picture (as seen) stored rotated/mirrored with the EXIF tag that undoes it; HEIF and
    AVIF store it as the container's irot/imir instead (see heif_encode)."""
    stored = Image.fromarray(stored_for_orientation(upright_quadrants(width, height), orientation), "RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation
    if fmt in ("HEIF", "AVIF"):
        return heif_encode(stored, fmt, exif=exif.tobytes(), quality=90)
    return _encode(stored, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _photo(width: int, height: int, mode: str = "RGB", seed: int = 1) -> Image.Image:
    """Gradients plus grain: real structure for the decoder, cheap to make."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    grain = rng.normal(0, 6, (height, width)).astype(np.float32)
    channels = [x + 0 * y + grain, y + 0 * x + grain, (x + y) / 2 + grain]
    rgb = np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)
    return Image.fromarray(rgb, "RGB").convert(mode)


def _huge_exif(payload_bytes: int) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "HostileCam"  # Make
    exif[0x9286] = b"ASCII\0\0\0" + b"A" * payload_bytes  # UserComment, an undefined-type blob
    return exif.tobytes()


# --- the corpus --------------------------------------------------------------------------------------------


def hostile_corpus(*, include_slow: bool = True) -> list[HostileFile]:
    """Every hostile case; `include_slow=False` leaves out the two that decode ~50 MP for real (~1 s each)."""
    files = [*_bombs(include_slow), *_broken(), *_lying(), *_modes(), *_animated(), *_orientations(), *_metadata()]
    files += [*_extremes(), *_heif_avif()]
    names = [f.name for f in files]
    if len(names) != len(set(names)):
        raise ValueError("hostile file names must be unique")
    return files


def _bombs(include_slow: bool) -> list[HostileFile]:
    limit = "over the 50.0 megapixel limit"
    bombs = [
        HostileFile(
            "png-bomb-header-12000",
            png_declaring(12000, 12000),
            "bomb.png",
            "image/png",
            "rejected",
            "image is 12000x12000 (144.0 megapixels), " + limit,
            bomb=True,
            note="under Pillow's own error threshold (2x89 MP): only our limit stops it",
        ),
        HostileFile(
            "png-bomb-header-65535",
            png_declaring(65535, 65535, color_type=6),
            "bomb.png",
            "image/png",
            "rejected",
            "image declares 4294.8 megapixels, " + limit,
            bomb=True,
            note="RGBA, 17 GB if decoded",
        ),
        HostileFile(
            "png-bomb-zeros-20000",
            png_raw(20000, 20000, bit_depth=1, color_type=0),
            "bomb.png",
            "image/png",
            "rejected",
            "image declares 400.0 megapixels, " + limit,
            bomb=True,
            note="a genuinely valid 1-bit PNG of zeros: ~50 KB on disk, 400 MP, 1.6 GB as RGBA",
        ),
        HostileFile(
            "jpeg-bomb-header-65500",
            jpeg_declaring(65500, 65500),
            "bomb.jpg",
            "image/jpeg",
            "rejected",
            "image declares 4290.2 megapixels, " + limit,
            bomb=True,
            note="SOF0 claims the largest JPEG size",
        ),
        HostileFile(
            "jpeg-bomb-header-10000",
            jpeg_declaring(10000, 10000),
            "bomb.jpg",
            "image/jpeg",
            "rejected",
            "image is 10000x10000 (100.0 megapixels), " + limit,
            bomb=True,
        ),
        HostileFile(
            "jpeg-lying-header-48mp",
            jpeg_declaring(8000, 6000),
            "lying.jpg",
            "image/jpeg",
            "thumbnails",
            size=(8000, 6000),
            bomb=True,
            note="under the limit; libjpeg fills the missing scan data with grey (as every viewer does), and "
            "the DCT-scaled decode keeps memory to 1/16 of the declared pixels",
        ),
        HostileFile(
            "png-lying-header-49mp",
            png_declaring(7000, 7000),
            "lying.png",
            "image/png",
            "rejected",
            "image data is corrupt or truncated",
            bomb=True,
            note="under the limit, so Pillow allocates the full 7000x7000 before the data runs out",
        ),
        HostileFile(
            "webp-bomb-canvas-16384",
            webp_declaring(16384, 16384),
            "bomb.webp",
            "image/webp",
            "rejected",
            "image declares 268.4 megapixels, " + limit,
            bomb=True,
            note="VP8X canvas size is separate from the bitstream's",
        ),
    ]
    if include_slow:
        bombs += [
            HostileFile(
                "png-zeros-49mp-gray1",
                png_raw(7000, 7000, bit_depth=1, color_type=0),
                "zeros.png",
                "image/png",
                "thumbnails",
                size=(7000, 7000),
                bomb=True,
                note="valid and just under the limit: ~6 KB on disk, decoded for real",
            ),
            HostileFile(
                "png-zeros-49mp-rgba",
                png_raw(7000, 7000, bit_depth=8, color_type=6),
                "zeros.png",
                "image/png",
                "thumbnails",
                size=(7000, 7000),
                bomb=True,
                note="49 MP x 4 bytes, premultiplied for resampling (sizing probes the hungriest input of all)",
            ),
        ]
    return bombs


def _broken() -> list[HostileFile]:
    jpeg = _encode(_photo(640, 480), "JPEG", quality=90)
    png = _encode(_photo(320, 240), "PNG", compress_level=1)
    corrupt = "image data is corrupt or truncated"
    return [
        HostileFile("zero-bytes", b"", "empty.jpg", "image/jpeg", "rejected", "empty file"),
        HostileFile("jpeg-truncated-half", jpeg[: len(jpeg) // 2], "cut.jpg", "image/jpeg", "rejected", corrupt),
        HostileFile("jpeg-truncated-header", jpeg[:300], "cut.jpg", "image/jpeg", "rejected", corrupt),
        HostileFile(
            "jpeg-soi-only", b"\xff\xd8\xff", "cut.jpg", "image/jpeg", "rejected", "a JPEG whose header is damaged"
        ),
        HostileFile("png-truncated-half", png[: len(png) // 2], "cut.png", "image/png", "rejected", corrupt),
        HostileFile("png-truncated-in-ihdr", png[:20], "cut.png", "image/png", "rejected", corrupt),
        HostileFile(
            "png-bad-crc",
            png[:29] + b"\0\0\0\0" + png[33:],  # IHDR's CRC zeroed
            "crc.png",
            "image/png",
            "rejected",
            "a PNG whose header is damaged",
        ),
        HostileFile(
            "png-palette-without-plte",
            png_raw(32, 32, bit_depth=8, color_type=3),
            "p.png",
            "image/png",
            "rejected",
            "a palette image without a palette",
            note="colour type 3 with no PLTE chunk; found by tests/fuzz (Pillow asserted deep inside)",
        ),
        HostileFile(
            "random-bytes",
            bytes((i * 7919 + 13) % 251 for i in range(4096)),
            "noise.jpg",
            "image/jpeg",
            "rejected",
            "not a recognised image: unknown file signature",
        ),
    ]


def _lying() -> list[HostileFile]:
    """Names and content types are the client's claim; the bytes decide."""
    png = _encode(_photo(400, 300), "PNG", compress_level=1)
    jpeg = _encode(_photo(400, 300), "JPEG", quality=90)
    text = "not a recognised image: the content looks like text"
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n%%EndComments\nnewpath 0 0 moveto showpage\n%%EOF\n"
    return [
        HostileFile("text-as-jpg", b"hello, I am a text file\n" * 10, "photo.jpg", "image/jpeg", "rejected", text),
        HostileFile(
            "html-as-jpg",
            b"<!DOCTYPE html><html><script>alert(document.cookie)</script></html>",
            "photo.jpg",
            "image/jpeg",
            "rejected",
            text,
        ),
        HostileFile(
            "svg-as-png",
            b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect width="9" height="9"/></svg>',
            "logo.png",
            "image/png",
            "rejected",
            text,
        ),
        HostileFile(
            "eps-as-jpg",
            eps,
            "photo.jpg",
            "image/jpeg",
            "rejected",
            "unsupported image format EPS",
            note="PostScript: refused from the header, so Ghostscript is never run",
        ),
        HostileFile(
            "bmp-as-png",
            _encode(_photo(64, 48), "BMP"),
            "x.png",
            "image/png",
            "rejected",
            "unsupported image format BMP",
        ),
        HostileFile(
            "png-named-jpg",
            png,
            "photo.jpg",
            "image/jpeg",
            "thumbnails",
            size=(400, 300),
            note="processed as the PNG it is (thumbnails are PNG under the source output format)",
        ),
        HostileFile(
            "jpeg-named-png",
            jpeg,
            "photo.png",
            "image/png",
            "thumbnails",
            size=(400, 300),
            note="processed as the JPEG it is",
        ),
    ]


def _modes() -> list[HostileFile]:
    palette = Image.new("P", (300, 200), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(0, (0, 0, 150, 100))
    gray_alpha = Image.new("LA", (300, 200), (90, 255))
    gray_alpha.paste((0, 0), (0, 0, 150, 100))
    deep_row = b"".join(struct.pack(">HHH", (x * 218) & 0xFFFF, 30000, 65535 - x * 100) for x in range(300))
    return [
        HostileFile(
            "jpeg-cmyk",
            _encode(_photo(400, 300, "CMYK"), "JPEG", quality=90),
            "print.jpg",
            "image/jpeg",
            "thumbnails",
            size=(400, 300),
            note="Adobe CMYK; thumbnails are RGB",
        ),
        HostileFile(
            "png-16bit-gray",
            png_raw(300, 200, bit_depth=16, color_type=0, row=lambda y: struct.pack(">H", y * 300) * 300),
            "deep.png",
            "image/png",
            "thumbnails",
            size=(300, 200),
        ),
        HostileFile(
            "png-16bit-rgb",
            png_raw(300, 200, bit_depth=16, color_type=2, row=lambda y: deep_row),
            "deep.png",
            "image/png",
            "thumbnails",
            size=(300, 200),
        ),
        HostileFile(
            "png-palette-trns",
            _encode(palette, "PNG", transparency=0),
            "p.png",
            "image/png",
            "thumbnails",
            size=(300, 200),
        ),
        HostileFile("png-gray-alpha", _encode(gray_alpha, "PNG"), "la.png", "image/png", "thumbnails", size=(300, 200)),
        HostileFile(
            "png-bilevel", _encode(_photo(200, 100, "1"), "PNG"), "bw.png", "image/png", "thumbnails", size=(200, 100)
        ),
    ]


def _animated() -> list[HostileFile]:
    frames = [Image.new("RGB", (120, 90), colour) for colour in QUADRANTS[:3]]
    animation = {"save_all": True, "append_images": frames[1:], "duration": 80, "loop": 0}
    return [
        HostileFile(
            "gif-animated",
            _encode(frames[0], "GIF", **animation),
            "cat.gif",
            "image/gif",
            "rejected",
            GIF_REASON,
            note="GIF is not an allowed format by default (ImageOptions.allowed_formats); a deployment that "
            "allows it gets the first frame (as PNG under the source output format)",
        ),
        HostileFile(
            "webp-animated",
            _encode(frames[0], "WEBP", lossless=True, **animation),
            "anim.webp",
            "image/webp",
            "thumbnails",
            size=(120, 90),
            note="first frame only",
        ),
        HostileFile(
            "png-animated-apng",
            _encode(frames[0], "PNG", **animation),
            "anim.png",
            "image/png",
            "thumbnails",
            size=(120, 90),
            note="first frame only",
        ),
    ]


def _orientations() -> list[HostileFile]:
    return [
        HostileFile(
            f"jpeg-exif-orientation-{orientation}",
            exif_oriented(orientation),
            f"o{orientation}.jpg",
            "image/jpeg",
            "thumbnails",
            size=(320, 160),
            orientation=orientation,
        )
        for orientation in range(1, 9)
    ]


def _metadata() -> list[HostileFile]:
    base = _photo(400, 300)
    png_base = _encode(base, "PNG", compress_level=1)
    ihdr_end = 8 + 25
    huge_exif = png_chunk(b"eXIf", _huge_exif(4 * 1024 * 1024).removeprefix(b"Exif\0\0"))  # PNG stores bare TIFF
    inflated = 16 * 1024 * 1024  # 16x Pillow's 1 MB cap on a decompressed chunk, in 16 KB of zlib
    icc_bomb = png_chunk(b"iCCP", b"icc\0\0" + zlib.compress(b"\0" * inflated, 9))
    text_bomb = png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"A" * inflated, 9))
    return [
        HostileFile(
            "jpeg-exif-64k",
            _encode(base, "JPEG", quality=90, exif=_huge_exif(60_000)),
            "meta.jpg",
            "image/jpeg",
            "thumbnails",
            size=(400, 300),
            note="an APP1 segment at its 64 KB maximum; never copied to thumbnails",
        ),
        HostileFile(
            "jpeg-icc-4mb-garbage",
            _encode(base, "JPEG", quality=90, icc_profile=b"\x5a" * (4 * 1024 * 1024)),
            "icc.jpg",
            "image/jpeg",
            "thumbnails",
            size=(400, 300),
            note="an 'ICC profile' spread over 65 APP2 segments; dropped, not copied into every thumbnail",
        ),
        HostileFile(
            "png-exif-4mb",
            png_base[:ihdr_end] + huge_exif + png_base[ihdr_end:],
            "meta.png",
            "image/png",
            "thumbnails",
            size=(400, 300),
        ),
        HostileFile(
            "png-iccp-zlib-bomb",
            png_base[:ihdr_end] + icc_bomb + png_base[ihdr_end:],
            "icc.png",
            "image/png",
            "rejected",
            "image metadata is too large",
            bomb=True,
            note="a 16 MB profile in 16 KB of zlib; Pillow stops inflating at 1 MB (PngImagePlugin.MAX_TEXT_CHUNK)",
        ),
        HostileFile(
            "png-ztxt-zlib-bomb",
            png_base[:ihdr_end] + text_bomb + png_base[ihdr_end:],
            "text.png",
            "image/png",
            "rejected",
            "image metadata is too large",
            bomb=True,
            note="a 16 MB comment in 16 KB of zlib: refused like the profile bomb, not silently dropped",
        ),
    ]


def _extremes() -> list[HostileFile]:
    return [
        HostileFile(
            "jpeg-1x1",
            _encode(Image.new("RGB", (1, 1), (9, 9, 9)), "JPEG"),
            "dot.jpg",
            "image/jpeg",
            "thumbnails",
            size=(1, 1),
        ),
        HostileFile(
            "png-1x1-transparent",
            _encode(Image.new("RGBA", (1, 1), (0, 0, 0, 0)), "PNG"),
            "dot.png",
            "image/png",
            "thumbnails",
            size=(1, 1),
        ),
        HostileFile(
            "png-1x20000",
            _encode(_photo(1, 20000), "PNG", compress_level=1),
            "tall.png",
            "image/png",
            "thumbnails",
            size=(1, 20000),
        ),
        HostileFile(
            "jpeg-20000x1",
            _encode(_photo(20000, 1), "JPEG", quality=90),
            "wide.jpg",
            "image/jpeg",
            "thumbnails",
            size=(20000, 1),
        ),
        HostileFile(
            "webp-1x16383",
            _encode(_photo(1, 16383), "WEBP", quality=80),
            "tall.webp",
            "image/webp",
            "thumbnails",
            size=(1, 16383),
            note="WebP's largest side",
        ),
    ]


# 10- and 12-bit AVIF: Pillow's AVIF writer only writes 8 bits, so these were made once with libvips
# (pyvips 3.2, libvips 8.18.7 with libaom: `heifsave_buffer(compression="av1", bitdepth=N, Q=90, effort=4)`) from
# QUADRANTS at 64×48; the alpha variant's left 8 columns are transparent. 10-bit is AV1 profile 1 (4:4:4),
# 12-bit profile 2, as their av1C boxes say.
AVIF_10BIT = base64.b64decode(
    "AAAAHGZ0eXBhdmlmAAAAAG1pZjFhdmlmbWlhZgAAANZtZXRhAAAAAAAAACFoZGxyAAAAAAAAAABwaWN0AAAAAAAAAAAAAAAAAAAA"
    "ACJpbG9jAAAAAERAAAEAAQAAAAAA+gABAAAAAAAAADoAAAAjaWluZgAAAAAAAQAAABVpbmZlAgAAAAABAABhdjAxAAAAAA5waXRt"
    "AAAAAAABAAAAVmlwcnAAAAA4aXBjbwAAAAxhdjFDgSBCAAAAABRpc3BlAAAAAAAAAEAAAAAwAAAAEHBpeGkAAAAAAwoKCgAAABZp"
    "cG1hAAAAAAAAAAEAAQOBAgMAAABCbWRhdBIACgk4FX+9rAQ0GkAyK0SAkNKgADyAAADX3uAS3d9NRjFwSDEDbjPoB/fQzg9NE2J6"
    "fkbjxVfsnpk="
)
AVIF_12BIT = base64.b64decode(
    "AAAAHGZ0eXBhdmlmAAAAAG1pZjFhdmlmbWlhZgAAANZtZXRhAAAAAAAAACFoZGxyAAAAAAAAAABwaWN0AAAAAAAAAAAAAAAAAAAA"
    "ACJpbG9jAAAAAERAAAEAAQAAAAAA+gABAAAAAAAAAD0AAAAjaWluZgAAAAAAAQAAABVpbmZlAgAAAAABAABhdjAxAAAAAA5waXRt"
    "AAAAAAABAAAAVmlwcnAAAAA4aXBjbwAAAAxhdjFDgUBiAAAAABRpc3BlAAAAAAAAAEAAAAAwAAAAEHBpeGkAAAAAAwwMDAAAABZp"
    "cG1hAAAAAAAAAAEAAQOBAgMAAABFbWRhdBIACglYFX+9rQENBogyLkSAkNKgADyAAADX3tk6ndp80aLl172/H9PjPoB/fQzVFF5N"
    "KeRdsXaeE1fsnpk="
)
AVIF_10BIT_ALPHA = base64.b64decode(
    "AAAAHGZ0eXBhdmlmAAAAAG1pZjFhdmlmbWlhZgAAAXBtZXRhAAAAAAAAACFoZGxyAAAAAAAAAABwaWN0AAAAAAAAAAAAAAAAAAAA"
    "ADRpbG9jAAAAAERAAAIAAQAAAAABlAABAAAAAAAAADoAAgAAAAABzgABAAAAAAAAAB4AAAA4aWluZgAAAAAAAgAAABVpbmZlAgAA"
    "AAABAABhdjAxAAAAABVpbmZlAgAAAAACAABhdjAxAAAAAA5waXRtAAAAAAABAAAAr2lwcnAAAACKaXBjbwAAAAxhdjFDgSBCAAAA"
    "ABRpc3BlAAAAAAAAAEAAAAAwAAAAEHBpeGkAAAAAAwoKCgAAAAxhdjFDgQBcAAAAAA5waXhpAAAAAAEKAAAAOGF1eEMAAAAAdXJu"
    "Om1wZWc6bXBlZ0I6Y2ljcDpzeXN0ZW1zOmF1eGlsaWFyeTphbHBoYQAAAAAdaXBtYQAAAAAAAAACAAEDgQIDAAIEhAIFhgAAABpp"
    "cmVmAAAAAAAAAA5hdXhsAAIAAQABAAAAYG1kYXQSAAoJOBV/vawENBpAMitEgJDSoAA8gAAA197gEt3fTUYxcEgxA24z6Af30M4P"
    "TRNien5G48VX7J6ZEgAKBhgVf72NQDISRGAAAFDbyaQwMzTz1OluyCOA"
)


def _heif_avif() -> list[HostileFile]:
    """HEIC (pillow-heif) and AVIF (Pillow's libavif): damaged, lying, deep, transparent and many-framed."""
    limit = "over the 50.0 megapixel limit"
    heic = heif_encode(_photo(640, 480), "HEIF", quality=70)
    avif = heif_encode(_photo(640, 480), "AVIF", quality=70)
    transparent = _photo(400, 300, "RGBA")
    transparent.putalpha(Image.linear_gradient("L").resize((400, 300)))
    frames = [Image.new("RGB", (160, 120), colour) for colour in QUADRANTS[:3]]
    corrupt = "image data is corrupt or truncated"
    return [
        HostileFile("heic-photo", heic, "IMG_0001.HEIC", "image/heic", "thumbnails", size=(640, 480)),
        HostileFile("heic-truncated-half", heic[: len(heic) // 2], "cut.heic", "image/heic", "rejected", corrupt),
        HostileFile(
            "heic-truncated-in-meta", heic[:200], "cut.heic", "image/heic", "rejected", "a HEIF whose header is damaged"
        ),
        HostileFile(
            "heic-bomb-header-20000",
            heic_declaring(20000, 20000),
            "bomb.heic",
            "image/heic",
            "rejected",
            "image is 20000x20000 (400.0 megapixels), " + limit,
            bomb=True,
            note="ispe claims 400 MP around a 64x64 HEVC image: read from the boxes, libheif never runs",
        ),
        HostileFile(
            "heic-bomb-header-65535",
            heic_declaring(65535, 65535),
            "bomb.heic",
            "image/heic",
            "rejected",
            "image is 65535x65535 (4294.8 megapixels), " + limit,
            bomb=True,
            note="beyond libheif's own security limit too, which would only call the file damaged",
        ),
        HostileFile(
            "heic-lying-header-48mp",
            heic_declaring(8000, 6000),
            "lying.heic",
            "image/heic",
            "rejected",
            corrupt,
            bomb=True,
            note="under the limit: libheif decodes the 64x64 picture and refuses it for not matching its ispe",
        ),
        HostileFile(
            "heic-alpha",
            heif_encode(transparent, "HEIF", quality=80),
            "alpha.heic",
            "image/heic",
            "thumbnails",
            size=(400, 300),
            note="alpha is an auxiliary image in HEIF; thumbnails keep it (WebP under the auto output format)",
        ),
        HostileFile(
            "heic-image-collection",
            heif_encode(frames[0], "HEIF", save_all=True, append_images=frames[1:], primary_index=1, quality=80),
            "burst.heic",
            "image/heic",
            "thumbnails",
            size=(160, 120),
            note="three top-level images, the second one primary: that one is shown",
        ),
        HostileFile(
            "heic-sequence-with-still",
            heic_sequence(frames, still=True),
            "burst.heics",
            "image/heic",
            "thumbnails",
            size=(160, 120),
            note="a track of three frames beside a still image item: the still is shown",
        ),
        HostileFile(
            "heic-sequence-track-only",
            heic_sequence(frames, still=False),
            "clip.heics",
            "image/heic",
            "rejected",
            "unsupported HEIF image sequence",
            note="libheif reads image items only; a sequence without one has nothing to show",
        ),
        HostileFile("avif-photo", avif, "photo.avif", "image/avif", "thumbnails", size=(640, 480)),
        HostileFile("avif-truncated-half", avif[: len(avif) // 2], "cut.avif", "image/avif", "rejected", corrupt),
        HostileFile(
            "avif-bomb-header-20000",
            avif_declaring(20000, 20000),
            "bomb.avif",
            "image/avif",
            "rejected",
            "image is 20000x20000 (400.0 megapixels), " + limit,
            bomb=True,
        ),
        HostileFile(
            "avif-alpha",
            heif_encode(transparent, "AVIF", quality=80),
            "alpha.avif",
            "image/avif",
            "thumbnails",
            size=(400, 300),
        ),
        HostileFile("avif-10bit", AVIF_10BIT, "deep.avif", "image/avif", "thumbnails", size=(64, 48)),
        HostileFile("avif-12bit", AVIF_12BIT, "deep.avif", "image/avif", "thumbnails", size=(64, 48)),
        HostileFile("avif-10bit-alpha", AVIF_10BIT_ALPHA, "deep.avif", "image/avif", "thumbnails", size=(64, 48)),
        HostileFile(
            "avif-animated",
            heif_encode(frames[0], "AVIF", save_all=True, append_images=frames[1:], duration=100, quality=80),
            "anim.avif",
            "image/avif",
            "thumbnails",
            size=(160, 120),
            note="an AVIF image sequence (avis): first frame only",
        ),
    ]
