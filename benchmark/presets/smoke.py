"""Under a minute on a laptop CPU: scikit-learn's embedded digits (50 training and 8 test images per class),
the narrowest MobileNetV2, seven epochs at batch 16 but at least 50 steps (a 45-image coreset would otherwise
train 21 steps), with precise batch-norm statistics (after so few steps batch norm's running averages lag the
weights), FGSM, PGD-10 and APGD-CE (10 steps) at two eps, each cross-checked on 4 images: without APGD the
worst case overstated robustness by about 5 points (measured against APGD-100). The README's first command
runs it."""

from benchmark.protocol import Protocol, register_preset
from benchmark.record import AttackSpec

register_preset(Protocol(
    preset="smoke", dataset="digits", model="mobilenetv2_035", fractions=(0.1, 0.5), seeds=(0,), epochs=7,
    lrs=(0.05,), eps=(2 / 255, 8 / 255), proxy_epochs=2, proxy_lr=0.05, batch_size=16, precise_bn=True,
    min_steps=50, train_per_class=50, test_per_class=8,
    attacks=(AttackSpec("fgsm"), AttackSpec("pgd", {"steps": 10}),
             AttackSpec("apgd", {"steps": 10, "losses": "ce"})),
    cross_check_images=4, headline_eps=2 / 255,
    method_defaults={"grand": {"repeats": 2, "epochs": 1}}))
