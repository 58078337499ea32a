"""MobileNetV2 with the CIFAR stem, from timm and from torchvision, normalization as the first layer."""

import pytest
import torch

from benchmark.errors import UserError
from benchmark.models import build_model


@pytest.mark.parametrize("prefer_timm", [True, False])
def test_cifar_stem_ends_at_4x4_for_32x32_inputs(prefer_timm):
    model = build_model("mobilenetv2_050", 10, torch.zeros(3), torch.ones(3), seed=0, prefer_timm=prefer_timm)
    shapes = []
    last_conv = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    last_conv.register_forward_hook(lambda module, inputs, output: shapes.append(output.shape))
    logits = model(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 10) and shapes[0][-2:] == (4, 4)
    assert model.embed(torch.rand(2, 3, 32, 32)).shape[0] == 2


def test_normalization_is_the_first_layer():
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.2, 0.2])
    model = build_model("mobilenetv2_035", 3, mean, std, seed=0).eval()
    plain = build_model("mobilenetv2_035", 3, torch.zeros(3), torch.ones(3), seed=0).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain((x - mean[:, None, None]) / std[:, None, None]))


def test_same_seed_same_initialisation_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    a = build_model("mobilenetv2_035", 10, torch.zeros(3), torch.ones(3), seed=7)
    b = build_model("mobilenetv2_035", 10, torch.zeros(3), torch.ones(3), seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_unknown_model_is_a_clear_error():
    with pytest.raises(UserError, match="unknown model 'resnet9000'"):
        build_model("resnet9000", 10, torch.zeros(3), torch.ones(3), seed=0)
