#!/usr/bin/python3
"""Benchmark (not a test): one EM iteration of faiss_gmm.GaussianMixture(covariance_type="full")
against scikit-learn's full-covariance EM from the same start, and against faiss_gmm's
diagonal type, at N = 100K, d in {64, 128}, K in {64, 256} (issue 17).

Every figure comes from a fresh subprocess that loads the data from .npy and warms up on a
small slice (helpers of bench_gaussian_mixture.py). One EM iteration (E-step + M-step):
  * faiss_gmm: fit with 2 iterations; the engine's clock of the second one
    (iteration_stats_[1].time_s − iteration_stats_[0].time_s);
  * scikit-learn: its own E-step and M-step (`_e_step`, `_m_step`) once, timed in-process,
    on the fitted state set to the same start (sklearn's fit would add an M-step-sized
    initialization and a final E-step: at d = 128, K = 256 that is minutes per run).
Peak memory = VmHWM − VmRSS just before the timed part (peak mark reset, after
malloc_trim(0): memory the warm-up freed but the C allocator kept would otherwise be reused
without showing in RSS, which hid up to ~30 MiB of faiss_gmm's buffers at the small shapes).
Two figures for faiss_gmm:
  * fit: GaussianMixture.fit as a user calls it (initialization from the given start —
    np.linalg.inv of the precisions, K·d² float64 —, both iterations, and the float64
    sklearn-shaped covariances_, precisions_, precisions_cholesky_ built at the end);
  * engine: the EM alone, `_core.fit` from the starting model built before the mark (both
    iterations and the returned model): the counterpart of sklearn's E-step + M-step, which
    is what sklearn's figure counts (its N × K log_resp and temporaries, its new covariances
    and factors). The issue's target (≥ 20× less memory per iteration) is read on this one.
The implementations run interleaved (one of each in turn), so a change of the shared
machine's load hits all of them; the load average is recorded before and after.

Usage: /usr/bin/python3 bench/python/bench_full_covariance.py [--out bench/results/full_covariance_cpu.md]
(with faiss_gmm importable: PYTHONPATH=build/python).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_gaussian_mixture import make_dataset, reset_peak_rss, status_bytes, write_report  # noqa: E402

IMPLS = [("faiss_gmm", "full"), ("sklearn", "full"), ("faiss_gmm", "diag"), ("faiss_gmm_engine", "full")]


def run_one(args):
    """In a subprocess: load, warm up, time one EM iteration (see the module docstring), print a JSON line."""
    import numpy as np
    x = np.load(os.path.join(args.data, "x64.npy"))
    init = np.load(os.path.join(args.data, "init.npz"))
    k, d = init["means"].shape
    prec = init["precisions"][0]
    precisions = np.tile(prec * np.eye(d), (k, 1, 1)) if args.cov == "full" else np.full((k, d), prec)
    warnings.simplefilter("ignore")  # ConvergenceWarning: tol = 0 on purpose
    if args.run == "sklearn":
        from sklearn.mixture import GaussianMixture
        from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky
        gm = GaussianMixture(k, covariance_type=args.cov, reg_covar=1e-6)
        gm.weights_, gm.means_ = init["weights"], init["means"]
        gm.covariances_ = np.linalg.inv(precisions) if args.cov == "full" else 1.0 / precisions
        gm.precisions_cholesky_ = _compute_precision_cholesky(gm.covariances_, args.cov)
        gm._m_step(x[:8192], gm._e_step(x[:8192])[1])  # warm-up (BLAS threads, lazy imports)
        gm.weights_, gm.means_ = init["weights"], init["means"]
        gm.covariances_ = np.linalg.inv(precisions) if args.cov == "full" else 1.0 / precisions
        gm.precisions_cholesky_ = _compute_precision_cholesky(gm.covariances_, args.cov)
        reset_peak_rss()
        rss0 = status_bytes("VmRSS")
        t0 = time.perf_counter()
        lower_bound, log_resp = gm._e_step(x)
        gm._m_step(x, log_resp)
        iter_s = time.perf_counter() - t0
    else:
        import faiss_gmm
        kw = dict(n_components=k, covariance_type=args.cov, max_iter=2, tol=0.0, reg_covar=1e-6,
                  means_init=init["means"], weights_init=init["weights"], precisions_init=precisions)
        faiss_gmm.GaussianMixture(**dict(kw, max_iter=1)).fit(np.ascontiguousarray(x[:8192]))  # warm-up
        if args.run == "faiss_gmm_engine":
            from faiss_gmm import _core
            gm = faiss_gmm.GaussianMixture(**kw)
            params = gm._params(0)
            initial = gm._user_initial_model(x, params)  # the starting model, before the mark
            params.init = _core.InitMethod.Given
            reset_peak_rss()
            rss0 = status_bytes("VmRSS")
            st = _core.fit(x, k, params, initial)["iteration_stats"]
        else:
            reset_peak_rss()
            rss0 = status_bytes("VmRSS")
            st = faiss_gmm.GaussianMixture(**kw).fit(x).iteration_stats_
        iter_s = st[1].time_s - st[0].time_s
        lower_bound = float(st[0].loglik)  # the mean log-likelihood of the starting model
    peak = status_bytes("VmHWM")
    print("RESULT " + json.dumps(dict(iter_s=iter_s, rss_delta=max(0, peak - rss0), lower_bound=float(lower_bound))))


def sub(args, lib, cov):
    cmd = [sys.executable, os.path.abspath(__file__), "--run", lib, "--cov", cov, "--data", args.data]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads([l for l in res.stdout.splitlines() if l.startswith("RESULT ")][-1][len("RESULT "):])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--shapes", default="64x64,64x256,128x64,128x256", help="d x K pairs")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved rounds; the fastest is kept")
    ap.add_argument("--out", default=None)
    ap.add_argument("--run", choices=["sklearn", "faiss_gmm", "faiss_gmm_engine"], help=argparse.SUPPRESS)
    ap.add_argument("--cov", default="full", help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        return run_one(args)

    import numpy
    import sklearn
    lines = ["# Full covariance: one EM iteration, faiss_gmm vs scikit-learn (and vs faiss_gmm diagonal)\n",
             f"Command: `/usr/bin/python3 bench/python/bench_full_covariance.py --out {args.out}` "
             f"(N={args.n}, float64 input, well-separated blobs of bench_gaussian_mixture.make_dataset, spread 2.0; "
             "the same start for all: perturbed true centers, uniform weights, identity precisions scaled to the "
             f"data's variance; reg_covar=1e-6; {args.repeats} interleaved round(s), fastest kept). "
             "Method: the module docstring.\n",
             f"Machine: {platform.node()}, {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
             f"shared with other jobs; Python {platform.python_version()}, numpy {numpy.__version__}, scikit-learn "
             f"{sklearn.__version__}, Debian's OpenBLAS for both.\n",
             "| d | K | faiss_gmm full s/iter | sklearn full s/iter | speed-up | sklearn full peak MiB | "
             "faiss_gmm engine peak MiB | less memory (engine) | faiss_gmm fit peak MiB | less memory (fit) | "
             "faiss_gmm diag s/iter | full / diag time | load avg before → after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for shape in args.shapes.split(","):
        d, k = (int(v) for v in shape.split("x"))
        with tempfile.TemporaryDirectory() as tmp:
            args.data = tmp
            make_dataset(tmp, args.n, d, k, 0, 2.0)
            load0 = os.getloadavg()
            runs = {impl: [] for impl in IMPLS}
            for _ in range(args.repeats):
                for impl in IMPLS:  # interleaved
                    r = sub(args, impl[0], impl[1])
                    runs[impl].append(r)
                    print(f"d={d} K={k} {impl[0]} {impl[1]}: {r['iter_s']:.2f} s / iteration, "
                          f"peak {r['rss_delta'] / 2**20:.1f} MiB", flush=True)
            load1 = os.getloadavg()

        def per_iter(impl):
            return min(r["iter_s"] for r in runs[impl])

        def peak(impl):
            return max(r["rss_delta"] for r in runs[impl]) / 2**20

        ours, sk, diag = per_iter(IMPLS[0]), per_iter(IMPLS[1]), per_iter(IMPLS[2])
        fit_mib, sk_mib, engine_mib = peak(IMPLS[0]), peak(IMPLS[1]), peak(IMPLS[3])
        lines.append(f"| {d} | {k} | {ours:.2f} | {sk:.2f} | {sk / ours:.1f}× | {sk_mib:.0f} | {engine_mib:.1f} | "
                     f"{sk_mib / max(engine_mib, 1):.1f}× | {fit_mib:.1f} | {sk_mib / max(fit_mib, 1):.1f}× | "
                     f"{diag:.3f} | {ours / diag:.0f}× | {load0[0]:.1f} → {load1[0]:.1f} |")
        lb = [runs[i][0]["lower_bound"] for i in (IMPLS[0], IMPLS[1], IMPLS[3])]
        notes.append(f"d={d}, K={k}: mean log-likelihood of the start, faiss_gmm {lb[0]:.6f} (engine {lb[2]:.6f}), "
                     f"sklearn {lb[1]:.6f}.")
    lines += [""] + notes
    write_report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
