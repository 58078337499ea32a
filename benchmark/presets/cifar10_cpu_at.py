"""The CPU-scale board's protocol with adversarial training: the cifar10-cpu data, model, epochs and attack suite,
but every final model (and the selection proxy, so that selectors reading it see a robust model) is trained with
FGSM from a random start at 4/255 (Wong, Rice & Kolter 2020), the fast adversarial training a CPU affords; the
guard attacks 64 held-out validation images after every epoch and the lr is chosen by their robust accuracy.
Ranked at 2/255, as cifar10-cpu is, so that the two boards answer the same question side by side."""

import dataclasses

from benchmark.presets.cifar10_cpu import CIFAR10_CPU
from benchmark.protocol import register_preset
from benchmark.record import TrainingSpec

register_preset(dataclasses.replace(
    CIFAR10_CPU, preset="cifar10-cpu-at", training=TrainingSpec("fgsm-rs", {"eps": 4 / 255}),
    adversarial_proxy=True, monitor_images=64))
