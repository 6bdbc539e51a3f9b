"""The optional watermark stage: a text or PNG mark stamped on the larger thumbnails, after resizing.

Kept apart from imaging.py so that module reads as decode → orient → resize → encode; imaging calls
`WatermarkStamp.apply` on each thumbnail at or above the mark's `min_size`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

_POSITIONS = frozenset({"top-left", "top-right", "bottom-left", "bottom-right", "center"})


@dataclass(frozen=True)
class Watermark:
    """A mark for the larger thumbnails, where a copy would be worth stealing; small ones stay clean."""

    text: str | None = None
    image_png: bytes | None = None
    position: str = "bottom-right"
    opacity: float = 0.5
    min_size: int = 512

    def __post_init__(self) -> None:
        if self.position not in _POSITIONS:
            raise ValueError(f"watermark position {self.position!r} is not one of {sorted(_POSITIONS)}")
        if not 0.0 <= self.opacity <= 1.0:
            raise ValueError(f"watermark opacity {self.opacity} is not between 0 and 1")


class WatermarkStamp:
    """Decodes the configured mark once per upload and stamps copies of the thumbnails with it."""

    def __init__(self, watermark: Watermark) -> None:
        self.watermark = watermark
        self.min_size = watermark.min_size
        self._alpha = round(255 * watermark.opacity)
        self._source: Image.Image | None = None
        if watermark.image_png:
            try:
                with Image.open(io.BytesIO(watermark.image_png), formats=["PNG"]) as mark:
                    self._source = mark.convert("RGBA")
            except (OSError, SyntaxError, ValueError, EOFError, UnidentifiedImageError) as exc:
                # Configuration, not the upload: must not turn every image into a permanent failure.
                raise ValueError(f"watermark image_png is not a readable PNG: {exc or type(exc).__name__}") from exc

    def apply(self, thumbnail: Image.Image) -> Image.Image:
        mark = self._render(thumbnail.size)
        if mark is None:
            return thumbnail
        x, y = self._place(thumbnail.size, mark.size)
        area = (x, y, x + mark.width, y + mark.height)
        region = thumbnail.crop(area).convert("RGBA")
        region.alpha_composite(mark)
        stamped = thumbnail.copy()
        stamped.paste(region.convert(thumbnail.mode), area)
        return stamped

    def _render(self, size: tuple[int, int]) -> Image.Image | None:
        if self._alpha == 0:
            return None
        width, height = size
        room_w, room_h = max(1, width - 2 * _margin(size)), max(1, height - 2 * _margin(size))
        if self._source is not None:
            mark = self._source
            scale = min(1.0, 0.2 * width / mark.width, room_h / mark.height)
            if scale < 1.0:
                box = (max(1, round(mark.width * scale)), max(1, round(mark.height * scale)))
                mark = mark.resize(box, Image.Resampling.LANCZOS)
        elif self.watermark.text and self.watermark.text.strip():
            mark = _render_text(self.watermark.text.strip(), max(width, height), room_w, room_h)
        else:
            return None
        if mark.width > width or mark.height > height:
            return None
        alpha = mark.getchannel("A").point(lambda value: value * self._alpha / 255)
        faded = mark.copy()
        faded.putalpha(alpha)
        return faded

    def _place(self, size: tuple[int, int], mark: tuple[int, int]) -> tuple[int, int]:
        margin = _margin(size)
        free_x, free_y = size[0] - mark[0], size[1] - mark[1]
        position = self.watermark.position
        if position == "center":
            return free_x // 2, free_y // 2
        x = min(margin, free_x) if position.endswith("left") else max(0, free_x - margin)
        y = min(margin, free_y) if position.startswith("top") else max(0, free_y - margin)
        return x, y


def _margin(size: tuple[int, int]) -> int:
    return max(1, round(0.02 * max(size)))


def _render_text(text: str, long_edge: int, room_w: int, room_h: int) -> Image.Image:
    """White with a dark outline shows on light and dark photos; ~4% of the long edge, less if need be."""
    font_size = max(8, round(0.04 * long_edge))
    font, stroke, (left, top, right, bottom) = _text_layout(text, font_size)
    if right - left > room_w or bottom - top > room_h:
        font_size = max(6, int(font_size * min(room_w / (right - left), room_h / (bottom - top))))
        font, stroke, (left, top, right, bottom) = _text_layout(text, font_size)
    mark = Image.new("RGBA", (max(1, round(right - left)), max(1, round(bottom - top))), (0, 0, 0, 0))
    ImageDraw.Draw(mark).text(
        (-left, -top),
        text,
        font=font,
        fill=(255, 255, 255, 255),
        stroke_width=stroke,
        stroke_fill=(0, 0, 0, 255),
    )
    return mark


def _text_layout(
    text: str, font_size: int
) -> tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, int, tuple[float, float, float, float]]:
    font = ImageFont.load_default(size=font_size)
    stroke = max(1, font_size // 12)
    bbox = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font, stroke_width=stroke)
    return font, stroke, bbox
