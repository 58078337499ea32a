#!/usr/bin/env bash
# Runs the cifar10-cpu preset (or PRESET) for every registered method on a local CIFAR-10 ImageFolder copy,
# replaces the records under submissions/<preset>/ with them and renders the published pages into docs/leaderboard/
# (every preset under submissions/, each board in its own section).
#   scripts/publish_cpu_leaderboard.sh ../shared/data/cifar10-jpeg
#   PRESET=cifar10-cpu-at scripts/publish_cpu_leaderboard.sh ../shared/data/cifar10-jpeg   # the adversarially
#                                                                 trained board, into submissions/cifar10-cpu-at/
# Each run is a Ray task with one CPU (one torch thread): on a 2-core machine two runs go at once, 1.4x the
# throughput of one run with two threads. CPU numbers depend on the thread count; records say it (1 here),
# and `benchmark run ... --threads 1` reproduces one.
#
# Resumable, also across machines or sessions: run it again and it finishes the same records. The whole sweep
# takes several hours on 2 cores (docs/cpu-protocol.md), so it runs from one frozen harness commit (a
# `git worktree` of it: every record names that commit) and its finished records are committed as they come
# into republish/<preset>/ (records and small artifacts, no weights). With STAGE=<that folder> the staged
# records are copied in first and not redone.
set -euo pipefail
data=${1:?usage: [PRESET=cifar10-cpu-at] [STAGE=DIR] $0 CIFAR10_IMAGEFOLDER}
preset=${PRESET:-cifar10-cpu}
case "$preset" in cifar10-cpu|cifar10-cpu-at) ;; *) echo "error: PRESET is cifar10-cpu or cifar10-cpu-at, got $preset" >&2; exit 2;; esac
out=results/$preset
mkdir -p "$out"
if [ -n "${STAGE:-}" ]; then
  cp -n "$STAGE"/*.json "$STAGE"/*.npz "$out"/ 2>/dev/null || true
fi
# The study's seven methods and the full pool first, at the preset's ten seeds (what the study's comparison needs
# for power); then every other method at three seeds (the page states each comparison's smallest detectable
# difference, which is larger there)
study=random,cal,contextual_diversity,glister,grand,graphcut,moderate_ds,full
python -m benchmark sweep --methods "$study" --preset "$preset" --dataset "imagefolder:$data" \
  --out "$out" --executor ray --cpus-per-run 1
python -m benchmark sweep --methods all --seeds 0,1,2 --preset "$preset" --dataset "imagefolder:$data" \
  --out "$out" --executor ray --cpus-per-run 1
rm -rf "submissions/$preset"
mkdir -p "submissions/$preset"
# the records and the small artifacts they name (selected indices, the gallery); not the model weights
cp "$out"/*.json "$out"/*.selection.npz "$out"/*.gallery.npz "submissions/$preset/"
python -m benchmark validate submissions
python -m benchmark leaderboard --records submissions --out docs/leaderboard
