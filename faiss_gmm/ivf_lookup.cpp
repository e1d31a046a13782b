#include "ivf_lookup.h"

#include <faiss/IndexIDMap.h>
#include <faiss/IndexRefine.h>

#include "GmmQuantizer.h"
#include "IndexIVFSpill.h"

namespace faiss_gmm {

const float* IvfPath::to_ivf_space(faiss::Index::idx_t n, const float* x,
                                   std::unique_ptr<const float[]>& owned) const {
    const float* xt = x;
    for (const faiss::IndexPreTransform* pt : transforms) {
        const float* next = pt->apply_chain(n, xt);
        if (next != xt) owned.reset(next); // the previous stage's rows are freed here
        xt = next;
    }
    return xt;
}

IvfPath find_ivf_path(faiss::Index* index) {
    IvfPath path;
    while (index) {
        if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(index)) {
            path.ivf = ivf;
            return path;
        }
        faiss::Index* inner = nullptr;
        if (auto* sp = dynamic_cast<IndexIVFSpill*>(index)) {
            inner = sp->index;
        } else if (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index)) {
            path.transforms.push_back(pt);
            inner = pt->index;
        } else if (auto* idmap = dynamic_cast<faiss::IndexIDMap*>(index)) { // IndexIDMap2 too
            inner = idmap->index;
        } else if (auto* refine = dynamic_cast<faiss::IndexRefine*>(index)) {
            inner = refine->base_index;
        }
        if (!inner) break;
        path.wrappers.push_back(index);
        index = inner;
    }
    return IvfPath{};
}

faiss::IndexIVF* find_ivf(faiss::Index* index) {
    return find_ivf_path(index).ivf;
}

const faiss::IndexIVF* find_ivf(const faiss::Index* index) {
    return find_ivf(const_cast<faiss::Index*>(index));
}

GmmQuantizer* find_gmm_quantizer(faiss::Index* index) {
    faiss::IndexIVF* ivf = find_ivf(index);
    return ivf ? dynamic_cast<GmmQuantizer*>(ivf->quantizer) : nullptr;
}

const GmmQuantizer* find_gmm_quantizer(const faiss::Index* index) {
    return find_gmm_quantizer(const_cast<faiss::Index*>(index));
}

} // namespace faiss_gmm
