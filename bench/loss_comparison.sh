#!/usr/bin/env bash
# The loss families side by side on data this machine has (bench/RESULTS.md, "ms, XBM and the
# proxy losses"): the same network, batches, optimiser and number of iterations for `ms`,
# `ms` + cross-batch memory, `proxy_anchor`, `norm_softmax` and `arcface`, one run after another,
# on the emoji cross-style set (EfficientNet-Lite0 from ImageNet weights) and on full
# Fashion-MNIST (the small CNN). Prints one table row per run: Recall@1, MAP@R and the training
# wall time of the whole command (start-up, the evaluations before and after, the iterations).
#
# Needs `dml data fetch emoji`, `dml data fetch fashion-mnist-full` and
# `dml weights fetch efficientnet-lite0` first. ITERATIONS_EMOJI / ITERATIONS_FASHION change the
# budgets (defaults 300 and 1000); ONLY="label" runs one row of each table.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dml-target}"
dml="$CARGO_TARGET_DIR/release/dml"
out=bench/out/loss_comparison
mkdir -p "$out"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/dml"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, AVX-512: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)"

losses=(
    "ms|--loss ms"
    "ms + XBM|--loss ms --set xbm.memory_size=MEMORY --set xbm.start_iteration=START"
    "proxy_anchor|--loss proxy_anchor"
    "proxy_anchor, proxies at 10×|--loss proxy_anchor --set optimizer.loss_lr_mult=10"
    "proxy_anchor, lr 1e-4|--loss proxy_anchor --set optimizer.lr=1e-4"
    "norm_softmax|--loss norm_softmax"
    "arcface|--loss arcface"
)

# run NAME MEMORY START ARGS...: one row of the table.
table_row() {
    local set=$1 label=$2 run=$3
    python3 - "$run" "$set" "$label" <<'ROW'
import json, sys
run, dataset, label = sys.argv[1:4]
lines = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
evals = [l for l in lines if "split" in l]
before, after = evals[0], evals[-1]
wall = open(f"{run}/train_seconds").read().strip()
print(f"| {dataset} | {label} | {before['recall_at_k']['1']:.4f} → {after['recall_at_k']['1']:.4f} | "
      f"{before['map_at_r']:.4f} → {after['map_at_r']:.4f} | {float(wall):.0f} s |")
ROW
}

run_all() {
    local set=$1 memory=$2 start=$3
    shift 3
    for entry in "${losses[@]}"; do
        local label=${entry%%|*} flags=${entry#*|}
        [ -z "${ONLY:-}" ] || [ "$label" = "$ONLY" ] || continue
        flags=${flags//MEMORY/$memory}
        flags=${flags//START/$start}
        local run="$out/$set-${label//[ ,×-]/}"
        rm -rf "$run"
        local begin end
        begin=$(date +%s.%N)
        # shellcheck disable=SC2086
        "$dml" train --run-dir "$run" --eval-interval 0 --backend cpu "$@" $flags > "$run.log" 2>&1
        end=$(date +%s.%N)
        echo "$end - $begin" | bc > "$run/train_seconds"
        table_row "$set" "$label" "$run"
    done
}

echo "| data | loss | Recall@1 (before → after) | MAP@R (before → after) | wall time |"
echo "|---|---|---|---|---|"
run_all emoji 1024 20 --dataset emoji --root "$cache/emoji" --backbone efficientnet-lite0 \
    --pretrained "$cache/weights/efficientnet-lite0-57934424.pth" --freeze-bn --backbone-lr-mult 0.1 --dim 128 \
    --p 16 --k 2 --iterations "${ITERATIONS_EMOJI:-300}" --lr 1e-3 \
    --set augment.resize=64 --set augment.crop=64 --set "augment.crop_scale=[0.5,1.0]"
run_all fashion-mnist-full 2000 100 --dataset fashion-mnist-full --iterations "${ITERATIONS_FASHION:-1000}"
