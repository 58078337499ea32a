#!/usr/bin/env bash
# Runs the cifar10-cpu preset for every registered method on a local CIFAR-10 ImageFolder copy, keeps the
# records under submissions/cifar10-cpu/ and renders the published pages into docs/leaderboard/.
#   scripts/publish_cpu_leaderboard.sh ../shared/data/cifar10-jpeg
set -euo pipefail
data=${1:?usage: $0 CIFAR10_IMAGEFOLDER}
# resumable: run it again after an interruption and it finishes the same records
python -m benchmark sweep --methods all --preset cifar10-cpu --dataset "imagefolder:$data" --out results/cifar10-cpu
mkdir -p submissions/cifar10-cpu
cp results/cifar10-cpu/*.json submissions/cifar10-cpu/
python -m benchmark validate submissions
python -m benchmark leaderboard --records submissions --out docs/leaderboard
