"""Times the research full-covariance kernel of IBM/Flash-GMM (flash_gmm_full_h100.py: two Triton
launches, bf16 products, atomic sums) and torch floors of its main product, on the data and model of
bench_estep_cuda_full (rows around max(64, K/4) centers uniform in [-1.7, 1.7]^d plus uniform noise
of variance 1/4, means = the first K rows, Σ_k = 0.35·I, uniform weights), in the same device call
as ours. The kernel is imported from --kernels, a folder outside the repository's tracked files
(its code is never committed here)."""
import argparse
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# the rows and the timing (CUDA events, median after warm-up) of the spherical side-by-side benchmark
from bench_flash_gmm import bench, data  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernels", required=True)
    ap.add_argument("--shapes", default="1000000x1024x128")
    ap.add_argument("--reps", type=int, default=3)  # after bench()'s two warm-up calls
    args = ap.parse_args()
    sys.path.insert(0, args.kernels)
    import flash_gmm_full_h100 as full
    print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    for s in args.shapes.split(","):
        N, K, d = map(int, s.split("x"))
        X = data(N, d, max(64, K // 4))
        mu = X[:K].clone()
        prec_chol = torch.eye(d, device="cuda").repeat(K, 1, 1) / math.sqrt(0.35)  # Σ = 0.35·I
        lpi = torch.full((K,), -math.log(K), device="cuda")
        t0 = time.time()
        logZ, Nk, _, _ = full.flash_gmm_estep_full(X, mu, prec_chol, lpi)  # Triton compiles here
        torch.cuda.synchronize()
        compile_s = time.time() - t0
        ms = bench(lambda: full.flash_gmm_estep_full(X, mu, prec_chol, lpi), args.reps)
        # Floor of the main product: X·[L_1 … L_K] (N × K·d) on a block of rows, scaled to N.
        rows = max(1, min(N, (1 << 30) // (K * d * 2)))
        W = prec_chol.transpose(1, 2).reshape(K * d, d).T.contiguous()  # d × K·d
        xb, wb = X[:rows].bfloat16(), W.bfloat16()
        bf16 = bench(lambda: xb @ wb, 5) * N / rows
        torch.backends.cuda.matmul.allow_tf32 = True
        tf32 = bench(lambda: X[:rows] @ W, 5) * N / rows
        torch.backends.cuda.matmul.allow_tf32 = False
        print(f"N={N} K={K} d={d}: research flash_gmm_full_h100 {ms:.1f} ms (median of {args.reps}; first call "
              f"with compile {compile_s:.1f} s), mean logZ/row {logZ.mean().item():.5f}, sum Nk {Nk.sum().item():.1f} | "
              f"torch floor of X·[L_1..L_K] (output written): bf16 {bf16:.1f} ms, tf32 {tf32:.1f} ms")
        del X, mu, prec_chol, xb, wb, W
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
