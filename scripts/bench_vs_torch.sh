#!/usr/bin/env bash
# LoC-rs beside PyTorch on the same work, one table with the ratio (PyTorch seconds / LoC-rs
# seconds: above 1, LoC-rs is faster). Rows: the LoRA Reverse hypernet step, in the tiny
# world's setting (16 pairs, 16x16) and SD-1.5's (1 pair, 32x32 latents; ~10 GB of memory).
# PyTorch comes from a venv outside the repository (torch, diffusers):
#
#   PYTHON=/work/venv-ref/bin/python scripts/bench_vs_torch.sh [tiny|sd15 ...]
#
# Both sides use every core they find; the table names the threads.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
SETTINGS=("${@:-tiny sd15}")
read -r -a SETTINGS <<< "${SETTINGS[*]}"

cargo bench -p loc-train --bench hypernet_step --no-run --message-format=json 2>/dev/null \
    | "$PYTHON" -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "hypernet_step" and m.get("executable"):
        print(m["executable"])' > /tmp/loc-bench-bin
BENCH=$(tail -1 /tmp/loc-bench-bin)

# The step's seconds from the last table row of either side.
rust_seconds() { "$BENCH" "$@" | tail -1 | awk -F'|' '{gsub(/ /, "", $9); print $9}'; }
torch_seconds() { "$PYTHON" scripts/bench_hypernet_step_torch.py "$@" | tail -1 | awk -F'|' '{gsub(/ /, "", $6); print $6}'; }

echo "hypernet step, $(date -u +%Y-%m-%d), $(nproc) cores; PyTorch $("$PYTHON" -c 'import torch; print(torch.__version__, torch.get_num_threads(), "threads")')"
echo
echo "| work | LoC-rs s/step | PyTorch s/step | LoC-rs / PyTorch speed |"
echo "|---|---|---|---|"
for setting in "${SETTINGS[@]}"; do
    case "$setting" in
        tiny) flags=(); name="hypernet step, tiny world (16 pairs, 16x16)" ;;
        sd15) flags=(--sd15); name="hypernet step, SD-1.5 (1 pair, 32x32 latents)" ;;
        *) echo "unknown setting $setting (tiny, sd15)" >&2; exit 1 ;;
    esac
    rust=$(rust_seconds "${flags[@]}")
    torch=$(torch_seconds "${flags[@]}")
    ratio=$("$PYTHON" -c "print(f'{$torch / $rust:.2f}x')")
    echo "| $name | $rust | $torch | $ratio |"
done
