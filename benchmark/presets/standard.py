"""The study's protocol: CIFAR-10, MobileNetV2 with the CIFAR stem, 200 epochs, the attack suite on the whole
10,000-image test set as a cascade (cheapest first, each later attack only on the images the earlier ones left
robust: the worst case of the whole suite for a fraction of its cost), AutoAttack (standard) at 8/255 last, as
RobustBench ranks. Each L-infinity attack is cross-checked on 500 images at 2/255 and 8/255 (PGD-L2 at both of
its eps): at all five eps the checks of FGSM, BIM and PGD-50 alone took 24 to 29 s of a run on an H200
(docs/gpu.md; APGD-100's, 100 steps without early stop for both sides, were not reached), and an attack's code is
the same at every eps. A GPU job."""

from benchmark.protocol import STANDARD_EPS, Protocol, register_preset
from benchmark.record import AttackSpec

STANDARD = register_preset(Protocol(
    preset="standard", dataset="cifar10", model="mobilenetv2_100", fractions=(0.1, 0.5), seeds=(0, 1, 2),
    epochs=200, lrs=(0.1,), eps=STANDARD_EPS, proxy_epochs=10,
    attacks=(AttackSpec("fgsm"), AttackSpec("bim"), AttackSpec("pgd", {"steps": 50}),
             AttackSpec("pgd-l2", {"steps": 50}, (0.25, 0.5)), AttackSpec("apgd", {"steps": 100}),
             AttackSpec("autoattack", {}, (8 / 255,))),
    cross_check_images=500, cross_check_eps=(2 / 255, 8 / 255), headline_eps=8 / 255, cascade=True))
