#!/usr/bin/env python3
"""Issue 6's comparison table from faiss-gmm-eval JSON results.

For each dataset and pair (method, reference) it reports how many times FEWER
distinct distance computations (and list entries scanned) the method needs than
the reference to reach recall@10 = 0.9 / 0.95 ("speedup" = reference cost /
method cost: > 1 means the method is cheaper; the issue's targets are >= 1.3 for
GMM spill vs k-means spill at equal memory and >= 1.7 for GMM spill vs k-means
without spill). Costs at a recall are interpolated linearly in log cost between
sweep points, exactly as eval/Curve.cpp does. Optionally plots recall@10 against
distinct distance computations per dataset.

usage: spill_report.py OUT.md [--png OUT.png] [--pairs label:method:reference,...] [--compact] RESULT.json...
--compact: one row per dataset/index, one column per pair, cells "distinct@0.9 / @0.95 (entries@0.9 / @0.95)".
"""
import json
import math
import sys

from atomic_output import atomic_output, write_text_atomically

# GMM's posterior-ratio spill: gmm_post_spill<B> (results written before issue 14's fourth pass name it
# gmm_spill<B>, which now means the GMM-SOAR rule; pass --pairs with those names to report them).
DEFAULT_PAIRS = [
    ("(a) no spill", "gmm", "kmeans"),
    ("(b) 1.2x", "gmm_post_spill1.2", "kmeans_spill1.2"),
    ("(b) 1.5x", "gmm_post_spill1.5", "kmeans_spill1.5"),
    ("(c) 1.2x vs none", "gmm_post_spill1.2", "kmeans"),
    ("(c) 1.5x vs none", "gmm_post_spill1.5", "kmeans"),
]
TARGETS = [0.9, 0.95]


def cost_at_recall(points, key, target):
    cost = [max(p[key], 1e-9) for p in points]
    rec = [p["recall"] for p in points]
    for i, r in enumerate(rec):
        if r >= target:
            if i == 0:
                return cost[0], True
            r0, r1 = rec[i - 1], rec[i]
            t = (target - r0) / (r1 - r0)
            return math.exp(math.log(cost[i - 1]) + t * (math.log(cost[i]) - math.log(cost[i - 1]))), False
    return float("nan"), False


def fmt(x, bound):
    if x != x:
        return "n/a"
    return ("~" if bound else "") + f"{x:.2f}"


def main(argv):
    out = argv[0]
    png = None
    compact = False
    pairs = DEFAULT_PAIRS
    files = []
    i = 1
    while i < len(argv):
        if argv[i] == "--png":
            png = argv[i + 1]
            i += 2
        elif argv[i] == "--compact":
            compact = True
            i += 1
        elif argv[i] == "--pairs":
            pairs = []
            for item in argv[i + 1].split(","):
                label, m, ref = item.split(":")
                pairs.append((label, m, ref))
            i += 2
        else:
            files.append(argv[i])
            i += 1
    reports = []
    for f in files:
        data = json.load(open(f))
        reports.extend(data if isinstance(data, list) else [data])
    if compact:
        lines = ["| dataset | index | " + " | ".join(p[0] for p in pairs) + " |",
                 "|---|---|" + "---|" * len(pairs)]
        for rep in reports:
            meths = {m["method"]: m for m in rep["methods"]}
            cells = []
            for label, m, ref in pairs:
                if m not in meths or ref not in meths:
                    cells.append("")
                    continue
                v = []
                for key in ("distinct", "entries"):
                    for t in TARGETS:
                        ca, fa = cost_at_recall(meths[m]["points"], key, t)
                        cb, fb = cost_at_recall(meths[ref]["points"], key, t)
                        v.append(fmt(cb / ca, fa or fb))
                cells.append(f"**{v[0]}** / **{v[1]}** ({v[2]} / {v[3]})")
            lines.append(f"| {rep['dataset']} | {rep['params']['index_description']} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("Cells: how many times fewer **distinct distance computations** GMM needs than the reference to "
                     "reach recall@10 = **0.9** / **0.95**, then (list entries scanned, same targets). > 1: GMM cheaper.")
        text = "\n".join(lines) + "\n"
    lines = ["| dataset | index | comparison | method / reference | entries per vector | "
             "speedup distinct @0.9 | @0.95 | speedup entries @0.9 | @0.95 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for rep in reports:
        meths = {m["method"]: m for m in rep["methods"]}
        nb = rep["nb"]
        for label, m, ref in pairs:
            if m not in meths or ref not in meths:
                continue
            a, b = meths[m], meths[ref]
            cells = []
            for key in ("distinct", "entries"):
                for t in TARGETS:
                    ca, fa = cost_at_recall(a["points"], key, t)
                    cb, fb = cost_at_recall(b["points"], key, t)
                    cells.append(fmt(cb / ca, fa or fb))
            lines.append(f"| {rep['dataset']} | {rep['params']['index_description']} | {label} | {m} / {ref} | "
                         f"{a['ntotal'] / nb:.3f} / {b['ntotal'] / nb:.3f} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("speedup = reference's cost / method's cost to reach the recall@10 (> 1: the method needs fewer); "
                 "`~`: a curve is already above the target at its first nprobe (a bound); n/a: not reached.")
    if not compact:
        text = "\n".join(lines) + "\n"
    write_text_atomically(out, text)
    print(text)
    if png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        n = len(reports)
        cols = min(3, n)
        rows = (n + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4.2 * rows), squeeze=False)
        for ax, rep in zip(axes.flat, reports):
            for m in rep["methods"]:
                pts = m["points"]
                style = "-" if m["method"].startswith("gmm") else "--"
                ax.plot([p["distinct"] for p in pts], [p["recall"] for p in pts], style, marker=".",
                        label=f"{m['method']} ({m['ntotal'] / rep['nb']:.2f}x)")
            ax.set_xscale("log")
            ax.set_ylim(0.7, 1.0)
            ax.axhline(0.9, color="gray", lw=0.5)
            ax.axhline(0.95, color="gray", lw=0.5)
            ax.set_title(f"{rep['dataset']} {rep['params']['index_description']}")
            ax.set_xlabel("distinct distance computations / query")
            ax.set_ylabel("recall@10")
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.tight_layout()
        with atomic_output(png) as tmp:
            fig.savefig(tmp, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1:])
