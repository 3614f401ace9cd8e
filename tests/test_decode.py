"""Decoding one file: every mode to grey or RGB, EXIF orientation, draft mode, centre crop, bad files."""
import io
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from selfadapt.data.decode import MAX_PIXELS, DecodeError, DecodeSettings, decode, probe

RGB, GREY = DecodeSettings(32, 3), DecodeSettings(32, 1)


def photo(width=400, height=300) -> Image.Image:
    """A real picture: scikit-learn's digits tiled, coloured per tile, upscaled (smooth, like a photo)."""
    from sklearn.datasets import load_digits

    digits = load_digits().images[:12] * 255 / 16
    tiles = np.concatenate([np.concatenate(list(digits[r * 4:(r + 1) * 4]), axis=1) for r in range(3)], axis=0)
    rgb = np.stack([tiles, np.roll(tiles, 8, axis=1), 255 - tiles], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb).resize((width, height), Image.Resampling.BICUBIC)


def encoded(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def reference(image: Image.Image, size: int = 32) -> np.ndarray:
    """The plain way: centre square of the RGB image, resized with Pillow, as (C, S, S)."""
    w, h = image.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    out = image.convert("RGB").crop(box).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(out).transpose(2, 0, 1).astype(int)


def test_rgb_png_is_its_centre_square_resized():
    image = photo(400, 300)
    out, notes = decode(encoded(image), RGB)
    assert out.shape == (3, 32, 32) and out.dtype == np.uint8 and notes == ()
    assert np.abs(out.astype(int) - reference(image)).mean() < 2.0


def test_centre_crop_keeps_the_middle_of_a_wide_image():
    """Left and right thirds black, middle white: the centre square of a 3:1 image is white (its
    outermost columns blend with their neighbours, as torchvision's Resize + CenterCrop do)."""
    pixels = np.zeros((100, 300, 3), np.uint8)
    pixels[:, 100:200] = 255
    image = Image.fromarray(pixels)
    out, _ = decode(encoded(image), RGB)
    assert out[:, :, 1:-1].min() >= 250
    shorter_side = np.asarray(image.resize((96, 32), Image.Resampling.BILINEAR))[:, 32:64].transpose(2, 0, 1)
    assert np.abs(out.astype(int) - shorter_side).max() <= 3


def test_same_size_grey_image_is_unchanged():
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    out, _ = decode(encoded(Image.fromarray(pixels)), GREY)
    np.testing.assert_array_equal(out[0], pixels)


def test_large_jpeg_in_draft_mode_matches_a_full_decode():
    image = photo(2000, 1500)
    data = encoded(image, "JPEG", quality=92)
    out, _ = decode(data, DecodeSettings(64, 3))
    full = reference(Image.open(io.BytesIO(data)), 64)
    assert np.abs(out.astype(int) - full).mean() < 4.0  # draft mode scales the DCT, the picture stays


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "RGB", "YCbCr"])
def test_every_mode_becomes_grey_or_rgb(mode):
    base = photo(64, 48)
    grey = np.asarray(base.convert("L"))
    if mode == "I;16":
        image, fmt = Image.fromarray(grey.astype(np.uint16) * 257), "PNG"
    elif mode == "I":
        image, fmt = Image.fromarray(grey.astype(np.int32) * 257), "TIFF"
    elif mode == "F":
        image, fmt = Image.fromarray(grey.astype(np.float32) / 255), "TIFF"
    else:
        image = base.convert(mode)
        fmt = "JPEG" if mode in ("CMYK", "YCbCr") else "PNG"
    data = encoded(image, fmt)
    assert probe(data).mode == Image.open(io.BytesIO(data)).mode
    rgb, _ = decode(data, RGB)
    grey_out, _ = decode(data, GREY)
    assert rgb.shape == (3, 32, 32) and grey_out.shape == (1, 32, 32)
    expected = reference(base.convert("L"))[0]
    tolerance = 60 if mode == "1" else 8  # bilevel dithers; JPEG (CMYK, YCbCr) is lossy
    assert abs(grey_out[0].astype(float).mean() - expected.mean()) < tolerance


def test_sixteen_bit_png_is_scaled_not_clipped():
    values = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    out, _ = decode(encoded(Image.fromarray(values)), GREY)
    np.testing.assert_allclose(out[0].astype(float), np.rint(values / 257.0), atol=1)
    assert out.max() == 255 and out.min() == 0


def test_cmyk_jpeg_keeps_its_colours():
    red = Image.new("RGB", (64, 64), (220, 30, 30))
    out, _ = decode(encoded(red.convert("CMYK"), "JPEG", quality=95), RGB)
    assert np.allclose(out.reshape(3, -1).mean(1), [220, 30, 30], atol=12)


def test_transparency_is_composited_on_white():
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (0, 0, 40, 20))  # top half opaque red, bottom transparent
    out, _ = decode(encoded(image), RGB)
    assert (out[:, 2:14].reshape(3, -1).mean(1) > [240, -1, -1]).all() and out[1, 2:14].max() < 20
    assert out[:, 20:].min() >= 250  # white where it was transparent
    palette = image.convert("P")  # palette with a transparent colour
    assert decode(encoded(palette), RGB)[0][:, 20:].min() >= 250


def test_exif_rotated_photo_comes_out_upright():
    """Stored sideways with orientation 6 (rotate 90 clockwise to view): top of the view is white."""
    upright = np.zeros((60, 40, 3), np.uint8)
    upright[:30] = 255                                    # white top half, black bottom half
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # what a sideways camera stores
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encoded(stored, "JPEG", quality=95, exif=exif.tobytes())
    assert (probe(data).width, probe(data).height) == (40, 60)  # the header size is reported upright
    out, _ = decode(data, RGB)
    assert out[:, :8].mean() > 240 and out[:, -8:].mean() < 15


def test_animated_gif_gives_its_first_frame_and_says_so():
    frames = [Image.new("L", (32, 32), v) for v in (200, 20, 90)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50)
    out, notes = decode(buffer.getvalue(), GREY)
    assert notes == ("animated",) and abs(int(out.mean()) - 200) <= 2
    assert probe(buffer.getvalue()).animated


@pytest.mark.parametrize("damage,message", [
    (lambda data: b"", "empty file (0 bytes)"),
    (lambda data: data[:len(data) // 2], "truncated"),
    (lambda data: b"GIF89a" + b"\0" * 40, "not an image Pillow can read"),
    (lambda data: b"this is a text file, not a picture", "not an image Pillow can read"),
])
def test_broken_files_are_a_clear_error(tmp_path, damage, message):
    path = tmp_path / "broken.jpg"
    path.write_bytes(damage(encoded(photo(), "JPEG")))
    with pytest.raises(DecodeError, match=re.escape(message)):
        decode(str(path), RGB)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` pixels but holds almost nothing (a decompression bomb)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [14000, 40000])  # above twice Pillow's warning limit; far above
def test_decompression_bomb_is_refused_with_its_pixel_count(side):
    with pytest.raises(DecodeError, match=f"{side * side:,} pixels, more than the {MAX_PIXELS:,}"):
        decode(png_header_only(side, side), RGB)


def test_settings_key_names_size_channels_and_decoder_version():
    assert DecodeSettings(64, 1).key == "s64-grey-v1" and DecodeSettings(224, 3).key == "s224-rgb-v1"
