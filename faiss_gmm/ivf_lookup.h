// Finding the IndexIVF inside a wrapped index: directly, or behind the wrappers
// FAISS's factory and this project put around it (IndexPreTransform, IndexIDMap /
// IDMap2, IndexRefine / RefineFlat, IndexIVFSpill). One walk, used by the
// quantizer installation, the spill index, gmm_io, the evaluation and Python, so
// that they agree on which wrappers are seen through and on the vectors' frame
// (the pre-transforms a query passes before it reaches the IVF).
#pragma once

#include <memory>
#include <vector>

#include <faiss/Index.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexPreTransform.h>

namespace faiss_gmm {

class GmmQuantizer;

/// The way from an index to the IVF inside it.
struct IvfPath {
    faiss::IndexIVF* ivf = nullptr;                ///< nullptr when no IVF is reachable
    std::vector<faiss::Index*> wrappers;           ///< the indexes passed through, outermost first
    std::vector<faiss::IndexPreTransform*> transforms; ///< those of them that transform vectors, outermost first

    /// x (n rows in the outer index's space) in the IVF's space: through every
    /// pre-transform of the path. Returns x itself when there is none; otherwise
    /// the transformed rows, owned by `owned`.
    const float* to_ivf_space(faiss::Index::idx_t n, const float* x, std::unique_ptr<const float[]>& owned) const;
};

/// The path from index to its IVF (ivf == nullptr when there is none; index may be nullptr).
IvfPath find_ivf_path(faiss::Index* index);

/// The IVF inside index (directly, or behind IndexPreTransform / IndexIDMap /
/// IndexRefine / IndexIVFSpill), or nullptr.
faiss::IndexIVF* find_ivf(faiss::Index* index);
const faiss::IndexIVF* find_ivf(const faiss::Index* index);

/// The GmmQuantizer of the IVF inside index, or nullptr.
GmmQuantizer* find_gmm_quantizer(faiss::Index* index);
const GmmQuantizer* find_gmm_quantizer(const faiss::Index* index);

} // namespace faiss_gmm
