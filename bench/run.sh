#!/usr/bin/env bash
# Runs the benchmarks reported in bench/RESULTS.md on this machine, dml against the Python tools
# people use today. Makes its own venv (bench/.venv) with pip; outputs go to bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dml-target}"
out=bench/out
mkdir -p "$out"

# PyTorch's CPU kernels pick their vector width by processor and round differently with each, so
# one seed's result depends on it (bench/RESULTS.md): print what this machine offers, and let
# PYTORCH_ISA=avx2 hold PyTorch to its AVX2 code for runs comparable across machines.
if [ "${PYTORCH_ISA:-}" = avx2 ]; then
    export ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
elif [ -n "${PYTORCH_ISA:-}" ]; then
    echo "error: PYTORCH_ISA=$PYTORCH_ISA: only avx2 is supported" >&2
    exit 2
fi
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs," \
    "AVX-512: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)," \
    "PyTorch code: ${PYTORCH_ISA:-its default for this CPU}"

# The same package selection and targets as the tests' build (dev-dependencies included), so that
# Burn is not built a second time with another feature set.
cargo build --release --locked --workspace --bins --tests
if [ ! -x bench/.venv/bin/python ]; then
    python3 -m venv bench/.venv
    bench/.venv/bin/pip install -q torch==2.15.0 pytorch-metric-learning==2.9.0 faiss-cpu==1.15.1 numpy==2.4.6
fi
py=bench/.venv/bin/python
reps=${REPS:-20}

echo "== losses: forward + backward, CPU, median of $reps (ms)"
"$CARGO_TARGET_DIR/release/losses" "$reps" > "$out/losses_dml.txt"
: > "$out/losses_pml.txt"
for case in "ms 80" "ms 1000" "lifted 80" "lifted 1000" "triplet_semihard 80" "triplet_semihard 1000" \
    "proxy_nca 80" "proxy_nca 1000" "proxy_anchor 80" "proxy_anchor 1000" "norm_softmax 80" "norm_softmax 1000" \
    "soft_triple 80" "soft_triple 1000" "arcface 80" "arcface 1000"; do
    set -- $case
    "$py" bench/pytorch_losses.py "$reps" "$1" "$2" >> "$out/losses_pml.txt" ||
        echo "$1 $2 512 failed(exit-$?)" >> "$out/losses_pml.txt"
done
python3 - "$out/losses_dml.txt" "$out/losses_pml.txt" <<'TABLE'
import sys
read = lambda p: {(l.split()[0], l.split()[1]): l.split()[3] for l in open(p)}
dml, pml = read(sys.argv[1]), read(sys.argv[2])
print("| loss | n | dml (ms) | pytorch-metric-learning (ms) | pml / dml |")
print("|---|---|---|---|---|")
for key in dml:
    d, p = float(dml[key]), pml.get(key, "missing")
    ratio = f"{float(p) / d:.2f}" if p.replace(".", "").isdigit() else "-"
    print(f"| {key[0]} | {key[1]} | {d:.2f} | {p} | {ratio} |")
TABLE

echo "== retrieval metrics: 60,502 × 512, K = 1,10,100,1000, wall time of the whole command (s)"
[ -f "$out/sop_e.npy" ] || "$py" bench/make_sop_like.py "$out/sop_e.npy" "$out/sop_l.npy"
start=$(date +%s.%N)
"$CARGO_TARGET_DIR/release/dml" metrics --embeddings "$out/sop_e.npy" --labels "$out/sop_l.npy" \
    --k 1,10,100,1000 --backend cpu --json > "$out/metrics_dml.json"
dml_s=$(echo "$(date +%s.%N) - $start" | bc)
start=$(date +%s.%N)
"$py" bench/faiss_metrics.py "$out/sop_e.npy" "$out/sop_l.npy" 1,10,100,1000 > "$out/metrics_faiss.json"
faiss_s=$(echo "$(date +%s.%N) - $start" | bc)
echo "dml:   ${dml_s} s  $(cat "$out/metrics_dml.json")"
echo "faiss: ${faiss_s} s  $(cat "$out/metrics_faiss.json")"
echo "speedup: $(echo "scale=2; $faiss_s / $dml_s" | bc)x"

echo "== training step of the default job's small CNN (batch 80, 28×28, ms loss, Adam), CPU, interleaved"
for round in 1 2 3; do
    echo "dml:     $("$CARGO_TARGET_DIR/release/train_step" "$reps")"
    echo "PyTorch: $(cd bench && "../$py" pytorch_train_step.py "$reps")"
done

seeds=${SEEDS:-$(seq 0 19)}
echo "== the default job, 200 iterations, seeds" $seeds": dml, PyTorch with docs/losses.md's ms, PyTorch with pml's ms"
runs=()
for seed in $seeds; do
    rm -rf "$out/default-$seed"
    "$CARGO_TARGET_DIR/release/dml" train --run-dir "$out/default-$seed" --seed "$seed" --eval-interval 0 \
        --backend cpu > /dev/null 2>&1
    echo "dml seed $seed: $(grep '"split"' "$out/default-$seed/metrics.jsonl" | tail -1)"
    runs+=("$out/default-$seed")
done
(cd bench && "../$py" pytorch_train_fashion.py spec $seeds) | tee "$out/default_spec.jsonl"
(cd bench && "../$py" pytorch_train_fashion.py pml $seeds) | tee "$out/default_pml.jsonl"
"$py" bench/default_job_summary.py "${runs[@]}" -- "PyTorch docs/losses.md ms=$out/default_spec.jsonl" \
    "PyTorch pml ms=$out/default_pml.jsonl"

# Only the packages' Python model code is used: no dependencies (pretrainedmodels' __init__ would
# import all of torchvision; the step benchmark and the check load its one module file).
"$py" -c "import pretrainedmodels" 2>/dev/null || bench/.venv/bin/pip install -q --no-deps pretrainedmodels==0.7.4

echo "== training step of ResNet-18, ResNet-50, BN-Inception (batch 32, 224×224, ms loss, Adam), CPU, interleaved"
for backbone in resnet18 resnet50 bn-inception; do
    for round in 1 2; do
        echo "dml:     $("$CARGO_TARGET_DIR/release/train_step" 5 "$backbone" 224 32)"
        echo "PyTorch: $(cd bench && "../$py" pytorch_backbone_step.py 5 224 32 "$backbone")"
    done
done

echo "== BN-Inception and the ResNets against the definitions their published weights belong to"
"$py" -c "import torchvision" 2>/dev/null || bench/.venv/bin/pip install -q --no-deps torchvision==0.29.2
"$py" bench/published_layout_check.py "$CARGO_TARGET_DIR/release/dml" "$out/published-layouts" | grep -v '^  '

echo "== GUI: CPU frame time of the Projection panel"
cargo build --release --locked -p dml-app --example frame_time
for n in 5000 60000; do "$CARGO_TARGET_DIR/release/examples/frame_time" "$n"; done
