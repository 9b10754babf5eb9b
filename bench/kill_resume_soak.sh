#!/usr/bin/env bash
# Kill-and-resume soak: a short run of the default job is killed with SIGKILL (no chance to save
# anything) at 20 random moments and resumed with `dml train --resume` each time; its final
# metrics and test embeddings must equal those of the same run left alone, bit for bit.
#
# bench/kill_resume_soak.sh [KILLS] [ITERATIONS] [SEED]   (defaults: 20, 400, 1)
# Prints the CPU, every kill (the checkpoint's iteration it fell back to), and a verdict line.
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-20}
iterations=${2:-400}
seed=${3:-1}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dml-target}"
cargo build --release --workspace --locked --bins --tests 2>&1 | tail -1
dml="$CARGO_TARGET_DIR/release/dml"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"

# Checkpoints every 10 iterations, so that most kills lose a few steps and some land mid-write.
args=(--iterations "$iterations" --eval-interval 100 --set run.checkpoint_interval=10 --set "run.seed=$seed" --backend cpu)
start=$(date +%s.%N)
"$dml" train --run-dir "$work/straight" "${args[@]}" >"$work/straight.log" 2>&1
straight_s=$(echo "$(date +%s.%N) - $start" | bc)
echo "uninterrupted: $iterations iterations in ${straight_s} s"

# RANDOM seeded: the same kill moments for the same SEED.
RANDOM=$seed
"$dml" train --run-dir "$work/killed" "${args[@]}" >"$work/killed.log" 2>&1 &
pid=$!
done_kills=0
while ((done_kills < kills)); do
    # 0.3 to 2.3 s after the (re)start: during start-up, steps, evaluations and checkpoint writes.
    sleep "$(printf '%d.%03d' $((RANDOM % 2)) $((RANDOM % 1000)))"
    sleep 0.3
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" || true
        break
    fi
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    done_kills=$((done_kills + 1))
    at=$(python3 -c "import json,sys; l=[json.loads(x) for x in open('$work/killed/metrics.jsonl')] if __import__('os').path.exists('$work/killed/metrics.jsonl') else []; print(max([x['iteration'] for x in l], default=0))")
    temps=$(find "$work/killed" -name '.*.tmp*' | wc -l)
    echo "kill $done_kills: logged up to iteration $at; temporary files left by the kill: $temps"
    "$dml" train --resume "$work/killed" --backend cpu >>"$work/killed.log" 2>&1 &
    pid=$!
done
wait "$pid" || { echo "the last resumed run failed:"; tail -5 "$work/killed.log"; exit 1; }
# A run killed before its first checkpoint cannot resume; the soak counts on the first one.
leftover=$(find "$work/killed" -name '.*.tmp*' | wc -l)

python3 - "$work" <<'EOF'
import json, sys, filecmp
work = sys.argv[1]
def last_eval(run):
    lines = [json.loads(l) for l in open(f"{work}/{run}/metrics.jsonl")]
    return [l for l in lines if "recall_at_k" in l][-1]
a, b = last_eval("straight"), last_eval("killed")
same_metrics = a == b
same_embeddings = filecmp.cmp(f"{work}/straight/embeddings.npy", f"{work}/killed/embeddings.npy", shallow=False)
print(f"final evaluation: uninterrupted {a}")
print(f"                  killed+resumed {b}")
print(f"metrics equal: {same_metrics}; embeddings.npy identical: {same_embeddings}")
sys.exit(0 if same_metrics and same_embeddings else 1)
EOF
echo "verdict: $done_kills kills, final metrics and embeddings equal; temporary files left at the end: $leftover"
