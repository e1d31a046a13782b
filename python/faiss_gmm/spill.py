"""Soft multi-assignment ("spill") of border vectors with deduplicated search (issue 6).

A spill index stores a vector in several inverted lists and searches each id at most
once; FAISS's SWIG layer has no such type, so it is NOT a faiss Python object: it is
a C++ faiss_gmm::IndexIVFSpill owned by the faiss_gmm._spill module, used with numpy
arrays::

    from faiss_gmm.spill import spill_index_factory, IndexIVFSpill
    index = spill_index_factory(128, "IVF1024_GMM_spill1.2,Flat")   # GMM-SOAR; "IVF1024_spill1.2,PQ16x4": k-means
    index.train(xt); index.add(xb); index.nprobe = 16
    D, I = index.search(xq, 10)                 # each id at most once per row
    index.write("spill.index"); index = IndexIVFSpill.read("spill.index")

The factory grammar is gmm_index_factory's (faiss_gmm/gmm_index_factory.h). Files are
faiss files plus trailers: faiss.read_index reads them as the plain IVF holding every
copy (no deduplication there).
"""
from ._spill import IndexIVFSpill


def spill_index_factory(d, description, niter=0, seed=1234, verbose=False):
    """An untrained IndexIVFSpill for a description with a spill option (_spill<B>, _tau<t>, _eps<e>)."""
    return IndexIVFSpill(int(d), description, int(niter), int(seed), bool(verbose))


__all__ = ["IndexIVFSpill", "spill_index_factory"]
