#!/usr/bin/python3
"""Our 1M results re-read under the cost and recall measures the research may have used (issue 14).

The Flash-GMM paper (arXiv:2606.10896) reports "up to 1.7x fewer distance computations at fixed
recall, or +2-12 recall@10 at matched computational cost" for GMM IVF with border vectors in several
lists; the text available to us (abstract, introduction, the IBM/Flash-GMM repository) does not say
what a "distance computation" is (eval/RESEARCH_PROTOCOL.md). This script measures, from list
memberships alone (exact for IVF,Flat, see membership_study.py), the same quantizers and spill rules
under every reading:
  nprobe    lists probed (= distance computations if every list is charged N/K, the spill's longer
            lists not counted);
  entries   list entries scanned (a vector stored twice and met twice counts twice);
  distinct  distinct vectors scanned (ours: the deduplicating search computes each once);
  +coarse   distinct + K (the coarse quantizer's distances to the K means);
and two recall definitions: recall@10 (|top-10 found ∩ true top-10| / 10, ours) and 1-recall@1
(the true nearest neighbour is scanned; with exact re-ranking it is then first, so this is also
FAISS's 1-R@10). Lists can hold a vector up to --max-lists times (the research's rule r_j >= 1/K).

usage: protocol_study.py --base base.bvecs --query q.bvecs --gt gt.ivecs [--cache DIR] [--out FILE.md]
"""
import argparse
import os
import sys
import time

import numpy as np

import faiss

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from membership_study import Base, add_data_arguments, choose, cost_at, read_vecs, train_quantizer  # noqa: E402


def responsibilities(base, var, logw, d):
    """Spherical-GMM log responsibilities of each vector's M nearest means (the rest is negligible:
    their log-densities are hundreds of nats lower at d = 128)."""
    s = var[base.I]
    logp = logw[base.I] - 0.5 * d * np.log(2 * np.pi * s) - base.D / (2 * s)
    return logp - np.logaddexp.reduce(logp, axis=1, keepdims=True)


def resp_lists(base, logr, tau, max_lists, budget=None):
    """Primary = nearest mean; extra lists j with r_j >= tau (at most max_lists in all). With a
    budget, the threshold is instead lowered until budget*n entries are stored (largest r_j first)."""
    n, M = base.I.shape
    extra = logr[:, 1:].copy()
    extra[:, max_lists - 1:] = -np.inf
    if budget is not None:
        want = int(round((budget - 1) * n))
        flat = extra.ravel()
        cut = np.partition(flat, flat.size - want)[flat.size - want]
        keep = extra >= cut
    else:
        keep = extra >= np.log(tau)
    lists = np.where(np.concatenate([np.ones((n, 1), bool), keep], 1), base.I, -1)
    order = np.argsort(lists < 0, axis=1, kind="stable")  # kept lists first
    lists = np.take_along_axis(lists, order, 1)
    width = max(1, int((lists >= 0).sum(1).max()))
    return lists[:, :width].astype(np.int32)


def curves(lists, K, rank, gt, P):
    """Per nprobe 1..P: mean entries, mean distinct, recall@10, 1-recall@1 (first P lists by L2)."""
    n = lists.shape[0]
    L = np.where(lists >= 0, lists, K)
    sizes = np.bincount(L.ravel(), minlength=K + 1)[:K]
    nq = rank.shape[0]
    ent = np.cumsum(sizes[rank], axis=1).astype(np.float64).mean(0)
    dist = np.zeros(P)
    found10 = np.zeros(P)
    found1 = np.zeros(P)
    pos = np.empty(K + 1, np.int32)
    for q in range(nq):
        pos[:] = P
        pos[rank[q]] = np.arange(P, dtype=np.int32)
        first = pos[L].min(1)  # the probe rank at which each vector is first met (P: never)
        dist += np.cumsum(np.bincount(first, minlength=P + 1)[:P])
        f = first[gt[q, :10]]
        found10 += np.cumsum(np.bincount(f, minlength=P + 1)[:P]) / 10
        found1 += np.arange(P) >= f[0]
    return {"nprobe": np.arange(1, P + 1, dtype=np.float64), "entries": ent, "distinct": dist / nq,
            "+coarse": dist / nq + K, "r10": found10 / nq, "r1": found1 / nq,
            "mem": (lists >= 0).sum() / n}


def gain_at_matched(ref, res, measure, grid):
    """Recall@10 points gained over ref at the same cost (ref's curve interpolated at res's cost)."""
    out = []
    for i in grid:
        c = res[measure][i]
        x = np.log(ref[measure])
        if c < ref[measure][0] or c > ref[measure][-1]:
            continue
        out.append(100 * (res["r10"][i] - np.interp(np.log(c), x, ref["r10"])))
    return out


def main():
    ap = argparse.ArgumentParser()
    add_data_arguments(ap)
    ap.add_argument("--max-lists", type=int, default=8)
    ap.add_argument("--P", type=int, default=256)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    xb = read_vecs(a.base, np.uint8).astype(np.float32)
    xq = read_vecs(a.query, np.uint8, a.max_queries).astype(np.float32)
    gt = read_vecs(a.gt, np.int32, a.max_queries)
    n, d, K = xb.shape[0], xb.shape[1], a.nlist
    results = {}
    for kind in ("kmeans", "gmm"):
        means, var, logw = train_quantizer(kind, xb, K, a.seed, a.cache, False)
        t0 = time.time()
        base = Base(xb, means)
        q = faiss.IndexFlatL2(d)
        q.add(means)
        _, rank = q.search(xq, a.P)
        print(f"  {kind}: candidates in {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
        cands = {"none": base.I[:, :1].astype(np.int32)}
        soar = (base.dj + base.dot * base.dot / base.d1) / base.d1 - 1
        second = choose(base, soar, 1.5)
        cands["soar 1.5x"] = np.stack([base.I[:, 0], second], 1).astype(np.int32)
        if kind == "gmm":
            logr = responsibilities(base, var, logw, d)
            cands["resp r>=1/K"] = resp_lists(base, logr, 1.0 / K, a.max_lists)
            cands["resp 1.5x"] = resp_lists(base, logr, None, a.max_lists, budget=1.5)
        for name, lists in cands.items():
            t0 = time.time()
            results[f"{kind} {name}"] = curves(lists, K, rank, gt, a.P)
            print(f"  {kind} {name}: mem {results[f'{kind} {name}']['mem']:.3f} in {time.time() - t0:.1f} s",
                  file=sys.stderr, flush=True)
    ref = results["kmeans none"]
    measures = ("distinct", "entries", "nprobe", "+coarse")
    lines = [f"Research-protocol screen: {os.path.basename(a.query)} ({xq.shape[0]} queries), debsift1m, "
             f"nlist {K}, 256/list sample training, seed {a.seed}; lists probed by L2 to the means.", "",
             "Cells: k-means IVF without spill's cost / the method's at the same recall (> 1: fewer), "
             "at recall 0.8 / 0.9 / 0.95 / 0.99.", ""]
    for rdef, rname in (("r10", "recall@10"), ("r1", "1-recall@1")):
        lines += [f"### {rname}", "", "| method | entries per vector | " + " | ".join(measures) + " |",
                  "|---|---|" + "---|" * len(measures)]
        for label, res in results.items():
            cells = []
            for m in measures:
                r = [cost_at(ref[m], ref[rdef], t) / cost_at(res[m], res[rdef], t) for t in (0.8, 0.9, 0.95, 0.99)]
                cells.append(" / ".join(f"{x:.2f}" for x in r))
            lines.append(f"| {label} | {res['mem']:.3f} | " + " | ".join(cells) + " |")
        lines.append("")
    grid = [0, 1, 3, 7, 15, 31]  # nprobe 1, 2, 4, 8, 16, 32
    lines += ["### recall@10 points gained over k-means without spill at matched cost (nprobe 1/2/4/8/16/32)", "",
              "| method | matched nprobe | matched entries | matched distinct |", "|---|---|---|---|"]
    for label, res in results.items():
        cells = [" / ".join(f"{g:+.1f}" for g in gain_at_matched(ref, res, m, grid))
                 for m in ("nprobe", "entries", "distinct")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "### nprobe and recall@10", "", "| method | " + " | ".join(f"np{i + 1}" for i in grid) + " |",
              "|---|" + "---|" * len(grid)]
    for label, res in results.items():
        lines.append(f"| {label} | " + " | ".join(f"{res['r10'][i]:.3f}" for i in grid) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
