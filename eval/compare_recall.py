#!/usr/bin/env python3
"""Compares the recall@k curves of one method in two faiss-gmm-eval CSV files
(e.g. a GMM-IVF trained on the CPU and one trained on the GPU), nprobe by nprobe.

usage: compare_recall.py REFERENCE.csv OTHER.csv [--method gmm] [--tol 0.005]
Prints a table and the largest |difference|; exits 1 when it exceeds --tol.
Standard library only (runs on GPU machines without numpy/pandas)."""
import argparse
import csv
import sys


def curve(path, method):
    rows = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["method"] == method:
                rows[int(r["nprobe"])] = (float(r["recall"]), float(r["distinct"]))
    if not rows:
        sys.exit(f"{path}: no rows for method {method!r}")
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("reference")
    ap.add_argument("other")
    ap.add_argument("--method", default="gmm")
    ap.add_argument("--tol", type=float, default=0.005)
    a = ap.parse_args()
    ref, oth = curve(a.reference, a.method), curve(a.other, a.method)
    common = sorted(set(ref) & set(oth))
    if not common:
        sys.exit("no common nprobe values")
    print(f"{'nprobe':>7} {'recall ref':>11} {'recall other':>13} {'diff':>8} {'distinct ref':>13} {'distinct other':>15}")
    worst = 0.0
    for p in common:
        d = oth[p][0] - ref[p][0]
        worst = max(worst, abs(d))
        print(f"{p:>7} {ref[p][0]:>11.3f} {oth[p][0]:>13.3f} {d:>+8.3f} {ref[p][1]:>13.1f} {oth[p][1]:>15.1f}")
    verdict = "within" if worst <= a.tol else "OVER"
    print(f"max |recall difference| = {worst:.4f} ({verdict} the tolerance {a.tol})")
    return 0 if worst <= a.tol else 1


if __name__ == "__main__":
    sys.exit(main())
