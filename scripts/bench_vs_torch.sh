#!/usr/bin/env bash
# LoC-rs beside PyTorch on the same work, one table with the ratio (PyTorch seconds / LoC-rs
# seconds: above 1, LoC-rs is faster). Each Rust benchmark runs beside its mirror in scripts/:
#
#   tiny     the LoRA Reverse hypernet step in the tiny world's setting (16 pairs, 16x16), and
#            the tiny UNet forward and forward+backward (bench_hypernet_step_torch.py,
#            bench_unet_torch.py)
#   sd15     the same at SD-1.5 InstructPix2Pix size (1 pair, 32x32 latents; ~10 GB of memory)
#   metrics  the metric towers' forward on ready tensors, batch 16: CLIP ViT-B/32 images and
#            text, DINO ViT-S/16 (bench_metrics_torch.py)
#   decode   JPEG pairs decoded, resized and cropped to 256, one thread (bench_decode_pil.py)
#
# PyTorch comes from a venv outside the repository (torch, diffusers, transformers, pillow):
#
#   PYTHON=/work/venv-ref/bin/python scripts/bench_vs_torch.sh [tiny|sd15|metrics|decode ...]
#
# Both sides use every core they find; the table's heading names the threads.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
SETTINGS=("${@:-tiny sd15 metrics decode}")
read -r -a SETTINGS <<< "${SETTINGS[*]}"

# Every bench, built in one cargo invocation over the workspace: one feature set, so burn is
# compiled once (`cargo bench -p PACKAGE` per package resolved burn's features per package, and
# rebuilt it for each).
benches=$(mktemp)
trap 'rm -f "$benches"' EXIT
cargo bench --workspace --no-run --message-format=json >"$benches"

# The executable of a cargo bench target: bench_bin PACKAGE BENCH.
bench_bin() {
    "$PYTHON" -c 'import json, sys
for line in open(sys.argv[3]):
    m = json.loads(line)
    if (m.get("reason") == "compiler-artifact" and m["package_id"].split("#")[0].endswith("/" + sys.argv[1])
            and m["target"]["name"] == sys.argv[2] and m.get("executable")):
        print(m["executable"])' "$1" "$2" "$benches" | tail -1
}

# Column COL of the Markdown table row whose first cell starts with ROW, from stdin.
cell() { awk -F'|' -v row="$1" -v col="$2" 'index($2, " " row) == 1 { x = $col } END { gsub(/ /, "", x); print x }'; }

# One row: NAME, LoC-rs seconds, PyTorch seconds.
row() { echo "| $1 | $2 | $3 | $("$PYTHON" -c "print(f'{$3 / $2:.2f}x')") |"; }

echo "LoC-rs beside PyTorch, $(date -u +%Y-%m-%d), $(nproc) cores; PyTorch $("$PYTHON" -c 'import torch; print(torch.__version__, torch.get_num_threads(), "threads")')"
echo
echo "| work | LoC-rs s | PyTorch s | LoC-rs / PyTorch speed |"
echo "|---|---|---|---|"
for setting in "${SETTINGS[@]}"; do
    case "$setting" in
        tiny | sd15)
            if [ "$setting" = tiny ]; then
                flags=() unet="tiny" step="hypernet step, tiny world (16 pairs, 16x16)" size="tiny UNet (8x8x16x16)"
            else
                flags=(--sd15) unet="SD-1.5" step="hypernet step, SD-1.5 (1 pair, 32x32 latents)" size="SD-1.5 UNet (1x8x32x32)"
            fi
            rust=$("$(bench_bin loc-train hypernet_step)" "${flags[@]}" | tail -1 | cell "" 9)
            torch=$("$PYTHON" scripts/bench_hypernet_step_torch.py "${flags[@]}" | tail -1 | cell "" 7)
            row "$step" "$rust" "$torch"
            rust=$("$(bench_bin loc-core unet)" "${flags[@]}")
            torch=$("$PYTHON" scripts/bench_unet_torch.py "${flags[@]}")
            row "$size forward, LoRA on every attention projection" "$(cell "$unet" 6 <<< "$rust")" "$(cell "$unet" 6 <<< "$torch")"
            row "$size forward + backward into the LoRA" "$(cell "$unet" 7 <<< "$rust")" "$(cell "$unet" 7 <<< "$torch")"
            ;;
        metrics)
            rust=$("$(bench_bin loc-eval metrics)")
            torch=$("$PYTHON" scripts/bench_metrics_torch.py)
            for tower in "CLIP ViT-B/32 images" "CLIP text" "DINO ViT-S/16 images"; do
                name="$tower (forward only)"
                row "$name, batch of 16" "$(cell "$name" 3 <<< "$rust")" "$(cell "$name" 3 <<< "$torch")"
            done
            ;;
        decode)
            dir=$(mktemp -d)
            rust=$("$(bench_bin loc-data decode)" "$dir" | cell 1 3)
            torch=$("$PYTHON" scripts/bench_decode_pil.py "$dir" | cell "PIL" 3)
            rm -r "$dir"
            row "decode + resize + crop a JPEG pair, 1 thread (PIL)" \
                "$("$PYTHON" -c "print(f'{1 / $rust:.4f}')")" "$("$PYTHON" -c "print(f'{1 / $torch:.4f}')")"
            ;;
        *) echo "unknown setting $setting (tiny, sd15, metrics, decode)" >&2; exit 1 ;;
    esac
done
