"""scikit-learn conventions: GaussianMixture passes scikit-learn's own estimator
checks (every one, each its own test), pickles to a model that predicts
identically, and indexes from faiss_gmm.index_factory pickle with their GMM."""

import copy
import pickle

import faiss
import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

import faiss_gmm
from faiss_gmm import GaussianMixture


@parametrize_with_checks([GaussianMixture(n_components=2, random_state=0),
                          GaussianMixture(n_components=2, covariance_type="diag", random_state=0),
                          GaussianMixture(n_components=2, covariance_type="full", random_state=0)])
def test_sklearn_estimator_check(estimator, check):
    check(estimator)


@pytest.mark.parametrize("cov", ["spherical", "diag", "full"])
def test_pickle_round_trip_predicts_identically(blobs, cov):
    x, _, _ = blobs
    gm = GaussianMixture(n_components=6, covariance_type=cov, random_state=3, max_iter=5).fit(x)
    back = pickle.loads(pickle.dumps(gm))
    # The model's stored float32 arrays travel as they are: bit-identical outputs.
    assert np.array_equal(back.model_.means, gm.model_.means)
    assert np.array_equal(back.model_.variances, gm.model_.variances)
    assert np.array_equal(back.model_.log_weights, gm.model_.log_weights)
    assert np.array_equal(back.predict(x), gm.predict(x))
    assert np.array_equal(back.predict_proba(x), gm.predict_proba(x))
    assert np.array_equal(back.score_samples(x), gm.score_samples(x))
    assert [s.loglik for s in back.iteration_stats_] == [s.loglik for s in gm.iteration_stats_]
    assert back.get_params() == gm.get_params()


def test_model_state_is_checked():
    gm = GaussianMixture(n_components=2, random_state=0).fit(np.random.default_rng(0).standard_normal((50, 3)))
    state = gm.model_.__getstate__()
    bad = (state[0], state[1], state[2], state[3], state[4][:1], state[5])  # means cut short
    m = faiss_gmm._core.GmmModel.__new__(faiss_gmm._core.GmmModel)
    with pytest.raises(ValueError, match="means has 3 values, expected 6"):
        m.__setstate__(bad)
    nan_state = (state[0], state[1], state[2], state[3], np.full_like(state[4], np.nan), state[5])
    with pytest.raises(ValueError, match="finite"):
        faiss_gmm._core.GmmModel.__new__(faiss_gmm._core.GmmModel).__setstate__(nan_state)


def _search(index, xq):
    return index.search(xq, 5)


@pytest.mark.parametrize("description", ["IVF16_GMM,Flat", "PCA8,IVF16_GMMdiag,SQ8"])
def test_gmm_index_pickles_with_its_model(blobs, description):
    x, _, _ = blobs
    x = x.astype(np.float32)
    index = faiss_gmm.index_factory(x.shape[1], description, niter=4, seed=5)
    index.train(x)
    index.add(x)
    faiss.extract_index_ivf(index).nprobe = 4
    for back in (pickle.loads(pickle.dumps(index)), copy.deepcopy(index)):
        assert faiss_gmm.is_gmm_index(back)
        m0, m1 = faiss_gmm.get_gmm_model(index), faiss_gmm.get_gmm_model(back)
        assert np.array_equal(m0.means, m1.means) and np.array_equal(m0.variances, m1.variances)
        assert faiss.extract_index_ivf(back).nprobe == 4 and back.ntotal == index.ntotal
        d0, i0 = _search(index, x[:50])
        d1, i1 = _search(back, x[:50])
        assert np.array_equal(i0, i1) and np.array_equal(d0, d1)
        # ... and it pickles again (the unpickled index carries the same support).
        assert faiss_gmm.is_gmm_index(pickle.loads(pickle.dumps(back)))


def test_untrained_gmm_index_pickles_with_its_params(blobs):
    x, _, _ = blobs
    index = faiss_gmm.index_factory(x.shape[1], "IVF8_GMMdiag,Flat", niter=3, seed=11, reg_covar=1e-4)
    back = pickle.loads(pickle.dumps(index))
    assert faiss_gmm.is_gmm_index(back) and not back.is_trained
    p = faiss_gmm.get_gmm_params(back)
    assert (p.niter, p.seed, p.reg_covar, p.covariance_type) == (3, 11, 1e-4, faiss_gmm._core.CovarianceType.Diagonal)
    # Trained after the round trip, it is the model the original trains to.
    x = x.astype(np.float32)
    index.train(x)
    back.train(x)
    assert np.array_equal(faiss_gmm.get_gmm_model(index).means, faiss_gmm.get_gmm_model(back).means)


def test_plain_faiss_index_pickles_as_faiss_does():
    index = faiss.index_factory(8, "IVF4,Flat")
    assert "__reduce_ex__" not in vars(index)
    assert pickle.loads(pickle.dumps(index)).d == 8
