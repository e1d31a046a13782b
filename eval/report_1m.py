#!/usr/bin/python3
"""Issue 14's tables from faiss-gmm-eval JSON results (debsift1m).

report: for every run (dataset x index description) and every pair (label,
method, reference) present in it, at recall@10 = 0.9 / 0.95 / 0.99:
  - how many times fewer distinct distance computations the method needs than
    the reference (reference cost / method cost, > 1: the method is cheaper),
    list entries scanned beside it (duplicates included) and lists probed
    (nprobe: the count under which the research's 1.7x is reproduced),
  - the single-thread QPS ratio at the same recall (method / reference; the
    time per query interpolated in log time between sweep points, as the costs),
  - the recall gain at matched cost: the method's recall at each of the
    reference's sweep costs minus the reference's, averaged where defined.
Costs are interpolated linearly in log cost between sweep points (eval/Curve.cpp).
Writes OUT.md, OUT.csv, OUT-summary.json and, with --png, the curves.

select: from held-out results, the method with the lowest distinct cost at
recall 0.9 and 0.95 (geometric mean) among the candidates whose memory is at
most --max-mem entries per vector; prints its name.

grid: one table over run_1m.sh --grid's rows (TAG-heldout.json, TAG-choice.txt,
TAG-pairs-summary.json, TAG-qps500-pairs-summary.json, TAG-qps-load.txt in DIR).

usage: report_1m.py report OUT --pairs label:method:ref,... [--png OUT.png] [--no-qps] RESULT.json...
       report_1m.py select --candidates m1,m2,... [--max-mem 1.5] RESULT.json...
       report_1m.py grid OUT.md --dir DIR TAG...
"""
import argparse
import csv
import json
import math
import sys

TARGETS = (0.9, 0.95, 0.99)


def at_recall(points, key, target):
    """(value of `key` at the target recall, bound flag); NaN when the curve never reaches it."""
    val = [max(p[key], 1e-12) for p in points]
    rec = [p["recall"] for p in points]
    for i, r in enumerate(rec):
        if r >= target:
            if i == 0:
                return val[0], True
            t = (target - rec[i - 1]) / max(rec[i] - rec[i - 1], 1e-12)
            return math.exp(math.log(val[i - 1]) + t * (math.log(val[i]) - math.log(val[i - 1]))), False
    return float("nan"), False


def recall_at_cost(points, cost):
    c = [max(p["distinct"], 1e-12) for p in points]
    r = [p["recall"] for p in points]
    if cost < c[0] or cost > c[-1]:
        return float("nan")
    for i in range(1, len(c)):
        if cost <= c[i]:
            t = (math.log(cost) - math.log(c[i - 1])) / max(math.log(c[i]) - math.log(c[i - 1]), 1e-12)
            return r[i - 1] + t * (r[i] - r[i - 1])
    return r[-1]


def with_time(points):
    for p in points:
        p["time_per_query"] = 1.0 / max(p["qps"], 1e-12)
    return points


def load(files):
    reports = []
    for f in files:
        data = json.load(open(f))
        for rep in data if isinstance(data, list) else [data]:
            rep["_file"] = f
            for m in rep["methods"]:
                with_time(m["points"])
            reports.append(rep)
    return reports


def compare(rep, method, ref):
    meths = {m["method"]: m for m in rep["methods"]}
    a, b = meths[method], meths[ref]
    row = {"dataset": rep["dataset"], "nq": rep["nq"], "index": rep["params"]["index_description"],
           "max_points_per_centroid": rep["params"]["max_points_per_centroid"], "method": method, "reference": ref,
           "mem_method": a["ntotal"] / rep["nb"], "mem_reference": b["ntotal"] / rep["nb"]}
    for t in TARGETS:
        for key, name in (("distinct", "distinct"), ("entries", "entries"), ("lists", "lists")):
            ca, fa = at_recall(a["points"], key, t)
            cb, fb = at_recall(b["points"], key, t)
            row[f"{name}_ratio@{t}"] = cb / ca
            row[f"{name}_bound@{t}"] = fa or fb
            row[f"{name}_method@{t}"] = ca
            row[f"{name}_reference@{t}"] = cb
        ta, _ = at_recall(a["points"], "time_per_query", t)
        tb, _ = at_recall(b["points"], "time_per_query", t)
        row[f"qps_ratio@{t}"] = tb / ta
    gains = [recall_at_cost(a["points"], max(p["distinct"], 1e-12)) - p["recall"] for p in b["points"]]
    gains = [g for g in gains if g == g]
    row["mean_recall_gain"] = sum(gains) / len(gains) if gains else float("nan")
    return row


def fmt(x, bound=False, nd=2):
    if x != x:
        return "n/a"
    return ("~" if bound else "") + f"{x:.{nd}f}"


def report(args):
    reports = load(args.files)
    pairs = [tuple(p.split(":")) for p in args.pairs.split(",")]
    rows = []
    for rep in reports:
        names = {m["method"] for m in rep["methods"]}
        for label, m, ref in pairs:
            if m in names and ref in names:
                row = compare(rep, m, ref)
                row["label"] = label
                rows.append(row)
    lines = ["| index | training | comparison | method / reference | entries per vector | distinct @0.9 / 0.95 / 0.99 "
             "| entries @0.9 / 0.95 / 0.99 | lists probed @0.9 / 0.95 / 0.99 | 1-thread QPS @0.9 / 0.95 / 0.99 "
             "| recall gain at equal cost |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        train = "all rows" if r["max_points_per_centroid"] == 0 else f"{r['max_points_per_centroid']}/list"
        cell = lambda key: " / ".join(fmt(r[f"{key}@{t}"], r.get(f"{key.split('_')[0]}_bound@{t}", False))
                                      for t in TARGETS)
        lines.append(f"| {r['index']} | {train} | {r['label']} | {r['method']} / {r['reference']} | "
                     f"{r['mem_method']:.2f} / {r['mem_reference']:.2f} | **{cell('distinct_ratio')}** | "
                     f"{cell('entries_ratio')} | {cell('lists_ratio')} | {'not timed' if args.no_qps else cell('qps_ratio')} | {r['mean_recall_gain']:+.4f} |")
    lines.append("")
    lines.append("Ratios: reference's distinct distance computations (list entries; time per query) / the method's at "
                 "the same recall@10 (> 1: the method is cheaper / faster), interpolated in log cost between nprobe "
                 "points; lists probed: nprobe (the research's apparent count, list lengths not charged); "
                 "`~`: a curve starts above the target (a bound); n/a: not reached. The coarse quantizer's "
                 "nlist distances per query are the same for both and not included. Recall gain: the method's "
                 "recall minus the reference's at the reference's measured costs, averaged.")
    text = "\n".join(lines) + "\n"
    with open(args.out + ".md", "w") as f:
        f.write(text)
    keys = sorted({k for r in rows for k in r})
    with open(args.out + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    with open(args.out + "-summary.json", "w") as f:
        json.dump(rows, f, indent=1, default=lambda x: None)
    print(text)
    if args.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        n = len(reports)
        cols = min(2, n)
        nrows = (n + cols - 1) // cols
        fig, axes = plt.subplots(nrows, cols, figsize=(7 * cols, 5 * nrows), squeeze=False)
        for ax, rep in zip(axes.flat, reports):
            for m in rep["methods"]:
                pts = m["points"]
                style = "-" if m["method"].startswith("gmm") else "--"
                ax.plot([p["distinct"] for p in pts], [p["recall"] for p in pts], style, marker=".",
                        label=f"{m['method']} ({m['ntotal'] / rep['nb']:.2f}x)")
            ax.set_xscale("log")
            ax.set_ylim(0.6, 1.0)
            for t in TARGETS:
                ax.axhline(t, color="gray", lw=0.5)
            mp = rep["params"]["max_points_per_centroid"]
            ax.set_title(f"{rep['dataset']} {rep['params']['index_description']}, {rep['nq']} queries, "
                         f"trained on {'all rows' if mp == 0 else f'{mp}/list'}", fontsize=9)
            ax.set_xlabel("distinct distance computations / query")
            ax.set_ylabel("recall@10")
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)


def select(args):
    reports = load(args.files)
    best, best_cost = None, float("inf")
    for rep in reports:
        meths = {m["method"]: m for m in rep["methods"]}
        for name in args.candidates.split(","):
            m = meths.get(name)
            if m is None or m["ntotal"] / rep["nb"] > args.max_mem + 1e-3:
                continue
            c = [at_recall(m["points"], "distinct", t)[0] for t in (0.9, 0.95)]
            g = math.sqrt(c[0] * c[1])
            print(f"select: {name}: {m['ntotal'] / rep['nb']:.2f} entries per vector, distinct at recall 0.9 / 0.95 "
                  f"{c[0]:.0f} / {c[1]:.0f}", file=sys.stderr)
            if g == g and g < best_cost:
                best, best_cost = name, g
    if best is None:
        raise SystemExit("select: no candidate found in the results")
    print(best)


def grid(args):
    """One table over the grid rows run_1m.sh --grid wrote: the held-out candidates and the choice, the
    official ratios (distinct / entries / lists probed) and the single-thread QPS ratios with the load."""
    def cells(row, key):
        return " / ".join(fmt(row[f"{key}@{t}"], row.get(f"{key.split('_')[0]}_bound@{t}", False)) for t in TARGETS)
    lines = ["### Held-out selection (distinct computations per query at recall@10 0.9 / 0.95; the lowest "
             "geometric mean at <= 1.5 entries per vector is chosen)", "",
             "| row | candidate | entries per vector | distinct @0.9 / 0.95 | chosen |", "|---|---|---|---|---|"]
    for tag in args.tags:
        km, rec = open(f"{args.dir}/{tag}-choice.txt").read().split()
        rep = load([f"{args.dir}/{tag}-heldout.json"])[0]
        for m in rep["methods"]:
            if m["method"] == "kmeans":
                continue
            c = [at_recall(m["points"], "distinct", t)[0] for t in (0.9, 0.95)]
            lines.append(f"| {tag} | {m['method']} | {m['ntotal'] / rep['nb']:.2f} | {fmt(c[0], nd=0)} / "
                         f"{fmt(c[1], nd=0)} | {'**yes**' if m['method'] in (km, rec) else ''} |")
    lines += ["", "### Official queries: reference / method at recall@10 0.9 / 0.95 / 0.99 (> 1: the method is cheaper "
              "or faster)", "",
              "| row | comparison | method / reference | entries per vector | distinct | entries | lists probed "
              "| 1-thread QPS (500 queries, 5 interleaved rounds) | distinct on those 500 | load during timing (1 / 5 / 15 min) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for tag in args.tags:
        costs = json.load(open(f"{args.dir}/{tag}-pairs-summary.json"))
        try:
            qps = {(r["method"], r["reference"]): r for r in json.load(open(f"{args.dir}/{tag}-qps500-pairs-summary.json"))}
            loads = [ln.split("load average:")[1].strip() for ln in open(f"{args.dir}/{tag}-qps-load.txt")
                     if "load average:" in ln]
            load_txt = " → ".join(loads)
        except FileNotFoundError:
            qps, load_txt = {}, "not timed"
        for r in costs:
            q = qps.get((r["method"], r["reference"]))
            lines.append(f"| {tag} | {r['label']} | {r['method']} / {r['reference']} | {r['mem_method']:.2f} / "
                         f"{r['mem_reference']:.2f} | **{cells(r, 'distinct_ratio')}** | {cells(r, 'entries_ratio')} | "
                         f"{cells(r, 'lists_ratio') if 'lists_ratio@0.9' in r else 'n/a'} | "
                         f"{cells(q, 'qps_ratio') if q else 'n/a'} | {cells(q, 'distinct_ratio') if q else 'n/a'} | "
                         f"{load_txt} |")
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("report")
    r.add_argument("out")
    r.add_argument("--pairs", required=True)
    r.add_argument("--png")
    r.add_argument("--no-qps", action="store_true",
                   help="the runs were not timed for QPS (e.g. 2 threads, overlapping runs): leave the column out")
    r.add_argument("files", nargs="+")
    s = sub.add_parser("select")
    s.add_argument("--candidates", required=True)
    s.add_argument("--max-mem", type=float, default=1.5)
    s.add_argument("files", nargs="+")
    g = sub.add_parser("grid")
    g.add_argument("out")
    g.add_argument("--dir", required=True)
    g.add_argument("tags", nargs="+")
    a = ap.parse_args()
    {"report": report, "select": select, "grid": grid}[a.cmd](a)


if __name__ == "__main__":
    main()
