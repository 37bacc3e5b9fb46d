#!/usr/bin/env bash
# The main job (configs/tiny.toml) at several seeds, two runs side by side (2 cores), then one
# table: LoC's and do-nothing's L2 to B' and leakage per seed, from each run's report.json.
#
#   scripts/tiny_seeds.sh [SEEDS...] [-- --set KEY=VALUE ...]
#
# Seeds default to 0 1 2 3 4; arguments after `--` go to every run (an ablation, say).
# Runs go to runs/tiny-seeds/seed-N (RUNS_DIR overrides); a run whose report.json exists is
# not run again, so an interrupted sweep resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=()
while [[ $# -gt 0 && "$1" != "--" ]]; do seeds+=("$1"); shift; done
[[ $# -gt 0 ]] && shift
extra=("$@")
[[ ${#seeds[@]} -eq 0 ]] && seeds=(0 1 2 3 4)
runs="${RUNS_DIR:-runs/tiny-seeds}"
mkdir -p "$runs"

cargo build --release -p loc-train

run_seed() {
    local seed=$1 dir="$runs/seed-$1"
    if [[ -f "$dir/report.json" ]]; then
        echo "seed $seed: $dir/report.json exists, kept"
        return
    fi
    echo "seed $seed: training (log in $dir.log)"
    ./target/release/loc-train configs/tiny.toml --set "seed=$seed" --set "output_dir=\"$dir\"" \
        ${extra[@]+"${extra[@]}"} >"$dir.log" 2>&1 || { echo "seed $seed FAILED: see $dir.log" >&2; return 1; }
}

status=0
for ((i = 0; i < ${#seeds[@]}; i += 2)); do
    pids=()
    run_seed "${seeds[$i]}" & pids+=($!)
    if [[ $((i + 1)) -lt ${#seeds[@]} ]]; then run_seed "${seeds[$((i + 1))]}" & pids+=($!); fi
    for pid in "${pids[@]}"; do wait "$pid" || status=1; done
done

python3 - "$runs" "${seeds[@]}" <<'EOF'
import json, statistics, sys
runs, seeds = sys.argv[1], sys.argv[2:]
print(f"\n| seed | LoC L2 | do-nothing L2 | LoC / do-nothing | LoC leakage | do-nothing leakage |")
print("|---|---|---|---|---|---|")
ratios = []
for seed in seeds:
    try:
        report = json.load(open(f"{runs}/seed-{seed}/report.json"))
    except OSError:
        print(f"| {seed} | (no report) | | | | |")
        continue
    m = {x["method"]: x for x in report["methods"]}
    loc, nothing = m["LoC"], m["do-nothing"]
    ratio = loc["l2"] / nothing["l2"]
    ratios.append(ratio)
    print(f"| {seed} | {loc['l2']:.4f} | {nothing['l2']:.4f} | {ratio:.3f} | {loc['leakage']:+.4f} | {nothing['leakage']:+.4f} |")
if ratios:
    good = sum(r <= 0.9 for r in ratios)
    mean = statistics.mean(ratios)
    spread = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
    print(f"\nLoC / do-nothing L2: mean {mean:.3f} +- {spread:.3f} (std); at least 10% below do-nothing at {good} of {len(ratios)} seeds")
EOF
exit $status
