// Saving and loading GMM-trained indexes. The file is a plain FAISS index
// (faiss::read_index reads it, with a flat quantizer holding the means) followed
// by a trailer with the GMM model and its parameters (version 2 adds
// GmmQuantizer::rank_by_posterior and probe_variance_weight, version 3
// probe_variance_power; versions 1 and 2 still read; those probe rankings were
// removed in issue 14, so they are written as off and a file that turns one on
// is refused with a message); read_gmm_index puts a
// GmmQuantizer holding that model back in place. An IndexIVFSpill is written as
// its inner index (every copy in the lists: plain FAISS reads it, duplicates and
// all), the GMM trailer if any, then a spill trailer with the spill settings,
// the threshold in use and the distinct-vector count; read_gmm_index returns an
// IndexIVFSpill again.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <faiss/Index.h>
#include <faiss/impl/io.h>

namespace faiss_gmm {

struct GmmModel;
struct GmmParams;

void write_gmm_index(const faiss::Index* index, const std::string& fname);
void write_gmm_index(const faiss::Index* index, faiss::IOWriter* writer);
std::vector<uint8_t> serialize_gmm_index(const faiss::Index* index);

/// Reads an index written by write_gmm_index (or any FAISS index: without a GMM
/// trailer it is returned as FAISS reads it). Throws std::runtime_error naming
/// the problem for truncated or corrupt files.
faiss::Index* read_gmm_index(const std::string& fname);
faiss::Index* deserialize_gmm_index(const uint8_t* data, size_t size);

/// The trailer alone: a model and its params (rank_by_posterior, probe_variance_weight,
/// probe_variance_power: the removed probing settings of trailer versions 2 and 3, kept in the
/// layout; read_gmm_index refuses a file where one is on).
void write_gmm_model(const GmmModel& model, const GmmParams& params, faiss::IOWriter* writer);
void write_gmm_model(const GmmModel& model, const GmmParams& params, bool rank_by_posterior,
                     double probe_variance_weight, faiss::IOWriter* writer);
void write_gmm_model(const GmmModel& model, const GmmParams& params, bool rank_by_posterior,
                     double probe_variance_weight, double probe_variance_power, faiss::IOWriter* writer);
void read_gmm_model(faiss::IOReader* reader, GmmModel* model, GmmParams* params);
/// The same after the magic number was consumed; the probing outputs may be nullptr.
void read_gmm_model_after_magic(faiss::IOReader* reader, GmmModel* model, GmmParams* params, bool* rank_by_posterior,
                                double* probe_variance_weight, double* probe_variance_power = nullptr);

} // namespace faiss_gmm
