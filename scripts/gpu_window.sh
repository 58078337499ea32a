#!/usr/bin/env bash
# One GPU window, from the repository root on the device machine, after scripts/prepare_gpu_carry.sh here:
#   run(command="CORESET_BENCH_GIT_COMMIT=<HEAD's sha> bash scripts/gpu_window.sh 540", carry=[".gpu"],
#       timeout_s=600)
# It installs what the device image lacks, records the device, optionally times the training step
# (BENCH_SECONDS=120), then runs the standard board's next runs with `benchmark job` until the budget (seconds,
# the whole script) is spent, RUNS_PER_DEVICE at once (default 4), COMPILE as the --compile mode (default none).
# What comes back in $OUT: device.txt, bench.txt, job.log, standard-job.tar.gz (the finished records, with
# the weights that fit) and unfinished/ (the runs under way when the window ended, those that saved the most
# training first: at most 4 files and 36 MiB, a run stopped mid-training in two parts).
# Before the call: `bash scripts/gpu_tree.sh slim` (the CPU boards and pages would take what is sent over 64 MiB).
# After it: `python scripts/after_gpu_window.py <files_at>` (restores the boards, puts the archive's records,
# selections and galleries, validated, into submissions/standard/, and makes .gpu/unfinished/ the returned
# unfinished/); then commit submissions/standard/ with the numbers in docs/gpu.md. The carried states are not
# committed (up to 36 MB a window in git's history): they live in the ignored .gpu/ and travel with it; if lost,
# their runs start afresh.
set -uo pipefail
start=$(date +%s)
budget=${1:-540}
out=${OUT:-/tmp/out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 CORESET_BENCH_PROGRESS_SECONDS=30
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .gpu/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.gpu/py
# benchmark.methods and benchmark.leaderboard are the repository's methods/ and leaderboard/ (setup.cfg)
if ! python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1; then
  ln -sfn ../methods benchmark/methods && ln -sfn ../leaderboard benchmark/leaderboard
  export PYTHONPATH=$PYTHONPATH:$PWD
fi
{ nvidia-smi; python3 -c "import torch, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda,
  'cudnn', torch.backends.cudnn.version(), 'timm', timm.__version__, torch.cuda.get_device_name())"; } \
  > "$out/device.txt" 2>&1
if [ "${BENCH_SECONDS:-0}" -gt 0 ]; then
  timeout "$BENCH_SECONDS" python3 scripts/bench_train_step.py --device cuda --images 4500 --epochs 2 \
    --compile "none,${COMPILE:-reduce-overhead}" --processes 1,4 --peak-tflops 790 2>&1 | tee "$out/bench.txt"
fi
left=$(( budget - ($(date +%s) - start) - 15 ))
python3 -m benchmark job --preset standard --dataset jpegpack:.gpu/cifar10-jpeg.npz --budget "$left" --margin 45 \
  --runs-per-device "${RUNS_PER_DEVICE:-4}" --done submissions/standard --out /tmp/job --cache-dir /tmp/cache \
  --device cuda --compile "${COMPILE:-none}" --archive "$out/standard-job.tar.gz" \
  --unfinished .gpu/unfinished --unfinished-files 4 --unfinished-mb 36 --carry-training "${CARRY_TRAINING:-1}" \
  2>&1 | tee "$out/job.log"
ls -la "$out" "$out/unfinished" 2>/dev/null
