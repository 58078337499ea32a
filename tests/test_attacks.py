"""The attacks, pinned to their definitions where the answer is known by hand (a linear model: the smallest
L-infinity perturbation that changes its decision is min_j (z_y - z_j) / ||w_y - w_j||_1, and the best
L-infinity and L2 perturbations have closed forms), checked against their independent references, and
shown to fail loudly when an implementation is broken."""


import numpy as np
import pytest
import torch
from torch import nn

from benchmark import attacks
from benchmark.attacks import available_attacks, bucket_floor, bucket_size, create_attack
from benchmark.errors import UserError
from benchmark.evaluation import CrossCheckFailed, build, cross_check, evaluate
from benchmark.record import AttackSpec, pack_radii, robust_beyond, unpack_mask, unpack_radii
from tests.conftest import tiny_model

EPS_SCALE = 1 / 255


class Linear(nn.Module):
    def __init__(self, weight, bias=None):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(len(weight)) if bias is None else bias)

    def forward(self, x):
        return x.flatten(1) @ self.weight.T + self.bias


def _linear_case(classes=4, n=12, seed=0):
    """A linear model, images in the middle of [0, 1] (so the box never binds at small eps), labels = its
    predictions (every image is right when clean)."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(classes, 12, generator=generator)
    model = Linear(weight).eval()
    images = 0.5 + 0.02 * torch.rand(n, 3, 2, 2, generator=generator)
    with torch.no_grad():
        labels = model(images).argmax(1)
    return model, images, labels


def _threshold(model, images, labels):
    """Per image, the smallest L-infinity eps at which some perturbation changes the decision."""
    with torch.no_grad():
        logits = model(images)
    weight = model.weight.detach()
    out = []
    for i, y in enumerate(labels.tolist()):
        out.append(min((logits[i, y] - logits[i, j]).item() / (weight[y] - weight[j]).abs().sum().item()
                       for j in range(len(weight)) if j != y))
    return torch.tensor(out)


LINF = ["fgsm", "bim", "pgd", "apgd", "apgd-t"]


@pytest.mark.parametrize("name", LINF)
def test_linf_attacks_fool_exactly_the_images_the_closed_form_says(name):
    model, images, labels = _linear_case()
    threshold = _threshold(model, images, labels)
    attack = create_attack(name, {"steps": 30} if name in ("pgd", "apgd", "apgd-t") else {})
    for i in range(len(images)):
        x, y = images[i:i + 1], labels[i:i + 1]
        for factor, fooled in ((0.9, False), (1.1, True)):
            eps = factor * threshold[i].item()
            outcome = attack.perturb(model, x, y, eps, generator=torch.Generator().manual_seed(i))
            assert bool(~outcome.robust[0]) == fooled, (name, i, factor)
            assert (outcome.adversarial - x).abs().max() <= eps + 1e-6


def test_fgsm_is_the_formula():
    model, images, labels = _linear_case(classes=2)
    eps = 0.01
    outcome = create_attack("fgsm").perturb(model, images, labels, eps, generator=torch.Generator())
    # d CE / d x has the sign of -(w_y - w_other): FGSM moves every pixel by eps against the margin
    direction = torch.stack([model.weight[1 - y] - model.weight[y] for y in labels.tolist()]).detach()
    expected = (images + eps * direction.sign().reshape(images.shape)).clamp(0, 1)
    torch.testing.assert_close(outcome.adversarial, expected)


@pytest.mark.parametrize("name, params", [("bim", {}), ("pgd", {"steps": 10})])
def test_iterative_linf_attacks_reach_the_optimal_corner_of_the_ball(name, params):
    # for a two-class linear model the loss is largest at x - eps sign(w_y - w_other): BIM (4 steps of 1/255
    # at eps 4/255) and PGD (2.5 eps of steps from anywhere in the ball) must end exactly there
    model, images, labels = _linear_case(classes=2)
    eps = 4 / 255
    outcome = create_attack(name, params).perturb(model, images, labels, eps, generator=torch.Generator(),
                                                  early_stop=False)
    direction = torch.stack([model.weight[1 - y] - model.weight[y] for y in labels.tolist()]).detach()
    corner = (images + eps * direction.sign().reshape(images.shape)).clamp(0, 1)
    fooled = ~outcome.final_correct
    torch.testing.assert_close(outcome.adversarial[~fooled], corner[~fooled], atol=1e-6, rtol=0)


def test_pgd_l2_converges_to_the_optimal_l2_perturbation():
    # for a two-class linear model the loss is largest at x - eps (w_y - w_o) / ||w_y - w_o||_2; steps of
    # eps / 4 shrink the random start's part across that direction by at least 4/5 a step once at the boundary
    model, images, labels = _linear_case(classes=2)
    eps = 0.05
    outcome = create_attack("pgd-l2", {"steps": 100, "rel_step": 25}).perturb(model, images, labels, eps,
                                                              generator=torch.Generator().manual_seed(0),
                                                              early_stop=False)
    direction = torch.stack([model.weight[1 - y] - model.weight[y] for y in labels.tolist()]).detach()
    optimum = images + eps * (direction / direction.norm(dim=1, keepdim=True)).reshape(images.shape)
    torch.testing.assert_close(outcome.adversarial, optimum, atol=1e-4, rtol=0)
    assert ((outcome.adversarial - images).flatten(1).norm(dim=1) <= eps + 1e-6).all()


def test_bim_takes_the_papers_number_of_steps():
    attack = create_attack("bim")
    assert [attack.steps_for(e * EPS_SCALE) for e in (1, 2, 4, 8, 16)] == [1, 2, 5, 10, 20]
    assert create_attack("bim", {"steps": 7}).steps_for(16 * EPS_SCALE) == 7


def test_targeted_dlr_is_the_papers_formula():
    from benchmark.attacks import targeted_dlr_loss

    logits = torch.tensor([[5.0, 3.0, 1.0, 0.0, -1.0], [0.0, 4.0, 2.0, 1.0, 3.0]])
    labels, targets = torch.tensor([0, 1]), torch.tensor([2, 4])
    # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2), z sorted decreasingly
    expected = torch.tensor([-(5 - 1) / (5 - (1 + 0) / 2), -(4 - 3) / (4 - (2 + 1) / 2)])
    torch.testing.assert_close(targeted_dlr_loss(logits, labels, targets), expected)
    shifted = targeted_dlr_loss(3 * logits + 7, labels, targets)  # invariant to shifting and scaling, as DLR
    torch.testing.assert_close(shifted, expected)


def test_apgd_t_aims_at_the_ranked_classes_in_order(monkeypatch):
    """Target k is the class the clean logits rank (k + 1)-th, each later target only on the survivors."""
    import benchmark.attacks.apgd_t as apgd_t

    model = tiny_model(5, seed=3)
    images, labels = _right(model, 12)
    calls = []

    def spy(model, images, labels, eps, **kwargs):
        calls.append((len(images), kwargs["targets"].clone()))
        robust = torch.arange(len(images)) % 2 == 0  # fools every other image of each round
        return attacks.Outcome(images.clone(), robust, robust.clone())

    monkeypatch.setattr(apgd_t, "apgd", spy)
    outcome = create_attack("apgd-t", {"targets": 3}).perturb(model, images, labels, 8 / 255,
                                                              generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ranked = model(images).argsort(dim=1, descending=True)
    assert [n for n, _ in calls] == [12, 6, 3]
    survivors = torch.arange(12)
    for rank, (_, targets) in enumerate(calls, start=1):
        assert torch.equal(targets, ranked[survivors, rank])
        survivors = survivors[::2]
    assert int(outcome.robust.sum()) == 2


def test_apgd_checkpoints_follow_the_paper():
    from benchmark.attacks.apgd import checkpoints

    assert sorted(checkpoints(100)) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert sorted(checkpoints(20)) == [5, 9, 12, 14, 16, 18, 19, 20]


@pytest.mark.parametrize("name", ["bim", "pgd", "pgd-l2", "apgd", "apgd-t"])
def test_early_stop_changes_nothing_but_the_work(name):
    model = tiny_model(5, seed=3)
    images, labels = _right(model, 48)
    attack = create_attack(name, {"steps": 8} if name != "bim" else {})
    eps = 0.5 if name == "pgd-l2" else 8 / 255
    fast = attack.perturb(model, images, labels, eps, generator=torch.Generator().manual_seed(1))
    full = attack.perturb(model, images, labels, eps, generator=torch.Generator().manual_seed(1), early_stop=False)
    assert torch.equal(fast.robust, full.robust)
    assert (~fast.robust).any() and fast.robust.any()  # the case is not trivial
    assert not (full.final_correct & ~full.robust).any()  # fooled once is fooled, whatever the final iterate


def test_gpu_batch_buckets_bound_the_shapes_and_the_padding():
    sizes = [bucket_size(n) for n in range(1, 1025)]
    assert all(n <= size < n * 3 / 2 or size == n for n, size in enumerate(sizes, start=1))
    assert len(set(sizes)) == 20  # so cuDNN builds plans for 20 batch shapes at most, once each
    assert all(bucket_size(size) == size for size in sizes)


def test_a_gpu_attack_batch_is_the_largest_bucket_that_fits():
    buckets = sorted({bucket_size(n) for n in range(1, 2049)})
    assert buckets[:8] == [1, 2, 3, 4, 6, 8, 12, 16]
    for count in range(1, 2049):
        assert bucket_floor(count) == max(size for size in buckets if size <= count)
    assert (bucket_floor(281), bucket_floor(496), bucket_floor(1024)) == (256, 384, 1024)


@pytest.mark.parametrize("name", ["fgsm", "bim", "pgd", "pgd-l2", "apgd", "apgd-t"])
def test_padding_the_batch_changes_no_outcome(monkeypatch, name):
    """The padding a GPU gets (copies of an image fill the batch up to its bucket), forced on the CPU: every
    image's outcome and adversarial image are what they are without it."""
    model = tiny_model(5, seed=3).double()
    images, labels = _right(model, 37)
    images = images.double()
    attack = create_attack(name, {"steps": 8} if name in ("pgd", "pgd-l2", "apgd", "apgd-t") else {})
    eps = 0.2 if name == "pgd-l2" else 8 / 255
    plain = attack.perturb(model, images, labels, eps, generator=torch.Generator().manual_seed(1))
    calls = []
    monkeypatch.setattr(attacks, "pads_batches", lambda batch: calls.append(len(batch)) or True)
    padded = attack.perturb(model, images, labels, eps, generator=torch.Generator().manual_seed(1))
    assert any(bucket_size(n) > n for n in calls)  # the padding did happen
    assert torch.equal(plain.robust, padded.robust) and (~plain.robust).any() and plain.robust.any()
    assert torch.allclose(plain.adversarial, padded.adversarial, atol=1e-12)


def _right(model, n, seed=1, size=(3, 4, 4)):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, *size, generator=generator)
    with torch.no_grad():
        labels = model(images).argmax(1)
    return images, labels


@pytest.mark.parametrize("name, eps", [("fgsm", 8), ("bim", 4), ("pgd", 4), ("pgd-l2", None), ("apgd", 4),
                                       ("apgd-t", 4)])
def test_in_house_and_reference_agree(name, eps):
    model = tiny_model(5, seed=3)
    images, labels = _right(model, 40)
    uint8 = (images * 255).round().to(torch.uint8)
    attack = create_attack(name, {"steps": 10} if name in ("pgd", "pgd-l2", "apgd", "apgd-t") else {})
    eps = 0.4 if eps is None else eps * EPS_SCALE
    result = cross_check(model, attack, uint8, labels, np.arange(40), eps, seed=0)
    assert result.images == 40 and 0 < result.accuracy < 1
    if attack.tolerance_images == 0:  # same formula, same start: identical, image by image
        assert result.disagreements == 0 and result.accuracy == result.reference_accuracy
    else:
        assert abs(result.accuracy - result.reference_accuracy) * 40 <= attack.tolerance_images


@pytest.mark.parametrize("name", ["fgsm", "bim", "pgd", "pgd-l2", "apgd", "apgd-t"])
def test_a_broken_reference_fails_the_run(monkeypatch, name):
    model = tiny_model(5, seed=3)
    images, labels = _right(model, 40)
    uint8 = (images * 255).round().to(torch.uint8)
    attack = create_attack(name)
    monkeypatch.setattr(type(attack), "reference_perturb", lambda self, model, x, y, eps, seed: x)  # attacks nothing
    with pytest.raises(CrossCheckFailed, match=f"{name} cross-check failed at eps="):
        cross_check(model, attack, uint8, labels, np.arange(40), 0.5, seed=0)


def test_a_broken_in_house_projection_fails_the_run(monkeypatch):
    import benchmark.attacks.pgd as pgd

    model = tiny_model(5, seed=3)
    images, labels = _right(model, 40)
    uint8 = (images * 255).round().to(torch.uint8)
    monkeypatch.setattr(pgd, "linf_clip", lambda adversarial, clean, eps: adversarial.clamp(0, 1))  # no ball
    with pytest.raises(CrossCheckFailed, match="pgd cross-check failed"):
        cross_check(model, create_attack("pgd", {"steps": 10}), uint8, labels, np.arange(40), 2 / 255, seed=0)


def test_autoattack_fools_exactly_above_the_closed_form_and_agrees_with_the_reference():
    model, images, labels = _linear_case(classes=4, n=6)
    threshold = _threshold(model, images, labels)
    attack = create_attack("autoattack", {"steps": 20, "queries": 200})
    ordered = threshold.sort().values  # halfway between two thresholds: no image sits on the boundary, where
    eps = float(ordered[2] + ordered[3]) / 2  # float32 rounding of the projection decides (the median did)
    outcome = attack.perturb(model, images, labels, eps, generator=torch.Generator().manual_seed(0))
    assert torch.equal(~outcome.robust, threshold < eps)
    uint8 = (images * 255).round().to(torch.uint8)  # cross_check takes 8-bit images, as a run has them
    with torch.no_grad():
        labels = model(uint8.float() / 255).argmax(1)
    result = cross_check(model, attack, uint8, labels, np.arange(len(images)), eps, seed=0)
    assert abs(result.accuracy - result.reference_accuracy) * len(images) <= attack.tolerance_images


def test_every_registered_attack_cites_its_paper_and_reference():
    for name, cls in available_attacks().items():
        module = __import__(cls.__module__, fromlist=["_"])
        assert cls.paper and cls.reference and module.__doc__ and "ross-check" in module.__doc__, name


@pytest.mark.parametrize("name, params, message", [
    ("nope", {}, "unknown attack 'nope'; known attacks: apgd, apgd-t, autoattack"),
    ("pgd", {"steps": "0"}, "steps and restarts must be at least 1"),
    ("pgd", {"rel_step": "nan"}, "must be a finite number"),
    ("bim", {"step": "-1"}, "step must be positive"),
    ("apgd", {"norm": "L1"}, "norm must be one of Linf, L2"),
    ("apgd", {"losses": "ce,hinge"}, "losses must be a comma-separated list of ce and dlr"),
    ("autoattack", {"queries": "0"}, "steps and queries must be at least 1"),
    ("pgd", {"steps": "1000000000"}, "steps 1,000,000,000 is more than the 100,000 this benchmark runs"),
    ("autoattack", {"queries": "99999999"}, "queries 99,999,999 is more than the 1,000,000"),
])
def test_bad_attack_parameters_fail_when_built(name, params, message):
    with pytest.raises(UserError, match=message):
        create_attack(name, params)


def test_evaluate_counts_robust_only_when_right_clean_and_keeps_the_worst_case_per_image():
    model = tiny_model(5, seed=3)
    generator = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (64, 3, 4, 4), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 5, (64,), generator=generator)  # many are wrong when clean
    suite = [AttackSpec("fgsm", {}, (0.0, 8 / 255, 0.3)), AttackSpec("pgd", {"steps": 5}, (8 / 255, 0.3))]
    result = evaluate(model, images, labels, suite, seed=0, batch_size=16, cross_check_images=8, gallery=3)
    clean = unpack_mask(result.evaluation.clean_correct, 64)
    with torch.no_grad():
        expected = (model(images.float() / 255).argmax(1) == labels).numpy()
    assert np.array_equal(clean, expected) and 0.1 < clean.mean() < 0.9
    assert result.clean_accuracy == pytest.approx(expected.mean())
    by = {(a.name, a.eps): a for a in result.attacks}
    assert by[("fgsm", 0.0)].accuracy == pytest.approx(expected.mean())  # eps 0 is clean accuracy
    for entry in result.attacks:
        robust = unpack_mask(entry.robust, 64)
        assert not (robust & ~clean).any()  # never robust when wrong clean
        assert entry.cross_check.images == 8
    for worst in result.worst_case:
        robust = unpack_mask(worst.robust, 64)
        for name in worst.attacks:
            assert not (robust & ~unpack_mask(by[(name, worst.eps)].robust, 64)).any()
    assert {w.eps for w in result.worst_case} == {0.0, 8 / 255, 0.3}
    checks = {(c.check, c.attack) for c in result.checks}
    assert {("eps0", "fgsm"), ("eps0", "pgd"), ("large-eps", "pgd"), ("below-fgsm", "pgd"), ("monotone", "pgd"),
            ("worst-case", "")} <= checks
    assert all(c.passed for c in result.checks if c.check in ("eps0", "worst-case"))
    gallery = result.gallery
    assert gallery["clean"].shape == (3, 3, 4, 4) and len(gallery["eps"]) == 2


def _right_uint8(model, count: int):
    """`count` 8-bit images, as a run holds them, each labelled with the model's own prediction."""
    images, _ = _right(model, count)
    uint8 = (images * 255).round().to(torch.uint8)
    with torch.no_grad():
        return uint8, model(uint8.float() / 255).argmax(1)


def test_a_masking_attack_is_flagged_not_fixed(monkeypatch):
    """An attack whose images move less as eps grows (its accuracy rises with eps, stays above FGSM and leaves
    images robust at 64/255: a gradient-masking signature) fails the sanity checks, which are recorded."""
    from benchmark.attacks import Outcome
    from benchmark.attacks.fgsm import FGSM
    from benchmark.attacks.pgd import PGD

    def weak(self, model, images, labels, eps, *, generator, early_stop=True):
        step = 0.3 * max(0.0, 0.35 - eps)  # inside the ball, and smaller the larger eps is
        (outcome,) = FGSM().perturb_grid(model, images, labels, [step], generators=[generator])
        return Outcome(outcome.adversarial, outcome.robust, outcome.robust.clone())

    monkeypatch.setattr(PGD, "perturb", weak)
    model = tiny_model(5, seed=3)
    uint8, labels = _right_uint8(model, 40)
    suite = [AttackSpec("fgsm", {}, (0.1, 0.3)), AttackSpec("pgd", {"steps": 5}, (0.1, 0.3))]
    result = evaluate(model, uint8, labels, suite, seed=0, batch_size=16, cross_check_images=0, gallery=0)
    failed = {(c.check, c.attack) for c in result.checks if not c.passed}
    assert {("monotone", "pgd"), ("large-eps", "pgd")} <= failed
    pgd = {a.eps: a.accuracy for a in result.attacks if a.name == "pgd"}
    assert pgd[0.3] > pgd[0.1]


# parameters that keep each attack cheap on a few images; an attack not named here runs with its defaults
CHEAP = {"pgd": {"steps": 3}, "pgd-l2": {"steps": 3}, "bim": {"steps": 3}, "apgd": {"steps": 5},
         "apgd-t": {"steps": 3, "targets": 2},
         "autoattack": {"steps": 3, "queries": 20}}


@pytest.mark.parametrize("name", sorted(available_attacks()))
def test_every_attack_and_its_cross_check_run_on_the_harness_model_and_layout(name):
    """The model the harness trains (MobileNetV2 from `build_model`, channels_last after `prepare`) and the
    images it attacks (uint8 on the device, made float by the harness): every registered attack and its
    reference must run there, not only on toy contiguous tensors (torchattacks' PGDL2 `.view`s a channels_last
    gradient and failed only after a whole training)."""
    from benchmark.models import build_model
    from benchmark.train import prepare

    model = prepare(build_model("mobilenetv2_035", 10, torch.full((3,), 0.5), torch.full((3,), 0.25), seed=0,
                                image_size=16), torch.device("cpu")).eval()
    convolutions = [p for p in model.parameters() if p.dim() == 4 and p.shape[2] > 1]
    assert convolutions and all(p.is_contiguous(memory_format=torch.channels_last) for p in convolutions)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8, generator=generator)
    with torch.no_grad():
        labels = model(images.float() / 255).argmax(1)  # all right when clean: every image is attacked
    threat = create_attack(name, CHEAP.get(name, {})).threat
    eps = (2 / 255, 8 / 255) if threat == "Linf" else (0.25, 0.5)
    result = evaluate(model, images, labels, [AttackSpec(name, CHEAP.get(name, {}), eps)], seed=0, batch_size=8,
                      cross_check_images=4, gallery=2)
    entries = [entry for entry in result.attacks if entry.name == name]
    assert [entry.eps for entry in entries] == list(eps)
    assert all(entry.cross_check.images == 4 for entry in entries)


def _suite_with_planted_pgd(monkeypatch, planted):
    """evaluate() on a tiny model with FGSM and a PGD whose perturb_grid is `planted` (a misbehaving plug-in)."""
    from benchmark.attacks.pgd import PGD

    monkeypatch.setattr(PGD, "perturb_grid", planted)
    model = tiny_model(5, seed=3)
    uint8, labels = _right_uint8(model, 40)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    suite = [AttackSpec("pgd", {"steps": 3}, (0.05, 0.2)), AttackSpec("fgsm", {}, (0.05, 0.2))]
    result = evaluate(model, uint8, labels, suite, seed=0, batch_size=16, cross_check_images=0, gallery=0)
    return model, before, result


def test_an_attack_that_changes_the_model_fails_and_nothing_after_it_sees_the_change(monkeypatch):
    def vandal(self, model, images, labels, eps_values, *, generators, early_stop=True):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(0)  # every later attack would meet a constant model
        return [attacks.Outcome(images.clone(), torch.ones(len(images), dtype=torch.bool),
                                torch.ones(len(images), dtype=torch.bool)) for _ in eps_values]

    model, before, result = _suite_with_planted_pgd(monkeypatch, vandal)
    (failure,) = result.failures
    assert failure.name == "pgd" and "changed the model's weights" in failure.reason
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # put back
    fgsm = [a for a in result.attacks if a.name == "fgsm"]
    assert len(fgsm) == 2 and fgsm[1].accuracy < result.clean_accuracy  # FGSM ran on the real model


@pytest.mark.parametrize("defect, words", [
    ("outside the ball", "outside its eps-ball"),
    ("outside [0, 1]", "pixels outside [0, 1]"),
    ("nan", "NaN or infinite"),
    ("wrong shape", "not images of shape"),
])
def test_an_attack_whose_images_break_the_threat_model_is_refused(monkeypatch, defect, words):
    def cheat(self, model, images, labels, eps_values, *, generators, early_stop=True):
        outcomes = []
        for eps in eps_values:
            adversarial = {"outside the ball": (images + 2 * eps).clamp(0, 1), "outside [0, 1]": images * 1.5 - 0.2,
                           "nan": images.masked_fill(images > 0.5, float("nan")), "wrong shape": images[:, :1]}[defect]
            outcomes.append(attacks.Outcome(adversarial, torch.zeros(len(images), dtype=torch.bool),
                                            torch.zeros(len(images), dtype=torch.bool)))
        return outcomes

    _, _, result = _suite_with_planted_pgd(monkeypatch, cheat)
    (failure,) = result.failures
    assert failure.name == "pgd" and words in failure.reason
    assert {a.name for a in result.attacks} == {"fgsm"}


def test_the_harness_reads_the_images_itself_and_an_attack_that_misreports_is_caught(monkeypatch):
    """A plug-in that returns FGSM's images but reports every image robust: the images fool the model, so the
    harness counts them fooled, and the self-report check fails."""
    from benchmark.attacks.fgsm import FGSM

    def liar(self, model, images, labels, eps_values, *, generators, early_stop=True):
        outcomes = FGSM().perturb_grid(model, images, labels, eps_values, generators=generators)
        return [attacks.Outcome(o.adversarial, torch.ones_like(o.robust), torch.ones_like(o.robust))
                for o in outcomes]

    _, _, result = _suite_with_planted_pgd(monkeypatch, liar)
    pgd = {a.eps: a for a in result.attacks if a.name == "pgd"}
    fgsm = {a.eps: a for a in result.attacks if a.name == "fgsm"}
    assert pgd[0.2].robust == fgsm[0.2].robust and pgd[0.2].accuracy < result.clean_accuracy
    (report,) = [c for c in result.checks if c.check == "self-report" and c.attack == "pgd"]
    assert not report.passed
    assert all(c.passed for c in result.checks if c.check == "self-report" and c.attack == "fgsm")


def test_the_gallery_shows_right_images_of_different_classes_at_the_headline_eps():
    model = tiny_model(5, seed=3)
    generator = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (64, 3, 4, 4), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 5, (64,), generator=generator)
    suite = [AttackSpec("pgd", {"steps": 3}, (2 / 255, 4 / 255, 8 / 255, 16 / 255))]
    result = evaluate(model, images, labels, suite, seed=0, batch_size=16, cross_check_images=0, gallery=4,
                      headline_eps=4 / 255)
    shown = result.gallery
    positions = shown["positions"]
    clean = unpack_mask(result.evaluation.clean_correct, 64)
    assert clean[positions].all()  # an image wrong when clean shows no attack
    assert len(set(labels[torch.as_tensor(positions)].tolist())) == min(4, len(set(labels[clean].tolist())))
    assert shown["eps"].tolist() == [4 / 255, 16 / 255]  # the headline eps, then the largest
    assert np.array_equal(shown["clean"], images[torch.as_tensor(positions)].numpy())
    moved = np.abs(shown["adversarial_0"].astype(int) - shown["clean"].astype(int)).max()
    assert 0 < moved <= 4 + 1  # inside the 4/255 ball, after rounding to 8 bits


def test_an_image_outcome_does_not_depend_on_its_batch():
    """Random starts are drawn per image (its own seed), so PGD's, PGD-L2's, APGD's and APGD-T's outcome for an
    image is the same in batches of 5 and of 40."""
    model = tiny_model(5, seed=3)
    uint8, labels = _right_uint8(model, 40)
    suite = [AttackSpec("pgd", {"steps": 3, "restarts": 2}, (0.05, 0.2)), AttackSpec("apgd", {"steps": 4},
                                                                                        (0.05, 0.2)),
             AttackSpec("apgd-t", {"steps": 4, "targets": 2}, (0.05, 0.2)),
             AttackSpec("pgd-l2", {"steps": 3}, (0.5, 1.0))]
    small, large = (evaluate(model, uint8, labels, suite, seed=0, batch_size=size, cross_check_images=0, gallery=0)
                    for size in (5, 40))
    assert [(a.name, a.eps, a.robust) for a in small.attacks] == [(a.name, a.eps, a.robust) for a in large.attacks]
    assert 0 < large.attacks[0].accuracy < large.clean_accuracy  # the attacks fool some images, not all


def test_a_cascade_finds_the_worst_case_of_the_whole_suite_image_by_image_for_less_work(monkeypatch):
    """Each attack after the first runs only on the images every earlier one left robust, eps by eps; the worst
    case is the whole suite's, image by image. The cascaded entries say so, and fewer images are attacked."""
    from benchmark.attacks import iterate as plain_iterate

    model = tiny_model(5, seed=3)
    uint8, labels = _right_uint8(model, 40)
    suite = [AttackSpec("fgsm", {}, (0.05, 0.2)), AttackSpec("bim", {"steps": 3}, (0.05, 0.2)),
             AttackSpec("pgd", {"steps": 3, "restarts": 2}, (0.05, 0.2)), AttackSpec("apgd", {"steps": 4},
                                                                                        (0.05, 0.2)),
             AttackSpec("apgd-t", {"steps": 4, "targets": 2}, (0.05, 0.2))]
    attacked = []

    def counting(model, images, *args, **kwargs):
        attacked.append(len(images))
        return plain_iterate(model, images, *args, **kwargs)

    monkeypatch.setattr("benchmark.attacks.bim.iterate", counting)
    monkeypatch.setattr("benchmark.attacks.pgd.iterate", counting)
    whole = evaluate(model, uint8, labels, suite, seed=0, batch_size=16, cross_check_images=0, gallery=0)
    work_whole, attacked[:] = sum(attacked), []
    cascade = evaluate(model, uint8, labels, suite, seed=0, batch_size=16, cross_check_images=0, gallery=0,
                       cascade=True)
    assert [(w.eps, w.robust) for w in cascade.worst_case] == [(w.eps, w.robust) for w in whole.worst_case]
    assert 0 < cascade.worst_case[0].accuracy < cascade.clean_accuracy
    assert [a.cascaded for a in cascade.attacks] == [None, None] + [True] * 8
    assert sum(attacked) < work_whole


def test_radii_reproduce_the_worst_case_of_the_suite_image_by_image():
    """Each image's radius is the smallest eps at which an attack fooled it (0 when wrong clean): the worst case at
    every eps is exactly the images whose radius is above it, every image an attack fooled at eps has a radius of
    at most eps, and the worst case never rises with eps."""
    model = tiny_model(5, seed=3)
    generator = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (64, 3, 4, 4), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 5, (64,), generator=generator)  # many are wrong when clean
    grid = (2 / 255, 8 / 255, 0.3)
    suite = [AttackSpec("fgsm", {}, grid), AttackSpec("pgd", {"steps": 5}, grid)]
    result = evaluate(model, images, labels, suite, seed=0, batch_size=16, cross_check_images=0, gallery=0)
    clean = unpack_mask(result.evaluation.clean_correct, 64)
    radii = unpack_radii(result.evaluation.radii, 64)
    assert (radii[~clean] == 0).all() and set(radii[clean].tolist()) <= {*unpack_radii(pack_radii(grid), 3), np.inf}
    for worst in result.worst_case:
        assert np.array_equal(unpack_mask(worst.robust, 64), robust_beyond(radii, worst.eps))
    for entry in result.attacks:
        fooled = clean & ~unpack_mask(entry.robust, 64)
        assert not robust_beyond(radii, entry.eps)[fooled].any()  # radius at most eps (in the stored units)
    accuracies = [w.accuracy for w in result.worst_case]
    assert accuracies == sorted(accuracies, reverse=True) and len(set(radii[clean].tolist())) >= 2


def test_an_image_fooled_at_a_small_eps_is_fooled_at_every_larger_one(monkeypatch):
    """A planted PGD that gives up above eps 0.1 (returns the clean images): its own mask at 0.2 says robust, but
    an image it fooled within 0.05 is fooled within 0.2 as well, and the worst case says so."""
    from benchmark.attacks.pgd import PGD

    honest = PGD.perturb_grid

    def gives_up(self, model, images, labels, eps_values, *, generators, early_stop=True, seeds=None):
        outcomes = honest(self, model, images, labels, eps_values, generators=generators, seeds=seeds)
        return [o if eps < 0.1 else attacks.Outcome(images.clone(), torch.ones_like(o.robust),
                                                   torch.ones_like(o.robust))
                for eps, o in zip(eps_values, outcomes)]

    monkeypatch.setattr(PGD, "perturb_grid", gives_up)
    model = tiny_model(5, seed=3)
    uint8, labels = _right_uint8(model, 40)
    result = evaluate(model, uint8, labels, [AttackSpec("pgd", {"steps": 3}, (0.05, 0.2))], seed=0, batch_size=16,
                      cross_check_images=0, gallery=0)
    small, large = result.attacks
    assert large.accuracy == result.clean_accuracy > small.accuracy  # its own mask at 0.2: nothing fooled
    worst = {w.eps: unpack_mask(w.robust, 40) for w in result.worst_case}
    assert np.array_equal(worst[0.2], worst[0.05]) and worst[0.2].sum() < 40


def test_cross_checks_run_at_the_chosen_eps_only_and_clean_accuracy_on_the_whole_test_split():
    model = tiny_model(5, seed=3)
    uint8, labels = _right_uint8(model, 40)
    generator = torch.Generator().manual_seed(5)
    whole = torch.randint(0, 256, (100, 3, 4, 4), dtype=torch.uint8, generator=generator)
    whole_labels = torch.randint(0, 5, (100,), generator=generator)
    with torch.no_grad():
        expected = int((model(whole.float() / 255).argmax(1) == whole_labels).sum())
    # the chosen eps are L-infinity ones: an attack of another norm is checked at each of its own eps
    suite = [AttackSpec("fgsm", {}, (0.05, 0.2)), AttackSpec("pgd", {"steps": 3}, (0.05, 0.2)),
             AttackSpec("pgd-l2", {"steps": 3}, (0.1, 0.5))]
    result = evaluate(model, uint8, labels, suite, seed=0, batch_size=16, cross_check_images=4, gallery=0,
                      cross_check_eps=(0.05,), full_test=(whole, whole_labels, "ab" * 32))
    assert [(a.name, a.eps, a.cross_check is not None) for a in result.attacks] == [
        ("fgsm", 0.05, True), ("fgsm", 0.2, False), ("pgd", 0.05, True), ("pgd", 0.2, False),
        ("pgd-l2", 0.1, True), ("pgd-l2", 0.5, True)]
    full = result.evaluation.full_test
    assert (full.size, full.correct_images, full.sha256) == (100, expected, "ab" * 32)
    assert result.clean_accuracy == 1.0  # the attacked test set stays what it was


def test_the_cross_check_is_exact_on_the_cpu_and_allows_float_noise_on_a_gpu():
    """On a GPU the harness's and the reference's passes run different kernels (docs/gpu.md): the exact attacks
    get the GPU's floor there, never less than their own; the CPU keeps each attack's own tolerance."""
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert build(AttackSpec("fgsm")).tolerance(cpu) == (0.1, 0)
    assert build(AttackSpec("fgsm")).tolerance(gpu) == (1.0, 2)
    assert build(AttackSpec("apgd")).tolerance(cpu) == (2.0, 2) == build(AttackSpec("apgd")).tolerance(gpu)
    # on 500 images: 5 images on a GPU, where the H200 measured gaps of 1 and 2; nothing on the CPU
    points, images = build(AttackSpec("pgd")).tolerance(gpu)
    assert max(points / 100 * 500, images) == 5 and max(0.1 / 100 * 500, 0) < 1


def test_an_evaluation_stopped_between_attacks_resumes_after_the_last_finished_one(tmp_path, monkeypatch):
    """Each finished attack is saved as it ends; a resumed evaluation reads those back (it does not run them
    again), runs the rest, and measures what an uninterrupted one does: entries, radii, worst case, checks and
    the gallery. A saved attack of another model is not reused."""
    model = tiny_model(5, seed=3)
    uint8, labels = _right_uint8(model, 40)
    suite = [AttackSpec("fgsm", {}, (0.05, 0.2)), AttackSpec("bim", {"steps": 3}, (0.05, 0.2)),
             AttackSpec("apgd", {"steps": 4}, (0.05, 0.2))]
    settings = dict(seed=0, batch_size=16, cross_check_images=4, gallery=4, cascade=True)
    whole = evaluate(model, uint8, labels, suite, **settings)

    import benchmark.evaluation as evaluation

    real = evaluation.run_attack

    def stop_at_apgd(model, images, labels, spec, *args, **kwargs):
        if spec.name == "apgd":
            raise KeyboardInterrupt  # the end of a GPU window, during the third attack
        return real(model, images, labels, spec, *args, **kwargs)

    monkeypatch.setattr(evaluation, "run_attack", stop_at_apgd)
    with pytest.raises(KeyboardInterrupt):
        evaluate(model, uint8, labels, suite, saved=tmp_path, **settings)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attack0.sealed", "attack1.sealed"]
    monkeypatch.undo()
    counted = []
    monkeypatch.setattr(evaluation, "run_attack", lambda model, images, labels, spec, *args, **kwargs:
                        counted.append(spec.name) or real(model, images, labels, spec, *args, **kwargs))
    resumed = evaluate(model, uint8, labels, suite, saved=tmp_path, **settings)
    assert counted == ["apgd"]
    assert resumed.attacks == whole.attacks and resumed.worst_case == whole.worst_case
    assert resumed.checks == whole.checks and resumed.evaluation.radii == whole.evaluation.radii
    assert resumed.gallery.keys() == whole.gallery.keys()
    assert all(np.array_equal(resumed.gallery[k], whole.gallery[k]) for k in whole.gallery if k != "attack")
    assert resumed.gallery["attack"] == whole.gallery["attack"] == "fgsm"

    other = tiny_model(5, seed=4)  # another model's saved attacks are not its results
    counted.clear()
    evaluate(other, uint8, labels, suite, saved=tmp_path, **settings)
    assert counted == ["fgsm", "bim", "apgd"]
