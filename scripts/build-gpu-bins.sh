#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh runs into BIN_DIR: loc-train, loc-eval and the two bench
# programs (hypernet_step, edit), release, with a GPU backend compiled in.
#
#   scripts/setup-cuda-build.sh              # once: LLVM for burn-cuda, no download
#   scripts/build-gpu-bins.sh gpu-bins cuda  # or: vulkan (needs no LLVM)
set -euo pipefail
BIN_DIR=${1:?usage: build-gpu-bins.sh BIN_DIR [cuda|vulkan|wgpu]}
FEATURE=${2:-cuda}
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/$FEATURE}"
cargo build --release --features "$FEATURE" -p loc-train -p loc-eval
mkdir -p "$BIN_DIR"
cp "$CARGO_TARGET_DIR/release/loc-train" "$CARGO_TARGET_DIR/release/loc-eval" "$BIN_DIR/"
for bench in hypernet_step edit; do
  # The bench's executable, from cargo's own report of what it built. Selecting the same
  # packages as the build above keeps their features, so nothing is rebuilt but the bench.
  exe=$(cargo bench --no-run --features "loc-core/$FEATURE" -p loc-train -p loc-eval -p loc-core --bench "$bench" \
    --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["bench"]:
        print(m["executable"])' | tail -1)
  cp "$exe" "$BIN_DIR/$bench"
done
ls -la "$BIN_DIR"
