#!/usr/bin/python3
"""Plot recall@k against distinct distance computations per query (log x), one
curve per method, one panel per dataset, from a CSV written by faiss-gmm-eval.

usage: plot_results.py RESULTS.csv OUT.png [TITLE [MORE.csv ...]]
Needs Debian's python3-matplotlib (run with /usr/bin/python3).
"""
import csv
import sys
from collections import OrderedDict

from atomic_output import atomic_output

import matplotlib

matplotlib.use("Agg")  # no display here
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else ""
    sources = [src] + sys.argv[4:]
    data = OrderedDict()  # dataset -> method -> [(cost, recall)]
    k = "10"
    rows = []
    for path in sources:
        with open(path, newline="") as f:
            rows.extend(csv.DictReader(f))
    for row in rows:
        k = row["k"]
        ivf = row["description"].split(",")[0].replace("_GMMdiag", "").replace("_GMM", "")
        label = "%s (%s, %s queries)" % (row["dataset"], ivf, row["nq"])
        pts = data.setdefault(label, OrderedDict()).setdefault(row["method"], [])
        pts.append((float(row["distinct"]), float(row["recall"])))
    if not data:
        sys.exit("no rows in " + src)
    n = len(data)
    cols = min(n, 3)
    nrows = (n + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 4.2 * nrows), squeeze=False)
    styles = {"kmeans": ("k", "o"), "gmm": ("tab:red", "s"), "gmmdiag": ("tab:blue", "^")}
    for ax, (ds, methods) in zip(axes.flat, data.items()):
        for m, pts in methods.items():
            pts.sort()
            # spill variants (the demo's recommended recipe among them) in green
            color, marker = styles.get(m, ("tab:green", "D") if "spill" in m else (None, "x"))
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color, label=m, ms=4)
        ax.set_xscale("log")
        ax.set_xlabel("distance computations per query (distinct, list scan)")
        ax.set_ylabel("recall@" + k)
        ax.set_title(ds, fontsize=10)
        for r in (0.8, 0.9, 0.95):
            ax.axhline(r, color="0.85", lw=0.8, zorder=0)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_output(out) as tmp:
        fig.savefig(tmp, dpi=110)


if __name__ == "__main__":
    main()
