#!/usr/bin/env bash
# The main job (configs/tiny.toml) for several arms over several seeds, two runs side by side
# (2 cores); `loc-eval claims` on each run's checkpoint; then one table of mean +- std per arm
# and method, paired differences with their standard errors, the claims, and the probes' curves.
#
#   scripts/tiny_ablation.sh [--seeds "0 1 2"] [--arms "reverse no-reverse no-exchange"] [--no-claims] [-- --set K=V ...]
#
# Arms: `reverse` (LoRA Reverse, the default), `no-reverse` (objective.reverse_weight = 0),
# `no-exchange` (objective.exchange_prob = 0), `compose` (the composition term at weight 1),
# and `no-KIND` for a world edit kind (`no-invert`, `no-add-object`, ...): H trained without that kind (data.sets.0.source.exclude_kinds), then
# scored on held-out quads of that kind alone (ARM/seed-N/kind-KIND/report.json, `loc-eval
# quads --kinds KIND` with the run's [eval] settings); the `reverse` arm is scored on the same
# quads as the with-kind reference. Every run's report also holds the editor's own baselines
# (do-nothing, copy, G null, G text). `--no-claims` leaves out `loc-eval claims` (3 minutes a
# run), for a sweep that needs only the reports. Arguments after `--` go to every run.
# Runs go to runs/tiny-ablation/ARM/seed-N (RUNS_DIR overrides); a run whose report.json
# (claims/claims.json, kind-KIND/report.json) exists is not trained (evaluated) again, so an
# interrupted sweep resumes. Those JSON files are also copied to an archive that is committed
# (ARCHIVE, default assets/results/tiny-ablation), and restored from it before a sweep: a sweep
# longer than a session goes on in the next one, on a fresh checkout, from what was committed.
# A restored run that still owes an evaluation but has no checkpoint is trained again (a seed
# trains the same weights). The binaries are copied into the runs folder first, so
# rebuilding during a sweep changes nothing; BIN_DIR=target/debug takes the test build's
# instead of building release ones (as fast here: tensor code is in the dependencies, built at
# O3 in both). The tables need only python3; the curves (quad-probe.png) are drawn when
# $PYTHON (default python3) has matplotlib.
set -euo pipefail
cd "$(dirname "$0")/.."

seeds="0 1 2"
arms="reverse no-reverse no-exchange"
claims=1
while [[ $# -gt 0 && "$1" != "--" ]]; do
    case "$1" in
        --seeds) seeds="$2"; shift 2 ;;
        --arms) arms="$2"; shift 2 ;;
        --no-claims) claims=0; shift ;;
        *) echo "unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
[[ $# -gt 0 ]] && shift
extra=("$@")
runs="${RUNS_DIR:-runs/tiny-ablation}"
archive="${ARCHIVE:-assets/results/tiny-ablation}"
mkdir -p "$runs" "$archive"

# The small results of a run (its reports and claims, no weights), copied from $1 to $2
# where $2 lacks them.
copy_results() {
    local from=$1 to=$2 file
    [[ -d "$from" ]] || return 0
    (cd "$from" && find . -path ./loc -prune -o \( -name report.json -o -name claims.json \) -print) |
        while read -r file; do
            [[ -f "$to/$file" ]] || { mkdir -p "$(dirname "$to/$file")" && cp "$from/$file" "$to/$file"; }
        done
}
copy_results "$archive" "$runs"

arm_settings() {
    case "$1" in
        reverse) ;;
        no-reverse) echo "--set objective.reverse_weight=0" ;;
        no-exchange) echo "--set objective.exchange_prob=0" ;;
        # The composition term (README: composition), on the training world's chained items.
        compose) echo "--set objective.compose_weight=1 --set objective.compose_world.len=200000" ;;
        # The kind's name is checked by loc-train, which lists the valid ones.
        no-*) echo "--set data.sets.0.source.exclude_kinds=[\"${1#no-}\"]" ;;
        *) echo "unknown arm $1 (reverse, no-reverse, no-exchange, compose, no-KIND)" >&2; return 1 ;;
    esac
}
for arm in $arms; do arm_settings "$arm" >/dev/null; done
# The kinds held out by `no-KIND` arms.
held_out_kinds=()
for arm in $arms; do
    case "$arm" in reverse | no-reverse | no-exchange | compose) ;; no-*) held_out_kinds+=("${arm#no-}") ;; esac
done

if [[ -n "${BIN_DIR:-}" ]]; then
    bins="$BIN_DIR"
else
    cargo build --release -p loc-train -p loc-eval
    bins=target/release
fi
for bin in loc-train loc-eval; do cp "$bins/$bin" "$runs/$bin.new" && mv "$runs/$bin.new" "$runs/$bin"; done

# Held-out quads of one kind, scored as the run's [eval] scores (configs/tiny.toml: 128 quads,
# 20 steps, guidance 1/1, the LoRA in every branch, the run's seed).
kind_eval() {
    local dir=$1 seed=$2 kind=$3
    [[ -f "$dir/kind-$kind/report.json" ]] && return 0
    echo "$dir: scored on $kind quads (log in $dir/kind-$kind.log)"
    "$runs/loc-eval" quads --checkpoint "$dir/loc" --data synthetic --kinds "$kind" --count 128 --seed "$seed" \
        --steps 20 --text-guidance 1 --image-guidance 1 --lora-in-every-branch --out "$dir/kind-$kind" \
        >"$dir/kind-$kind.log" 2>&1 || { echo "$dir: $kind quads FAILED: see $dir/kind-$kind.log" >&2; return 1; }
}

owes_claims() { [[ $claims == 1 && ! -f "$1/claims/claims.json" ]]; }

# Whether run $1 (arm $2) owes an evaluation of its checkpoint.
owes_evaluation() {
    local dir=$1 arm=$2 kind
    case "$arm" in
        reverse)
            for kind in ${held_out_kinds[@]+"${held_out_kinds[@]}"}; do
                [[ -f "$dir/kind-$kind/report.json" ]] || return 0
            done
            owes_claims "$dir" ;;
        no-reverse | no-exchange | compose) owes_claims "$dir" ;;
        no-*) [[ ! -f "$dir/kind-${arm#no-}/report.json" ]] ;;
    esac
}

run_one() {
    local arm=$1 seed=$2 dir="$runs/$1/seed-$2"
    mkdir -p "$runs/$arm"
    if [[ -f "$dir/report.json" && ! -d "$dir/loc" ]] && owes_evaluation "$dir" "$arm"; then
        echo "$arm seed $seed: restored from $archive without its checkpoint, which an evaluation needs: trained again"
        rm "$dir/report.json"
    fi
    if [[ -f "$dir/report.json" ]]; then
        echo "$arm seed $seed: $dir/report.json exists, kept"
    else
        echo "$arm seed $seed: training (log in $dir.log)"
        local settings
        read -ra settings <<<"$(arm_settings "$arm")"
        "$runs/loc-train" configs/tiny.toml --set "seed=$seed" --set "output_dir=\"$dir\"" ${settings[@]+"${settings[@]}"} \
            ${extra[@]+"${extra[@]}"} >"$dir.log" 2>&1 || { echo "$arm seed $seed FAILED: see $dir.log" >&2; return 1; }
    fi
    case "$arm" in
        reverse) for kind in ${held_out_kinds[@]+"${held_out_kinds[@]}"}; do kind_eval "$dir" "$seed" "$kind" || return 1; done ;;
        no-reverse | no-exchange | compose) ;;
        no-*) kind_eval "$dir" "$seed" "${arm#no-}"; return ;;
    esac
    if owes_claims "$dir"; then
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
        { run_one "$arm" "$seed" && rc=0 || rc=$?; copy_results "$runs/$arm/seed-$seed" "$archive/$arm/seed-$seed"; exit $rc; } &
        running=$((running + 1))
    done
done
while [[ $running -gt 0 ]]; do wait -n || status=1; running=$((running - 1)); done

# shellcheck disable=SC2086
"${PYTHON:-python3}" scripts/tiny_ablation_report.py "$runs" --arms $arms --seeds $seeds
exit $status
