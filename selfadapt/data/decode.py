"""Decode one image file (or its bytes) to ``uint8 (C, S, S)``: the picture a model should see.

Every file is decoded the same way, whatever its format or mode:

1. the EXIF orientation is applied (a phone photo taken sideways comes out upright);
2. a large JPEG is decoded at reduced scale (PIL's draft mode: the DCT is scaled by 1/2, 1/4 or
   1/8, never below ``S``), which is several times faster than decoding every pixel;
3. every mode becomes grey (``L``) or RGB: ``1``, ``P`` (palette), ``CMYK``, ``YCbCr``; transparency
   (``RGBA``, ``LA``, ``P`` with a transparent colour) is composited on white; 16-bit grey
   (``I;16``, and ``I`` above 255) is scaled by 1/257, float (``F``) taken as [0, 1] when its
   maximum is at most 1, else as [0, 255];
4. the shorter side is resized to ``S`` (bilinear, antialiased, with ``reducing_gap``) and the centre
   ``S x S`` square kept (both in one ``resize`` of the centre box).

Animated images give their first frame (:func:`decode` reports it). A file whose header declares
more pixels than :data:`MAX_PIXELS` is refused before it is decoded (a decompression bomb).

>>> import io
>>> from PIL import Image
>>> buffer = io.BytesIO(); Image.new("RGB", (300, 200), (200, 10, 10)).save(buffer, "JPEG")
>>> image, notes = decode(buffer.getvalue(), DecodeSettings(size=32, channels=3))
>>> image.shape, image.dtype, notes
((3, 32, 32), dtype('uint8'), ())
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

__all__ = ["DecodeError", "DecodeSettings", "GREY_MODES", "IMAGE_SUFFIXES", "MAX_PIXELS", "Probe", "decode",
           "probe"]

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".pbm", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
# Pillow refuses (DecompressionBombError) above twice its warning limit; we refuse at the same count,
# from the header, with the file's name, and decode what lies below it without a warning.
MAX_PIXELS = 2 * 89_478_485
DECODER_VERSION = 1  # part of the cache key: bump when the decoded pixels change
_EIGHT_BIT_FIRST = ("1", "P", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")  # converted before resizing


class DecodeError(Exception):
    """A file that cannot be decoded; the message names what went wrong (not the file)."""


@dataclass(frozen=True)
class DecodeSettings:
    """What every image becomes: ``channels`` (1: grey, 3: RGB) x ``size`` x ``size``.

    >>> DecodeSettings(size=64, channels=3).key
    's64-rgb-v1'
    """

    size: int
    channels: int

    @property
    def key(self) -> str:
        """A folder name for these settings (and the decoder version)."""
        return f"s{self.size}-{'rgb' if self.channels == 3 else 'grey'}-v{DECODER_VERSION}"


@dataclass(frozen=True)
class Probe:
    """What an image file's header says: its size, mode and whether it has several frames."""

    width: int
    height: int
    mode: str
    animated: bool

    @property
    def grey(self) -> bool:
        return self.mode in GREY_MODES


def probe(source: str | Path | bytes) -> Probe:
    """Read the header only (cheap): size after the EXIF orientation, mode, animation.

    >>> import io
    >>> b = io.BytesIO(); Image.new("L", (30, 20)).save(b, "PNG")
    >>> probe(b.getvalue())
    Probe(width=30, height=20, mode='L', animated=False)
    """
    with _opened(source) as image:
        width, height = image.size
        if _orientation(image) in (5, 6, 7, 8):
            width, height = height, width
        try:
            animated = bool(getattr(image, "is_animated", False))
        except Exception as e:  # a broken second frame
            raise DecodeError(_reason(e, source)) from None
        return Probe(width, height, image.mode, animated)


def decode(source: str | Path | bytes, settings: DecodeSettings) -> tuple[np.ndarray, tuple[str, ...]]:
    """``uint8 (channels, size, size)`` and notes (``("animated",)`` when only the first frame was
    used); a file that cannot be decoded raises :class:`DecodeError` saying why."""
    with _opened(source) as image:
        try:
            return _decode_opened(image, settings)
        except DecodeError:
            raise
        except Exception as e:  # Pillow raises OSError, ValueError, SyntaxError... for broken data
            raise DecodeError(_reason(e, source)) from None


def _decode_opened(image: Image.Image, settings: DecodeSettings) -> tuple[np.ndarray, tuple[str, ...]]:
    size = settings.size
    notes = ("animated",) if getattr(image, "is_animated", False) else ()
    if image.format == "JPEG" and min(image.size) > 2 * size:
        wanted = ("L" if settings.channels == 1 else "RGB") if image.mode in ("L", "RGB") else None
        image.draft(wanted, (size, size))
    if _orientation(image) in range(2, 9):
        image = ImageOps.exif_transpose(image)
    if image.mode in _EIGHT_BIT_FIRST:
        image = _eight_bit(image)
    pixels = _as_mode(_resized(image, size), settings.channels)
    return pixels, notes


class _opened:
    """``Image.open`` of a path or bytes as a context manager whose errors are :class:`DecodeError`."""

    def __init__(self, source):
        self.source = source

    def __enter__(self) -> Image.Image:
        stream = io.BytesIO(self.source) if isinstance(self.source, (bytes, bytearray)) else self.source
        limit = Image.MAX_IMAGE_PIXELS
        try:
            Image.MAX_IMAGE_PIXELS = None  # checked below, from the header, with the size in the message
            self.image = Image.open(stream)
        except Exception as e:
            raise DecodeError(_reason(e, self.source)) from None
        finally:
            Image.MAX_IMAGE_PIXELS = limit
        width, height = self.image.size
        if width * height > MAX_PIXELS:
            self.image.close()
            raise DecodeError(_bomb_text(width * height, f"{width} x {height} = "))
        return self.image

    def __exit__(self, *exc):
        self.image.close()


def _bomb_text(pixels: int, detail: str = "") -> str:
    return (f"a decompression bomb? its header declares {detail}{pixels:,} pixels, more than the "
            f"{MAX_PIXELS:,} decoded safely; not decoded")


def _reason(error: Exception, source) -> str:
    """Why a file failed, in words: an empty file says so."""
    if isinstance(source, (bytes, bytearray)):
        empty = len(source) == 0
    else:
        try:
            empty = os.path.getsize(source) == 0
        except OSError as e:
            return e.strerror or str(e)
    if empty:
        return "empty file (0 bytes)"
    text = str(error) or type(error).__name__
    if text.startswith("cannot identify image file"):
        return "not an image Pillow can read"
    return text


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block: no orientation
        return 1


def _eight_bit(image: Image.Image) -> Image.Image:
    """Modes Pillow cannot resample well (bilevel, palette, 16/32-bit, float) as 8-bit L/RGB/RGBA."""
    if image.mode == "1":
        return image.convert("L")
    if image.mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    values = np.asarray(image).astype(np.float64)
    if image.mode.startswith("I;16") or (image.mode == "I" and values.max(initial=0) > 255):
        values = values / 257.0
    elif image.mode == "F" and values.max(initial=0) <= 1.0:
        values = values * 255.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")


def _resized(image: Image.Image, size: int) -> Image.Image:
    """The centre square of side ``min(w, h)``, resized to ``size x size`` in one step."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    box = (left, top, left + side, top + side)
    if (width, height) == (size, size):
        return image
    return image.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=3.0)


def _as_mode(image: Image.Image, channels: int) -> np.ndarray:
    """``(channels, S, S)`` uint8; transparency composited on white."""
    if "A" in image.getbands() or image.mode in ("RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba).convert("RGB")
    target = "L" if channels == 1 else "RGB"
    if image.mode != target:
        image = image.convert(target) if image.mode in ("L", "RGB") else image.convert("RGB").convert(target)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if channels == 1 else np.ascontiguousarray(pixels.transpose(2, 0, 1))
