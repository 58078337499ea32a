"""The standard protocol with adversarial training, as RobustBench's CIFAR-10 L-infinity board is made: PGD
adversarial training at 8/255 (10 steps of 2/255 from a random start; Madry et al. 2018, as Rice, Wong & Kolter
2020 train) of the final models and of the selection proxy, the lr chosen by robust accuracy on 512 held-out
validation images, and the standard cascade ending in AutoAttack at 8/255, the headline. A GPU job: every
training step costs eleven passes."""

import dataclasses

from benchmark.presets.standard import STANDARD
from benchmark.protocol import register_preset
from benchmark.record import TrainingSpec

register_preset(dataclasses.replace(
    STANDARD, preset="standard-at", training=TrainingSpec("pgd-at", {"eps": 8 / 255, "steps": 10}),
    adversarial_proxy=True, monitor_images=512))
