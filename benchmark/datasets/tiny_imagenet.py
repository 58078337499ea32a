"""Tiny ImageNet (Le & Yang 2015, Stanford CS231N): 64 x 64 colour images of 200 ImageNet classes, 500 train and
50 validation images per class. The official zip (`tiny-imagenet-200/`: `wnids.txt`, `words.txt`,
`train/<wnid>/images/*.JPEG`, `val/images/*.JPEG` with `val/val_annotations.txt`) is downloaded into
`--data-root` where the network allows. Its labelled validation set is the test set here (the official test
images have no labels); 10 % of train is held out for validation. Decoded once and cached (sealed)."""

from dataclasses import dataclass
from pathlib import Path

from benchmark.data import ImageDataset
from benchmark.datasets import Dataset, folders_under, offline_error, register, remove_new_empty_folders
from benchmark.datasets.imagefolder import cached_decode
from benchmark.errors import UserError

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
FOLDER = "tiny-imagenet-200"


def _listings(base: Path) -> tuple[list[str], list[list[tuple[Path, int]]]]:
    wnids = [line.strip() for line in (base / "wnids.txt").read_text().splitlines() if line.strip()]
    if len(wnids) < 2 or len(set(wnids)) != len(wnids):
        raise ValueError("wnids.txt must list two or more distinct class ids")
    label = {wnid: i for i, wnid in enumerate(wnids)}
    train = [(path, label[wnid]) for wnid in wnids
             for path in sorted((base / "train" / wnid / "images").glob("*.JPEG"))]
    test = []
    for line in (base / "val" / "val_annotations.txt").read_text().splitlines():
        fields = line.split("\t")
        if len(fields) < 2:
            continue
        if fields[1] not in label:
            raise ValueError(f"val_annotations.txt names class {fields[1]!r}, which wnids.txt does not list")
        test.append((base / "val" / "images" / fields[0], label[fields[1]]))
    if not train or not test:
        raise ValueError("no training or validation images listed")
    missing = [str(path) for path, _ in test if not path.is_file()]
    if missing:
        raise ValueError(f"{len(missing)} validation image(s) listed but missing, e.g. {missing[0]}")
    return wnids, [train, sorted(test)]


@register
@dataclass(frozen=True)
class TinyImageNet(Dataset):
    name = "tiny_imagenet"
    paper = "Le & Yang. Tiny ImageNet Visual Recognition Challenge. Stanford CS231N, 2015"
    source = URL
    classes = 200
    image_size = 64
    split = "100,000 train (10 % held out for validation) / the 10,000 labelled validation images as test"

    def load(self, *, data_root, cache_dir, download) -> ImageDataset:
        base = data_root / FOLDER
        if not (base / "wnids.txt").is_file():
            if not download:
                raise offline_error("Tiny ImageNet", data_root, "downloads are off", FOLDER)
            before = folders_under(data_root)
            try:
                from torchvision.datasets.utils import download_and_extract_archive

                download_and_extract_archive(URL, str(data_root), md5=MD5)
            except Exception as error:
                remove_new_empty_folders(data_root, before)
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise offline_error("Tiny ImageNet", data_root, reason, FOLDER) from None
        try:
            wnids, listings = _listings(base)
        except (OSError, ValueError) as error:
            raise UserError(f"{base} is not a Tiny ImageNet folder as released ({error}); delete it to download it "
                            f"again, or fix the files") from None
        (train_x, train_y), (test_x, test_y) = cached_decode(listings, base, cache_dir, self.image_size)
        return ImageDataset(self.name, train_x, train_y, test_x, test_y, tuple(wnids),
                            validation_size=round(0.1 * len(train_y)))
