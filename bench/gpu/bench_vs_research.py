"""Ours against the research kernels of IBM/Flash-GMM, on the same data, in one run (issue 16).

For every row (covariance, N, K, d): rows and a model are made on the GPU with torch (as
bench_flash_gmm.py makes them: clusters + noise; means = the first K rows; spherical variance
0.35, diagonal variances 0.35·U(0.5, 1.5) per dimension; uniform weights), written to files
that bench_estep_file (ours, C++/CUDA, --ours) reads and copies to the GPU, and kept on the GPU
for the research kernels (flash_gmm.py: generic Triton, fp32 inputs; flash_gmm_h100.py: spherical,
bf16, autotuned; flash_gmm_diag_h100.py: diagonal, bf16, autotuned), imported from --kernels, a
folder outside the tracked files (their code is never committed here). Times: medians of
device-resident calls (ours: wall time of accumulate(), and its device time; research: CUDA
events around the call; autotuning happens before). Errors: every statistic (log-likelihood,
N_k, Σ r x, the second moments about the model's means) against one float64 reference computed
here with torch in float64 (GEMMs in double), each as ‖Δ‖/‖ref‖; the table shows the largest.
Writes a markdown table (--out), one row at a time, so a run cut short keeps what it measured.
"""
import argparse
import math
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_flash_gmm import bench, data  # noqa: E402  (the same rows and timing as the research-only benchmark)

LOG2PI = math.log(2 * math.pi)


def reference(X, mu, var, logw, diag):
    """float64 statistics: n, loglik, N_k, Σ r x, Σ r (x − μ)² (per dimension if diag, else summed)."""
    N, d = X.shape
    K = mu.shape[0]
    c = X.double().mean(0)
    mu64 = mu.double() - c
    v = var.double() if diag else var.double()[:, None].expand(K, d)
    iv = 1.0 / v
    # log N_k(x) = −½ Σ_j (x_j − μ_j)²/σ²_j − ½ Σ_j log(2π σ²_j), expanded in the centered frame (double).
    const = logw.double() - 0.5 * (torch.log(v).sum(1) + d * LOG2PI) - 0.5 * (mu64 * mu64 * iv).sum(1)
    W1, W2 = mu64 * iv, -0.5 * iv
    nk = torch.zeros(K, dtype=torch.float64, device="cuda")
    sx = torch.zeros(K, d, dtype=torch.float64, device="cuda")
    sxx = torch.zeros(K, d, dtype=torch.float64, device="cuda")
    ll = 0.0
    step = max(1024, (1 << 27) // K)
    for a in range(0, N, step):
        x = X[a:a + step].double() - c
        L = x @ W1.T + (x * x) @ W2.T + const
        lz = torch.logsumexp(L, 1)
        ll += lz.sum().item()
        R = torch.exp(L - lz[:, None])
        nk += R.sum(0)
        sx += R.T @ x
        sxx += R.T @ (x * x)
    sq = sxx - 2 * mu64 * sx + nk[:, None] * mu64 * mu64  # Σ r (x − μ)², centered frame = rows' frame
    return dict(n=float(N), loglik=ll, nk=nk, sum_x=sx + nk[:, None] * c, sum_sq=sq if diag else sq.sum(1))


def errors(got, ref):
    def rel(a, b):
        a = a.double().reshape(-1)
        b = b.double().reshape(-1)
        return ((a - b).norm() / b.norm()).item() if b.norm() > 0 else (a - b).norm().item()
    e = dict(loglik=abs(got["loglik"] - ref["loglik"]) / abs(ref["loglik"]), nk=rel(got["nk"], ref["nk"]),
             sum_x=rel(got["sum_x"], ref["sum_x"]), sum_sq=rel(got["sum_sq"], ref["sum_sq"]))
    e["max"] = max(e.values())
    return e


def read_ours(path, K, d, diag):
    t = torch.from_numpy(__import__("numpy").fromfile(path, dtype="float64")).cuda()
    nsq = K * d if diag else K
    assert t.numel() == 2 + K + K * d + nsq, path
    return dict(n=t[0].item(), loglik=t[1].item(), nk=t[2:2 + K], sum_x=t[2 + K:2 + K + K * d].reshape(K, d),
                sum_sq=t[2 + K + K * d:].reshape(K, d) if diag else t[2 + K + K * d:])


def research_stats(out, X, mu):
    logZ, Nk, mu_acc, sig_acc = out
    return dict(n=float(X.shape[0]), loglik=logZ.double().sum().item(), nk=Nk, sum_x=mu_acc, sum_sq=sig_acc)


def fmt_t(v):
    return f"{v:.2f} ms" if isinstance(v, float) else v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernels", required=True, help="folder with flash_gmm.py, flash_gmm_h100.py, flash_gmm_diag_h100.py")
    ap.add_argument("--ours", required=True, help="bench_estep_file binary")
    ap.add_argument("--rows", default="sph:1000000:1024:128,sph:1000000:16384:128,diag:1000000:1024:128,"
                    "diag:1000000:1024:96,sph:4000000:256:128,sph:1000000:4096:128,sph:1000000:65536:128")
    ap.add_argument("--research-rows", default="0,1,2,3", help="indices of --rows that also time the research kernels")
    ap.add_argument("--blocked-rows", default="2,3", help="indices of --rows that also time Blocked (the path before)")
    ap.add_argument("--fast-only-rows", default="4,5,6", help="indices of --rows timed in fast mode only (the K scan)")
    ap.add_argument("--research-kernels", default="h100,diag,generic",
                    help="which research kernels to time: h100 (spherical, autotuned), diag (autotuned), generic")
    ap.add_argument("--tmp", default="/tmp/bench_vs_research")
    ap.add_argument("--out", default="bench_vs_research.md")
    args = ap.parse_args()
    sys.path.insert(0, args.kernels)
    os.makedirs(args.tmp, exist_ok=True)
    import flash_gmm
    import flash_gmm_diag_h100
    import flash_gmm_h100
    dev = torch.cuda.get_device_name(0)
    research_rows = {int(i) for i in args.research_rows.split(",") if i}
    blocked_rows = {int(i) for i in args.blocked_rows.split(",") if i}
    fast_only = {int(i) for i in args.fast_only_rows.split(",") if i}
    kernels = set(args.research_kernels.split(","))
    with open(args.out, "w") as f:
        f.write(f"device: {dev}; torch {torch.__version__}\n\n")
        f.write("| row | ours fast | ours accurate | Blocked fast / accurate (before) | research H100 (bf16) | "
                "research generic (fp32) |\n|---|---|---|---|---|---|\n")
    for i, spec in enumerate(args.rows.split(",")):
        cov, N, K, d = spec.split(":")
        N, K, d, diag = int(N), int(K), int(d), cov == "diag"
        t_row = time.time()
        X = data(N, d, max(64, K // 4))
        mu = X[:K].clone()
        g = torch.Generator(device="cuda").manual_seed(99)
        var = 0.35 * (0.5 + torch.rand(K, d, device="cuda", generator=g)) if diag else \
            torch.full((K,), 0.35, device="cuda")
        logw = torch.full((K,), -math.log(K), device="cuda")
        xf, mf = os.path.join(args.tmp, "x.bin"), os.path.join(args.tmp, "m.bin")
        X.cpu().numpy().tofile(xf)
        with open(mf, "wb") as fh:
            import numpy as np
            fh.write(np.array([K, d], dtype=np.int64).tobytes())
            fh.write(np.array([1 if diag else 0], dtype=np.int32).tobytes())
            for t in (logw, mu, var):
                fh.write(t.float().cpu().numpy().tobytes())
        ref = reference(X, mu, var, logw, diag)
        modes = "fast" if i in fast_only else "fast,accurate"
        modes += ",blocked-fast,blocked-accurate" if i in blocked_rows else ""
        reps = 3 if K * d > 4096 * 128 else 10
        prefix = os.path.join(args.tmp, "ours")
        res = subprocess.run([args.ours, "--rows", xf, "--model", mf, "--modes", modes, "--reps", str(reps),
                              "--stats", prefix], capture_output=True, text=True)
        print(res.stdout + res.stderr, flush=True)
        ours = {}
        for line in res.stdout.splitlines():
            w = line.split()
            if w and w[0] == "mode":
                st = read_ours(f"{prefix}_{w[1]}.bin", K, d, diag)
                ours[w[1]] = dict(algo=w[3], wall=float(w[5]), device=float(w[7]), err=errors(st, ref))
        cells = {}
        for m in ("fast", "accurate", "blocked-fast", "blocked-accurate"):
            if m in ours:
                o = ours[m]
                cells[m] = f"{o['wall']:.2f} ms (device {o['device']:.2f}; {o['algo']}; err {o['err']['max']:.1e})"
            else:
                cells[m] = "–"
        rh, rg = "–", "–"
        if i in research_rows:
            lss = torch.log(var)
            if diag:
                fn = lambda: flash_gmm_diag_h100.flash_gmm_estep_diag(X, mu, lss, logw)
            else:
                fn = lambda: flash_gmm_h100.flash_gmm_estep(X, mu, lss, logw)
            try:
                if ("diag" if diag else "h100") not in kernels:
                    raise RuntimeError("not timed in this run (--research-kernels)")
                t0 = time.time()
                out = fn()  # autotunes
                torch.cuda.synchronize()
                tune = time.time() - t0
                e = errors(research_stats(fn(), X, mu), ref)
                rh = f"{bench(fn, reps):.2f} ms (err {e['max']:.1e}; autotune {tune:.0f} s)"
                del out
            except Exception as ex:  # report, don't hide
                rh = f"error: {type(ex).__name__}: {str(ex)[:80]}"
            if not diag and "generic" in kernels:
                bd = 1 << (d - 1).bit_length()
                fg = lambda: flash_gmm.flash_gmm_estep(X, mu, lss, logw, BLOCK_D=bd)
                try:
                    e = errors(research_stats(fg(), X, mu), ref)
                    rg = f"{bench(fg, 3):.2f} ms (err {e['max']:.1e})"
                except Exception as ex:
                    rg = f"error: {type(ex).__name__}: {str(ex)[:80]}"
            elif diag:
                rg = "no diagonal generic kernel"
        row = f"{cov} N={N} K={K} d={d}"
        line = (f"| {row} | {cells['fast']} | {cells['accurate']} | {cells['blocked-fast']} / "
                f"{cells['blocked-accurate']} | {rh} | {rg} |")
        print(line, f"  [{time.time() - t_row:.0f} s]", flush=True)
        for m, o in ours.items():
            print(f"    ours {m}: " + ", ".join(f"{k} {v:.2e}" for k, v in o["err"].items()), flush=True)
        with open(args.out, "a") as f:
            f.write(line + "\n")
        del X, mu, ref
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
