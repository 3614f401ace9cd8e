"""Dataset loaders: real files where they exist offline, official formats written here otherwise."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from selfadapt.data.files import default_data_dir
from selfadapt.data.formats import cifar
from selfadapt.data.formats.digits import digits_split
from selfadapt.data.registry import load_dataset, load_unlabeled_split
from selfadapt.data.splits import class_balanced_subset
from selfadapt.data.types import ImageSet
from selfadapt.errors import SelfAdaptError

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
SHARED_DATA = SHARED / "data"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ------------------------------------------------------------------------------------------
# writers of the official formats


class Py2Str(bytes):
    """A Python 2 ``str``: the official CIFAR pickles were written by Python 2."""


class Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2 + numpy 1.x wrote it: BINSTRING strings, arrays via _reconstruct."""

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, f):
        super().__init__(f, protocol=2)

    def save_py2str(self, obj):
        n = len(obj)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + n.to_bytes(4, "little")
        self.write(head + bytes(obj))
        self.memoize(obj)

    def save_global_name(self, module, name):
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())

    def save_array(self, a):
        a = np.ascontiguousarray(a)
        self.save_global_name("numpy.core.multiarray", "_reconstruct")
        self.save_global_name("numpy", "ndarray")
        self.save((0,))
        self.save(Py2Str(b"b"))
        self.write(pickle.TUPLE3 + pickle.REDUCE + pickle.MARK)
        self.save(1)
        self.save(a.shape)
        self.save_global_name("numpy", "dtype")
        self.save(Py2Str(a.dtype.str[1:].encode()))
        self.save(0)
        self.save(1)
        self.write(pickle.TUPLE3 + pickle.REDUCE)
        self.save((3, Py2Str(a.dtype.str[:1].encode()), None, None, None, -1, -1, 0))
        self.write(pickle.BUILD)
        self.save(False)
        self.save(Py2Str(a.tobytes()))
        self.write(pickle.TUPLE + pickle.BUILD)

    dispatch[Py2Str] = save_py2str
    dispatch[np.ndarray] = save_array


def py2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    Py2Pickler(buffer).dump(obj)
    return buffer.getvalue()


def cifar_rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar10(folder: Path, per_batch: int = 4) -> dict:
    """A small CIFAR-10 in the official layout; returns the arrays written."""
    folder.mkdir(parents=True)
    written = {"train": [], "train_labels": []}
    for k in range(1, 6):
        data, labels = cifar_rows(per_batch, k), [(k + j) % 10 for j in range(per_batch)]
        written["train"].append(data)
        written["train_labels"] += labels
        (folder / f"data_batch_{k}").write_bytes(py2_pickle({
            Py2Str(b"batch_label"): Py2Str(f"training batch {k} of 5".encode()), Py2Str(b"labels"): labels,
            Py2Str(b"data"): data, Py2Str(b"filenames"): [Py2Str(b"x.png")] * per_batch}))
    written["test"], written["test_labels"] = cifar_rows(3, 9), [9, 0, 1]
    (folder / "test_batch").write_bytes(py2_pickle({
        Py2Str(b"batch_label"): Py2Str(b"testing batch 1 of 1"), Py2Str(b"labels"): written["test_labels"],
        Py2Str(b"data"): written["test"], Py2Str(b"filenames"): [Py2Str(b"x.png")] * 3}))
    (folder / "batches.meta").write_bytes(py2_pickle({
        Py2Str(b"num_cases_per_batch"): per_batch, Py2Str(b"num_vis"): 3072,
        Py2Str(b"label_names"): [Py2Str(c.encode()) for c in CIFAR10_CLASSES]}))
    return written


def write_cifar100(folder: Path) -> dict:
    folder.mkdir(parents=True)
    fine_names = [f"fine{k:02d}" for k in range(100)]
    coarse_names = [f"coarse{k:02d}" for k in range(20)]
    written = {}
    for split, n in (("train", 7), ("test", 3)):
        fine = [(11 * j + 5) % 100 for j in range(n)]
        coarse = [f % 20 for f in fine]
        data = cifar_rows(n, len(split))
        written[split] = (data, fine, coarse)
        (folder / split).write_bytes(py2_pickle({
            Py2Str(b"filenames"): [Py2Str(b"x.png")] * n, Py2Str(b"batch_label"): Py2Str(split.encode()),
            Py2Str(b"fine_labels"): fine, Py2Str(b"coarse_labels"): coarse, Py2Str(b"data"): data}))
    (folder / "meta").write_bytes(py2_pickle({
        Py2Str(b"fine_label_names"): [Py2Str(s.encode()) for s in fine_names],
        Py2Str(b"coarse_label_names"): [Py2Str(s.encode()) for s in coarse_names]}))
    return written


def make_targz(source: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=source.name)
    return archive


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, *, n_train=6, n_test=4, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(n_train) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": (np.arange(n_test) + 3) % 10}
    for name, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


def save_image(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


# ------------------------------------------------------------------------------------------
# real data


@pytest.fixture(scope="session")
def real_cifar10(tmp_path_factory):
    tool = SHARED / "tools" / "cifar10-from-jpeg"
    if not tool.is_file():
        pytest.skip(f"{tool} is absent (it needs the shared CIFAR-10 JPEGs)")
    out = tmp_path_factory.mktemp("cifar10")
    subprocess.run([sys.executable, str(tool), str(out)], check=True, capture_output=True)
    return out


def test_digits_fixed_stratified_split_of_real_images():
    from sklearn.datasets import load_digits

    data = load_dataset("digits")
    assert (len(data.train), len(data.test)) == (1297, 500)
    assert data.train.images.shape == (1297, 1, 8, 8) and data.train.images.dtype == torch.uint8
    assert data.classes == [str(d) for d in range(10)] and data.in_channels == 1 and data.image_size == 8
    assert torch.equal(data.train.source_index, torch.arange(1297)) and data.train.files is None
    sk = load_digits()
    train_rows, test_rows = digits_split()
    assert np.intersect1d(train_rows, test_rows).size == 0 and len(np.union1d(train_rows, test_rows)) == 1797
    expected = np.round(sk.images[test_rows] * 255 / 16).astype(np.uint8)
    assert np.array_equal(data.test.images[:, 0].numpy(), expected)
    assert np.array_equal(data.test.labels.numpy(), sk.target[test_rows])
    test_share = np.bincount(sk.target[test_rows], minlength=10) / np.bincount(sk.target, minlength=10)
    assert np.all(np.abs(test_share - 500 / 1797) < 0.01)  # stratified
    again = load_dataset("digits")
    assert torch.equal(again.train.images, data.train.images) and torch.equal(again.test.labels, data.test.labels)
    assert data.train.images.max() == 255 and 0.0 < data.mean[0] < 1.0


@pytest.mark.slow
def test_mnist_real_files():
    if not (SHARED_DATA / "mnist" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST is not in {SHARED_DATA / 'mnist'}")
    data = load_dataset("mnist", SHARED_DATA)
    assert data.train.images.shape == (60000, 1, 28, 28) and data.test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.train.labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(data.test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert data.mean[0] == pytest.approx(0.1307, abs=1e-4) and data.std[0] == pytest.approx(0.3081, abs=1e-4)


@pytest.mark.slow
def test_fashion_mnist_from_debian_package(tmp_path):
    if not (Path("/usr/share/datasets/fashion-mnist") / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    data = load_dataset("fashion_mnist", tmp_path)  # nothing in tmp_path: falls back to Debian's copy
    assert data.name == "fashion-mnist" and data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    assert data.train.images.shape == (60000, 1, 28, 28) and len(data.test) == 10000
    assert torch.bincount(data.train.labels).tolist() == [6000] * 10
    assert torch.bincount(data.test.labels).tolist() == [1000] * 10
    assert data.mean[0] == pytest.approx(0.2860, abs=1e-3) and data.std[0] == pytest.approx(0.3530, abs=1e-3)


@pytest.mark.slow
def test_cifar10_official_pickles_from_the_shared_tool(real_cifar10):
    data = load_dataset("cifar10", real_cifar10, download=False)
    assert data.train.images.shape == (50000, 3, 32, 32) and data.test.images.shape == (10000, 3, 32, 32)
    assert data.train.images.is_contiguous() and data.classes == CIFAR10_CLASSES
    assert torch.bincount(data.train.labels).tolist() == [5000] * 10
    canonical = np.load(SHARED_DATA / "cifar10-canonical-labels.npz")
    assert np.array_equal(data.train.labels.numpy(), canonical["train"])
    assert np.array_equal(data.test.labels.numpy(), canonical["test"])
    assert data.mean == (0.4914, 0.4822, 0.4465) and data.std == (0.2023, 0.1994, 0.2010)


@pytest.mark.slow
def test_imagefolder_on_real_cifar10_jpegs_matches_the_official_order(tmp_path, real_cifar10):
    wanted = {("train", "cat"): 3, ("train", "ship"): 3, ("train", "airplane"): 2, ("test", "cat"): 2,
              ("test", "ship"): 1, ("test", "airplane"): 1}
    taken = {key: 0 for key in wanted}
    with tarfile.open(SHARED_DATA / "cifar10-jpeg.tar.gz") as tar:
        for member in tar:
            parts = member.name.split("/")[-3:]
            key = tuple(parts[:2])
            if member.isfile() and key in wanted and taken[key] < wanted[key] and parts[2] < "0003":
                (tmp_path / key[0] / key[1]).mkdir(parents=True, exist_ok=True)
                (tmp_path / key[0] / key[1] / parts[2]).write_bytes(tar.extractfile(member).read())
                taken[key] += 1
            if taken == wanted:
                break
    assert taken == wanted
    data = load_dataset(f"imagefolder:{tmp_path}")
    assert data.classes == ["airplane", "cat", "ship"]
    assert data.train.images.shape == (8, 3, 32, 32) and data.test.images.shape == (4, 3, 32, 32)
    assert data.train.labels.tolist() == [0, 0, 1, 1, 1, 2, 2, 2]
    assert data.train.files == sorted(data.train.files) and data.train.files[0].startswith("train/airplane/")
    assert all(f.startswith("test/") for f in data.test.files)
    # the j-th JPEG of a class is the j-th image of that class in the official order
    cifar = load_dataset("cifar10", real_cifar10, download=False)
    for split, folder_set in (("train", data.train), ("test", data.test)):
        official = getattr(cifar, split)
        for image, label, name in zip(folder_set.images, folder_set.labels, folder_set.files):
            cls = CIFAR10_CLASSES.index(name.split("/")[1])
            j = int(name.split("/")[2][:4])
            row = torch.nonzero(official.labels == cls).flatten()[j]
            assert torch.equal(image, official.images[row]), name


# ------------------------------------------------------------------------------------------
# CIFAR in the official formats, written here


def test_cifar100_pickles_as_folder_and_as_archive(tmp_path):
    written = write_cifar100(tmp_path / "folder" / "cifar-100-python")
    archive_dir = tmp_path / "archive"
    archive_dir.mkdir()
    make_targz(tmp_path / "folder" / "cifar-100-python", archive_dir / "cifar-100-python.tar.gz")
    for root in (tmp_path / "folder", archive_dir):
        data = load_dataset("cifar100", root, download=False)
        data_train, fine, coarse = written["train"]
        assert data.num_classes == 100 and data.classes[5] == "fine05"
        assert data.train.labels.tolist() == fine and data.coarse_train_labels.tolist() == coarse
        assert data.test.labels.tolist() == written["test"][1]
        # row layout: 1024 red, 1024 green, 1024 blue, each 32x32 row-major
        assert data.train.images[2, 1, 4, 7] == data_train[2, 1024 + 4 * 32 + 7]
        assert torch.equal(data.train.images.reshape(7, -1), torch.from_numpy(data_train))
        assert data.mean == (0.5071, 0.4865, 0.4409)
    assert not (archive_dir / "cifar-100-python").exists()  # read from the archive, never extracted


def test_cifar10_folder_missing_a_batch_names_it(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(SelfAdaptError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path, download=False)


def test_cifar_absent_without_download_says_what_to_put_where(tmp_path):
    with pytest.raises(SelfAdaptError, match=f"put cifar-100-python.tar.gz or cifar-100-python/ in {tmp_path}"):
        load_dataset("cifar100", tmp_path, download=False)


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    (folder / "data_batch_1").write_bytes(py2_pickle({Py2Str(b"data"): Exploit()}))
    with pytest.raises(SelfAdaptError, match=r"data_batch_1.*refusing to load (posix|nt|os)\.system"):
        load_dataset("cifar10", tmp_path, download=False)
    assert not marker.exists()


def test_python3_bytes_pickle_is_refused_too(tmp_path):
    # plain Python 3 protocol 2 writes bytes through _codecs.encode: not an official file, refused
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a"]}, protocol=2))
    with pytest.raises(SelfAdaptError, match="refusing to load _codecs.encode"):
        load_dataset("cifar10", tmp_path, download=False)


def test_cifar_pickles_admit_arrays_only_not_even_numpy_scalars(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": np.int64(3)}, protocol=4))
    with pytest.raises(SelfAdaptError, match=r"refusing to load numpy\._?core\.multiarray\.scalar"):
        load_dataset("cifar10", tmp_path, download=False)


@pytest.fixture
def tiny_cifar10_archive(tmp_path):
    written = write_cifar10(tmp_path / "src" / "cifar-10-batches-py")
    archive = make_targz(tmp_path / "src" / "cifar-10-batches-py", tmp_path / "upstream.tar.gz")
    return archive, hashlib.md5(archive.read_bytes()).hexdigest(), written


def test_download_from_file_url_with_matching_md5(tmp_path, monkeypatch, tiny_cifar10_archive):
    archive, md5, written = tiny_cifar10_archive
    monkeypatch.setattr(cifar, "CIFAR10_URL", archive.as_uri())
    monkeypatch.setattr(cifar, "CIFAR10_MD5", md5)
    root = tmp_path / "new" / "data"
    data = load_dataset("cifar10", root)
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-python.tar.gz"]
    assert (root / "cifar-10-python.tar.gz").read_bytes() == archive.read_bytes()
    assert len(data.train) == 20 and len(data.test) == 3
    assert data.train.labels.tolist() == written["train_labels"]
    assert torch.equal(data.train.images[:4].reshape(4, -1), torch.from_numpy(written["train"][0]))
    again = load_dataset("cifar10", root, download=False)  # now read from the archive in place
    assert torch.equal(again.train.images, data.train.images)


def test_download_with_wrong_md5_leaves_nothing(tmp_path, monkeypatch, tiny_cifar10_archive):
    archive, _, _ = tiny_cifar10_archive
    monkeypatch.setattr(cifar, "CIFAR10_URL", archive.as_uri())
    monkeypatch.setattr(cifar, "CIFAR10_MD5", "0" * 32)
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(SelfAdaptError, match="md5"):
        load_dataset("cifar10", existing)
    assert list(existing.iterdir()) == []
    with pytest.raises(SelfAdaptError, match="md5"):
        load_dataset("cifar10", tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


def test_unreachable_download_gives_the_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar, "CIFAR10_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    with pytest.raises(SelfAdaptError, match="download failed") as info:
        load_dataset("cifar10", tmp_path)
    assert f"put cifar-10-python.tar.gz or cifar-10-batches-py/ in {tmp_path}" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_archive_is_reported(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(gzip.compress(b"not a tar file" * 100)[:50])
    with pytest.raises(SelfAdaptError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", tmp_path, download=False)


# ------------------------------------------------------------------------------------------
# IDX, SVHN, STL-10 in the official formats


def test_idx_plain_files_in_name_folder(tmp_path):
    arrays = write_idx_set(tmp_path / "mnist", gz=False)
    data = load_dataset("mnist", tmp_path)
    assert data.train.images.shape == (6, 1, 28, 28) and len(data.test) == 4
    assert np.array_equal(data.train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert data.test.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_fashion_mnist_prefers_data_dir_over_debian(tmp_path):
    write_idx_set(tmp_path / "fashion-mnist", n_train=5)
    assert len(load_dataset("fashion-mnist", tmp_path).train) == 5


@pytest.mark.parametrize("damage", ["magic", "truncated", "truncated_gzip", "count_mismatch"])
def test_idx_damage_names_the_file(tmp_path, damage):
    write_idx_set(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    if damage == "magic":
        images.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + raw[4:]))
    elif damage == "truncated":
        images.write_bytes(gzip.compress(raw[:-10]))
    elif damage == "truncated_gzip":
        images.write_bytes(images.read_bytes()[:200])
    else:
        labels = tmp_path / "train-labels-idx1-ubyte.gz"
        labels.write_bytes(gzip.compress(idx_bytes(np.zeros(5, np.uint8))))
    with pytest.raises(SelfAdaptError, match="train-images-idx3-ubyte.gz"):
        load_dataset("mnist", tmp_path)


def test_idx_missing_files_are_listed(tmp_path):
    with pytest.raises(SelfAdaptError, match=f"put train-images-idx3-ubyte.*in {tmp_path / 'mnist'}/"):
        load_dataset("mnist", tmp_path)
    write_idx_set(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(SelfAdaptError, match="lacks t10k-labels-idx1-ubyte"):
        load_dataset("mnist", tmp_path)


def test_svhn_mat_files(tmp_path):
    import scipy.io

    rng = np.random.default_rng(0)
    folder = tmp_path / "svhn"
    folder.mkdir()
    x = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    x[3, 17, 2, 4] = 201  # row 3, column 17, blue, sample 4
    y = np.array([[10], [1], [9], [10], [5]], dtype=np.uint8)
    scipy.io.savemat(folder / "train_32x32.mat", {"X": x, "y": y})
    scipy.io.savemat(folder / "test_32x32.mat", {"X": x[..., :2], "y": y[:2]})
    data = load_dataset("svhn", tmp_path)
    assert data.train.images.shape == (5, 3, 32, 32) and data.train.images.is_contiguous()
    assert data.train.images[4, 2, 3, 17] == 201
    assert data.train.labels.tolist() == [0, 1, 9, 0, 5] and data.test.labels.tolist() == [0, 1]
    assert len(data.mean) == 3 and data.classes[0] == "0"


def test_svhn_missing_and_corrupt(tmp_path):
    with pytest.raises(SelfAdaptError, match="train_32x32.mat and test_32x32.mat"):
        load_dataset("svhn", tmp_path)
    (tmp_path / "train_32x32.mat").write_bytes(b"garbage" * 50)
    (tmp_path / "test_32x32.mat").write_bytes(b"garbage" * 50)
    with pytest.raises(SelfAdaptError, match="train_32x32.mat"):
        load_dataset("svhn", tmp_path)


def write_stl10(folder: Path, rng) -> dict:
    folder.mkdir(parents=True)
    arrays = {}
    for split, n in (("train", 4), ("test", 2), ("unlabeled", 3)):
        images = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        arrays[split] = images
        # column-major per image: the file holds each channel transposed
        (folder / f"{split}_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())
    (folder / "train_y.bin").write_bytes(bytes([1, 10, 3, 2]))
    (folder / "test_y.bin").write_bytes(bytes([10, 1]))
    (folder / "class_names.txt").write_text("airplane\nbird\ncar\ncat\ndeer\ndog\nhorse\nmonkey\nship\ntruck\n")
    return arrays


def test_stl10_binary_column_major(tmp_path):
    arrays = write_stl10(tmp_path / "stl10" / "stl10_binary", np.random.default_rng(1))
    raw = (tmp_path / "stl10" / "stl10_binary" / "train_X.bin").read_bytes()
    data = load_dataset("stl10", tmp_path)
    assert data.train.images.shape == (4, 3, 96, 96) and data.image_size == 96
    assert torch.equal(data.train.images, torch.from_numpy(arrays["train"]))
    # byte (image 2, channel 1, column 70, row 5) of the file is pixel row 5, column 70
    assert data.train.images[2, 1, 5, 70] == raw[2 * 27648 + 1 * 9216 + 70 * 96 + 5]
    assert data.train.labels.tolist() == [0, 9, 2, 1] and data.test.labels.tolist() == [9, 0]
    assert data.classes[1] == "bird" and len(data.classes) == 10
    assert torch.equal(load_unlabeled_split("stl10", tmp_path), torch.from_numpy(arrays["unlabeled"]))


def test_stl10_truncated_and_missing(tmp_path):
    folder = tmp_path / "stl10_binary"
    write_stl10(folder, np.random.default_rng(2))
    (folder / "test_X.bin").write_bytes((folder / "test_X.bin").read_bytes()[:-7])
    with pytest.raises(SelfAdaptError, match="test_X.bin"):
        load_dataset("stl10", tmp_path)
    with pytest.raises(SelfAdaptError, match="put stl10_binary/"):
        load_dataset("stl10", (tmp_path / "elsewhere").mkdir() or tmp_path / "elsewhere")


# ------------------------------------------------------------------------------------------
# image folders written here


def test_imagefolder_without_train_folder_grayscale_and_resized(tmp_path):
    save_image(tmp_path / "b" / "x.png", np.full((6, 4), 200, np.uint8))
    save_image(tmp_path / "a" / "z.png", np.full((12, 8), 10, np.uint8))  # shorter sides 4, 8, 4: median 4
    save_image(tmp_path / "a" / "sub" / "y.png", np.full((6, 4), 90, np.uint8))
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    data = load_dataset(f"imagefolder:{tmp_path}")
    assert data.classes == ["a", "b"] and data.in_channels == 1 and len(data.test) == 0
    assert data.train.images.shape == (3, 1, 4, 4)  # centre squares at the median shorter side
    assert data.train.files == ["a/sub/y.png", "a/z.png", "b/x.png"]
    assert data.train.images[:, 0, 0, 0].tolist() == [90, 10, 200] and data.train.labels.tolist() == [0, 0, 1]
    assert data.test.images.shape == (0, 1, 4, 4)


def test_imagefolder_rgb_with_val_split(tmp_path):
    rgb = np.zeros((5, 5, 3), np.uint8)
    rgb[..., 0] = 255
    save_image(tmp_path / "train" / "red" / "1.png", rgb)
    save_image(tmp_path / "train" / "gray" / "1.png", np.full((5, 5), 7, np.uint8))  # mixed: all become RGB
    save_image(tmp_path / "val" / "red" / "9.png", rgb)
    save_image(tmp_path / "val" / "gray" / "9.png", np.full((5, 5), 7, np.uint8))
    data = load_dataset(f"imagefolder:{tmp_path}")
    assert data.in_channels == 3 and data.classes == ["gray", "red"]
    assert data.train.images[1, :, 2, 2].tolist() == [255, 0, 0] and data.train.images[0, :, 0, 0].tolist() == [7] * 3
    assert data.test.files == ["val/gray/9.png", "val/red/9.png"] and data.test.labels.tolist() == [0, 1]


def test_imagefolder_errors(tmp_path):
    with pytest.raises(SelfAdaptError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")
    save_image(tmp_path / "one.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(SelfAdaptError, match=f"image folder {tmp_path / 'one.png'} is a file, not a folder") as info:
        load_dataset(f"imagefolder:{tmp_path / 'one.png'}")
    assert "\n" not in str(info.value) and "does not exist" not in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SelfAdaptError, match="no class folders"):
        load_dataset(f"imagefolder:{tmp_path / 'empty'}")
    (tmp_path / "empty" / "cls").mkdir()
    with pytest.raises(SelfAdaptError, match="holds no images"):
        load_dataset(f"imagefolder:{tmp_path / 'empty'}")
    bad = tmp_path / "bad"
    save_image(bad / "train" / "a" / "0.png", np.zeros((4, 4), np.uint8))
    (bad / "train" / "a" / "1.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    with pytest.raises(SelfAdaptError, match="train/a/1.jpg"):
        load_dataset(f"imagefolder:{bad}")
    (bad / "train" / "a" / "1.jpg").unlink()
    save_image(bad / "test" / "b" / "0.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(SelfAdaptError, match="must match"):
        load_dataset(f"imagefolder:{bad}")


# ------------------------------------------------------------------------------------------
# API pieces


def test_unknown_name_lists_choices():
    with pytest.raises(SelfAdaptError, match=re.escape("choose one of cifar10, cifar100, digits, fashion-mnist, mnist, "
                                                       "stl10, svhn, csv:FILE, features:FILE.npz, "
                                                       "hf:PATH_OR_NAME[:SPLIT], imagefolder:PATH")):
        load_dataset("imagenet")


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("SELFADAPT_DATA", raising=False)
    assert default_data_dir() == Path("data")
    monkeypatch.setenv("SELFADAPT_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path


def toy_set(labels, with_files=True) -> ImageSet:
    labels = torch.as_tensor(labels, dtype=torch.int64)
    n = len(labels)
    images = torch.arange(n, dtype=torch.uint8).reshape(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    files = [f"f{i}" for i in range(n)] if with_files else None
    return ImageSet(images, labels, torch.arange(n) + 100, files)


def test_select_keeps_fields_aligned_and_checks_input():
    s = toy_set([0, 1, 2, 0, 1])
    picked = s.select([4, 0])
    assert picked.labels.tolist() == [1, 0] and picked.source_index.tolist() == [104, 100]
    assert picked.files == ["f4", "f0"] and picked.images[:, 0, 0, 0].tolist() == [4, 0]
    masked = s.select(torch.tensor([True, False, True, False, False]))
    assert masked.files == ["f0", "f2"]
    with pytest.raises(SelfAdaptError, match="indices"):
        s.select([5])
    with pytest.raises(SelfAdaptError, match="uint8"):
        ImageSet(torch.zeros(2, 1, 2, 2, dtype=torch.float64), torch.zeros(2, dtype=torch.int64), torch.arange(2))
    with pytest.raises(SelfAdaptError, match="labels"):
        ImageSet(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), torch.arange(2))


def test_class_balanced_subset_counts_seeds_and_source_index():
    labels = [0] * 50 + [1] * 30 + [2] * 4 + [3] * 40
    s = toy_set(labels, with_files=False)
    sub = class_balanced_subset(s, 23, seed=3)
    assert torch.bincount(sub.labels).tolist() == [7, 6, 4, 6]  # class 2 gives all 4, 19 = 7 + 6 + 6
    assert torch.equal(sub.source_index, torch.as_tensor(sub.images[:, 0, 0, 0], dtype=torch.int64) + 100)
    assert torch.equal(sub.source_index, sub.source_index.sort().values)  # original order kept
    assert torch.equal(class_balanced_subset(s, 23, seed=3).source_index, sub.source_index)
    assert not torch.equal(class_balanced_subset(s, 23, seed=4).source_index, sub.source_index)
    even = class_balanced_subset(s, 12, seed=0)
    assert torch.bincount(even.labels).tolist() == [3, 3, 3, 3]
    assert class_balanced_subset(s, len(s), seed=0) is s
    nested = class_balanced_subset(sub, 8, seed=1)
    assert set(nested.source_index.tolist()) <= set(sub.source_index.tolist())
    for n in (0, 3, -1):
        with pytest.raises(SelfAdaptError, match="class-balanced"):
            class_balanced_subset(s, n, seed=0)
