#!/usr/bin/env bash
# Builds the browser demo into web/dist (a static folder any file server serves): the dml-web
# crate for wasm32 (twice: CPU only, and with WebGPU), wasm-bindgen's JavaScript glue, wasm-opt,
# and the page (web/www).
# Installs what it needs: the wasm32 target, wasm-bindgen-cli at the version of the
# wasm-bindgen crate in Cargo.lock (into $DML_TOOLS), binaryen's wasm-opt (npm, web/tests).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dml-target}
tools=${DML_TOOLS:-$HOME/.cache/dml-tools}

rustup target add wasm32-unknown-unknown >/dev/null
version=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
if ! "$tools/bin/wasm-bindgen" --version 2>/dev/null | grep -qx "wasm-bindgen $version"; then
    cargo install wasm-bindgen-cli --version "$version" --root "$tools"
fi
if [ ! -x web/tests/node_modules/.bin/wasm-opt ]; then
    (cd web/tests && npm ci --no-audit --no-fund)
fi

# Two builds: pkg/ (Burn's CPU backend) and pkg-webgpu/ (plus Burn's wgpu backend on WebGPU); the
# page fetches the second only where the browser has WebGPU.
build() {
    local out=$1 opt=$2
    shift 2
    cargo build --locked --profile web -p dml-web --target wasm32-unknown-unknown "$@"
    rm -rf "web/dist/$out"
    "$tools/bin/wasm-bindgen" --target web --no-typescript --out-dir "web/dist/$out" \
        "$CARGO_TARGET_DIR/wasm32-unknown-unknown/web/dml_web.wasm"
    web/tests/node_modules/.bin/wasm-opt "$opt" "web/dist/$out/dml_web_bg.wasm" -o "web/dist/$out/dml_web_bg.wasm"
    local size gz
    size=$(stat -c %s "web/dist/$out/dml_web_bg.wasm")
    gz=$(gzip -9 -c "web/dist/$out/dml_web_bg.wasm" | wc -c)
    echo "web/dist/$out: dml_web_bg.wasm $((size / 1024)) KiB, $((gz / 1024)) KiB gzip (wasm-opt $opt)"
}
mkdir -p web/dist
build pkg -O3
# wasm-opt's -O3 on the far larger WebGPU build takes a quarter of an hour on 2 cores; -O1 keeps
# most of the size gain. Without Burn's default features: no kernel autotuning (web/Cargo.toml).
build pkg-webgpu -O1 --no-default-features --features webgpu
cp web/www/* web/dist/
