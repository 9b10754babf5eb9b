#!/usr/bin/env bash
# Packs what bench/device_check.sh needs on a lent GPU machine (no Rust, no network there) into
# .device/ (ignored by git, carried by the device tool): the stripped, xz-compressed dml and
# train_step binaries, the Vulkan loader's Debian packages, and wheels of pytorch-metric-learning
# and pretrainedmodels (BN-Inception's module), which its PyTorch lacks. About 45 MB in all, under
# the 64 MiB a device call carries. Then, in one device call:
#   run(command="bench/device_check.sh", carry=[".device"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dml-target}"
cargo build --release --locked --workspace

rm -rf .device
mkdir -p .device/gl .device/whl
for bin in dml train_step; do
    strip -o ".device/$bin" "$CARGO_TARGET_DIR/release/$bin"
    xz -T2 -6 ".device/$bin"
done
(cd .device/gl && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
# The device's Python is 3.12; both packages are pure Python.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .device/whl \
    pytorch-metric-learning==2.9.0
python3 -m pip wheel -q --no-deps -w .device/whl pretrainedmodels==0.7.4
du -sh .device
