#!/usr/bin/env bash
# vendor/upstream's patches, applied in order (0001 onwards) to burn-flex as published,
# must give vendor/burn-flex/src without its `LoC-rs patch` markers: a change to the vendored crate
# that is not in a patch (or the reverse) fails here. Needs git; a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The first commit that adds vendor/burn-flex is the crate as published.
published=$(git log --diff-filter=A --format=%H -- vendor/burn-flex/Cargo.toml | tail -1)
if [[ -z "$published" || "$(git rev-parse --is-shallow-repository)" == true ]]; then
    echo "check-upstream-patches: this clone lacks the commit that added vendor/burn-flex (shallow?): not checked" >&2
    exit 0
fi
mkdir -p "$work/tree/crates"
git archive "$published" vendor/burn-flex | tar -x -C "$work"
mv "$work/vendor/burn-flex" "$work/tree/crates/burn-flex"
for patch in vendor/upstream/*.patch; do
    git -C "$work/tree" apply "$PWD/$patch" || { echo "$patch does not apply in order" >&2; exit 1; }
done
mkdir -p "$work/vendored"
cp -r vendor/burn-flex/src "$work/vendored/src"
find "$work/vendored/src" -name '*.rs' -exec sed -i -e 's/ (LoC-rs patch)//' -e 's/LoC-rs patch: at /At /' {} +
if ! diff -ru "$work/tree/crates/burn-flex/src" "$work/vendored/src"; then
    echo "vendor/upstream's patches and vendor/burn-flex differ (above); remake the patches as vendor/upstream/README.md says" >&2
    exit 1
fi
echo "vendor/upstream: $(ls vendor/upstream/*.patch | wc -l) patches give vendor/burn-flex/src"
