"""Times the research kernels of IBM/Flash-GMM (flash_gmm.py: generic Triton kernel;
flash_gmm_h100.py: H100-tuned bf16 kernel) and torch GEMM floors, on the shapes of
bench_estep_cuda, in the same run. The kernels are imported from --kernels, a folder
outside the repository's tracked files (their code is never committed here).
Data: device-resident float32 rows like bench_estep_cuda's (clusters + noise), means
taken from the rows, variance 0.35, uniform weights."""
import argparse
import math
import sys
import time

import torch


def data(N, d, nc, seed=1234):
    g = torch.Generator(device="cuda").manual_seed(seed)
    centers = 1.7 * (2 * torch.rand(nc, d, device="cuda", generator=g) - 1)
    idx = torch.randint(0, nc, (N,), device="cuda", generator=g)
    noise = torch.rand(N, d, device="cuda", generator=g) + torch.rand(N, d, device="cuda", generator=g) + \
        torch.rand(N, d, device="cuda", generator=g) - 1.5
    return centers[idx] + noise


def bench(fn, reps):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        fn()
        e1.record()
        torch.cuda.synchronize()
        ts.append(e0.elapsed_time(e1))
    ts.sort()
    return ts[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernels", required=True)
    ap.add_argument("--shapes", default="1000000x1024x128,1000000x1024x96,1000000x4096x128,1000000x1024x784")
    ap.add_argument("--generic-max-d", type=int, default=128)
    args = ap.parse_args()
    sys.path.insert(0, args.kernels)
    import flash_gmm
    import flash_gmm_h100
    print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    print(f"{'shape':28s} {'flash_gmm':>11s} {'flash_h100':>11s} | {'torch-bf16':>10s} {'torch-tf32':>10s} {'torch-fp32':>10s}")
    for s in args.shapes.split(","):
        N, K, d = map(int, s.split("x"))
        X = data(N, d, max(64, K // 4))
        mu = X[:K].clone()
        lss = torch.full((K,), math.log(0.35), device="cuda")
        lpi = torch.full((K,), -math.log(K), device="cuda")
        res = {}
        reps = 5 if K * d > 1024 * 128 * 4 else 10
        if d <= args.generic_max_d:
            bd = 1 << (d - 1).bit_length()
            try:
                res["gen"] = bench(lambda: flash_gmm.flash_gmm_estep(X, mu, lss, lpi, BLOCK_D=bd), reps)
            except Exception as e:  # report, don't hide
                res["gen"] = f"error: {type(e).__name__}"
        else:
            res["gen"] = "skipped"
        try:
            t0 = time.time()
            flash_gmm_h100.flash_gmm_estep(X, mu, lss, lpi)  # autotune happens here
            torch.cuda.synchronize()
            tune = time.time() - t0
            res["h100"] = bench(lambda: flash_gmm_h100.flash_gmm_estep(X, mu, lss, lpi), reps)
        except Exception as e:
            res["h100"] = f"error: {type(e).__name__}: {str(e)[:60]}"
            tune = 0
        rows = min(N, (3 << 30) // (K * 4))
        Xr, mur = X[:rows], mu
        xb, mb = Xr.bfloat16(), mur.bfloat16()
        torch.backends.cuda.matmul.allow_tf32 = False
        fp32 = bench(lambda: Xr @ mur.T, 10) * N / rows
        torch.backends.cuda.matmul.allow_tf32 = True
        tf32 = bench(lambda: Xr @ mur.T, 10) * N / rows
        torch.backends.cuda.matmul.allow_tf32 = False
        bf16 = bench(lambda: xb @ mb.T, 10) * N / rows
        fmt = lambda v: f"{v:9.2f}ms" if isinstance(v, float) else f"{v:>11s}"
        print(f"N={N//1000000}M K={K} d={d:<4d}          {fmt(res['gen'])} {fmt(res['h100'])} | {bf16:8.2f}ms {tf32:8.2f}ms {fp32:8.2f}ms   (h100 autotune {tune:.0f}s)")
        del X, mu, xb, mb
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
