"""The device-tensor training loop: batch augmentation against a per-image reference, determinism."""

import torch
import torch.nn.functional as F

from benchmark.models import build_model
from benchmark.train import TrainConfig, accuracy, augment_batch, train_model


def test_batch_augmentation_equals_a_per_image_crop_and_flip():
    images = torch.rand(16, 3, 8, 8)
    out = augment_batch(images, torch.Generator().manual_seed(0), pad=4)
    # replay the same draws, one image at a time
    generator = torch.Generator().manual_seed(0)
    dy = torch.randint(0, 9, (16,), generator=generator)
    dx = torch.randint(0, 9, (16,), generator=generator)
    flip = torch.rand(16, generator=generator) < 0.5
    padded = F.pad(images, (4, 4, 4, 4))
    for i in range(16):
        crop = padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8]
        expected = crop.flip(-1) if flip[i] else crop
        assert torch.equal(out[i], expected)
    assert flip.any() and (~flip).any() and (dx != 4).any()


def _blobs(n=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.full((n, 3, 32, 32), 60, dtype=torch.uint8)
    images[labels == 1, :, 8:24, 8:24] = 220  # class 1 has a bright square
    noise = torch.randint(0, 30, images.shape, generator=generator, dtype=torch.uint8)
    return images + noise, labels


def test_training_is_deterministic_on_cpu_and_learns():
    images, labels = _blobs()
    config = TrainConfig(epochs=8, lr=0.01, batch_size=16, augment=True)

    def trained():
        model = build_model("mobilenetv2_035", 2, torch.full((3,), 0.4), torch.full((3,), 0.25), seed=1)
        return train_model(model, images, labels, config, seed=5, purpose="t")

    first, second = trained(), trained()
    assert all(torch.equal(p, q) for p, q in zip(first.state_dict().values(), second.state_dict().values()))
    assert accuracy(first, images, labels) >= 0.9


def test_sample_weights_change_the_result():
    images, labels = _blobs(32)
    config = TrainConfig(epochs=1, lr=0.05, batch_size=16)
    weights = torch.linspace(0.1, 2.0, 32)
    models = [train_model(build_model("mobilenetv2_035", 2, torch.zeros(3), torch.ones(3), seed=1), images, labels,
                          config, seed=5, purpose="t", sample_weights=w) for w in (None, weights)]
    assert not torch.equal(models[0].head.weight, models[1].head.weight)
