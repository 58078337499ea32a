"""FGSM from the formula, torchattacks beside it, and the cross-check that fails loudly."""

import pytest
import torch
from torch import nn

from benchmark import attacks
from benchmark.attacks import CrossCheckFailed, fgsm, fgsm_robustness
from benchmark.train import accuracy
from tests.conftest import tiny_model


class Linear(nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x):
        return x.flatten(1) @ self.weight.T


def test_inhouse_fgsm_follows_the_formula_on_a_linear_model():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 12, generator=generator)
    model = Linear(weight)
    x = torch.rand(5, 3, 2, 2, generator=generator)
    y = torch.tensor([0, 1, 2, 0, 1])
    # d CE / d x = W^T (softmax(Wx) - onehot(y)), by hand
    error = (x.flatten(1) @ weight.T).softmax(1) - nn.functional.one_hot(y, 3).float()
    expected = (x + 0.1 * (error @ weight).sign().reshape(x.shape)).clamp(0, 1)
    torch.testing.assert_close(fgsm(model, x, y, 0.1), expected)


def _data(model, n=64):
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8, generator=generator)
    with torch.no_grad():
        labels = model(images.float() / 255).argmax(1)  # the model is right on every clean image
    return images, labels


def test_both_fgsm_agree_and_eps_zero_is_clean_accuracy():
    model = tiny_model(3, seed=0)
    images, labels = _data(model)
    results = fgsm_robustness(model, images, labels, [0.0, 8 / 255, 0.5], batch_size=16)
    assert [r["eps"] for r in results] == [0.0, 8 / 255, 0.5]
    assert results[0]["accuracy"] == results[0]["inhouse_accuracy"] == accuracy(model, images, labels) == 1.0
    for result in results:
        assert result["accuracy"] == result["inhouse_accuracy"] and result["max_abs_diff"] < 1e-6
    assert results[2]["accuracy"] < 0.9  # the attack does something


def test_disagreement_fails_the_run(monkeypatch):
    class Lazy:  # an "attack" that returns the clean images
        def __init__(self, model, eps):
            pass

        def __call__(self, images, labels):
            return images

    model = tiny_model(3, seed=0)
    images, labels = _data(model)
    monkeypatch.setattr(attacks.torchattacks, "FGSM", Lazy)
    with pytest.raises(CrossCheckFailed, match="FGSM cross-check failed at eps=0.50000: torchattacks 100.00%"):
        fgsm_robustness(model, images, labels, [0.5])
