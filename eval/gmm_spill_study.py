#!/usr/bin/python3
"""GMM quantities combined with SOAR's spill, and the GMM-only options, screened exactly (issue 14).

Same counting as membership_study.py / protocol_study.py: for IVF,Flat, recall@10 and the distinct
distance computations of every nprobe follow from which lists hold which vectors (lists probed by L2
to the means). Every rule stores at most 2 lists per vector at 1.5x memory unless said otherwise.

New rules (spherical GMM: per-list variance s_j per dimension, weight pi_j; D = dimension;
SOAR's amended distance A_j = ||x - c_j||^2 + lam <x - c_j, r_1>^2 / ||r_1||^2, r_1 = x - c_1):
  gsoar<lam>       the GMM's -2 log-density with SOAR's amended distance, against the primary's:
                   A_j / s_j + D log s_j - 2 log pi_j - (d_1 / s_1 + D log s_1 - 2 log pi_1)
  gsoar<lam>-pi    the same without the weights;  gsoar<lam>-logs  without the D log s terms
  gsoar<lam>/r     the gsoar cost over d_1 / s_1 (SOAR's own normalisation, a ratio)
  soar/s^p         SOAR in units of each list's spread: (A_j / s_j^p) / (d_1 / s_1^p) - 1
  where=soar who=K SOAR chooses the list, the key K chooses which (budget - 1) n vectors get a copy:
                   soar (plain SOAR), post (posterior gap of that list), gsoar, -d1/s1 (the vectors
                   farthest from their mean in units of its spread), -d1
Options whose removal the study weighs:
  ppost            primary list = highest posterior (instead of the nearest mean), then no spill,
                   posterior spill or SOAR spill
  resp             responsibility r_j at a 1.5x budget (2 lists), and r_j >= 1/K (up to 8 lists)
  T                the posterior rule's temperature: at a budget, cost / T stores the same copies
                   (checked here: identical lists), at a fixed tau it is tau' = tau^T
Held-out queries only (learn.bvecs rows): nothing here may be chosen on query.bvecs.

usage: gmm_spill_study.py --base base.bvecs --query heldout.bvecs --gt heldout_gt.ivecs --cache DIR
       [--only new,ppost,resp,T] [--out F.md]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from membership_study import (Base, Queries, add_data_arguments, choose, cost_at, curve, read_rows, read_vecs,  # noqa: E402
                              train_quantizer)
from protocol_study import curves, resp_lists, responsibilities  # noqa: E402
from leads_study import soar_second  # noqa: E402

TARGETS = (0.9, 0.95, 0.99)


def chosen_list(base, cost):
    """Per vector, the candidate (column of base.I[:, 1:]) of lowest cost."""
    return np.argmin(cost, axis=1)


def keep_cheapest(base, j, key, budget):
    """The list base.I[:, 1 + j] for the (budget - 1) n vectors of smallest key, -1 for the rest."""
    n = key.shape[0]
    second = base.I[np.arange(n), 1 + j].astype(np.int64)
    want = int(round((budget - 1) * n))
    keep = np.zeros(n, bool)
    keep[np.argpartition(key, want - 1)[:want]] = True
    second[~keep] = -1
    return second


def posterior_primary(xb, means, var, logw, chunk=65536):
    """argmax_j of the spherical GMM's log pi_j - D/2 log s_j - ||x - c_j||^2 / (2 s_j), over all K."""
    D = xb.shape[1]
    cn = (means * means).sum(1)
    bias = logw - 0.5 * D * np.log(var) - cn / (2 * var)
    out = np.empty(xb.shape[0], np.int64)
    for i0 in range(0, xb.shape[0], chunk):
        x = xb[i0:i0 + chunk]
        # the ||x||^2 / (2 s_j) term depends on j through s_j
        score = (x @ means.T) / var[None, :] + bias[None, :] - ((x * x).sum(1)[:, None]) / (2 * var[None, :])
        out[i0:i0 + chunk] = np.argmax(score, axis=1)
    return out


def posterior_second(base, prim, var, logw, budget):
    """Posterior-gap spill from a given primary, over the M nearest means (the rest is negligible)."""
    D = base.xb.shape[1]
    s = var[base.I]
    logp = logw[base.I] - 0.5 * D * np.log(s) - base.D / (2 * s)
    # the primary's log-density, recomputed (prim may be outside the M nearest: then no candidate is it)
    r1 = base.xb - base.means[prim]
    d1 = np.einsum("nd,nd->n", r1, r1)
    lp1 = logw[prim] - 0.5 * D * np.log(var[prim]) - d1 / (2 * var[prim])
    gap = lp1[:, None] - logp
    gap[base.I == prim[:, None]] = np.inf
    j = np.argmin(gap, axis=1)
    n = gap.shape[0]
    second = base.I[np.arange(n), j].astype(np.int64)
    want = int(round((budget - 1) * n))
    c = gap[np.arange(n), j]
    keep = np.zeros(n, bool)
    keep[np.argpartition(c, want - 1)[:want]] = True
    second[~keep] = -1
    return second


def gsoar_second(base, prim, var, logw, lam, budget):
    """Spill list by the gsoar cost from a given primary (which may differ from the nearest mean),
    over the M nearest means; var=None: plain SOAR's amended-distance ratio (leads_study.soar_second)."""
    if var is None:
        return soar_second(base, prim, budget, lam)
    n, D = base.xb.shape
    out = np.full(base.I.shape, np.inf, np.float32)
    for i0 in range(0, n, 65536):
        sl = slice(i0, i0 + 65536)
        p = prim[sl]
        r1 = base.xb[sl] - base.means[p]
        d1 = np.maximum((r1 * r1).sum(1), 1e-6)
        rj = base.xb[sl][:, None, :] - base.means[base.I[sl]]
        dj = (rj * rj).sum(2)
        dot = np.einsum("nd,nmd->nm", r1, rj)
        sj, s1 = var[base.I[sl]], var[p][:, None]
        c = (dj + lam * dot * dot / d1[:, None]) / sj + D * np.log(sj) - 2 * logw[base.I[sl]] - \
            (d1[:, None] / s1 + D * np.log(s1) - 2 * logw[p][:, None])
        c[base.I[sl] == p[:, None]] = np.inf
        out[sl] = c
    j = np.argmin(out, axis=1)
    second = base.I[np.arange(n), j].astype(np.int64)
    want = int(round((budget - 1) * n))
    keep = np.zeros(n, bool)
    keep[np.argpartition(out[np.arange(n), j], want - 1)[:want]] = True
    second[~keep] = -1
    return second


def main():
    ap = argparse.ArgumentParser()
    add_data_arguments(ap, cache_required=True)
    ap.add_argument("--only", default="new,ppost,resp,T")
    ap.add_argument("--lambdas", type=float, nargs="*", default=[0.25, 0.5, 1.0, 2.0])
    ap.add_argument("--P", type=int, default=256)
    ap.add_argument("--out", default="")
    ap.add_argument("--name", default="debsift1m")
    ap.add_argument("--training", default="256/list sample training",
                    help="how the cached quantizers were trained, for the report's header")
    a = ap.parse_args()
    only = set(a.only.split(","))
    xb = read_rows(a.base)
    xq = read_rows(a.query, a.max_queries)
    gt = read_vecs(a.gt, np.int32, a.max_queries)
    n, D, K = xb.shape[0], xb.shape[1], a.nlist
    rows, ref = [], None

    def report(label, lists):
        """lists: n x 2 (primary, spill list or -1), counted by membership_study.curve (fast), or
        n x m (m > 2, -1 padded), counted query by query by protocol_study.curves; both exact.
        The quantizer's base / qs are those of the loop below."""
        nonlocal ref
        t0 = time.time()
        if lists.shape[1] <= 2:
            second = lists[:, 1].astype(np.int64) if lists.shape[1] == 2 else np.full(n, -1, np.int64)
            dist, ent, rec = curve(base, second, qs, prim=lists[:, 0])
            res = {"distinct": dist, "entries": ent, "r10": rec, "mem": (lists >= 0).sum() / n}
        else:
            res = curves(lists, K, qs.rank, gt, a.P)
        if ref is None:
            ref = res
        r = [cost_at(ref["distinct"], ref["r10"], t) / cost_at(res["distinct"], res["r10"], t) for t in TARGETS]
        c = [cost_at(res["distinct"], res["r10"], t) for t in TARGETS[:2]]
        rows.append((label, res["mem"], r, c))
        print(f"{label:44s} mem {res['mem']:.3f}  distinct ratio " + " / ".join(f"{x:.3f}" for x in r) +
              f"  distinct@0.9/0.95 {c[0]:.0f} / {c[1]:.0f}  ({time.time() - t0:.0f} s)", flush=True)
        return res

    def two(p, s):
        return np.stack([p, s], 1).astype(np.int32)

    for kind in ("kmeans", "gmm"):
        means, var, logw = train_quantizer(kind, xb, K, a.seed, a.cache, False)
        t0 = time.time()
        base = Base(xb, means)
        qs = Queries(xq, gt, means, a.P)
        print(f"  {kind}: nearest lists in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        prim = base.I[:, 0].astype(np.int64)
        d1, dj, dot = base.d1, base.dj, base.dot
        report(f"{kind} none", prim[:, None].astype(np.int32))
        soar = (dj + dot * dot / d1) / d1 - 1
        report(f"{kind} soar1 1.5x", two(prim, choose(base, soar, 1.5)))
        if kind == "kmeans":
            continue
        s1, sj = var[base.I[:, :1]], var[base.I[:, 1:]]
        w1, wj = logw[base.I[:, :1]], logw[base.I[:, 1:]]
        post_gap = dj / (2 * sj) - d1 / (2 * s1) + D / 2 * np.log(sj / s1) - (wj - w1)
        if "new" in only:
            report("gmm posterior 1.5x", two(prim, choose(base, post_gap, 1.5)))
            for lam in a.lambdas:
                amended = dj + lam * dot * dot / d1
                full = amended / sj + D * np.log(sj) - 2 * wj - (d1 / s1 + D * np.log(s1) - 2 * w1)
                report(f"gmm gsoar{lam:g} 1.5x", two(prim, choose(base, full, 1.5)))
                nopi = full + 2 * wj - 2 * w1
                report(f"gmm gsoar{lam:g}-pi 1.5x", two(prim, choose(base, nopi, 1.5)))
                nologs = full - D * np.log(sj / s1)
                report(f"gmm gsoar{lam:g}-logs 1.5x", two(prim, choose(base, nologs, 1.5)))
                report(f"gmm gsoar{lam:g}/r 1.5x", two(prim, choose(base, full / (d1 / s1), 1.5)))
            for p in (0.25, 0.5, 0.75):
                c = ((dj + dot * dot / d1) / sj ** p) / (d1 / s1 ** p) - 1
                report(f"gmm soar/s^{p:g} 1.5x", two(prim, choose(base, c, 1.5)))
            j = chosen_list(base, soar)
            pick = np.arange(n)
            full1 = (dj + dot * dot / d1) / sj + D * np.log(sj) - 2 * wj - (d1 / s1 + D * np.log(s1) - 2 * w1)
            keys = {
                "post": post_gap[pick, j],
                "gsoar": full1[pick, j],
                "-d1/s1": -(d1[:, 0] / s1[:, 0]),
                "-d1": -d1[:, 0],
            }
            for name, key in keys.items():
                report(f"gmm where=soar who={name} 1.5x", two(prim, keep_cheapest(base, j, key, 1.5)))
        if "T" in only:
            a1 = choose(base, post_gap, 1.5)
            for T in (0.5, 2.0, 4.0):
                same = np.array_equal(choose(base, post_gap / T, 1.5), a1)
                print(f"  posterior at 1.5x, temperature {T:g}: lists identical to T = 1: {same}", flush=True)
                rows.append((f"gmm posterior T={T:g} 1.5x: identical lists to T = 1", 1.5, [np.nan] * 3,
                             [np.nan] * 2) if same else (f"gmm posterior T={T:g}: lists DIFFER", 1.5,
                                                         [np.nan] * 3, [np.nan] * 2))
        if "ppost" in only:
            t0 = time.time()
            pp = posterior_primary(xb, means, var, logw)
            moved = (pp != prim).mean()
            print(f"  ppost: {moved:.4f} of the vectors change primary ({time.time() - t0:.0f} s)", flush=True)
            report(f"gmm ppost none (moved {moved:.3f})", pp[:, None].astype(np.int32))
            report("gmm ppost posterior 1.5x", two(pp, posterior_second(base, pp, var, logw, 1.5)))
            report("gmm ppost soar1 1.5x", two(pp, soar_second(base, pp, 1.5)))
            for lam in a.lambdas:
                report(f"gmm ppost gsoar{lam:g} 1.5x", two(pp, gsoar_second(base, pp, var, logw, lam, 1.5)))
            # the same function from the nearest mean: must reproduce the gsoar rows above
            report("gmm gsoar1 1.5x (gsoar_second, check)", two(prim, gsoar_second(base, prim, var, logw, 1.0, 1.5)))
        if "resp" in only:
            logr = responsibilities(base, var, logw, D)
            report("gmm resp 1.5x (2 lists)", resp_lists(base, logr, 1.0 / K, 2, budget=1.5))
            res = report("gmm resp r>=1/K (8 lists)", resp_lists(base, logr, 1.0 / K, 8))
            print(f"  r >= 1/K: {res['mem']:.3f} entries per vector, "
                  f"{res['mem'] * n * (4 * D + 8) / 2**20:.0f} MiB of Flat lists (float32 codes + 8-byte ids)", flush=True)
    text = [f"GMM-with-SOAR screen: {os.path.basename(a.query)} ({xq.shape[0]} queries), {a.name}, nlist {K}, "
            f"{a.training}, seed {a.seed}, lists probed by L2 (eval/gmm_spill_study.py).", "",
            "Cells: k-means IVF without spill's distinct computations / the rule's, at recall@10 = 0.9 / 0.95 / "
            "0.99 (> 1: fewer); then the rule's distinct computations per query at 0.9 / 0.95.", "",
            "| rule | entries per vector | ratio vs k-means, distinct | distinct @0.9 / 0.95 |", "|---|---|---|---|"]
    for label, mem, r, c in rows:
        cells = " / ".join("—" if np.isnan(x) else f"{x:.3f}" for x in r)
        cc = " / ".join("—" if np.isnan(x) else f"{x:.0f}" for x in c)
        text.append(f"| {label} | {mem:.3f} | {cells} | {cc} |")
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
