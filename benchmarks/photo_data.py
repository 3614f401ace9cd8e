"""Photo collections made from real images (the CIFAR-10 JPEG archive), for the data-at-scale benchmarks.

Nothing here is committed: write the collections to a temporary or git-ignored folder.

    python benchmarks/photo_data.py large /tmp/photos --count 20            # 2000 x 1500 JPEG mosaics, 2 classes
    python benchmarks/photo_data.py large /tmp/grainy --count 200 --grain 6 # the same with sensor-like noise
    python benchmarks/photo_data.py mixed /tmp/mixed --per-class 500       # mixed sizes, formats, modes, EXIF
    python benchmarks/photo_data.py native /tmp/native --per-class 500     # the same images at 32 x 32
    python benchmarks/photo_data.py small /tmp/small --count 200000        # 64 x 64 JPEGs
    python benchmarks/photo_data.py tiny /tmp/tiny --count 100000          # 8 x 8 PNGs and some non-images

``--archive`` is the CIFAR-10 JPEG archive (default ``../shared/data/cifar10-jpeg.tar.gz`` beside the
repository): ``train/<class>/NNNN.jpg`` and ``test/<class>/NNNN.jpg``, the official order.
"""
from __future__ import annotations

import argparse
import io
import multiprocessing
import tarfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar(archive: Path, split: str = "train", per_class: int | None = None) -> dict[str, list[bytes]]:
    """The JPEG bytes of each class of ``split`` in official order (the first ``per_class``)."""
    out: dict[str, list[tuple[str, bytes]]] = {c: [] for c in CLASSES}
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = member.name.removeprefix("./").split("/")
            if member.isfile() and len(parts) == 3 and parts[0] == split:
                out[parts[1]].append((parts[2], tar.extractfile(member).read()))
    return {c: [data for _, data in sorted(files)][:per_class] for c, files in out.items()}


def rgb(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def make_large(out: Path, archive: Path, count: int, size=(2000, 1500), classes=("cat", "dog"),
               grain: float = 0.0) -> None:
    """``count`` photos of ``size``: 4 x 3 mosaics of one class's images, each tile upscaled (bicubic);
    ``grain`` adds Gaussian noise of that standard deviation (like a camera sensor's; it makes the
    files as large as phone photos, about 1-2 MB, where the smooth upscaled mosaics are 250 kB)."""
    rng = np.random.default_rng(0)
    images = cifar(archive, per_class=12 * count)
    for k in range(count):
        name = classes[k % len(classes)]
        tiles = images[name][(k // len(classes)) * 12:(k // len(classes)) * 12 + 12]
        photo = Image.new("RGB", size)
        tw, th = size[0] // 4, size[1] // 3
        for t, data in enumerate(tiles):
            photo.paste(rgb(data).resize((tw, th), Image.Resampling.BICUBIC), ((t % 4) * tw, (t // 4) * th))
        if grain:
            noisy = np.asarray(photo, dtype=np.float32) + rng.normal(0, grain, (size[1], size[0], 3))
            photo = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
        (out / name).mkdir(parents=True, exist_ok=True)
        photo.save(out / name / f"{k:04d}.jpg", "JPEG", quality=90)


ASPECTS = [(1, 1), (4, 3), (3, 4), (3, 2), (16, 9)]


def mixed_photo(data: bytes, seed: int) -> tuple[Image.Image, dict, str]:
    """One CIFAR image as a photo of random size (shorter side 48..720 px) and aspect ratio: the
    image upscaled to the shorter side, extended to the aspect ratio by mirroring its edges (the
    object stays in the centre, as in most photos); some grey, CMYK, PNG with alpha, or stored
    sideways with an EXIF orientation."""
    rng = np.random.default_rng(seed)
    short = int(rng.integers(48, 721))
    aw, ah = ASPECTS[rng.integers(len(ASPECTS))]
    square = rgb(data).resize((short, short), Image.Resampling.BICUBIC)
    width, height = (short * aw // ah, short) if aw >= ah else (short, short * ah // aw)
    pad = ((height - short) // 2, (width - short) // 2)
    pixels = np.pad(np.asarray(square), ((pad[0], height - short - pad[0]), (pad[1], width - short - pad[1]), (0, 0)),
                    mode="reflect")
    photo = Image.fromarray(pixels)
    kind = rng.choice(["jpeg"] * 16 + ["grey", "cmyk", "png-alpha", "exif"])
    if kind == "grey":
        return photo.convert("L"), {"format": "JPEG", "quality": 88}, ".jpg"
    if kind == "cmyk":
        return photo.convert("CMYK"), {"format": "JPEG", "quality": 88}, ".jpg"
    if kind == "png-alpha":
        photo.putalpha(255)
        return photo, {"format": "PNG", "compress_level": 1}, ".png"
    if kind == "exif":
        exif = Image.Exif()
        exif[0x0112] = 6  # viewer rotates 90 degrees clockwise: store it turned the other way
        return photo.transpose(Image.Transpose.ROTATE_90), {"format": "JPEG", "quality": 88,
                                                            "exif": exif.tobytes()}, ".jpg"
    return photo, {"format": "JPEG", "quality": int(rng.integers(70, 96))}, ".jpg"


def _write_mixed(task) -> None:
    path, data, seed = task
    photo, options, suffix = mixed_photo(data, seed)
    photo.save(path.with_suffix(suffix), **options)


def make_mixed(out: Path, archive: Path, per_class: int, test_per_class: int, native: bool = False) -> None:
    """``train/<class>/`` and ``test/<class>/`` of CIFAR-10's first images per class: mixed photos,
    or with ``native`` the original 32 x 32 JPEG files themselves."""
    tasks = []
    for split, n in (("train", per_class), ("test", test_per_class)):
        for name, files in cifar(archive, split, n).items():
            (out / split / name).mkdir(parents=True, exist_ok=True)
            for j, data in enumerate(files):
                path = out / split / name / f"{j:05d}.jpg"
                if native:
                    path.write_bytes(data)
                else:
                    tasks.append((path, data, zlib.crc32(f"{split}/{name}/{j}".encode())))
    with multiprocessing.Pool(2) as pool:
        pool.map(_write_mixed, tasks, chunksize=64)


def _write_small(task) -> None:
    path, data, variant = task
    image = rgb(data).resize((64, 64), Image.Resampling.BICUBIC)
    if variant % 2:
        image = ImageOps.mirror(image)
    if variant >= 2:  # a shifted crop of the enlarged image, so every file differs
        dx, dy = (variant * 7) % 16, (variant * 11) % 16
        image = image.resize((80, 80), Image.Resampling.BICUBIC).crop((dx, dy, dx + 64, dy + 64))
    image.save(path, "JPEG", quality=90)


def make_small(out: Path, archive: Path, count: int) -> None:
    """``count`` 64 x 64 JPEGs in class folders: CIFAR-10's 60,000 images, enlarged, then mirrored
    and shifted variants of them until ``count``."""
    sources = [(name, data) for split in ("train", "test") for name, files in cifar(archive, split).items()
               for data in files]
    tasks = []
    for k in range(count):
        name, data = sources[k % len(sources)]
        (out / name).mkdir(parents=True, exist_ok=True)
        tasks.append((out / name / f"{k:06d}.jpg", data, k // len(sources)))
    with multiprocessing.Pool(2) as pool:
        pool.map(_write_small, tasks, chunksize=256)


def make_tiny(out: Path, archive: Path, count: int) -> None:
    """``count`` 8 x 8 PNGs (CIFAR-10 images reduced) in class folders, plus a few non-image files."""
    sources = [(name, data) for name, files in cifar(archive, "train").items() for data in files]
    for k in range(count):
        name, data = sources[k % len(sources)]
        (out / name).mkdir(parents=True, exist_ok=True)
        rgb(data).resize((8, 8), Image.Resampling.BOX).save(out / name / f"{k:06d}.png", "PNG")
    for name in CLASSES[:3]:
        (out / name / "notes.txt").write_text("not an image\n")
        (out / name / "labels.json").write_text("{}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["large", "mixed", "native", "small", "tiny"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--grain", type=float, default=0.0, help="large: sensor-like noise std (e.g. 6)")
    args = parser.parse_args()
    if not args.archive.is_file():
        raise SystemExit(f"the CIFAR-10 JPEG archive is not at {args.archive}; give --archive")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.kind == "large":
        make_large(args.out, args.archive, args.count, grain=args.grain)
    elif args.kind in ("mixed", "native"):
        make_mixed(args.out, args.archive, args.per_class, args.test_per_class, native=args.kind == "native")
    elif args.kind == "small":
        make_small(args.out, args.archive, args.count)
    else:
        make_tiny(args.out, args.archive, args.count)


if __name__ == "__main__":
    main()
