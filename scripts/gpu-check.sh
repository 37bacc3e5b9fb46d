#!/usr/bin/env bash
# The GPU check, run from the folder scripts/gpu-pack.sh builds, on a machine with the NVIDIA
# driver and a CUDA toolkit (no Rust, no network):
#
#   ./gpu-check.sh [--device cuda] [--small]
#
# It unpacks `loc`, runs each part under its own time limit (8 minutes in all), and prints one
# Markdown report, also written to $OUT/gpu-check.md (OUT defaults to ./out):
#   1. parity: `loc eval forward --reference` on every fixture, f32 (within 1e-3: a GPU may sum
#      in another order, or use TF32) and bf16 (within 5e-2)                         120 s
#   2. the SD-1.5-size hypernet step at 256 px (32x32 latents), 8 and 32 pairs, bf16 and f32:
#      pairs/s and the device memory its pools hold                                   150 s
#   3. a 20-step SD-1.5-size edit at 512 px, bf16 and f32: seconds per edit            75 s
#   4. 200 steps of configs/tiny.toml: steps/s                                         60 s
#   5. PyTorch's mirror of the step (bench_hypernet_step_torch.py), where torch and
#      diffusers import: the same rows, for the ratio                                  60 s
# --small is the CPU rehearsal CI runs on the packed folder: the tiny world's UNet and editor
# instead of SD-1.5's, small sizes, 10 training steps. A part that fails or runs out of time
# is marked in the report and the rest still run; the exit status says whether any failed.
set -uo pipefail
cd "$(dirname "$0")"
DEVICE=cuda SMALL=0
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE=$2; shift 2 ;;
        --small) SMALL=1; shift ;;
        *) echo "gpu-check.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
OUT=${OUT:-out}
mkdir -p "$OUT"
REPORT="$OUT/gpu-check.md" FAILED="$OUT/failed"
rm -f "$FAILED"
[ -x loc ] || { xz -dc loc.xz > loc && chmod +x loc; } || { echo "cannot unpack loc.xz" >&2; exit 1; }

# burn-cuda opens libcuda.so (the driver's) and NVRTC: find the toolkit's, and give a CUDA 13
# toolkit's libnvrtc.so.13 the name a CUDA 12.x build looks for.
if [[ "$DEVICE" == cuda* ]]; then
    mkdir -p lib
    for dir in ${CUDA_HOME:-} ${CUDA_PATH:-} /usr/local/cuda /usr/local/cuda-1[23]*; do
        if [ -d "$dir/lib64" ]; then
            LD_LIBRARY_PATH="$dir/lib64:${LD_LIBRARY_PATH:-}"
            nvrtc=$(ls "$dir"/lib64/libnvrtc.so.1[23]* 2>/dev/null | head -1)
            [ -n "$nvrtc" ] && [ ! -e lib/libnvrtc.so ] && ln -s "$nvrtc" lib/libnvrtc.so
        fi
    done
    export LD_LIBRARY_PATH="$PWD/lib:${LD_LIBRARY_PATH:-}"
fi

# limited SECONDS COMMAND...: runs it, marking a failure or a timeout in the report.
limited() {
    local seconds=$1; shift
    timeout "$seconds" "$@"
    local status=$?
    if [ $status -ne 0 ]; then
        echo "FAILED (exit $status$([ $status = 124 ] && echo ", over ${seconds} s")): $*" | tee -a "$FAILED" >&2
    fi
    return $status
}
# Runs until DEADLINE (seconds since the epoch): what is left of a part's budget.
left() { echo $(( DEADLINE - $(date +%s) > 1 ? DEADLINE - $(date +%s) : 1 )); }

if [ $SMALL = 1 ]; then
    STEP=(--side 8) STEP_PAIRS="2" EDIT=(--steps 3) TINY_STEPS=10
else
    STEP=(--sd15 --side 32) STEP_PAIRS="8 32" EDIT=(--sd15 --steps 20) TINY_STEPS=200
fi

{
echo "# GPU check: \`$DEVICE\`$([ $SMALL = 1 ] && echo ", small sizes"), $(date -u +%F)"
echo
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
./loc --version

echo
echo "## 1. Parity against diffusers / transformers"
echo
echo "| fixture | component | precision | tensor | max abs diff | relative |"
echo "|---|---|---|---|---|---|"
DEADLINE=$(( $(date +%s) + 120 ))
for precision in f32 bf16; do
    tolerance=1e-3; [ $precision = f32 ] || tolerance=5e-2
    for case in unet:unet_conv unet:unet_linear vae-encode:vae vae-decode:vae clip-text:clip_text \
        clip-text:clip_text_gelu clip-vision:clip_vision clip-vision:clip_full clip-text-projected:clip_full dino:vit_dino; do
        component=${case%%:*} model=${case#*:}
        limited "$(left)" ./loc eval --device "$DEVICE" --precision $precision forward --component "$component" \
            --model-dir "fixtures/$model" --inputs "fixtures/$model/io.safetensors" --output "$OUT/forward.safetensors" \
            --reference "fixtures/$model/io.safetensors" --tolerance $tolerance |
            sed -E "s#^.* [A-Za-z]+ ([a-z_]+): max abs diff ([^,]+), relative (.*)\$#| $model | $component | $precision | \1 | \2 | \3 |#"
    done
done

echo
echo "## 2. Hypernet step (LoRA Reverse, H + frozen UNet + AdamW)"
echo
DEADLINE=$(( $(date +%s) + 150 ))
header=1
for pairs in $STEP_PAIRS; do
    for precision in bf16 f32; do
        lines=1; [ $header = 1 ] && lines=3 && header=0
        limited "$(left)" ./loc bench step --device "$DEVICE" --precision $precision --pairs "$pairs" "${STEP[@]}" | tail -n $lines
    done
done

echo
echo "## 3. Edit (VAE encode, DDIM with three-way guidance, decode)"
echo
DEADLINE=$(( $(date +%s) + 75 ))
limited "$(left)" ./loc bench edit --device "$DEVICE" --precision bf16 "${EDIT[@]}" | tail -n 3
limited "$(left)" ./loc bench edit --device "$DEVICE" --precision f32 "${EDIT[@]}" | tail -n 1

echo
echo "## 4. configs/tiny.toml, $TINY_STEPS steps"
echo
start=$(date +%s)
if limited 60 ./loc train tiny.toml --device "$DEVICE" --set "output_dir=\"$OUT/tiny\"" --set "train.steps=$TINY_STEPS" \
    --set train.checkpoint_every=1000 --set train.sample_every=0 --set eval.count=4 --set eval.steps=3 > "$OUT/tiny.log" 2>&1; then
    seconds=$(( $(date +%s) - start ))
    echo "$TINY_STEPS steps of 16 pairs in $seconds s on \`$DEVICE\`: $(awk -v n=$TINY_STEPS -v s=$seconds 'BEGIN { printf "%.1f", n / (s > 0 ? s : 1) }') steps/s, counting the start, the probes (every 50 steps) and a 4-quad evaluation"
    grep -E "probe|steps done" "$OUT/tiny.log" | tail -n 3
else
    echo "failed: $(tail -n 3 "$OUT/tiny.log")"
fi

echo
echo "## 5. PyTorch on the same step"
echo
if python3 -c "import torch, diffusers" 2>/dev/null; then
    torch_device=cuda; [ "$DEVICE" = cpu ] && torch_device=cpu
    echo "| setting | PyTorch | precision | pairs/step | latents | step s | pairs/s | peak GiB |"
    echo "|---|---|---|---|---|---|---|---|"
    DEADLINE=$(( $(date +%s) + 60 ))
    for precision in bf16 f32; do
        limited "$(left)" python3 bench_hypernet_step_torch.py --device $torch_device --precision $precision \
            --pairs "${STEP_PAIRS%% *}" "${STEP[@]}" | tail -n 1
    done
else
    echo "skipped: torch and diffusers do not import here"
fi
} 2>&1 | tee "$REPORT"
echo "report: $REPORT"
[ ! -e "$FAILED" ]
