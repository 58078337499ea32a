"""The published CPU-scale leaderboard: a class-balanced CIFAR-10 subset (200 training and 100 test images per
class), the narrowest MobileNetV2, 10 epochs at batch 32; FGSM, BIM, PGD-20 and APGD (CE, then DLR, 20 steps)
at five eps on the whole (1,000-image) test set. Ranked at 2/255: at 8/255 these weak models keep almost
nothing, and a ranking of zeros says nothing."""

from benchmark.protocol import STANDARD_EPS, Protocol, register_preset
from benchmark.record import AttackSpec

CIFAR10_CPU = register_preset(Protocol(
    preset="cifar10-cpu", dataset="cifar10", model="mobilenetv2_035", fractions=(0.1, 0.5), seeds=(0, 1, 2),
    epochs=10, lrs=(0.05,), eps=STANDARD_EPS, proxy_epochs=3, proxy_lr=0.05, batch_size=32,
    train_per_class=200, test_per_class=100,
    attacks=(AttackSpec("fgsm"), AttackSpec("bim"), AttackSpec("pgd", {"steps": 20}),
             AttackSpec("apgd", {"steps": 20})),
    cross_check_images=16, headline_eps=2 / 255,
    method_defaults={"grand": {"repeats": 3, "epochs": 1}, "el2n": {"repeats": 3, "epochs": 1}}))
