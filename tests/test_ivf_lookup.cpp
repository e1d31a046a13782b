// find_ivf_path (faiss_gmm/ivf_lookup.h): the IVF inside every wrapper it sees
// through, the wrappers and pre-transforms on the way in order, the vectors'
// frame at the IVF (against FAISS's own apply_chain), and nothing for indexes
// without an IVF or behind a wrapper it does not know.
#include <gtest/gtest.h>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexRefine.h>
#include <faiss/VectorTransform.h>
#include <faiss/index_factory.h>

#include <memory>
#include <random>

#include "faiss_gmm/GmmQuantizer.h"
#include "faiss_gmm/IndexIVFSpill.h"
#include "faiss_gmm/gmm_index_factory.h"
#include "faiss_gmm/ivf_lookup.h"

using namespace faiss_gmm;
using idx_t = faiss::Index::idx_t;

namespace {

constexpr int kD = 8;

std::vector<float> random_rows(int64_t n, int64_t d, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> x(size_t(n * d));
    for (float& v : x) v = g(rng);
    return x;
}

faiss::IndexIVFFlat* new_ivf(int d) {
    return new faiss::IndexIVFFlat(new faiss::IndexFlatL2(d), d, 4);
}

} // namespace

TEST(IvfLookup, PlainIvfHasAnEmptyPath) {
    std::unique_ptr<faiss::IndexIVFFlat> ivf(new_ivf(kD));
    ivf->own_fields = true;
    const IvfPath p = find_ivf_path(ivf.get());
    EXPECT_EQ(p.ivf, ivf.get());
    EXPECT_TRUE(p.wrappers.empty());
    EXPECT_TRUE(p.transforms.empty());
    const std::vector<float> x = random_rows(3, kD, 1);
    std::unique_ptr<const float[]> owned;
    EXPECT_EQ(p.to_ivf_space(3, x.data(), owned), x.data()); // no copy when nothing transforms
    EXPECT_EQ(owned, nullptr);
    EXPECT_EQ(find_ivf(static_cast<const faiss::Index*>(ivf.get())), ivf.get());
}

TEST(IvfLookup, SeesThroughEveryWrapperInOrder) {
    // IndexRefineFlat(IDMap(PreTransform(rotation, PreTransform(PCA, IVF)))): every kind, two transforms.
    const std::vector<float> xt = random_rows(500, kD, 2);
    auto* ivf = new_ivf(kD / 2);
    ivf->own_fields = true;
    auto* pca = new faiss::PCAMatrix(kD, kD / 2);
    pca->train(500, xt.data());
    auto* inner_pt = new faiss::IndexPreTransform(pca, ivf);
    inner_pt->own_fields = true;
    auto* rot = new faiss::RandomRotationMatrix(kD, kD);
    rot->init(7);
    auto* outer_pt = new faiss::IndexPreTransform(rot, inner_pt);
    outer_pt->own_fields = true;
    auto* idmap = new faiss::IndexIDMap(outer_pt);
    idmap->own_fields = true;
    faiss::IndexRefineFlat refine(idmap);
    refine.own_fields = true;

    const IvfPath p = find_ivf_path(&refine);
    ASSERT_EQ(p.ivf, ivf);
    const std::vector<faiss::Index*> wrappers{&refine, idmap, outer_pt, inner_pt};
    EXPECT_EQ(p.wrappers, wrappers);
    const std::vector<faiss::IndexPreTransform*> transforms{outer_pt, inner_pt};
    EXPECT_EQ(p.transforms, transforms);

    // The frame at the IVF: the rotation, then the PCA, as FAISS applies them.
    const std::vector<float> x = random_rows(5, kD, 3);
    std::unique_ptr<const float[]> owned;
    const float* got = p.to_ivf_space(5, x.data(), owned);
    std::unique_ptr<const float[]> rotated(outer_pt->apply_chain(5, x.data()));
    std::unique_ptr<const float[]> want(inner_pt->apply_chain(5, rotated.get()));
    ASSERT_NE(got, x.data());
    for (int i = 0; i < 5 * kD / 2; i++) EXPECT_EQ(got[i], want[i]) << i; // the same operations: bit for bit

    EXPECT_EQ(find_ivf(&refine), ivf);
    EXPECT_EQ(find_gmm_quantizer(&refine), nullptr); // a flat, k-means quantizer
}

TEST(IvfLookup, SeesThroughTheSpillIndexAndFindsTheGmmQuantizer) {
    std::unique_ptr<faiss::Index> index(gmm_index_factory(kD, "PCA4,IVF4_GMM_spill1.2,Flat"));
    auto* sp = as_spill_index(index.get());
    ASSERT_NE(sp, nullptr);
    const IvfPath p = find_ivf_path(index.get());
    ASSERT_EQ(p.ivf, sp->ivf);
    ASSERT_EQ(p.wrappers.size(), 2u);
    EXPECT_EQ(p.wrappers[0], index.get());
    EXPECT_EQ(p.wrappers[1], sp->index);
    ASSERT_EQ(p.transforms.size(), 1u);
    EXPECT_EQ(p.transforms[0], sp->index);
    EXPECT_EQ(find_gmm_quantizer(index.get()), dynamic_cast<GmmQuantizer*>(sp->ivf->quantizer));
    EXPECT_NE(find_gmm_quantizer(index.get()), nullptr);
}

TEST(IvfLookup, NoIvfGivesAnEmptyPath) {
    faiss::IndexFlatL2 flat(kD);
    faiss::IndexIDMap idmap(&flat); // a known wrapper around no IVF
    for (faiss::Index* index : {static_cast<faiss::Index*>(&flat), static_cast<faiss::Index*>(&idmap),
                                static_cast<faiss::Index*>(nullptr)}) {
        const IvfPath p = find_ivf_path(index);
        EXPECT_EQ(p.ivf, nullptr);
        EXPECT_TRUE(p.wrappers.empty());
        EXPECT_TRUE(p.transforms.empty());
        EXPECT_EQ(find_ivf(index), nullptr);
        EXPECT_EQ(find_gmm_quantizer(index), nullptr);
    }
}

TEST(IvfLookup, SpillIndexStillTakesOnlyAnIvfOrOnePreTransformOfOne) {
    // IndexIVFSpill uses the path but keeps its narrower contract (it drives
    // add_core itself, so it must own the whole chain to the IVF).
    auto* ivf = new_ivf(kD);
    ivf->own_fields = true;
    faiss::IndexIDMap idmap(ivf);
    idmap.own_fields = true;
    try {
        IndexIVFSpill sp(&idmap, SpillParams(), /*own_fields=*/false);
        FAIL() << "an IVF behind an IndexIDMap was accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "IndexIVFSpill: needs an IndexIVF, directly or behind one IndexPreTransform");
    }
}
