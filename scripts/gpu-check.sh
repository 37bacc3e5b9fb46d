#!/usr/bin/env bash
# The GPU check: the built binaries (scripts/build-gpu-bins.sh) on a GPU, one Markdown table
# per part, written to $OUT/gpu-check.md (OUT defaults to runs/gpu-check):
#   1. parity: `loc-eval forward` on every committed fixture against its diffusers /
#      transformers reference, f32 (must be within 1e-3) and bf16 (within 5e-2, stated);
#   2. the SD-1.5-size hypernet step (256 px = 32x32 latents, 8 pairs): pairs/s and the
#      device memory its pools hold, f32, bf16, and f32 with gradient checkpointing;
#   3. a 20-step SD-1.5-size edit at 512 px: s/edit, f32 and bf16;
#   4. configs/tiny.toml on the device: wall time and the quad report.
# Run from the repository root: scripts/gpu-check.sh BIN_DIR [DEVICE]   (DEVICE: cuda)
# PARTS="parity step edit tiny" picks parts. Each command runs under a time limit; a failure
# is reported in the table and the rest still run; the exit status says whether any failed.
set -uo pipefail
BIN=${1:?usage: gpu-check.sh BIN_DIR [DEVICE]}
DEVICE=${2:-cuda}
OUT=${OUT:-runs/gpu-check}
FIX=loc-core/tests/fixtures
mkdir -p "$OUT"
PARTS=${PARTS:-parity step edit tiny}
REPORT="$OUT/gpu-check.md"
FAILED="$OUT/failed"
rm -f "$FAILED"

limited() { # seconds, command...
  local seconds=$1; shift
  timeout "$seconds" "$@" || { echo "FAILED ($?): $*" | tee -a "$FAILED" >&2; return 1; }
}
part() { [[ " $PARTS " == *" $1 "* ]]; }

{
echo "# GPU check on \`$DEVICE\`, $(date -u +%F)"
echo
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if part parity; then
echo
echo "## Parity against the reference implementations"
echo
echo "| fixture | component | precision | tensor | max abs diff | relative |"
echo "|---|---|---|---|---|---|"
for precision in f32 bf16; do
  tolerance=1e-3; [ "$precision" = f32 ] || tolerance=5e-2
  for case in unet:unet_conv unet:unet_linear vae-encode:vae vae-decode:vae clip-text:clip_text \
    clip-text:clip_text_gelu clip-vision:clip_vision clip-vision:clip_full clip-text-projected:clip_full dino:vit_dino; do
    component=${case%%:*}; model=${case#*:}
    limited 120 "$BIN/loc-eval" --device "$DEVICE" --precision "$precision" forward --component "$component" \
      --model-dir "$FIX/$model" --inputs "$FIX/$model/io.safetensors" --output "$OUT/forward.safetensors" \
      --reference "$FIX/$model/io.safetensors" --tolerance "$tolerance" |
      sed -E "s#^.* ([A-Za-z]+) ([a-z_]+): max abs diff ([^,]+), relative (.*)\$#| $model | $component | $precision | \2 | \3 | \4 |#"
  done
done
fi
if part step; then
echo
echo "## SD-1.5 hypernet step: 8 pairs at 256 px (32x32 latents)"
echo
header=1
for flags in "--precision f32" "--precision bf16" "--precision f32 --gradient-checkpointing"; do
  # shellcheck disable=SC2086
  if [ $header = 1 ]; then lines=3; header=0; else lines=1; fi
  limited 300 "$BIN/hypernet_step" --sd15 --device "$DEVICE" --pairs 8 --side 32 $flags | tail -n $lines
done
fi
if part edit; then
echo
echo "## SD-1.5 edit: 512 px, 20 DDIM steps, three-way guidance"
echo
limited 300 "$BIN/edit" --sd15 --device "$DEVICE" --precision f32 | tail -n 3
limited 300 "$BIN/edit" --sd15 --device "$DEVICE" --precision bf16 | tail -n 1
fi
if part tiny; then
echo
echo "## configs/tiny.toml"
echo
start=$(date +%s)
if limited 1800 "$BIN/loc-train" configs/tiny.toml --device "$DEVICE" --set "output_dir=\"$OUT/tiny\"" > "$OUT/tiny.log" 2>&1; then
  echo "$(( $(date +%s) - start )) s on \`$DEVICE\` (1000 steps, then the quad evaluation)"
  echo
  cat "$OUT/tiny/report.md"
else
  echo "failed: see $OUT/tiny.log"
fi
fi
} 2>&1 | tee "$REPORT"
[ ! -e "$FAILED" ]
