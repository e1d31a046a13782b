"""The GIL: faiss searches from several Python threads, with faiss_gmm work
(EM training through faiss's train(), GaussianMixture fit/predict) running at
the same time, must all finish. A hang is the failure mode (an OpenMP worker in
faiss's Python interrupt callback waiting for a GIL that a thread blocked in C++
holds), so the scenario runs in a subprocess with a timeout instead of risking
a pytest run that never ends."""

import os
import subprocess
import sys
import textwrap

SCENARIO = textwrap.dedent(r"""
    import threading, warnings
    warnings.simplefilter("ignore")
    import faiss, numpy as np, faiss_gmm

    rng = np.random.default_rng(0)
    d = 32
    xb = rng.standard_normal((20000, d)).astype(np.float32)
    xq = rng.standard_normal((2000, d)).astype(np.float32)
    index = faiss_gmm.index_factory(d, "IVF64_GMM,Flat", niter=5)
    index.train(xb[:8000])
    index.add(xb)
    index.nprobe = 8
    ref = index.search(xq, 10)[1]
    errors = []

    def searcher():
        try:
            for _ in range(15):
                assert (index.search(xq, 10)[1] == ref).all()
        except Exception as e:
            errors.append(repr(e))

    def gmm_worker():
        try:
            for _ in range(3):
                gm = faiss_gmm.GaussianMixture(16, max_iter=5, random_state=0).fit(xb[:5000])
                gm.predict(xb); gm.score_samples(xq); gm.predict_proba(xq)
        except Exception as e:
            errors.append(repr(e))

    def trainer():
        # EM inside faiss's own train(), then faiss's PQ training (python3-faiss's
        # copy, which polls its interrupt callback), through faiss_gmm.train_ivf.
        try:
            for _ in range(2):
                idx = faiss.index_factory(d, "IVF32,PQ8x4")
                faiss_gmm.train_ivf(idx, xb[:4000], niter=4)
                idx.add(xb[:5000])
                idx.search(xq[:100], 5)
                faiss_gmm.deserialize_index(faiss_gmm.serialize_index(idx))
        except Exception as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=searcher) for _ in range(4)]
    threads += [threading.Thread(target=gmm_worker), threading.Thread(target=trainer)]
    for t in threads:
        t.start()
    # The main thread keeps needing the GIL meanwhile.
    while any(t.is_alive() for t in threads):
        sum(i * i for i in range(10000))
        for t in threads:
            t.join(0.01)
    assert not errors, errors
    print("OK")
""")


def test_concurrent_faiss_search_and_gmm_work_do_not_hang():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    res = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().endswith("OK")
