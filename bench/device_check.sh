#!/usr/bin/env bash
# The GPU benchmarks of bench/RESULTS.md, as one command on a lent GPU machine (see
# bench/prepare_device_check.sh, which packs .device/): training-step time of dml on wgpu (Vulkan)
# against PyTorch CUDA for the small CNN (batch 80, 28×28) and ResNet-18/50 and BN-Inception
# (batch 32, 224×224), same model, loss (pml's ms with its miner) and optimiser; then the default
# job end to end on wgpu; then retrieval on SOP-like embeddings (60,502 × 512, Recall@1,10,100,1000
# and MAP@R, leave-one-out): `dml metrics` on the CPU and on the GPU through dml's retrieval
# shader, and faiss's exact search where its package is there, alternately. Log in
# $OUT/device_check.log (or /tmp/device-check/).
# Locally, to try it: DML_BACKEND=wgpu TORCH_DEVICE=cpu QUICK=1 PYTHON=bench/.venv/bin/python
# bench/device_check.sh (wgpu on lavapipe, PyTorch on the CPU).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/device-check}
mkdir -p "$out"
exec > >(tee "$out/device_check.log") 2>&1
backend=${DML_BACKEND:-wgpu}
torch_device=${TORCH_DEVICE:-cuda}
quick=${QUICK:-0}
python=${PYTHON:-python3}
# An absolute path, for use from bench/ (a venv's python must not be resolved past its link).
[[ $python == */* ]] && python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")"
steps=$([ "$quick" = 1 ] && echo 1 || echo 20)
warmup=$([ "$quick" = 1 ] && echo 1 || echo 5)
# QUICK checks the script's mechanics only: a software Vulkan needs seconds per small step.
small=$([ "$quick" = 1 ] && echo "small-cnn 28 16" || echo "")
bin=/tmp/dml-device-check
mkdir -p "$bin"
# Vulkan drivers probe for a Wayland display and complain without a runtime dir.
[ -n "${XDG_RUNTIME_DIR:-}" ] || export XDG_RUNTIME_DIR="$(mktemp -d)"

if command -v nvidia-smi >/dev/null; then
    nvidia-smi -L
    for f in .device/gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    [ -f "$icd" ] && export VK_DRIVER_FILES=$icd
fi
"$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .device/whl/*.whl &&
    export PYTHONPATH=/tmp/site
for b in dml train_step; do
    xz -dc ".device/$b.xz" > "$bin/$b" && chmod +x "$bin/$b"
done
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

# The command's last line of output, and its exit status when it failed (124: timed out).
last_line() {
    local log rc
    log=$("$@" 2>&1)
    rc=$?
    echo "$(tail -n 1 <<<"$log")$([ $rc = 0 ] || echo " (exit $rc)")"
}

# name, train_step arguments, PyTorch script and arguments
cases=("small-cnn|$steps $small|pytorch_train_step.py $steps $torch_device $warmup")
[ "$quick" = 1 ] || cases+=(
    "resnet18|$steps resnet18 224 32|pytorch_backbone_step.py $steps 224 32 resnet18 $torch_device $warmup"
    "resnet50|$steps resnet50 224 32|pytorch_backbone_step.py $steps 224 32 resnet50 $torch_device $warmup"
    "bn-inception|$steps bn-inception 224 32|pytorch_backbone_step.py $steps 224 32 bn-inception $torch_device $warmup"
)
for round in $([ "$quick" = 1 ] && echo 1 || echo 1 2); do
    for case in "${cases[@]}"; do
        IFS='|' read -r name dml_args torch_args <<<"$case"
        echo "== $name, round $round"
        # shellcheck disable=SC2086 # the arguments are words
        echo "dml ($backend): $(last_line timeout 300 "$bin/train_step" --backend "$backend" --warmup "$warmup" $dml_args)"
        # shellcheck disable=SC2086
        echo "PyTorch ($torch_device): $(cd bench && last_line timeout 300 "$python" $torch_args)"
    done
done

echo "== the default job on $backend"
iterations=$([ "$quick" = 1 ] && echo 4 || echo 200)
rm -rf /tmp/dml-device-job
start=$(date +%s%N)
"$bin/dml" train --backend "$backend" --run-dir /tmp/dml-device-job --iterations "$iterations" 2>"$out/default_job.err" | tail -9
echo "wall: $((($(date +%s%N) - start) / 1000000)) ms; $(tr '\r' '\n' <"$out/default_job.err" | grep -m1 '^backend')"
tr '\r' '\n' <"$out/default_job.err" | grep "^train" | tail -1

echo "== retrieval: SOP-like 60,502 × 512, K = 1,10,100,1000, wall time of the whole command"
retrieval=/tmp/dml-device-retrieval
mkdir -p "$retrieval"
"$python" bench/make_sop_like.py "$retrieval/e.npy" "$retrieval/l.npy"
metrics() { # backend
    local start
    start=$(date +%s%N)
    "$bin/dml" metrics --embeddings "$retrieval/e.npy" --labels "$retrieval/l.npy" --k 1,10,100,1000 --json \
        --backend "$1" 2>/dev/null | tr -d '\n'
    echo " ($((($(date +%s%N) - start) / 1000000)) ms)"
}
for round in $([ "$quick" = 1 ] && echo 1 || echo 1 2); do
    echo "dml metrics (cpu): $(metrics cpu)"
    echo "dml metrics ($backend, retrieval shader): $(metrics "$backend")"
    if "$python" -c "import faiss" 2>/dev/null; then
        echo "faiss (IndexFlatIP): $("$python" bench/faiss_metrics.py "$retrieval/e.npy" "$retrieval/l.npy" 1,10,100,1000)"
    else
        echo "faiss: not installed on this machine"
    fi
done
