"""The image cache: built once by worker processes, reused, partly rebuilt, resumed after a kill,
shared by concurrent processes, and clear about folders it cannot write."""
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from selfadapt.data.cache import decoded_images
from selfadapt.data.cache_io import source_folder
from selfadapt.data.collection import file_source
from selfadapt.data.decode import DecodeSettings, decode
from selfadapt.errors import SelfAdaptError

SETTINGS = DecodeSettings(24, 3)


def write_photos(folder: Path, count: int, size=(90, 60), fmt="PNG") -> list[str]:
    """``count`` real pictures (scikit-learn digits, coloured, enlarged), in two class folders."""
    from sklearn.datasets import load_digits

    digits = load_digits().images * 255 / 16
    keys = []
    for i in range(count):
        grey = digits[i % len(digits)]
        rgb = np.stack([grey, grey[::-1], 255 - grey], -1).astype(np.uint8)
        key = f"{'ab'[i % 2]}/{i:05d}.{fmt.lower()}"
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).resize(size, Image.Resampling.NEAREST).save(folder / key, fmt)
        keys.append(key)
    return sorted(keys)


def source_of(folder: Path, keys=None):
    keys = keys if keys is not None else sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.*"))
    return file_source(f"imagefolder:{folder}", folder, keys)


def assert_pixels_match_the_files(decoded, folder, keys, every=1):
    for i, key in list(enumerate(keys))[::every]:
        expected, _ = decode(str(folder / key), SETTINGS)
        np.testing.assert_array_equal(decoded.images[i].numpy(), expected)
        flat = expected.reshape(3, -1).astype(np.int64)
        np.testing.assert_array_equal(decoded.sums[i], np.stack([flat.sum(1), (flat * flat).sum(1)], -1))


def test_built_once_then_reused(tmp_path):
    keys = write_photos(tmp_path / "photos", 70)
    first = decoded_images(source_of(tmp_path / "photos"), SETTINGS, cache_dir=tmp_path / "cache", workers=2,
                           progress=False)
    assert first.decoded == 70 and first.copied == 0 and not first.errors
    assert_pixels_match_the_files(first, tmp_path / "photos", keys)
    again = decoded_images(source_of(tmp_path / "photos"), SETTINGS, cache_dir=tmp_path / "cache", progress=False)
    assert again.decoded == 0 and again.images.path == first.images.path
    assert sorted(p.name for p in first.folder.iterdir()) == [".lock", first.images.path.name, "index.npz"]


def test_changed_added_and_removed_files_invalidate_only_themselves(tmp_path):
    photos, cache = tmp_path / "photos", tmp_path / "cache"
    keys = write_photos(photos, 40)
    decoded_images(source_of(photos), SETTINGS, cache_dir=cache, progress=False)
    Image.new("RGB", (50, 80), (10, 200, 30)).save(photos / keys[3])           # changed
    Image.new("RGB", (70, 70), (250, 0, 250)).save(photos / "b" / "new.png")   # added
    changed = decoded_images(source_of(photos), SETTINGS, cache_dir=cache, progress=False)
    assert (changed.decoded, changed.copied) == (2, 39)
    now = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.png"))
    assert_pixels_match_the_files(changed, photos, now)
    (photos / keys[0]).unlink()                                                # removed
    removed = decoded_images(source_of(photos), SETTINGS, cache_dir=cache, progress=False)
    assert (removed.decoded, removed.copied) == (0, 40)
    assert len(list(changed.folder.glob("images-*.u8"))) == 1  # the superseded arrays are gone


def test_unreadable_files_are_recorded_not_retried(tmp_path):
    photos = tmp_path / "photos"
    keys = write_photos(photos, 6)
    (photos / keys[2]).write_bytes(b"")
    (photos / keys[4]).write_bytes((photos / keys[4]).read_bytes()[:60])
    first = decoded_images(source_of(photos), SETTINGS, cache_dir=tmp_path / "c", progress=False)
    assert sorted(first.errors) == [2, 4] and "empty" in first.errors[2] and first.images[2].sum() == 0
    again = decoded_images(source_of(photos), SETTINGS, cache_dir=tmp_path / "c", progress=False)
    assert again.decoded == 0 and again.errors == first.errors


BUILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from selfadapt.data.cache import decoded_images
    from selfadapt.data.collection import file_source
    from selfadapt.data.decode import DecodeSettings
    folder, cache, workers = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    keys = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.*"))
    out = decoded_images(file_source(f"imagefolder:{folder}", folder, keys), DecodeSettings(24, 3),
                         cache_dir=cache, workers=workers, progress=False)
    print(json.dumps({"decoded": out.decoded, "copied": out.copied, "waited": out.waited,
                      "array": str(out.images.path)}))
""")


def start_build(photos, cache, workers=1, **kwargs):
    return subprocess.Popen([sys.executable, "-c", BUILD, str(photos), str(cache), str(workers)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **kwargs)


@pytest.mark.slow
def test_a_killed_build_resumes_where_it_stopped(tmp_path):
    photos, cache = tmp_path / "photos", tmp_path / "cache"
    keys = write_photos(photos, 300, size=(640, 480), fmt="JPEG")
    build = start_build(photos, cache)
    folder = source_folder(cache, f"imagefolder:{photos}") / SETTINGS.key
    deadline = time.time() + 120
    while time.time() < deadline and build.poll() is None:
        logs = list(folder.glob("build-*.done"))
        if logs and len(logs[0].read_text().splitlines()) >= 1:
            break
        time.sleep(0.005)
    assert build.poll() is None, "the build finished before it could be killed"
    os.killpg(build.pid, signal.SIGKILL)
    build.wait()
    resumed = decoded_images(source_of(photos), SETTINGS, cache_dir=cache, workers=1, progress=False)
    assert 0 < resumed.decoded < 300 and resumed.copied == 0  # continued in place, not restarted
    assert_pixels_match_the_files(resumed, photos, keys, every=37)  # spot checks across the chunks
    every = np.stack([decode(str(photos / k), SETTINGS)[0] for k in keys])
    np.testing.assert_array_equal(resumed.images.load().numpy(), every)
    assert not list(folder.glob("build-*"))


@pytest.mark.slow
def test_two_processes_building_the_same_cache_agree(tmp_path):
    """The first build is paused while holding the lock; the second waits for it, then reuses its work."""
    photos, cache = tmp_path / "photos", tmp_path / "cache"
    keys = write_photos(photos, 300, size=(640, 480), fmt="JPEG")
    folder = source_folder(cache, f"imagefolder:{photos}") / SETTINGS.key
    first = start_build(photos, cache)
    deadline = time.time() + 120
    while not list(folder.glob("build-*.done")) and first.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.killpg(first.pid, signal.SIGSTOP)
    second = start_build(photos, cache)
    waiting = second.stderr.readline()
    os.killpg(first.pid, signal.SIGCONT)
    results = [json.loads(b.communicate(timeout=300)[0]) for b in (first, second)]
    assert "waiting for another process writing the image cache" in waiting
    assert first.returncode == 0 and second.returncode == 0
    assert [(r["decoded"], r["waited"]) for r in results] == [(300, False), (0, True)]
    assert results[0]["array"] == results[1]["array"]
    out = decoded_images(source_of(photos), SETTINGS, cache_dir=cache, progress=False)
    assert out.decoded == 0
    assert_pixels_match_the_files(out, photos, keys, every=29)


def unwritable(path: Path) -> bool:
    try:
        (path / "probe").mkdir()
    except OSError:
        return True
    (path / "probe").rmdir()
    return False


def test_a_cache_folder_that_cannot_be_written_is_one_error(tmp_path):
    keys = write_photos(tmp_path / "photos", 3)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    mounted = False
    try:
        if not unwritable(locked):  # root ignores permissions: a read-only file system instead
            mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(locked)],
                                     capture_output=True).returncode == 0
            if not mounted:
                pytest.skip("cannot make an unwritable folder here (root without mount)")
        with pytest.raises(SelfAdaptError, match=r"cache folder .* cannot be written \(.*\); point --cache-dir"):
            decoded_images(source_of(tmp_path / "photos", keys), SETTINGS, cache_dir=locked / "cache",
                           progress=False)
    finally:
        if mounted:
            subprocess.run(["umount", str(locked)])
        locked.chmod(0o700)


def limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


def test_a_write_that_fails_midway_is_one_error_and_leaves_nothing(tmp_path):
    """A real write failure: the process may not write files beyond 200 kB (RLIMIT_FSIZE)."""
    photos, cache = tmp_path / "photos", tmp_path / "cache"
    write_photos(photos, 400, size=(40, 40))  # 400 x 3 x 24 x 24 = 691 kB decoded
    build = start_build(photos, cache, preexec_fn=limit_file_size)
    _, err = build.communicate(timeout=120)
    assert build.returncode != 0 and "SelfAdaptError: cannot write the image cache" in err
    assert "the file size limit was reached" in err and "nothing was kept" in err
    folder = source_folder(cache, f"imagefolder:{photos}") / SETTINGS.key
    assert not list(folder.glob("build-*")) and not (folder / "index.npz").exists()


def test_a_full_disk_is_one_error_and_leaves_nothing(tmp_path):
    photos, cache = tmp_path / "photos", tmp_path / "small"
    keys = write_photos(photos, 400, size=(40, 40))
    cache.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(cache)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a small file system needs root")
    try:
        with pytest.raises(SelfAdaptError, match=r"the disk is full \(No space left on device; the decoded images "
                                                 r"need 675\.0 KB, .* free\); nothing was kept"):
            decoded_images(source_of(photos, keys), SETTINGS, cache_dir=cache, progress=False)
        folder = source_folder(cache, f"imagefolder:{photos}") / SETTINGS.key
        assert not list(folder.glob("build-*"))
    finally:
        subprocess.run(["umount", str(cache)])


def test_a_half_written_index_is_rebuilt(tmp_path):
    keys = write_photos(tmp_path / "photos", 5)
    first = decoded_images(source_of(tmp_path / "photos"), SETTINGS, cache_dir=tmp_path / "c", progress=False)
    (first.folder / "index.npz").write_bytes(b"PK\x03\x04 cut short")
    again = decoded_images(source_of(tmp_path / "photos"), SETTINGS, cache_dir=tmp_path / "c", progress=False)
    assert again.decoded == 5
    assert_pixels_match_the_files(again, tmp_path / "photos", keys)
