// Saving and loading GMM-trained indexes. The file is a plain FAISS index
// (faiss::read_index reads it, with a flat quantizer holding the means) followed
// by a trailer with the GMM model and its parameters; read_gmm_index puts a
// GmmQuantizer holding that model back in place.
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

/// The trailer alone: a model and its params.
void write_gmm_model(const GmmModel& model, const GmmParams& params, faiss::IOWriter* writer);
void read_gmm_model(faiss::IOReader* reader, GmmModel* model, GmmParams* params);

} // namespace faiss_gmm
