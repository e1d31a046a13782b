#!/usr/bin/python3
"""The untried leads of issue 14, screened exactly from list memberships on held-out queries.

Same counting as membership_study.py / protocol_study.py (IVF,Flat: recall@10 and distinct
distance computations follow from which lists hold which vectors; lists probed by L2 to the means).
Every rule here keeps at most 2 lists per vector, a primary and a spill list, for 1.5x memory:
  (a) balance: primary list = argmin_j ||x - c_j||^2 + pen_j over the 16 nearest means, per-list
      penalties raised by dual ascent until the imbalance reaches a target (capacity-style); then SOAR;
  (b) query-landing spill: every base vector y acts as a proxy query; for each of its approximate
      10 nearest neighbours x whose primary list is not among y's first t lists, y votes for copying
      x into y's first list. Vectors with most votes are spilled first (their most-voted list), the
      rest of the budget by SOAR;
  (c) k-NN-graph smoothing (after Dong et al., ICLR 2020): primary list = the most frequent primary
      list among x and its 10 neighbours (one label-propagation step), means kept (c) or refit (c-refit);
  (d) SOAR with a per-component lambda from the GMM variances: lambda_i = (var_1 / mean var)^gamma.
The approximate 10-NN of the base (each k-means list against its --knn-lists nearest lists) is cached.
Held-out queries only (learn.bvecs rows): nothing here may be chosen on query.bvecs.

usage: leads_study.py --base base.bvecs --query heldout.bvecs --gt heldout_gt.ivecs --cache DIR [--out F.md]
       (.fvecs rows work too: --name NAME for the header, e.g. glove25_tw12k's L2 set)
"""
import argparse
import os
import sys
import time

import numpy as np

import faiss

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from membership_study import Base, add_data_arguments, choose, choose_voted, cost_at, read_rows, read_vecs, train_quantizer  # noqa: E402
from protocol_study import curves  # noqa: E402

TARGETS = (0.9, 0.95, 0.99)


def base_knn(xb, means, prim, k, nlists, cache):
    """Approximate k-NN of every base vector (itself excluded), by blocks: the vectors of list A
    against every vector of the nlists lists nearest to A's mean, one GEMM per list (a per-vector
    IVF search is ~50x slower on this machine's BLAS)."""
    path = os.path.join(cache, f"base-knn{k}-lists{nlists}.npy")
    if os.path.exists(path):
        return np.load(path)
    t0 = time.time()
    K = means.shape[0]
    q = faiss.IndexFlatL2(xb.shape[1])
    q.add(means)
    _, near = q.search(means, nlists)
    order = np.argsort(prim, kind="stable")
    starts = np.searchsorted(prim[order], np.arange(K + 1))
    members = [order[starts[j]:starts[j + 1]] for j in range(K)]
    norms = (xb * xb).sum(1)
    out = np.empty((xb.shape[0], k), np.int64)
    for a in range(K):
        mine = members[a]
        if mine.size == 0:
            continue
        cand = np.concatenate([members[j] for j in near[a]])
        dd = norms[mine][:, None] - 2 * xb[mine] @ xb[cand].T + norms[cand][None, :]
        dd[cand[None, :] == mine[:, None]] = np.inf
        kk = min(k, cand.size - 1)
        part = np.argpartition(dd, kk - 1, axis=1)[:, :kk]
        srt = np.take_along_axis(dd, part, 1).argsort(1)
        out[mine, :kk] = cand[np.take_along_axis(part, srt, 1)]
        if a % 128 == 127:
            print(f"  base kNN {a + 1}/{K} lists, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    np.save(path, out)
    return out


def imbalance(prim, K):
    sizes = np.bincount(prim, minlength=K).astype(np.float64)
    return (sizes ** 2).sum() * K / sizes.sum() ** 2


def balanced_primary(base, target, rounds=200, step=0.02):
    """(a): primary = argmin_j ||x - c_j||^2 + pen_j over the 16 nearest means, the per-list penalties
    raised by dual ascent (pen_j += step * mean d_1 * (size_j / mean size - 1)) until the imbalance
    reaches the target: a capacity-style constraint that moves the vectors nearest to a border first."""
    n = base.I.shape[0]
    prim = base.I[:, 0].copy()
    pen = np.zeros(base.K)
    scale = base.D[:, 0].mean()
    for _ in range(rounds):
        if imbalance(prim, base.K) <= target:
            break
        sizes = np.bincount(prim, minlength=base.K)
        pen += step * scale * (sizes / sizes.mean() - 1)
        prim = base.I[np.arange(n), np.argmin(base.D + pen[base.I], axis=1)]
    return prim


def soar_second(base, prim, budget, lam=1.0):
    """SOAR spill list for a given primary (primary may differ from the nearest mean)."""
    n = base.I.shape[0]
    x = base.xb
    out_cost = np.full((n, base.I.shape[1]), np.inf, np.float32)
    for i0 in range(0, n, 65536):
        sl = slice(i0, i0 + 65536)
        r1 = x[sl] - base.means[prim[sl]]
        d1 = np.maximum((r1 * r1).sum(1), 1e-6)
        cj = base.means[base.I[sl]]
        rj = x[sl][:, None, :] - cj
        dj = (rj * rj).sum(2)
        dot = np.einsum("nd,nmd->nm", r1, rj)
        c = (dj + lam * dot * dot / d1[:, None]) / d1[:, None] - 1
        c[base.I[sl] == prim[sl, None]] = np.inf
        out_cost[sl] = c
    j = np.argmin(out_cost, axis=1)
    c = out_cost[np.arange(n), j]
    second = base.I[np.arange(n), j].astype(np.int64)
    want = int(round((budget - 1) * n))
    keep = np.zeros(n, bool)
    keep[np.argpartition(c, want - 1)[:want]] = True
    second[~keep] = -1
    return second


def votes(base, knn, t):
    """(b): y votes for copying its neighbour x into y's first list when prim(x) is not among
    y's first t lists (y's lists ranked by L2, as a query at y would probe them)."""
    prim = base.I[:, 0]
    y = np.repeat(np.arange(knn.shape[0]), knn.shape[1])
    x = knn.ravel()
    miss = ~(base.I[y, :t] == prim[x][:, None]).any(1)
    xs, lst = x[miss], prim[y[miss]]
    key = xs.astype(np.int64) * base.K + lst
    uk, cnt = np.unique(key, return_counts=True)
    vx, vl = uk // base.K, uk % base.K
    order = np.lexsort((-cnt, vx))
    vx, vl, cnt = vx[order], vl[order], cnt[order]
    first = np.ones(len(vx), bool)
    first[1:] = vx[1:] != vx[:-1]
    return None, vx[first], vl[first], cnt[first]


def smoothed_primary(base, knn):
    """(c): the most frequent primary list among x and its neighbours (ties: x's own)."""
    prim = base.I[:, 0]
    labs = np.concatenate([prim[:, None], prim[knn]], 1)
    k1 = labs.shape[1]
    s = np.sort(labs, axis=1)
    best = prim.copy()
    best_cnt = (labs == prim[:, None]).sum(1)
    for j in range(k1):
        cnt = (s == s[:, j:j + 1]).sum(1)
        better = cnt > best_cnt
        best[better] = s[better, j]
        best_cnt[better] = cnt[better]
    return best


def main():
    ap = argparse.ArgumentParser()
    add_data_arguments(ap, cache_required=True)
    ap.add_argument("--knn-lists", type=int, default=12)
    ap.add_argument("--quantizers", default="kmeans,gmm")
    ap.add_argument("--vote-nprobe", type=int, nargs="*", default=[1, 4, 8], help="(b): t values")
    ap.add_argument("--min-votes", type=int, nargs="*", default=[2, 3, 5], help="(b): vote thresholds, t = 1")
    ap.add_argument("--only", default="", help="comma-separated lead prefixes (a,b,c,d) to run")
    ap.add_argument("--P", type=int, default=256)
    ap.add_argument("--out", default="")
    ap.add_argument("--name", default="debsift1m", help="the data set's name, for the report's header")
    a = ap.parse_args()
    xb = read_rows(a.base)
    xq = read_rows(a.query, a.max_queries)
    gt = read_vecs(a.gt, np.int32, a.max_queries)
    n, d, K = xb.shape[0], xb.shape[1], a.nlist
    only = set(a.only.split(",")) if a.only else {"a", "b", "c", "d"}
    km_means = train_quantizer("kmeans", xb, K, a.seed, a.cache, False)[0]
    km_prim = Base(xb, km_means, M=1).I[:, 0] if only & {"b", "c"} else None
    knn = base_knn(xb, km_means, km_prim, 10, a.knn_lists, a.cache) if only & {"b", "c"} else None
    rows, ref = [], None

    def report(label, lists, rank):
        nonlocal ref
        t0 = time.time()
        res = curves(lists, K, rank, gt, a.P)
        if ref is None:
            ref = res
        r = [cost_at(ref["distinct"], ref["r10"], t) / cost_at(res["distinct"], res["r10"], t) for t in TARGETS]
        rows.append((label, res["mem"], r))
        print(f"{label:36s} mem {res['mem']:.3f}  distinct ratio " + " / ".join(f"{x:.3f}" for x in r) +
              f"  ({time.time() - t0:.0f} s)", flush=True)

    for kind in a.quantizers.split(","):
        means, var, logw = train_quantizer(kind, xb, K, a.seed, a.cache, False)
        base = Base(xb, means)
        q = faiss.IndexFlatL2(d)
        q.add(means)
        _, rank = q.search(xq, a.P)
        prim = base.I[:, 0].astype(np.int64)

        def two(p, s):
            return np.stack([p, s], 1).astype(np.int32)

        report(f"{kind} none", prim[:, None].astype(np.int32), rank=rank)
        soar = (base.dj + base.dot * base.dot / base.d1) / base.d1 - 1
        report(f"{kind} soar1 1.5x", two(prim, choose(base, soar, 1.5)), rank=rank)
        if "a" in only:
            for target in (1.05, 1.02):
                p = balanced_primary(base, target)
                tag = f"{kind} (a) balance imb {imbalance(p, K):.3f}, moved {(p != prim).mean():.3f}"
                report(f"{tag} none", p[:, None].astype(np.int32), rank=rank)
                report(f"{tag} soar1 1.5x", two(p, soar_second(base, p, 1.5)), rank=rank)
        if "b" in only:
            for t in a.vote_nprobe:
                report(f"{kind} (b) base-votes t{t} + soar1 1.5x",
                       two(prim, choose_voted(base, soar, votes(base, knn, t), 1.5)), rank=rank)
            _, vx, vl, cnt = votes(base, knn, 1)
            for m in a.min_votes:
                # only vectors with at least m votes are spilled by vote; SOAR orders the rest
                keep = cnt >= m
                print(f"  (b) {keep.sum()} vectors with >= {m} votes", file=sys.stderr)
                report(f"{kind} (b) base-votes t1 >= {m} votes + soar1 1.5x",
                       two(prim, choose_voted(base, soar, (None, vx[keep], vl[keep], cnt[keep]), 1.5)), rank=rank)
        if "c" in only:
            p = smoothed_primary(base, knn)
            print(f"  (c) moved {(p != prim).mean():.3f} of the vectors", file=sys.stderr)
            report(f"{kind} (c) smoothed none", p[:, None].astype(np.int32), rank=rank)
            report(f"{kind} (c) smoothed soar1 1.5x", two(p, soar_second(base, p, 1.5)), rank=rank)
            # refit the means to the smoothed lists; queries then route by the new means
            sums = np.zeros((K, d))
            np.add.at(sums, p, xb)
            cnt = np.bincount(p, minlength=K)[:, None]
            m2 = np.where(cnt > 0, sums / np.maximum(cnt, 1), means).astype(np.float32)
            q2 = faiss.IndexFlatL2(d)
            q2.add(m2)
            _, rank2 = q2.search(xq, a.P)
            report(f"{kind} (c-refit) smoothed none", p[:, None].astype(np.int32), rank=rank2)
        if "d" in only and kind != "kmeans":
            s1 = var[base.I[:, :1]]
            for gamma in (-1.0, -0.5, 0.5, 1.0):
                lam = (s1 / var.mean()) ** gamma
                c = (base.dj + lam * base.dot * base.dot / base.d1) / base.d1 - 1
                report(f"{kind} (d) soar lambda=(var1/mean)^{gamma:g} 1.5x", two(prim, choose(base, c, 1.5)), rank=rank)
    text = [f"Leads screen: {os.path.basename(a.query)} ({xq.shape[0]} queries), {a.name}, nlist {K}, 256/list "
            f"sample training, seed {a.seed}; base 10-NN approximate (each k-means list against its {a.knn_lists} "
            "nearest lists).", "",
            "Cells: k-means IVF without spill's distinct computations / the rule's, at recall@10 = 0.9 / 0.95 / 0.99.",
            "", "| rule | entries per vector | distinct computations |", "|---|---|---|"]
    text += [f"| {label} | {mem:.3f} | " + " / ".join(f"{x:.3f}" for x in r) + " |" for label, mem, r in rows]
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
