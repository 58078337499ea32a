#!/usr/bin/env bash
# Runs the cifar10-cpu preset for every registered method on a local CIFAR-10 ImageFolder copy, replaces the
# records under submissions/cifar10-cpu/ with them and renders the published pages into docs/leaderboard/.
#   scripts/publish_cpu_leaderboard.sh ../shared/data/cifar10-jpeg
# Each run is a Ray task with one CPU (one torch thread): on a 2-core machine two runs go at once, 1.4x the
# throughput of one run with two threads. CPU numbers depend on the thread count; records say it (1 here),
# and `benchmark run ... --threads 1` reproduces one.
set -euo pipefail
data=${1:?usage: $0 CIFAR10_IMAGEFOLDER}
# resumable: run it again after an interruption and it finishes the same records. The study's seven methods and
# the full pool first, at the preset's ten seeds (what the study's comparison needs for power); then every other
# method at three seeds (the page states each comparison's smallest detectable difference, which is larger there)
study=random,cal,contextual_diversity,glister,grand,graphcut,moderate_ds,full
python -m benchmark sweep --methods "$study" --preset cifar10-cpu --dataset "imagefolder:$data" \
  --out results/cifar10-cpu --executor ray --cpus-per-run 1
python -m benchmark sweep --methods all --seeds 0,1,2 --preset cifar10-cpu --dataset "imagefolder:$data" \
  --out results/cifar10-cpu --executor ray --cpus-per-run 1
rm -rf submissions/cifar10-cpu
mkdir -p submissions/cifar10-cpu
# the records and the small artifacts they name (selected indices, the gallery); not the model weights
cp results/cifar10-cpu/*.json results/cifar10-cpu/*.selection.npz results/cifar10-cpu/*.gallery.npz \
  submissions/cifar10-cpu/
python -m benchmark validate submissions
python -m benchmark leaderboard --records submissions --out docs/leaderboard
