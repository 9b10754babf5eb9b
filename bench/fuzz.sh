#!/usr/bin/env bash
# Runs the fuzzer (src/bin/fuzz.rs) on every parser for SECONDS each (default 600), one after the
# other, and keeps a sample of the corpus each grew in bench/fuzz/corpus/ for the regression test
# (tests/fuzz_corpus.rs). Prints the CPU and one line per target: executions, duration, crashes.
# Inputs that crashed, hung or allocated over 1 GiB are left in $OUT (default target/fuzz).
#
# bench/fuzz.sh [SECONDS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
seed=${2:-7}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dml-target}"
cargo build --release --workspace --locked --bins --tests 2>&1 | tail -1
out=${OUT:-target/fuzz}
mkdir -p "$out"
grown=$(mktemp -d)
trap 'rm -rf "$grown"' EXIT
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
status=0
for t in npy idx mat5 checkpoint model config list; do
    DML_FUZZ_CORPUS="$grown" "$CARGO_TARGET_DIR/release/fuzz" "$t" "$seconds" "$seed" "$out" || status=1
    # Up to 64 of the kept inputs (the smallest first, at most 8 KiB each) become regression inputs.
    mkdir -p "bench/fuzz/corpus/$t"
    find "$grown/$t" -type f -size -8k -printf '%s %p\n' | sort -n | head -64 | while read -r _ file; do
        cp "$file" "bench/fuzz/corpus/$t/$(sha1sum "$file" | cut -c1-16)"
    done
    # Inputs that crashed a parser stay as regression inputs once it is fixed.
    for file in "$out/$t-crash-"*; do
        [ -e "$file" ] && cp "$file" "bench/fuzz/corpus/$t/crash-$(sha1sum "$file" | cut -c1-16)"
    done
done
exit $status
