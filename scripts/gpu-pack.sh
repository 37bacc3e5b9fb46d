#!/usr/bin/env bash
# Builds the GPU check's folder: everything a GPU node with only the NVIDIA driver and a CUDA
# toolkit needs (no Rust, no network), in at most 60 MiB:
#   loc.xz             the `loc` multi-call binary (loc train | eval | bench), release, stripped
#   gpu-check.sh       the check (scripts/gpu-check.sh): unpacks `loc`, runs each part under
#                      its own time limit, prints and writes one Markdown report
#   fixtures/          the parity fixtures with their diffusers / transformers references
#   tiny-editor/, tiny.toml            the embedded default, for 200 training steps
#   bench_hypernet_step_torch.py       the PyTorch mirror of the step (run where torch is)
#
#   scripts/setup-cuda-build.sh                    # once: LLVM 23 for burn-cuda, from PyPI
#   scripts/gpu-pack.sh DIR                         # burn-cuda (the default)
#   scripts/gpu-pack.sh DIR --features vulkan       # wgpu on Vulkan instead: no LLVM needed
#   scripts/gpu-pack.sh DIR --binary target/debug/loc   # pack a built `loc` (CI's CPU rehearsal)
#
# The CUDA build is pinned to the CUDA 12.8 driver API (CUDA_API=12.8; cudarc would otherwise
# take the newest it knows, 13.4, on a machine without nvcc): a 12.8 binary runs on every
# driver from 570 on, CUDA 13's 580 included, and loads NVRTC as libnvrtc.so.12 or
# libnvrtc.so (gpu-check.sh points the latter at a CUDA 13 toolkit's libnvrtc.so.13).
set -euo pipefail
DIR=${1:?usage: gpu-pack.sh DIR [--features cuda|vulkan|wgpu] [--binary FILE]}
shift
FEATURE=cuda BINARY=
while [ $# -gt 0 ]; do
    case "$1" in
        --features) FEATURE=$2; shift 2 ;;
        --binary) BINARY=$2; shift 2 ;;
        *) echo "gpu-pack.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "$BINARY" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/$FEATURE}"
    if [ "$FEATURE" = cuda ]; then
        # cudarc reads the CUDA version from `nvcc --version`: answer with the pinned one.
        fake=$(mktemp -d)
        printf '#!/bin/sh\necho "nvcc: NVIDIA (R) Cuda compiler driver"\necho "Copyright (c) NVIDIA Corporation"\necho "Built by gpu-pack.sh"\necho "Cuda compilation tools, release %s, V%s.0"\n' \
            "${CUDA_API:-12.8}" "${CUDA_API:-12.8}" > "$fake/nvcc"
        chmod +x "$fake/nvcc"
        export PATH="$fake:$PATH"
    fi
    (cd "$ROOT" && cargo build --release --features "$FEATURE" -p loc-train --bin loc)
    BINARY="$CARGO_TARGET_DIR/release/loc"
fi
rm -rf "$DIR"
mkdir -p "$DIR/fixtures"
strip -o "$DIR/loc" "$BINARY"
xz -T0 -6 "$DIR/loc"
for model in unet_conv unet_linear vae clip_text clip_text_gelu clip_vision clip_full vit_dino; do
    cp -r "$ROOT/loc-core/tests/fixtures/$model" "$DIR/fixtures/"
done
cp -r "$ROOT/assets/tiny-editor" "$DIR/tiny-editor"
sed 's#^editor = .*#editor = "tiny-editor"#' "$ROOT/configs/tiny.toml" > "$DIR/tiny.toml"
cp "$ROOT/scripts/gpu-check.sh" "$ROOT/scripts/bench_hypernet_step_torch.py" "$DIR/"
size=$(du -sm "$DIR" | cut -f1)
echo "$DIR: ${size} MiB ($(du -h "$DIR/loc.xz" | cut -f1) of it the binary)"
if [ "$size" -gt 60 ]; then
    echo "gpu-pack.sh: $DIR is ${size} MiB, over the 60 MiB a short GPU loan takes" >&2
    exit 1
fi
