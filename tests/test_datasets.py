"""The dataset registry: each loader reads tiny files this test writes in the dataset's official on-disk format
(offline; torchvision's checksums are pointed at the tiny files), and every dataset's bad input (missing,
truncated, wrong format) is one line, exit 2, and nothing left behind."""

import hashlib
import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.cli import main
from benchmark.datasets import DATASETS, load_dataset
from benchmark.errors import UserError

CLASSES = 3


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _images(n, size=32, channels=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


def write_cifar(root, monkeypatch, hundred=False):
    """cifar-10-batches-py (five training batches, a test batch, batches.meta) or cifar-100-python (train,
    test, meta): pickled dicts of uint8 rows (3072 = 3 x 32 x 32, channel-major) and labels."""
    from torchvision.datasets import CIFAR10, CIFAR100

    source = CIFAR100 if hundred else CIFAR10
    folder = root / source.base_folder
    folder.mkdir(parents=True)
    key = "fine_labels" if hundred else "labels"
    train_names = [name for name, _ in source.train_list]
    files = {}
    for index, name in enumerate(train_names + [source.test_list[0][0]]):
        pictures = _images(4, seed=index)
        rows = pictures.transpose(0, 3, 1, 2).reshape(4, -1)
        with open(folder / name, "wb") as stream:
            pickle.dump({"data": rows, key: [index % CLASSES, (index + 1) % CLASSES, 2, 0]}, stream)
        files[name] = _md5(folder / name)
    with open(folder / source.meta["filename"], "wb") as stream:
        pickle.dump({source.meta["key"]: ["ant", "bee", "cat"]}, stream)
    monkeypatch.setattr(source, "train_list", [[name, files[name]] for name in train_names])
    monkeypatch.setattr(source, "test_list", [[source.test_list[0][0], files[source.test_list[0][0]]]])
    monkeypatch.setattr(source, "meta", {**source.meta, "md5": _md5(folder / source.meta["filename"])})
    return folder


def write_svhn(root, monkeypatch):
    """train_32x32.mat and test_32x32.mat: X as 32 x 32 x 3 x N, y as N x 1 with the digit 0 labelled 10."""
    from scipy.io import savemat
    from torchvision.datasets import SVHN

    root.mkdir(parents=True, exist_ok=True)
    split_list = dict(SVHN.split_list)
    for split, n in (("train", 6), ("test", 3)):
        url, name, _ = SVHN.split_list[split]
        labels = np.array([[10], [1], [2], [10], [1], [2]][:n])
        savemat(root / name, {"X": _images(n).transpose(1, 2, 3, 0), "y": labels})
        split_list[split] = [url, name, _md5(root / name)]
    monkeypatch.setattr(SVHN, "split_list", split_list)


def _idx(path, magic, array):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_fashion(root):
    """FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte: big-endian IDX files, 28 x 28 grayscale."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 6), ("t10k", 3)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", 2051, _images(n, size=28, channels=1)[..., 0])
        _idx(raw / f"{prefix}-labels-idx1-ubyte", 2049, np.arange(n) % CLASSES)
    return raw


def write_tiny_imagenet(root):
    """tiny-imagenet-200/: wnids.txt, train/<wnid>/images/<wnid>_<i>.JPEG, val/images/val_<i>.JPEG with
    val/val_annotations.txt (file, wnid, box), 64 x 64 JPEGs."""
    base = root / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819", "n01641577"]
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    lines = []
    for c, wnid in enumerate(wnids):
        (base / "train" / wnid / "images").mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((64, 64, 3), 60 * c + 10 * i, np.uint8)).save(
                base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", format="JPEG")
        Image.fromarray(np.full((64, 64, 3), 60 * c, np.uint8)).save(base / "val" / "images" / f"val_{c}.JPEG",
                                                                    format="JPEG")
        lines.append(f"val_{c}.JPEG\t{wnid}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return base


def test_every_dataset_says_its_source_classes_size_and_split():
    known = DATASETS.available()
    assert set(known) == {"cifar10", "cifar100", "svhn", "fashion_mnist", "tiny_imagenet", "digits", "imagefolder",
                          "jpegpack"}
    for name, cls in known.items():
        assert cls.paper and cls.source and cls.split and cls.image_size in (32, 64), name


@pytest.mark.parametrize("name, hundred", [("cifar10", False), ("cifar100", True)])
def test_cifar_loaders_read_the_official_pickled_batches(tmp_path, monkeypatch, name, hundred):
    write_cifar(tmp_path / "root", monkeypatch, hundred=hundred)
    dataset = load_dataset(name, data_root=tmp_path / "root", cache_dir=tmp_path / "cache", download=False)
    batches = 1 if hundred else 5  # CIFAR-10 ships five training batches, CIFAR-100 one file
    assert dataset.train_images.shape == (4 * batches, 3, 32, 32) and dataset.test_images.shape == (4, 3, 32, 32)
    assert dataset.class_names == ("ant", "bee", "cat") and dataset.train_images.dtype == torch.uint8
    first = _images(4, seed=0)[1].transpose(2, 0, 1)  # channel-major rows back to 3 x 32 x 32
    assert torch.equal(dataset.train_images[1], torch.from_numpy(first))
    assert dataset.train_labels[:4].tolist() == [0, 1, 2, 0]


def test_svhn_loader_reads_the_official_mat_files_and_maps_label_10_to_digit_0(tmp_path, monkeypatch):
    write_svhn(tmp_path / "root", monkeypatch)
    dataset = load_dataset("svhn", data_root=tmp_path / "root", cache_dir=tmp_path / "cache", download=False)
    assert dataset.train_images.shape == (6, 3, 32, 32) and dataset.test_images.shape == (3, 3, 32, 32)
    assert dataset.train_labels.tolist() == [0, 1, 2, 0, 1, 2] and dataset.num_classes == 10


def test_fashion_mnist_is_padded_to_32_and_repeated_to_three_channels(tmp_path):
    write_fashion(tmp_path / "root")
    dataset = load_dataset("fashion_mnist", data_root=tmp_path / "root", cache_dir=tmp_path / "cache",
                           download=False)
    assert dataset.train_images.shape == (6, 3, 32, 32) and dataset.test_images.shape == (3, 3, 32, 32)
    original = torch.from_numpy(_images(6, size=28, channels=1)[0, ..., 0])
    assert torch.equal(dataset.train_images[0, 1, 2:30, 2:30], original)  # pixels kept, not resampled
    assert dataset.train_images[0, :, :2].sum() == 0 and torch.equal(dataset.train_images[0, 0],
                                                                     dataset.train_images[0, 2])


def test_tiny_imagenet_reads_its_own_layout_at_64_pixels_and_the_model_ends_at_4x4(tmp_path):
    from benchmark.models import build_model

    write_tiny_imagenet(tmp_path / "root")
    dataset = load_dataset("tiny_imagenet", data_root=tmp_path / "root", cache_dir=tmp_path / "cache",
                           download=False)
    assert dataset.train_images.shape == (6, 3, 64, 64) and dataset.test_images.shape == (3, 3, 64, 64)
    assert dataset.class_names == ("n01443537", "n01629819", "n01641577")
    assert dataset.test_labels.tolist() == [0, 1, 2] and dataset.train_labels.tolist() == [0, 0, 1, 1, 2, 2]
    model = build_model("mobilenetv2_035", 3, torch.zeros(3), torch.ones(3), seed=0, image_size=64).eval()
    with torch.no_grad():
        features = model.embedder.model.forward_features(torch.zeros(1, 3, 64, 64))
    assert features.shape[-2:] == (4, 4)
    again = load_dataset("tiny_imagenet", data_root=tmp_path / "root", cache_dir=tmp_path / "cache", download=False)
    assert torch.equal(again.train_images, dataset.train_images)  # from the cache the second time


# --- bad input: one line, exit 2, nothing left behind -----------------------------------------------------------
def _truncate_one(folder, pattern):
    path = sorted(folder.rglob(pattern))[0]
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _garbage(folder, pattern):
    path = sorted(folder.rglob(pattern))[0]
    path.write_bytes(b"this is not the format at all" * 10)


CASES = {
    "cifar10 missing": ("cifar10", None, "CIFAR-10 is not under"),
    "cifar10 truncated": ("cifar10", lambda root, mp: _truncate_one(write_cifar(root, mp), "data_batch_1"),
                          "CIFAR-10 is not under"),
    "cifar100 missing": ("cifar100", None, "CIFAR-100 is not under"),
    "cifar100 wrong format": ("cifar100", lambda root, mp: _garbage(write_cifar(root, mp, True), "train"),
                              "CIFAR-100 is not under"),
    "svhn missing": ("svhn", None, "SVHN is not under"),
    "svhn truncated": ("svhn", lambda root, mp: (write_svhn(root, mp), _truncate_one(root, "test_32x32.mat")),
                       "SVHN is not under"),
    "fashion_mnist missing": ("fashion_mnist", None, "Fashion-MNIST is not under"),
    "fashion_mnist truncated": ("fashion_mnist", lambda root, mp: _truncate_one(write_fashion(root), "t10k-images*"),
                                "Fashion-MNIST is not under"),
    "tiny_imagenet missing": ("tiny_imagenet", None, "Tiny ImageNet is not under"),
    "tiny_imagenet image missing": (
        "tiny_imagenet", lambda root, mp: next(write_tiny_imagenet(root).rglob("val_1.JPEG")).unlink(),
        "validation image(s) listed but missing"),
    "tiny_imagenet wrong format": (
        "tiny_imagenet", lambda root, mp: (write_tiny_imagenet(root) / "wnids.txt").write_text("\n"),
        "is not a Tiny ImageNet folder as released"),
    "tiny_imagenet truncated image": (
        "tiny_imagenet", lambda root, mp: _truncate_one(write_tiny_imagenet(root), "val_0.JPEG"),
        "cannot decode image"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_dataset_files_are_one_line_exit_2_and_leave_nothing(case, tmp_path, monkeypatch, capsys):
    name, prepare, words = CASES[case]
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):  # no download succeeds here
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    root = tmp_path / "root"
    if prepare is not None:
        prepare(root, monkeypatch)
    before = {str(p): p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")}
    assert main(["run", "--method", "random", "--dataset", name, "--data-root", str(root), "--cache-dir",
                 str(tmp_path / "cache"), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and error.startswith("error: ") and words in error, error
    after = {str(p): p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")}
    assert after == before  # no download left half-done, no cache, no record


def test_dataset_names_and_the_imagefolder_argument(tmp_path):
    from benchmark.datasets import dataset_name

    assert dataset_name("cifar100") == "cifar100" and dataset_name("imagefolder:/x/My Data (v2)") == \
        "imagefolder:My-Data-v2"
    with pytest.raises(UserError, match="takes no ':' argument"):
        dataset_name("cifar10:/somewhere")
    assert json.dumps(dataset_name("tiny_imagenet"))
