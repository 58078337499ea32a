"""Datasets: the embedded digits, ImageFolder decoding and its cache, splits, bad directories."""

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.data import stratified_split
from benchmark.datasets import load_dataset
from benchmark.errors import UserError


def _write_folder(root, classes, per_class, size=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = torch.randint(0, 256, (size, size, 3), dtype=torch.uint8, generator=generator)
            Image.fromarray(pixels.numpy()).save(root / name / f"{i}.png")


def test_digits_are_32x32_rgb_uint8_with_a_fixed_test_split():
    first, second = load_dataset("digits"), load_dataset("digits")
    assert first.train_images.shape[1:] == (3, 32, 32) and first.train_images.dtype == torch.uint8
    assert len(first.train_labels) + len(first.test_labels) == 1797
    assert first.num_classes == 10 and first.validation_size == round(0.1 * len(first.train_labels))
    assert torch.equal(first.test_labels, second.test_labels)
    assert first.train_images.float().std() > 10  # real strokes, not a blank array


def test_validation_split_is_class_balanced_seeded_and_disjoint():
    labels = np.repeat(np.arange(4), 25)
    kept, held = stratified_split(labels, 4, 20)
    assert np.bincount(labels[held]).tolist() == [5, 5, 5, 5]
    assert len(np.intersect1d(kept, held)) == 0 and len(kept) + len(held) == 100
    assert np.array_equal(held, stratified_split(labels, 4, 20)[1])
    assert not np.array_equal(held, stratified_split(labels, 4, 20, seed=1)[1])


def test_imagefolder_with_train_and_test_is_decoded_resized_and_cached(tmp_path):
    _write_folder(tmp_path / "data" / "train", ["cat", "dog"], 5)
    _write_folder(tmp_path / "data" / "test", ["cat", "dog"], 2, seed=1)
    dataset = load_dataset(f"imagefolder:{tmp_path / 'data'}", cache_dir=tmp_path / "cache")
    assert dataset.class_names == ("cat", "dog")
    assert dataset.train_images.shape == (10, 3, 32, 32) and dataset.test_images.shape == (4, 3, 32, 32)
    assert dataset.train_labels.tolist() == [0] * 5 + [1] * 5
    cached = list((tmp_path / "cache" / "imagefolder").glob("*.safetensors"))
    assert len(cached) == 1
    again = load_dataset(f"imagefolder:{tmp_path / 'data'}", cache_dir=tmp_path / "cache")
    assert torch.equal(again.train_images, dataset.train_images)


def test_imagefolder_without_split_holds_out_a_stratified_test_set(tmp_path):
    _write_folder(tmp_path / "flat", ["a", "b"], 10)
    dataset = load_dataset(f"imagefolder:{tmp_path / 'flat'}", cache_dir=tmp_path / "cache")
    assert np.bincount(dataset.test_labels.numpy()).tolist() == [2, 2]
    assert len(dataset.train_labels) == 16


@pytest.mark.parametrize("setup, message", [
    (lambda root: None, "does not exist or is not readable"),
    (lambda root: _write_folder(root, ["only"], 3), "holds 1 class folder"),
    (lambda root: [(root / c).mkdir(parents=True) for c in "ab"], "no images"),
])
def test_bad_imagefolders_are_clear_errors(tmp_path, setup, message):
    setup(tmp_path / "bad")
    with pytest.raises(UserError, match=message):
        load_dataset(f"imagefolder:{tmp_path / 'bad'}", cache_dir=tmp_path / "cache")


def test_unknown_dataset_names_the_choices():
    with pytest.raises(UserError, match="unknown dataset 'mnist'; use one of cifar10, cifar100, digits, "
                                        "fashion_mnist, imagefolder:PATH, jpegpack:PATH, svhn, tiny_imagenet"):
        load_dataset("mnist")


def _pack(folder, out):
    """An ImageFolder's files packed as ../shared/data/cifar10-jpeg.npz is (README there): a shared header kept
    once (here the common prefix of the files), the rest concatenated."""
    import numpy as np

    classes = sorted(p.name for p in (folder / "train").iterdir())
    files = [(path, label, split) for split, part in enumerate(("train", "test")) for label, name in
             enumerate(classes) for path in sorted((folder / part / name).iterdir())]
    blobs = [path.read_bytes() for path, _, _ in files]
    common = 0
    while all(len(b) > common and b[common] == blobs[0][common] for b in blobs):
        common += 1
    offsets = np.cumsum([0] + [len(b) - common for b in blobs])
    np.savez(out, header=np.frombuffer(blobs[0][:common], dtype=np.uint8),
             payload=np.frombuffer(b"".join(b[common:] for b in blobs), dtype=np.uint8), offsets=offsets,
             labels=np.array([label for _, label, _ in files], dtype=np.uint8),
             split=np.array([split for _, _, split in files], dtype=np.uint8), classes=np.array(classes))


def test_a_jpeg_pack_is_its_folder_byte_for_byte_and_is_named_like_it(tmp_path):
    folder = tmp_path / "tiny-jpeg"
    for part, count in (("train", 6), ("test", 3)):
        generator = torch.Generator().manual_seed(count)
        for name in ("cat", "dog"):
            (folder / part / name).mkdir(parents=True)
            for i in range(count):
                pixels = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8, generator=generator)
                Image.fromarray(pixels.numpy()).save(folder / part / name / f"{i:04d}.jpg", quality=75)
    _pack(folder, tmp_path / "tiny-jpeg.npz")
    packed = load_dataset(f"jpegpack:{tmp_path / 'tiny-jpeg.npz'}", cache_dir=tmp_path / "cache")
    unpacked = load_dataset(f"imagefolder:{folder}", cache_dir=tmp_path / "cache")
    assert packed.name == unpacked.name == "imagefolder:tiny-jpeg"
    assert packed.fingerprint() == unpacked.fingerprint()  # the same images, labels, classes and name
    with pytest.raises(UserError, match="not a JPEG pack"):
        load_dataset(f"jpegpack:{tmp_path / 'tiny-jpeg' / 'train' / 'cat' / '0000.jpg'}", cache_dir=tmp_path)
