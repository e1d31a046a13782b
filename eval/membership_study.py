#!/usr/bin/python3
"""Spill and probe rules screened exactly from list memberships (issue 14).

For an IVF,Flat index the search is exact inside the probed lists, so
recall@10 and the distinct distance computations of every nprobe follow from
memberships alone, without scanning a vector:
  - a true neighbour is found at nprobe n when one of its lists is among the
    query's first n lists (Flat distances are exact, so it then ranks in the top 10);
  - distinct(n) = sum of the first n list sizes - the vectors stored twice whose
    two lists are both among them (a pair-count matrix C[a, b]).
This is what lets one screen dozens of rules on 1M vectors in seconds on two
cores; every rule worth keeping is then implemented in IndexIVFSpill and
measured end to end by faiss-gmm-eval (run_1m.sh). At most 2 lists per vector
(the prototype of the issue found more copies at the same memory worse).

usage: membership_study.py --base base.bvecs --query q.bvecs --gt gt.ivecs --nlist 1024
       [--budget 1.5] [--cache DIR] [--out FILE.md]
Held-out queries only for choosing anything (run_1m.sh makes them from learn.bvecs).
"""
import argparse
import os
import sys
import time

import numpy as np

import faiss


def read_vecs(path, dtype, n=None):
    raw = np.fromfile(path, dtype=np.uint8)
    d = int(raw[:4].view(np.int32)[0])
    item = np.dtype(dtype).itemsize
    rec = 4 + d * item
    rows = raw.size // rec
    if n is not None:
        rows = min(rows, n)
    return raw[: rows * rec].reshape(rows, rec)[:, 4:].copy().view(dtype).reshape(rows, d)


def read_rows(path, n=None):
    """Vectors as float32 rows, from .bvecs (uint8, debsift1m) or .fvecs (float32, e.g. glove25_tw12k)."""
    if path.endswith(".fvecs"):
        return read_vecs(path, np.float32, n)
    if path.endswith(".bvecs"):
        return read_vecs(path, np.uint8, n).astype(np.float32)
    raise ValueError(f"{path}: expected a .bvecs or .fvecs file")


def add_data_arguments(ap, cache_required=False):
    """The options every study shares: the data set, the IVF size, the queries used, the seed and the
    training cache (train_quantizer)."""
    ap.add_argument("--base", required=True)
    ap.add_argument("--query", required=True)
    ap.add_argument("--gt", required=True)
    ap.add_argument("--nlist", type=int, default=1024)
    ap.add_argument("--max-queries", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1234)
    if cache_required:
        ap.add_argument("--cache", required=True)
    else:
        ap.add_argument("--cache", default="")


def train_quantizer(kind, xb, nlist, seed, cache, full):
    """Centroids (and GMM variances / log weights) trained as faiss-gmm-eval does."""
    tag = f"{kind}-{nlist}-{seed}{'-full' if full else ''}"
    path = os.path.join(cache, tag + ".npz") if cache else None
    if path and os.path.exists(path):
        z = np.load(path)
        return z["means"], z["var"], z["logw"]
    t0 = time.time()
    d = xb.shape[1]
    if kind == "kmeans":
        km = faiss.Kmeans(d, nlist, niter=25, seed=seed, max_points_per_centroid=(10**9 if full else 256))
        km.train(xb)
        means, var, logw = km.centroids, np.zeros(nlist, np.float32), np.zeros(nlist, np.float32)
    else:
        import faiss_gmm
        idx = faiss_gmm.index_factory(d, f"IVF{nlist}_GMM{'diag' if kind == 'gmmdiag' else ''},Flat",
                                      seed=seed, max_points_per_centroid=(0 if full else 256))
        idx.train(xb)
        m = faiss_gmm.get_gmm_model(idx)
        means = np.asarray(m.means, np.float32).reshape(nlist, d)
        var = np.asarray(m.variances, np.float32).reshape(nlist, -1).mean(axis=1)
        logw = np.asarray(m.log_weights, np.float32)
    print(f"  trained {tag} in {time.time() - t0:.1f} s", file=sys.stderr)
    if path:
        os.makedirs(cache, exist_ok=True)
        np.savez(path, means=means, var=var, logw=logw)
    return means, var, logw


class Base:
    """The M nearest lists of every base vector, with what the rules need."""

    def __init__(self, xb, means, M=16):
        self.xb, self.means, self.K = xb, means, means.shape[0]
        q = faiss.IndexFlatL2(means.shape[1])
        q.add(means)
        self.D, self.I = q.search(xb, M)
        self.D = np.maximum(self.D, 0)
        # <x - c_j, r_1> for the candidates (SOAR): |r1|^2 + <c_1 - c_j, r_1>
        n = xb.shape[0]
        self.dot = np.empty((n, M - 1), np.float32)
        for i0 in range(0, n, 65536):
            x = xb[i0:i0 + 65536]
            c1 = means[self.I[i0:i0 + 65536, 0]]
            r1 = x - c1
            cj = means[self.I[i0:i0 + 65536, 1:]]
            self.dot[i0:i0 + 65536] = np.einsum("nd,nmd->nm", r1, c1[:, None, :] - cj) + \
                (r1 * r1).sum(1)[:, None]
        self.d1 = self.D[:, :1]
        self.dj = self.D[:, 1:]
        self.primary_sizes = np.bincount(self.I[:, 0], minlength=self.K)


def choose(base, cost, budget):
    """The cheapest candidate of every vector, kept for the (budget-1)*n cheapest vectors."""
    n = cost.shape[0]
    j = np.argmin(cost, axis=1)
    c = cost[np.arange(n), j]
    second = base.I[np.arange(n), 1 + j].astype(np.int64)
    want = int(round((budget - 1) * n))
    keep = np.zeros(n, bool)
    if want > 0:
        keep[np.argpartition(c, want - 1)[:want]] = True
    second[~keep] = -1
    return second


def choose_voted(base, soar_cost, vote, budget):
    """Voted vectors first (most votes first, their voted list), then SOAR's cheapest."""
    _, vx, vl, cnt = vote
    n = soar_cost.shape[0]
    j = np.argmin(soar_cost, axis=1)
    c = soar_cost[np.arange(n), j].astype(np.float64)
    second = base.I[np.arange(n), 1 + j].astype(np.int64)
    prio = c.copy()
    prio[vx] = -cnt  # voted vectors before any SOAR choice
    second[vx] = vl
    want = int(round((budget - 1) * n))
    keep = np.zeros(n, bool)
    if want > 0:
        keep[np.argpartition(prio, want - 1)[:want]] = True
    second[~keep] = -1
    return second


class Queries:
    def __init__(self, xq, gt, means, P):
        q = faiss.IndexFlatL2(means.shape[1])
        q.add(means)
        self.Dq, self.rank = q.search(xq, P)
        self.gt = gt[:, :10]
        self.P = P


def curve(base, second, qs, ranking=None, prim=None):
    """(distinct per query, list entries per query, recall@10) for nprobe = 1..P; the primary list
    is the nearest mean unless prim gives it (second: the spill list or -1, never the primary)."""
    K, P = base.K, qs.P
    prim = base.I[:, 0].astype(np.int64) if prim is None else prim.astype(np.int64)
    sizes = np.bincount(prim, minlength=K) + np.bincount(second[second >= 0], minlength=K)
    has = second >= 0
    a, b = prim[has], second[has]
    C = np.zeros((K, K), np.int32)
    np.add.at(C, (a, b), 1)
    C = C + C.T
    order = qs.rank if ranking is None else ranking
    nq = order.shape[0]
    pos = np.full((nq, K), P, np.int32)
    np.put_along_axis(pos, order, np.arange(P, dtype=np.int32)[None, :].repeat(nq, 0), axis=1)
    g = qs.gt
    first = pos[np.arange(nq)[:, None], prim[g]]
    s2 = second[g]
    f2 = np.where(s2 >= 0, pos[np.arange(nq)[:, None], np.maximum(s2, 0)], P)
    first = np.minimum(first, f2)  # nq x 10: the first probe rank that finds the neighbour
    recall = np.stack([(first < n).mean() for n in range(1, P + 1)])
    ent = np.cumsum(sizes[order], axis=1).astype(np.float64)
    dup = np.zeros_like(ent)
    for q0 in range(0, nq, 100):
        o = order[q0:q0 + 100]
        Mx = C[o[:, :, None], o[:, None, :]]
        dup[q0:q0 + 100] = np.cumsum(np.tril(Mx, -1).sum(2), axis=1)
    return (ent - dup).mean(0), ent.mean(0), recall


def cost_at(costs, recall, target):
    i = np.searchsorted(recall, target)  # recall is non-decreasing in nprobe
    if i >= len(recall):
        return np.nan
    if i == 0:
        return costs[0]
    r0, r1 = recall[i - 1], recall[i]
    t = (target - r0) / max(r1 - r0, 1e-12)
    return float(np.exp(np.log(costs[i - 1]) + t * (np.log(costs[i]) - np.log(costs[i - 1]))))


def main():
    ap = argparse.ArgumentParser()
    add_data_arguments(ap)
    ap.add_argument("--budget", type=float, nargs="+", default=[1.5])
    ap.add_argument("--full", action="store_true", help="train on all base rows")
    ap.add_argument("--quantizers", default="kmeans,gmm", help="kmeans, gmm, gmmdiag, each optionally :full")
    ap.add_argument("--P", type=int, default=256)
    ap.add_argument("--out", default="")
    ap.add_argument("--learn", default="", help="learn.bvecs: proxies for the neighbour-vote rule")
    ap.add_argument("--proxies", default="", help="learn rows I0:I1 used as proxy queries (disjoint from held-out)")
    ap.add_argument("--vote-nprobe", type=int, nargs="+", default=[1])
    ap.add_argument("--probe-rankings", action="store_true",
                    help="GMM: also rank lists by posterior / variance-tempered L2 at search (no spill and SOAR 1.5x)")
    ap.add_argument("--only", default="", help="comma-separated rule names to run (default: all)")
    a = ap.parse_args()
    faiss.omp_set_num_threads(os.cpu_count())
    xb = read_vecs(a.base, np.uint8).astype(np.float32)
    xq = read_vecs(a.query, np.uint8, a.max_queries).astype(np.float32)
    gt = read_vecs(a.gt, np.int32, a.max_queries)
    rows = []
    ref = None
    proxy_x = proxy_nn = None
    if a.learn and a.proxies:
        i0, i1 = map(int, a.proxies.split(":"))
        proxy_x = read_vecs(a.learn, np.uint8, i1)[i0:].astype(np.float32)
        path = os.path.join(a.cache, f"proxy-nn-{i0}-{i1}.npy") if a.cache else ""
        if path and os.path.exists(path):
            proxy_nn = np.load(path)
        else:
            t0 = time.time()
            flat = faiss.IndexFlatL2(xb.shape[1])
            flat.add(xb)
            _, proxy_nn = flat.search(proxy_x, 10)
            del flat
            print(f"  proxy kNN of {proxy_x.shape[0]} learn rows in {time.time() - t0:.1f} s", file=sys.stderr)
            if path:
                np.save(path, proxy_nn)
    targets = (0.9, 0.95, 0.99)
    for spec in a.quantizers.split(","):
        # "kind" or "kind:full" (trained on every row whatever --full says)
        kind, _, how = spec.partition(":")
        means, var, logw = train_quantizer(kind, xb, a.nlist, a.seed, a.cache, a.full or how == "full")
        kind = spec
        base = Base(xb, means)
        qs = Queries(xq, gt, means, a.P)
        n = xb.shape[0]
        d1, dj, dot = base.d1, base.dj, base.dot
        size_rel = base.primary_sizes / base.primary_sizes.mean()
        rules = {"none": None}
        rules["ratio"] = dj / d1 - 1
        for lam in (0.5, 1.0, 1.5, 2.0, 3.0):
            rules[f"soar{lam:g}"] = (dj + lam * dot * dot / d1) / d1 - 1
        cdist = np.linalg.norm(means[base.I[:, :1]] - means[base.I[:, 1:]], axis=2)
        rules["margin"] = (dj - d1) / (2 * cdist)
        rules["margin/c2"] = (dj - d1) / (cdist * cdist)
        soar = rules["soar1"]
        for beta in (0.5, 1.0, 2.0):
            # spill less into lists that are already large (cost scaled by the candidate's size)
            rules[f"soar1_size{beta:g}"] = soar * size_rel[base.I[:, 1:]] ** beta
        if not kind.startswith("kmeans"):
            s1, sj = var[base.I[:, :1]], var[base.I[:, 1:]]
            dd = xb.shape[1]
            post_gap = dj / (2 * sj) - d1 / (2 * s1) + dd / 2 * np.log(sj / s1) - (logw[base.I[:, 1:]] - logw[base.I[:, :1]])
            rules["posterior"] = post_gap
            rules["soar1_var"] = ((dj + dot * dot / d1) / sj) / (d1 / s1) - 1  # SOAR in units of each list's spread
            rules["soar1_varsqrt"] = ((dj + dot * dot / d1) / np.sqrt(sj)) / (d1 / np.sqrt(s1)) - 1
        if proxy_x is not None:
            # Neighbour votes: a proxy query whose true neighbour x is not in its first t lists
            # votes for copying x into the list the query probes first. Vectors ranked by votes,
            # then by SOAR cost; the voted list replaces SOAR's choice where there is one.
            qp = faiss.IndexFlatL2(means.shape[1])
            qp.add(means)
            _, prank = qp.search(proxy_x, max(a.vote_nprobe))
            prim = base.I[:, 0]
            for t in a.vote_nprobe:
                miss = ~(prim[proxy_nn][:, :, None] == prank[:, None, :t]).any(2)  # nproxy x 10
                qi, ki = np.nonzero(miss)
                xs = proxy_nn[qi, ki]
                lst = prank[qi, 0]
                key = xs.astype(np.int64) * base.K + lst
                uk, cnt = np.unique(key, return_counts=True)
                vx, vl = uk // base.K, uk % base.K
                order = np.lexsort((-cnt, vx))  # per vector, most-voted list first
                vx, vl, cnt = vx[order], vl[order], cnt[order]
                firstk = np.ones(len(vx), bool)
                firstk[1:] = vx[1:] != vx[:-1]
                vx, vl, cnt = vx[firstk], vl[firstk], cnt[firstk]
                rules[f"vote{t}+soar1"] = ("vote", vx, vl, cnt)
        for budget in a.budget:
            for name, cost in rules.items():
                if a.only and name not in a.only.split(","):
                    continue
                if name == "none" and budget != a.budget[0]:
                    continue
                t0 = time.time()
                if isinstance(cost, tuple):
                    second = choose_voted(base, rules["soar1"], cost, budget)
                else:
                    second = np.full(n, -1, np.int64) if cost is None else choose(base, cost, budget)
                dist, ent, rec = curve(base, second, qs)
                mem = 1 + (second >= 0).mean()
                label = f"{kind} {name}" + ("" if cost is None else f" {budget:g}x")
                res = {"label": label, "mem": mem, "dist": dist, "ent": ent, "rec": rec}
                if ref is None:
                    ref = res
                ratios = []
                for t in targets:
                    ratios.append(cost_at(ref["dist"], ref["rec"], t) / cost_at(dist, rec, t))
                for t in targets:
                    ratios.append(cost_at(ref["ent"], ref["rec"], t) / cost_at(ent, rec, t))
                rows.append((label, mem, ratios))
                print(f"{label:28s} mem {mem:.3f}  vs kmeans none: distinct " +
                      " ".join(f"{r:.3f}" for r in ratios[:3]) + "  entries " +
                      " ".join(f"{r:.3f}" for r in ratios[3:]) + f"  ({time.time() - t0:.1f} s)", flush=True)
        if a.probe_rankings and not kind.startswith("kmeans"):
            # Full query x list distances, then the rankings the removed probe options used.
            dq = faiss.pairwise_distances(xq, means) if hasattr(faiss, "pairwise_distances") else \
                ((xq * xq).sum(1)[:, None] - 2 * xq @ means.T + (means * means).sum(1)[None, :])
            dd = xq.shape[1]
            sbar = var.mean()
            scores = {
                "probepost": -(logw[None, :] - dd / 2 * np.log(var)[None, :] - dq / (2 * var[None, :])),
                "ppow0.25": dq / (var / sbar)[None, :] ** 0.25,
                "ppow-0.25": dq / (var / sbar)[None, :] ** -0.25,
                "pscale0.1": dq - 0.1 * dd * var[None, :],
            }
            soar = rules["soar1"]
            for sname, sc in scores.items():
                order = np.argsort(sc, axis=1)[:, :a.P]
                for spill_name, second in (("none", np.full(n, -1, np.int64)), ("soar1 1.5x", choose(base, soar, 1.5))):
                    dist, ent, rec = curve(base, second, qs, ranking=order)
                    r = [cost_at(ref["dist"], ref["rec"], t) / cost_at(dist, rec, t) for t in targets]
                    r += [cost_at(ref["ent"], ref["rec"], t) / cost_at(ent, rec, t) for t in targets]
                    label = f"{kind} {spill_name} probe by {sname}"
                    rows.append((label, 1 + (second >= 0).mean(), r))
                    print(f"{label:40s} distinct " + " ".join(f"{x:.3f}" for x in r[:3]), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            f.write(f"Membership-level screen: {os.path.basename(a.query)} ({xq.shape[0]} queries), nlist {a.nlist}, "
                    f"{'all rows' if a.full else '256/list sample'} training, seed {a.seed}, at most 2 lists per vector.\n\n")
            f.write("Cells: k-means IVF without spill's cost / the rule's, at recall@10 = 0.9 / 0.95 / 0.99 "
                    "(> 1: fewer).\n\n")
            f.write("| rule | entries per vector | distinct computations | list entries |\n|---|---|---|---|\n")
            for label, mem, r in rows:
                f.write(f"| {label} | {mem:.3f} | " + " / ".join(f"{x:.3f}" for x in r[:3]) + " | " +
                        " / ".join(f"{x:.3f}" for x in r[3:]) + " |\n")


if __name__ == "__main__":
    main()
