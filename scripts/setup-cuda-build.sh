#!/usr/bin/env bash
# Makes `cargo build --features cuda` link with no download.
#
# burn-cuda compiles kernels through LLVM 23 (cubecl-llvm), and the build script of
# `tracel-llvm-bundler` downloads LLVM from the internet unless it finds it installed. The
# PyPI wheels `mlc-llvm-static` (+ `-extra-targets`, which holds NVPTX) ship LLVM 23.1 as
# static libraries with headers and `llvm-config`. This script installs them into a venv
# outside the repository and points the bundler's install folder at that prefix, with the
# marker file the bundler checks. Needs Python 3 with pip and PyPI (or a local wheel
# mirror through pip's own settings, e.g. PIP_FIND_LINKS + PIP_NO_INDEX=1).
#
#   scripts/setup-cuda-build.sh
#   cargo build --release --features cuda -p loc-train -p loc-eval
#
# LOC_LLVM_VENV sets the venv (default ~/.local/share/loc-rs/llvm-venv). The bundler's folder
# name follows its version (tracel-llvm-bundler 23.1.0-4, pinned by Cargo.lock): update
# BUNDLER_DIR together with the lock file.
set -euo pipefail

LLVM_WHEEL_VERSION=23.1.1.post0
BUNDLER_DIR=tracel-llvm-23.1.0-4
DATA_HOME="${XDG_DATA_HOME:-$HOME/.local/share}"
VENV="${LOC_LLVM_VENV:-$DATA_HOME/loc-rs/llvm-venv}"
TARGET="$DATA_HOME/tracel/$BUNDLER_DIR"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet \
  "mlc-llvm-static==$LLVM_WHEEL_VERSION" \
  "mlc-llvm-static-extra-targets==$LLVM_WHEEL_VERSION"

PREFIX="$("$VENV/bin/python" -m mlc_llvm_static.config --prefix)"
if [ ! -x "$PREFIX/bin/llvm-config" ] || ! ls "$PREFIX"/lib/libLLVMNVPTX*.a >/dev/null 2>&1; then
  echo "setup-cuda-build: $PREFIX lacks bin/llvm-config or the NVPTX libraries" >&2
  exit 1
fi
# The wheel's llvm-config is a Python script: its shebang must find a python.
"$PREFIX/bin/llvm-config" --version | grep -q '^23\.' || {
  echo "setup-cuda-build: $PREFIX/bin/llvm-config does not report LLVM 23" >&2
  exit 1
}

mkdir -p "$(dirname "$TARGET")"
if [ -e "$TARGET" ] && [ ! -L "$TARGET" ]; then
  echo "setup-cuda-build: $TARGET exists and is not our link; move it away first" >&2
  exit 1
fi
ln -sfn "$PREFIX" "$TARGET"
touch "$TARGET/.tracel-llvm-installed"
echo "LLVM $("$PREFIX/bin/llvm-config" --version) at $PREFIX, linked from $TARGET"
