"""Training methods (`benchmark.training`) and adversarial training's guard (`benchmark.overfitting`): each method
against what its paper defines on models where the answer is known in closed form, catastrophic overfitting
forced and detected, and training that resumes after a kill to the same weights and the same guard."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import UserError
from benchmark.overfitting import catastrophic_overfitting, monitor_indices
from benchmark.record import SCHEMA, EpochCheck
from benchmark.train import Guard, TrainConfig, train_model
from benchmark.training import available_training, create_training
from benchmark.training.trades import kl_per_image

EPS = 0.08


def _separable(n=200, seed=0):
    """Two classes that x1 separates with a gap of at least 0.2 (an L-infinity margin of 0.1 along x1); x2 is
    informative too but overlaps, so a model that leans on it has a smaller L-infinity margin. As 2x1x1 uint8
    "images"."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    x1 = torch.where(labels == 1, 0.6 + 0.3 * torch.rand(n, generator=generator),
                     0.1 + 0.3 * torch.rand(n, generator=generator))
    x2 = torch.where(labels == 1, 0.35 + 0.6 * torch.rand(n, generator=generator),
                     0.05 + 0.6 * torch.rand(n, generator=generator))
    images = (torch.stack([x1, x2], 1) * 255).round().to(torch.uint8)[:, :, None, None]
    return images, labels


def _linear():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(2, 2))


def _linf_margin(model, images, labels) -> float:
    """The smallest L-infinity distance of a training point to the decision boundary of a two-class linear model,
    in closed form: the signed logit difference over the L1 norm of the weight difference."""
    layer = model[1]
    dw = (layer.weight[1] - layer.weight[0]).detach()
    db = (layer.bias[1] - layer.bias[0]).detach()
    x = images.float()[:, :, 0, 0] / 255
    sign = (2 * labels - 1).float()
    return ((sign * (x @ dw + db)) / dw.abs().sum()).min().item()


def _train(name, params, images, labels, epochs=60):
    config = TrainConfig(epochs=epochs, lr=0.5, batch_size=20, momentum=0.9, nesterov=True, weight_decay=0.0,
                         augment=False, method=create_training(name, params))
    return train_model(_linear(), images, labels, config, seed=0, purpose="t")


@pytest.mark.parametrize("name, params", [("pgd-at", {"eps": EPS, "steps": 10}), ("fgsm-rs", {"eps": EPS}),
                                          ("trades", {"eps": EPS, "beta": 6.0})])
def test_adversarial_training_enlarges_a_linear_models_margin(name, params):
    images, labels = _separable()
    standard = _linf_margin(_train("standard", {}, images, labels), images, labels)
    robust = _linf_margin(_train(name, params, images, labels), images, labels)
    # standard training leans on x2 and leaves training points closer than EPS to the boundary; adversarial
    # training at EPS moves the boundary until every training point is at least EPS away (robust at EPS)
    assert standard < EPS
    assert robust >= EPS and robust > standard + 0.01


def _recording(model):
    seen = []

    def forward(x):
        seen.append(x.detach().clone())
        return model(x)
    forward.eval, forward.train = model.eval, model.train
    return forward, seen


def test_pgd_at_trains_on_the_exact_worst_case_of_a_linear_model():
    """For a linear model the inner maximum of Madry et al. is the ball's corner x - eps * s * sign(w1 - w0) (s the
    label's sign); 10 steps of 0.25 eps reach it from any start, and the loss is the cross-entropy there."""
    images, labels = _separable(20)
    model = _linear()
    x = images.float() / 255
    forward, seen = _recording(model)
    losses, _ = create_training("pgd-at", {"eps": EPS}).losses(forward, x, labels, generator=torch.Generator())
    dw = (model[1].weight[1] - model[1].weight[0]).detach()
    corner = (x - EPS * (2 * labels - 1).float()[:, None, None, None] * dw.sign()[None, :, None, None]).clamp(0, 1)
    assert torch.allclose(seen[-1], corner, atol=1e-6)
    assert torch.allclose(losses, F.cross_entropy(model(corner), labels, reduction="none"), atol=1e-6)


def test_fgsm_rs_is_one_signed_step_of_1_25_eps_from_a_uniform_start_projected():
    images, labels = _separable(20)
    model = _linear()
    x = images.float() / 255
    forward, seen = _recording(model)
    create_training("fgsm-rs", {"eps": EPS}).losses(forward, x, labels, generator=torch.Generator().manual_seed(3))
    start = (x + torch.empty_like(x).uniform_(-EPS, EPS, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    assert torch.equal(seen[0], start)  # the gradient is taken at the random start
    dw = (model[1].weight[1] - model[1].weight[0]).detach()
    ascent = -(2 * labels - 1).float()[:, None, None, None] * dw.sign()[None, :, None, None]
    expected = (x + (start + 1.25 * EPS * ascent - x).clamp(-EPS, EPS)).clamp(0, 1)
    assert torch.allclose(seen[-1], expected, atol=1e-7)
    # without the random start it is FGSM training: x + eps * sign(gradient)
    forward, seen = _recording(model)
    create_training("fgsm-rs", {"eps": EPS, "random_start": False}).losses(forward, x, labels,
                                                                            generator=torch.Generator())
    assert torch.allclose(seen[-1], (x + EPS * ascent).clamp(0, 1), atol=1e-7)


def test_trades_is_the_clean_cross_entropy_plus_beta_times_the_kl_to_its_adversarial_point():
    images, labels = _separable(20)
    model = _linear()
    x = images.float() / 255
    zero, clean_logits = create_training("trades", {"eps": EPS, "beta": 0.0}).losses(
        *_recording(model)[:1], x, labels, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(zero, F.cross_entropy(model(x), labels, reduction="none"), atol=1e-6)
    forward, seen = _recording(model)
    six, _ = create_training("trades", {"eps": EPS, "beta": 6.0}).losses(forward, x, labels,
                                                                         generator=torch.Generator().manual_seed(0))
    adversarial = seen[-1]
    assert (adversarial - x).abs().max() <= EPS + 1e-6
    kl = F.kl_div(F.log_softmax(model(adversarial), 1), F.softmax(model(x), 1), reduction="none").sum(1)
    assert torch.allclose(kl_per_image(model(x), model(adversarial)), kl, atol=1e-6)
    assert torch.allclose(six, zero + 6.0 * kl, atol=1e-5)
    assert (kl > 0).all()


def test_every_training_method_is_registered_with_its_paper():
    methods = available_training()
    assert {"standard", "fgsm-rs", "pgd-at", "trades"} <= set(methods)
    assert all(cls.paper for cls in methods.values())
    assert not methods["standard"].adversarial and methods["pgd-at"].adversarial


@pytest.mark.parametrize("name, params, words", [
    ("nope", {}, "unknown training method 'nope'"), ("fgsm-rs", {"eps": -0.1}, "eps must be in (0, 1]"),
    ("pgd-at", {"steps": 0}, "steps must be at least 1"), ("trades", {"beta": -1.0}, "beta must be non-negative"),
    ("fgsm-rs", {"rel_step": 0.0}, "rel_step must be positive")])
def test_bad_training_parameters_are_one_line_errors(name, params, words):
    with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
        create_training(name, params)


# --- catastrophic overfitting ----------------------------------------------------------------------------------
def _trajectory(*points):
    return tuple(EpochCheck(epoch=i + 1, clean=0.8, fgsm=f, pgd=p) for i, (f, p) in enumerate(points))


def test_the_overfitting_rule_fires_on_a_pgd_collapse_or_a_one_step_gap_and_not_on_noise():
    collapse = catastrophic_overfitting(_trajectory((0.5, 0.4), (0.55, 0.45), (0.6, 0.2), (0.7, 0.1)))
    assert collapse is not None and collapse.detail.startswith("epoch 3:")
    gap = catastrophic_overfitting(_trajectory((0.2, 0.1), (0.4, 0.1)))
    assert gap is not None and gap.detail.startswith("epoch 2:") and "one-step" in gap.detail
    # a PGD drop with FGSM falling as much is a worse model, not a masked one; a 10-point dip is noise
    assert catastrophic_overfitting(_trajectory((0.6, 0.5), (0.3, 0.25))) is None
    assert catastrophic_overfitting(_trajectory((0.5, 0.45), (0.45, 0.35), (0.5, 0.45))) is None


def _digits(per_class=50):
    from pathlib import Path

    from benchmark.protocol import preset
    from benchmark.run import load_protocol_data

    protocol = dataclasses.replace(preset("smoke"), train_per_class=per_class)
    data, _ = load_protocol_data(protocol, device=torch.device("cpu"), data_root=None,
                                 cache_dir=Path.home() / ".cache" / "coreset-bench")
    return protocol, data


def _guarded_training(protocol, data, params, epochs, checkpoint=None):
    method = create_training("fgsm-rs", params)
    watched = monitor_indices(len(data.val_labels), 50)
    guard = Guard(data.val_images[watched], data.val_labels[watched], method.eps)
    config = dataclasses.replace(protocol.train_config(0.05), epochs=epochs, method=method)
    model = train_model(data.build_model(protocol.model, 0), data.pool_images, data.pool_labels, config, seed=0,
                        purpose="t", guard=guard, checkpoint=checkpoint)
    return model, guard


def test_fgsm_training_without_random_start_at_a_large_eps_is_flagged_and_fgsm_rs_is_not():
    """Wong et al.: FGSM training without the random start, with a large step, overfits catastrophically (the
    model defeats FGSM, PGD still fools it); planted here on digits at 64/255 with a step of 2 eps, where PGD-10
    fools nearly every image at every epoch while FGSM's accuracy climbs. Ten epochs, not fewer: with six the
    rule fired on an Intel Xeon but not on an AMD EPYC (FGSM stayed under 25 points above PGD); with ten it fires
    from epoch 4 there and FGSM reaches 46 %."""
    protocol, data = _digits()
    _, planted = _guarded_training(protocol, data, {"eps": 64 / 255, "rel_step": 2.0, "random_start": False}, 10)
    flag = catastrophic_overfitting(tuple(planted.entries))
    assert flag is not None and flag.code == "catastrophic-overfitting"
    assert all(e.pgd <= 0.1 for e in planted.entries) and max(e.fgsm for e in planted.entries) >= 0.3
    _, normal = _guarded_training(protocol, data, {"eps": 8 / 255}, 3)
    assert [e.epoch for e in normal.entries] == [1, 2, 3]
    assert catastrophic_overfitting(tuple(normal.entries)) is None


def test_an_adversarial_training_killed_after_an_epoch_resumes_to_the_same_weights_and_guard(tmp_path, monkeypatch):
    import benchmark.train as train

    protocol, data = _digits(per_class=12)
    params = {"eps": 8 / 255}
    reference, reference_guard = _guarded_training(protocol, data, params, 2)
    real_write = train.write_checkpoint

    def write_then_die(path, value):
        real_write(path, value)
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "write_checkpoint", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        _guarded_training(protocol, data, params, 2, checkpoint=tmp_path / "t.checkpoint")
    monkeypatch.setattr(train, "write_checkpoint", real_write)
    torch.manual_seed(999)
    resumed, resumed_guard = _guarded_training(protocol, data, params, 2, checkpoint=tmp_path / "t.checkpoint")
    assert all(torch.equal(p, q) for p, q in zip(reference.state_dict().values(), resumed.state_dict().values()))
    assert resumed_guard.entries == reference_guard.entries


def test_an_adversarially_trained_run_records_its_method_guard_and_selection_rule(tmp_path):
    from benchmark.cli import main
    from benchmark.schema import load_records

    tiny = ["--preset", "smoke", "--train-per-class", "20", "--test-per-class", "5", "--epochs", "2",
            "--proxy-epochs", "1", "--fractions", "0.5", "--threads", "1"]
    assert main(["-q", "run", "--method", "least_confidence", *tiny, "--training", "trades", "--training-param",
                 "eps=8/255", "--training-param", "steps=3", "--adversarial-proxy", "--monitor-images", "10",
                 "--out", str(tmp_path)]) == 0
    (loaded,) = load_records([tmp_path])
    record = loaded.record
    assert record.preset == "smoke+custom" and record.schema == SCHEMA
    method = {"name": "trades", "params": {"eps": 8 / 255, "steps": 3, "rel_step": 2.5, "beta": 6.0}}
    assert record.protocol.training.to_json() == method == record.training.method.to_json()
    assert record.protocol.adversarial_proxy and record.protocol.monitor_images == 10
    assert record.training.step_size == pytest.approx(2.5 * 8 / 255 / 3)
    assert len(record.training.monitor) == record.training.epochs
    assert "robust accuracy" in record.training.selected_by and "10 held-out" in record.training.selected_by
    assert record.training.lr_grid[0].validation_robust_accuracy is not None


def test_the_adversarially_trained_presets_are_their_twins_with_only_the_training_changed(capsys):
    import dataclasses as dc

    from benchmark.cli import main
    from benchmark.protocol import preset

    training_fields = {"preset", "training", "adversarial_proxy", "monitor_images"}
    for name, twin in (("cifar10-cpu-at", "cifar10-cpu"), ("standard-at", "standard")):
        adversarial, clean = preset(name), preset(twin)
        assert adversarial.training.adversarial and adversarial.adversarial_proxy
        assert {f.name for f in dc.fields(adversarial)
                if getattr(adversarial, f.name) != getattr(clean, f.name)} == training_fields
        # the twins' records compare on the same headline, under settings that tell them apart
        assert adversarial.headline_eps == clean.headline_eps and adversarial.key("random", {}) != clean.key(
            "random", {})
    assert main(["presets"]) == 0
    listed = capsys.readouterr().out
    assert "training fgsm-rs at 4/255, proxy too" in listed and "training pgd-at at 8/255, proxy too" in listed
