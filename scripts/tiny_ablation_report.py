#!/usr/bin/env python3
"""The tables of scripts/tiny_ablation.sh, from the runs it left.

    scripts/tiny_ablation_report.py RUNS --arms ARM... --seeds SEED...

Reads RUNS/ARM/seed-N/report.json (the end-of-run evaluation), RUNS/ARM/seed-N/claims/claims.json
(`loc-eval claims`, when present) and the probes in RUNS/ARM/seed-N/tensorboard. Prints
Markdown: mean +- std over seeds per arm and method; paired differences between arms (the
same seed draws the same quads, noise and initial H) with their standard error, called a
difference only where it exceeds twice that; the claims. Writes RUNS/quad-probe.png when
matplotlib can be imported. Needs only the standard library otherwise.
"""

import argparse
import glob
import json
import os
import statistics
import struct

METRICS = [("l1", "L1", 4), ("l2", "L2", 4), ("psnr", "PSNR", 2), ("ssim", "SSIM", 3), ("leakage", "leakage", 4)]
BASELINES = ["do-nothing", "copy", "G null", "G text"]


def mean_std(values):
    if not values:
        return float("nan"), float("nan")
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(values, digits):
    m, s = mean_std(values)
    return f"{m:.{digits}f} +- {s:.{digits}f}"


def paired(a, b):
    """Mean and standard error of a - b over the seeds both have."""
    diffs = [x - y for x, y in zip(a, b)]
    m, s = mean_std(diffs)
    return m, s / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")


def verdict(m, se):
    if se != se:
        return "one seed: no verdict"
    return "distinguishable" if abs(m) > 2 * se else "not distinguishable"


# Two-sided 95% critical values of Student's t by degrees of freedom (seeds - 1).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def t_verdict(m, se, n):
    """A paired t-test at 95%: |mean| > t(n-1) SE."""
    if n < 2 or n - 1 not in T95:
        return "-"
    return "significant" if abs(m) > T95[n - 1] * se else "not significant"


# TensorBoard event files: TFRecord frames of `Event` protos, read without tensorflow.
def varint(b, i):
    result = shift = 0
    while True:
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return result, i


def proto_fields(b):
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(b, i)
        elif wire == 1:
            value, i = b[i : i + 8], i + 8
        elif wire == 5:
            value, i = b[i : i + 4], i + 4
        elif wire == 2:
            n, i = varint(b, i)
            value, i = b[i : i + n], i + n
        else:
            raise ValueError(f"protobuf wire type {wire}")
        yield field, wire, value


def scalars(run_dir, prefix):
    """{tag: {step: value}} of the scalars whose tag starts with `prefix`."""
    out = {}
    for path in glob.glob(os.path.join(run_dir, "tensorboard", "*")):
        data = open(path, "rb").read()
        i = 0
        while i + 12 <= len(data):
            n = struct.unpack("<Q", data[i : i + 8])[0]
            record, i = data[i + 12 : i + 12 + n], i + 12 + n + 4
            step, values = 0, []
            for field, _, value in proto_fields(record):
                if field == 2:
                    step = value
                elif field == 5:
                    for f2, _, v2 in proto_fields(value):
                        if f2 != 1:
                            continue
                        tag = number = None
                        for f3, w3, v3 in proto_fields(v2):
                            if f3 == 1:
                                tag = v3.decode()
                            elif f3 == 2 and w3 == 5:
                                number = struct.unpack("<f", v3)[0]
                        if tag and tag.startswith(prefix) and number is not None:
                            values.append((tag, number))
            for tag, number in values:
                out.setdefault(tag, {})[step] = number
    return out


def load(runs, arms, seeds):
    reports, claims = {}, {}
    for arm in arms:
        for seed in seeds:
            base = os.path.join(runs, arm, f"seed-{seed}")
            try:
                report = json.load(open(os.path.join(base, "report.json")))
                reports[arm, seed] = {m["method"]: m for m in report["methods"]}
            except OSError:
                pass
            try:
                claims[arm, seed] = json.load(open(os.path.join(base, "claims", "claims.json")))
            except OSError:
                pass
    return reports, claims


def method_table(reports, arms, seeds):
    print("| arm | method | seeds | " + " | ".join(name for _, name, _ in METRICS) + " |")
    print("|---|---|---|" + "---|" * len(METRICS))
    rows = [(arms[0], b) for b in BASELINES] + [(arm, "LoC") for arm in arms]
    for arm, method in rows:
        have = [s for s in seeds if (arm, s) in reports and method in reports[arm, s]]
        if not have:
            continue
        cells = []
        for key, _, digits in METRICS:
            values = [reports[arm, s][method][key] for s in have if reports[arm, s][method][key] is not None]
            cells.append(fmt(values, digits) if values else "-")
        label = "(any)" if method in BASELINES else arm
        print(f"| {label} | {method} | {len(have)} | " + " | ".join(cells) + " |")


def difference_table(reports, arms, seeds):
    reference = arms[0]
    print("\nPaired differences over seeds (mean +- standard error); distinguishable: |mean| > 2 SE;")
    print("the paired t-test at 95% needs |mean| > t(seeds - 1) SE (4.30 at 3 seeds, 2.36 at 8).\n")
    print("| comparison | metric | seeds | difference | verdict | t-test 95% |")
    print("|---|---|---|---|---|---|")
    comparisons = [(f"LoC ({reference}) - do-nothing", reference, "LoC", reference, "do-nothing")]
    comparisons += [(f"LoC ({reference}) - G null", reference, "LoC", reference, "G null")]
    # The true edit itself moves outputs towards A': G with the text is the leakage a
    # perfect edit would show.
    comparisons += [(f"LoC ({reference}) - G text", reference, "LoC", reference, "G text")]
    comparisons += [(f"LoC ({arm}) - LoC ({reference})", arm, "LoC", reference, "LoC") for arm in arms[1:]]
    for label, arm_a, method_a, arm_b, method_b in comparisons:
        both = [s for s in seeds if (arm_a, s) in reports and (arm_b, s) in reports]
        for key in ["l2", "leakage"]:
            a = [reports[arm_a, s][method_a][key] for s in both]
            b = [reports[arm_b, s][method_b][key] for s in both]
            if len(both) < 2:
                continue
            m, se = paired(a, b)
            print(f"| {label} | {key} | {len(both)} | {m:+.4f} +- {se:.4f} | {verdict(m, se)} | {t_verdict(m, se, len(both))} |")


def held_out_kind_table(runs, arms, seeds):
    """`no-KIND` arms on quads of their kind, against the `reverse` arm (H trained with it)."""
    kinds = [arm[3:] for arm in arms if arm.startswith("no-") and arm not in ("no-reverse", "no-exchange")]
    if not kinds:
        return

    def kind_report(arm, seed, kind):
        try:
            report = json.load(open(os.path.join(runs, arm, f"seed-{seed}", f"kind-{kind}", "report.json")))
        except OSError:
            return None
        return {m["method"]: m for m in report["methods"]}

    print("\nHeld-out kinds: H trained without the kind, scored on held-out quads of that kind alone")
    print("(L2 to B', mean +- std over seeds; differences paired by seed, mean +- SE, with the 2-SE")
    print("verdict and the paired t-test at 95%). `with` is H trained on every kind (the `reverse` arm).\n")
    print("| kind | seeds | LoC without | LoC with | do-nothing | G null | G text | leakage without "
          "| without / do-nothing | without / with | without - do-nothing | without - with |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for kind in kinds:
        rows = [(kind_report(f"no-{kind}", s, kind), kind_report("reverse", s, kind)) for s in seeds]
        rows = [(without, with_) for without, with_ in rows if without and with_]
        if not rows:
            continue
        l2 = lambda reports, method: [r[method]["l2"] for r in reports]
        without, with_ = [w for w, _ in rows], [w for _, w in rows]
        cells = [fmt(l2(without, "LoC"), 4), fmt(l2(with_, "LoC"), 4)]
        cells += [fmt(l2(without, b), 4) for b in ("do-nothing", "G null", "G text")]
        cells.append(fmt([r["LoC"]["leakage"] for r in without], 4))
        for other, method in ((without, "do-nothing"), (with_, "LoC")):
            ratios = [a / b for a, b in zip(l2(without, "LoC"), l2(other, method))]
            cells.append(fmt(ratios, 2))
        for other, method in ((without, "do-nothing"), (with_, "LoC")):
            m, se = paired(l2(without, "LoC"), l2(other, method))
            cells.append(f"{m:+.4f} +- {se:.4f} ({verdict(m, se)}; t: {t_verdict(m, se, len(rows))})")
        print(f"| {kind} | {len(rows)} | " + " | ".join(cells) + " |")


CLAIMS = [
    ("reuse", "do_nothing"),
    ("reuse", "per_query"),
    ("reuse", "reused"),
    ("reverse", "forward_to_target"),
    ("reverse", "forward_to_query"),
    ("reverse", "back_to_query"),
    ("reverse", "null_to_query"),
    ("compose", "do_nothing"),
    ("compose", "scene_only"),
    ("compose", "pixel_only"),
    ("compose", "sum"),
    ("compose", "mean"),
    ("compose", "norm_matched"),
    ("compose", "sequential"),
]
CLAIM_DIFFERENCES = [
    ("one LoRA reused - own pair per query", ("reuse", "reused"), ("reuse", "per_query")),
    ("G(B+; -Δ) to B - G(B+; no LoRA) to B", ("reverse", "back_to_query"), ("reverse", "null_to_query")),
    ("G(B+; -Δ) to B - B+ to B", ("reverse", "back_to_query"), ("reverse", "forward_to_query")),
    ("Δ1 + Δ2 - Δ1 alone", ("compose", "sum"), ("compose", "scene_only")),
    ("Δ1 + Δ2 - Δ2 alone", ("compose", "sum"), ("compose", "pixel_only")),
    ("Δ1 + Δ2 - Δ1 then Δ2", ("compose", "sum"), ("compose", "sequential")),
    ("(Δ1 + Δ2) / 2 - Δ2 alone", ("compose", "mean"), ("compose", "pixel_only")),
    ("(Δ1 + Δ2) / 2 - Δ1 then Δ2", ("compose", "mean"), ("compose", "sequential")),
    ("norm-matched sum - Δ2 alone", ("compose", "norm_matched"), ("compose", "pixel_only")),
    ("norm-matched sum - Δ1 then Δ2", ("compose", "norm_matched"), ("compose", "sequential")),
]


def claim_difference(claims, seeds, a, b):
    """Claim a - claim b, each `(arm, section, key)`, paired over the seeds that have both."""
    value = lambda arm, section, key, s: claims.get((arm, s), {}).get(section, {}).get(key)
    have = [s for s in seeds if value(*a, s) is not None and value(*b, s) is not None]
    if len(have) < 2:
        return "-"
    m, se = paired([value(*a, s) for s in have], [value(*b, s) for s in have])
    return f"{m:+.4f} +- {se:.4f} ({verdict(m, se)}; t: {t_verdict(m, se, len(have))})"


def claims_tables(claims, arms, seeds):
    if not claims:
        print("\n(no claims.json: run `loc-eval claims` on the runs)")
        return
    # The no-KIND arms are scored on their kind's quads, not by the claims.
    arms = [arm for arm in arms if any((arm, s) in claims for s in seeds)]
    print("\nClaims (`loc-eval claims`, held-out world; L2, mean +- std over seeds):\n")
    print("| claim | value | " + " | ".join(arms) + " |")
    print("|---|---|" + "---|" * len(arms))
    for section, key in CLAIMS:
        cells = []
        for arm in arms:
            values = [claims[arm, s][section][key] for s in seeds if key in claims.get((arm, s), {}).get(section, {})]
            cells.append(f"{fmt(values, 4)} (n={len(values)})" if values else "-")
        print(f"| {section} | {key} | " + " | ".join(cells) + " |")
    print("\n| paired difference | " + " | ".join(arms) + " |")
    print("|---|" + "---|" * len(arms))
    for label, (sa, ka), (sb, kb) in CLAIM_DIFFERENCES:
        cells = []
        for arm in arms:
            cells.append(claim_difference(claims, seeds, (arm, sa, ka), (arm, sb, kb)))
        print(f"| {label} | " + " | ".join(cells) + " |")
    reference = arms[0]
    others = [arm for arm in arms[1:] if any((arm, s) in claims for s in seeds)]
    if not others:
        return
    print(f"\nThe same claims, each arm - {reference} (paired by seed; mean +- SE, 2-SE verdict and t-test 95%):\n")
    print("| claim | value | " + " | ".join(f"{arm} - {reference}" for arm in others) + " |")
    print("|---|---|" + "---|" * len(others))
    for section, key in CLAIMS:
        cells = []
        for arm in others:
            cells.append(claim_difference(claims, seeds, (arm, section, key), (reference, section, key)))
        print(f"| {section} | {key} | " + " | ".join(cells) + " |")


def curves(runs, arms, seeds):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(quad-probe.png not drawn: matplotlib is not importable by this python)")
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    references = {}
    for i, arm in enumerate(arms):
        probes = [scalars(os.path.join(runs, arm, f"seed-{seed}"), "probe/") for seed in seeds]
        for panel, (tag, title) in enumerate(
            [("probe/quad_lora", "quad probe: G + H(A, A') on B towards B'"), ("probe/lora", "pair probe (mirrored pair)")]
        ):
            series = []
            for values in probes:
                if tag in values:
                    series.append(values[tag])
                    null_tag = tag.replace("lora", "null")
                    text_tag = tag.replace("lora", "text")
                    references.setdefault(panel, []).append((values[null_tag][0], values[text_tag][0]))
            if not series:
                continue
            steps = sorted(set.intersection(*(set(s) for s in series)))
            mean = [statistics.mean(s[t] for s in series) for t in steps]
            std = [statistics.stdev(s[t] for s in series) if len(series) > 1 else 0.0 for t in steps]
            ax = axes[panel]
            ax.plot(steps, mean, label=f"{arm} (n={len(series)})", color=f"C{i}")
            ax.fill_between(steps, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2, color=f"C{i}")
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("step")
    for panel, refs in references.items():
        null = statistics.mean(r[0] for r in refs)
        text = statistics.mean(r[1] for r in refs)
        axes[panel].axhline(null, color="grey", linestyle="--", label="G null (no LoRA)")
        axes[panel].axhline(text, color="black", linestyle=":", label="G with the true instruction")
        axes[panel].set_ylabel("denoising MSE")
        axes[panel].legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(runs, "quad-probe.png")
    fig.savefig(path, dpi=110)
    print(f"\ncurves: {path}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("runs")
    parser.add_argument("--arms", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", required=True)
    args = parser.parse_args()
    reports, claims = load(args.runs, args.arms, args.seeds)
    print(f"\n{args.runs}: arms {' '.join(args.arms)}, seeds {' '.join(args.seeds)}\n")
    method_table(reports, args.arms, args.seeds)
    difference_table(reports, args.arms, args.seeds)
    held_out_kind_table(args.runs, args.arms, args.seeds)
    claims_tables(claims, args.arms, args.seeds)
    curves(args.runs, args.arms, args.seeds)


if __name__ == "__main__":
    main()
