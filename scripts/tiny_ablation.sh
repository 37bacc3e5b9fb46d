#!/usr/bin/env bash
# The main job (configs/tiny.toml) for several arms over several seeds, two runs side by side
# (2 cores); `loc-eval claims` on each run's checkpoint; then one table of mean +- std per arm
# and method, paired differences with their standard errors, the claims, and the probes' curves.
#
#   scripts/tiny_ablation.sh [--seeds "0 1 2"] [--arms "reverse no-reverse no-exchange"] [-- --set K=V ...]
#
# Arms: `reverse` (LoRA Reverse, the default), `no-reverse` (objective.reverse_weight = 0),
# `no-exchange` (objective.exchange_prob = 0). Every run's report also holds the editor's own
# baselines (do-nothing, copy, G null, G text). Arguments after `--` go to every run.
# Runs go to runs/tiny-ablation/ARM/seed-N (RUNS_DIR overrides); a run whose report.json
# (claims/claims.json) exists is not trained (evaluated) again, so an interrupted sweep
# resumes. The binaries are copied into the runs folder first, so rebuilding during a sweep
# changes nothing. The tables need only python3; the curves (quad-probe.png) are drawn when
# $PYTHON (default python3) has matplotlib.
set -euo pipefail
cd "$(dirname "$0")/.."

seeds="0 1 2"
arms="reverse no-reverse no-exchange"
while [[ $# -gt 0 && "$1" != "--" ]]; do
    case "$1" in
        --seeds) seeds="$2"; shift 2 ;;
        --arms) arms="$2"; shift 2 ;;
        *) echo "unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
[[ $# -gt 0 ]] && shift
extra=("$@")
runs="${RUNS_DIR:-runs/tiny-ablation}"
mkdir -p "$runs"

arm_settings() {
    case "$1" in
        reverse) ;;
        no-reverse) echo "--set objective.reverse_weight=0" ;;
        no-exchange) echo "--set objective.exchange_prob=0" ;;
        *) echo "unknown arm $1 (reverse, no-reverse, no-exchange)" >&2; return 1 ;;
    esac
}
for arm in $arms; do arm_settings "$arm" >/dev/null; done

cargo build --release -p loc-train -p loc-eval
for bin in loc-train loc-eval; do cp "target/release/$bin" "$runs/$bin.new" && mv "$runs/$bin.new" "$runs/$bin"; done

run_one() {
    local arm=$1 seed=$2 dir="$runs/$1/seed-$2"
    mkdir -p "$runs/$arm"
    if [[ -f "$dir/report.json" ]]; then
        echo "$arm seed $seed: $dir/report.json exists, kept"
    else
        echo "$arm seed $seed: training (log in $dir.log)"
        # shellcheck disable=SC2046
        "$runs/loc-train" configs/tiny.toml --set "seed=$seed" --set "output_dir=\"$dir\"" $(arm_settings "$arm") \
            ${extra[@]+"${extra[@]}"} >"$dir.log" 2>&1 || { echo "$arm seed $seed FAILED: see $dir.log" >&2; return 1; }
    fi
    if [[ ! -f "$dir/claims/claims.json" ]]; then
        echo "$arm seed $seed: claims (log in $dir.claims.log)"
        # The sampling of configs/tiny.toml's [eval]: 20 steps, guidance 1/1, the LoRA in every branch.
        "$runs/loc-eval" claims --checkpoint "$dir/loc" --seed "$seed" --steps 20 --guidance 1 \
            --image-guidance 1 --lora-in-every-branch --out "$dir/claims" >"$dir.claims.log" 2>&1 \
            || { echo "$arm seed $seed: claims FAILED: see $dir.claims.log" >&2; return 1; }
    fi
}

status=0
running=0
for seed in $seeds; do
    for arm in $arms; do
        if [[ $running -ge 2 ]]; then wait -n || status=1; running=$((running - 1)); fi
        run_one "$arm" "$seed" &
        running=$((running + 1))
    done
done
while [[ $running -gt 0 ]]; do wait -n || status=1; running=$((running - 1)); done

# shellcheck disable=SC2086
"${PYTHON:-python3}" scripts/tiny_ablation_report.py "$runs" --arms $arms --seeds $seeds
exit $status
