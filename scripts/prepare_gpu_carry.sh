#!/usr/bin/env bash
# Fills .gpu/ (ignored by git: `echo /.gpu/ >> .git/info/exclude`) with what a device machine lacks, for
# scripts/gpu_window.sh: wheels for Python 3.12 of the packages its image does not hold (torchattacks, submodlib,
# jsonschema and its helpers), pyautoattack's code without the 44 MB example model its wheel ships, and the
# CIFAR-10 JPEG pack (18 MB). About 20 MB in all; the checkout's tracked files travel too, and the published CPU
# boards take them over 64 MiB: the last line says what a call would send (`scripts/gpu_tree.sh slim` first).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${1:-../shared/data}
mkdir -p .gpu/wheels .gpu/py
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
  -d .gpu/wheels torchattacks==3.5.1 submodlib-py==0.0.3 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 \
  referencing==0.37.0 rpds-py==2026.9.1
tmp=$(mktemp -d)
python -m pip download -q --no-deps --only-binary=:all: -d "$tmp" pyautoattack==0.2.0
(cd "$tmp" && python -m zipfile -e pyautoattack-*.whl unpacked)
rm -rf .gpu/py/pyautoattack && cp -r "$tmp/unpacked/pyautoattack" .gpu/py/ && rm -rf .gpu/py/pyautoattack/examples
rm -rf "$tmp"
cp "$shared/cifar10-jpeg.npz" .gpu/
du -sh .gpu
bash scripts/gpu_tree.sh size .gpu || true
