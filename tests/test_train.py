"""The device-tensor training loop: batch augmentation against a per-image reference, determinism."""

import torch
import torch.nn.functional as F

from benchmark.models import build_model
from benchmark.storage import read_checkpoint
from benchmark.train import TrainConfig, TrainingClock, accuracy, augment_batch, train_model


def _config(**settings) -> TrainConfig:
    """A training configuration with the standard preset's optimizer settings."""
    return TrainConfig(**{"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4, **settings})


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
    # precise BN, as the smoke preset trains: after 32 steps the running batch-norm averages lag the weights, and
    # whether the eval-mode model is at chance then depends on the thread count (0.5 with one thread, 0.98 with two)
    config = _config(epochs=8, lr=0.01, batch_size=16, augment=True, precise_bn=True)

    def trained():
        model = build_model("mobilenetv2_035", 2, torch.full((3,), 0.4), torch.full((3,), 0.25), seed=1)
        return train_model(model, images, labels, config, seed=5, purpose="t")

    first, second = trained(), trained()
    assert all(torch.equal(p, q) for p, q in zip(first.state_dict().values(), second.state_dict().values()))
    assert accuracy(first, images, labels) >= 0.9


def test_sample_weights_change_the_result():
    images, labels = _blobs(32)
    config = _config(epochs=1, lr=0.05, batch_size=16)
    weights = torch.linspace(0.1, 2.0, 32)
    models = [train_model(build_model("mobilenetv2_035", 2, torch.zeros(3), torch.ones(3), seed=1), images, labels,
                          config, seed=5, purpose="t", sample_weights=w) for w in (None, weights)]
    assert not torch.equal(models[0].head.weight, models[1].head.weight)


class _Killed(Exception):
    pass


def test_a_training_interrupted_after_any_epoch_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import benchmark.train as train

    images, labels = _blobs(32)
    config = _config(epochs=3, lr=0.05, batch_size=8)
    # dropout draws from the global RNG, so resuming must restore that stream too
    fresh = lambda: build_model("mobilenetv2_035", 2, torch.zeros(3), torch.ones(3), seed=1)  # noqa: E731

    def with_dropout():
        torch.manual_seed(0)  # the extra layer's initialisation
        return torch.nn.Sequential(fresh(), torch.nn.Dropout(0.5), torch.nn.Linear(2, 2))

    for name, build in (("plain", fresh), ("dropout", with_dropout)):
        reference = train_model(build(), images, labels, config, seed=5, purpose="t").state_dict()
        for stop_after in (1, 2):
            checkpoint = tmp_path / f"{name}-{stop_after}.pt"
            saved = []
            real_write = train.write_checkpoint

            def write_then_die(path, value, stop_after=stop_after, saved=saved, real_write=real_write):
                real_write(path, value)
                saved.append(value["epoch"])
                if value["epoch"] == stop_after:
                    raise _Killed

            monkeypatch.setattr(train, "write_checkpoint", write_then_die)
            try:
                train_model(build(), images, labels, config, seed=5, purpose="t", checkpoint=checkpoint)
            except _Killed:
                pass
            monkeypatch.setattr(train, "write_checkpoint", real_write)
            torch.manual_seed(12345)  # whatever the global RNG holds now must not matter
            resumed = train_model(build(), images, labels, config, seed=5, purpose="t", checkpoint=checkpoint)
            assert saved == list(range(1, stop_after + 1))
            assert read_checkpoint(checkpoint)["epoch"] == 3
            assert all(torch.equal(p, q) for p, q in zip(reference.values(), resumed.state_dict().values()))


def test_a_resumed_training_counts_the_seconds_trained_before_the_kill(tmp_path, monkeypatch):
    from benchmark import train

    ticks = iter(range(0, 1000, 10))  # every reading of the clock is 10 s after the last
    monkeypatch.setattr(train, "perf_counter", lambda: float(next(ticks)))
    images, labels = _blobs(16)
    config = _config(epochs=3, lr=0.05, batch_size=8)
    fresh = lambda: build_model("mobilenetv2_035", 2, torch.zeros(3), torch.ones(3), seed=1)  # noqa: E731
    checkpoint = tmp_path / "run.pt"
    real_write = train.write_checkpoint

    def write_then_die(path, value):
        real_write(path, value)
        raise _Killed

    monkeypatch.setattr(train, "write_checkpoint", write_then_die)
    first = TrainingClock()
    try:  # clock read at 0 when training starts, at 10 when epoch 1 is saved: 10 s trained, then killed
        train_model(fresh(), images, labels, config, seed=5, purpose="t", checkpoint=checkpoint, clock=first)
    except _Killed:
        pass
    assert first.carried == 0.0 and read_checkpoint(checkpoint)["seconds"] == 10.0
    monkeypatch.setattr(train, "write_checkpoint", real_write)
    clock = TrainingClock()
    # the new process reads 20 at its start, 30 and 40 after epochs 2 and 3: 10 s carried + 20 s here
    train_model(fresh(), images, labels, config, seed=5, purpose="t", checkpoint=checkpoint, clock=clock)
    assert clock.carried == 10.0 and read_checkpoint(checkpoint)["seconds"] == 30.0


def test_a_damaged_or_foreign_checkpoint_means_training_from_the_start(tmp_path):
    images, labels = _blobs(16)
    config = _config(epochs=1, lr=0.05, batch_size=8)
    fresh = lambda: build_model("mobilenetv2_035", 2, torch.zeros(3), torch.ones(3), seed=1)  # noqa: E731
    reference = train_model(fresh(), images, labels, config, seed=5, purpose="t").state_dict()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(b"PK\x03\x04 not a whole file")
    foreign = tmp_path / "foreign.pt"
    train_model(fresh(), images, labels, _config(epochs=1, lr=0.5, batch_size=8), seed=5, purpose="t",
                checkpoint=foreign)
    for checkpoint in (truncated, foreign):
        model = train_model(fresh(), images, labels, config, seed=5, purpose="t", checkpoint=checkpoint)
        assert all(torch.equal(p, q) for p, q in zip(reference.values(), model.state_dict().values()))
