// faiss_gmm._core: the pybind11 glue between the C++ library and Python.
//
// Two rules shape everything here (see docs/FAISS_NOTES.md, "Python interop"):
//  * faiss indexes live in faiss's own Python package (python3-faiss), which has
//    its own static copy of faiss. We never hand Python an index made by our
//    copy: Python creates the index, passes int(index.this), and we only install
//    or read a GmmQuantizer inside it. The FAISS part of a file is written and
//    read by faiss's Python copy (through faiss.PyCallbackIOWriter into our
//    GmmFileWriter, and a faiss.FileIOReader / VectorIOReader we check first);
//    the trailers, the checksum and the atomic replacement are gmm_io's.
//  * Every call that can run faiss or OpenMP code releases the GIL: a faiss
//    search run while the GIL is held can hang forever (an OpenMP worker enters
//    faiss's Python interrupt callback and waits for the GIL).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/io.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "faiss_gmm/EStep.h"
#include "faiss_gmm/GmmPosteriors.h"
#include "faiss_gmm/GmmModel.h"
#include "faiss_gmm/GmmParams.h"
#include "faiss_gmm/GmmQuantizer.h"
#include "faiss_gmm/GmmTrainer.h"
#include "faiss_gmm/kmeans_init.h"
#include "faiss_gmm/VectorSource.h"
#include "faiss_gmm/gmm_index_factory.h"
#include "faiss_gmm/gmm_io.h"
#include "faiss_gmm/AtomicFile.h"
#include "faiss_gmm/IndexIVFSpill.h"
#include "faiss_gmm/ivf_lookup.h"

namespace py = pybind11;
using namespace faiss_gmm;

namespace {

// ---------------------------------------------------------------- arrays ----

/// The element types the module accepts. float64 is converted to float32
/// chunk by chunk (never as a whole copy), so it costs no extra N×d memory.
enum class InType { Float32, Float64, UInt8 };

/// A validated, C-contiguous (n, d) array; the Python layer guarantees
/// contiguity, this re-checks so that a wrong call cannot read out of bounds.
struct Rows {
    py::array array; // keeps the data alive
    InType type = InType::Float32;
    int64_t n = 0, d = 0;
    const void* data = nullptr;
};

Rows check_rows(const py::array& a, const char* what) {
    Rows r;
    r.array = a;
    if (a.ndim() != 2) {
        throw std::invalid_argument(std::string(what) + ": expected a 2-D array (n, d), got " +
                                    std::to_string(a.ndim()) + " dimension(s)");
    }
    if (!(a.flags() & py::array::c_style)) {
        throw std::invalid_argument(std::string(what) + ": the array must be C-contiguous");
    }
    if (a.dtype().is(py::dtype::of<float>())) {
        r.type = InType::Float32;
    } else if (a.dtype().is(py::dtype::of<double>())) {
        r.type = InType::Float64;
    } else if (a.dtype().is(py::dtype::of<uint8_t>())) {
        r.type = InType::UInt8;
    } else {
        throw std::invalid_argument(std::string(what) + ": dtype " + std::string(py::str(a.dtype())) +
                                    " is not supported (use float32, float64 or uint8)");
    }
    r.n = a.shape(0);
    r.d = a.shape(1);
    r.data = a.data();
    return r;
}

/// The rows as a source, without copying. float64 rows stay float64 (the CPU
/// E-step converts each block as it reads it) unless a GPU may read them.
std::unique_ptr<VectorSource> make_source(const Rows& r, bool gpu_may_read = false) {
    if (r.type == InType::Float64 && !gpu_may_read) {
        return std::make_unique<MemoryVectorSource>(VectorBlock{r.data, DataType::Float64, r.n, r.d});
    }
    switch (r.type) {
        case InType::Float32:
            return std::make_unique<MemoryVectorSource>(r.n, r.d, static_cast<const float*>(r.data));
        case InType::UInt8:
            return std::make_unique<MemoryVectorSource>(r.n, r.d, static_cast<const uint8_t*>(r.data));
        case InType::Float64:
            return std::make_unique<Float64VectorSource>(r.n, r.d, static_cast<const double*>(r.data));
    }
    throw std::logic_error("unreachable");
}

// ----------------------------------------------------------------- model ----

py::array_t<float> vec_to_array(const std::vector<float>& v, std::vector<py::ssize_t> shape) {
    py::array_t<float> a(shape);
    std::copy(v.begin(), v.end(), a.mutable_data());
    return a;
}

/// The shape of GmmModel::variances as Python sees it: (K,), (K, d), or (K, d, d)
/// for full covariances (the precisions' upper Cholesky factors).
std::vector<py::ssize_t> model_variances_shape(const GmmModel& g) {
    switch (g.covariance_type) {
        case CovarianceType::Spherical: return {g.K};
        case CovarianceType::Diagonal: return {g.K, g.d};
        case CovarianceType::Full: break;
    }
    return {g.K, g.d, g.d};
}

/// A float32 array's values into v, refusing any other size (pickle states).
void array_to_vec(const py::array_t<float, py::array::c_style | py::array::forcecast>& a, std::vector<float>& v,
                  const char* what) {
    if (size_t(a.size()) != v.size()) {
        throw std::invalid_argument(std::string("GmmModel state: ") + what + " has " + std::to_string(a.size()) +
                                    " values, expected " + std::to_string(v.size()));
    }
    std::copy(a.data(), a.data() + a.size(), v.begin());
}

/// Pickle state of a model: the stored float32 arrays themselves (not the
/// weights/variances views), so an unpickled model is the same to the bit and
/// predicts exactly as the original.
py::tuple model_state(const GmmModel& g) {
    return py::make_tuple(g.K, g.d, int(g.covariance_type), vec_to_array(g.log_weights, {g.K}),
                          vec_to_array(g.means, {g.K, g.d}),
                          vec_to_array(g.variances, {py::ssize_t(g.variances.size())}));
}

GmmModel model_from_state(const py::tuple& t) {
    if (t.size() != 6) throw std::invalid_argument("GmmModel state: expected 6 fields, got " + std::to_string(t.size()));
    const auto K = t[0].cast<int64_t>(), d = t[1].cast<int64_t>();
    const int type = t[2].cast<int>();
    if (K < 1 || d < 1) throw std::invalid_argument("GmmModel state: K and d must be >= 1");
    if (type != int(CovarianceType::Spherical) && type != int(CovarianceType::Diagonal) &&
        type != int(CovarianceType::Full)) {
        throw std::invalid_argument("GmmModel state: unknown covariance type " + std::to_string(type));
    }
    GmmModel m(K, d, CovarianceType(type));
    using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
    array_to_vec(t[3].cast<FloatArray>(), m.log_weights, "log_weights");
    array_to_vec(t[4].cast<FloatArray>(), m.means, "means");
    array_to_vec(t[5].cast<FloatArray>(), m.variances, "variances");
    m.validate();
    return m;
}

/// Builds and validates a model from Python arrays (weights, not log-weights,
/// as scikit-learn's weights_init).
GmmModel model_from_arrays(py::array_t<double, py::array::c_style | py::array::forcecast> weights,
                           py::array_t<double, py::array::c_style | py::array::forcecast> means,
                           py::array_t<double, py::array::c_style | py::array::forcecast> variances,
                           CovarianceType type) {
    if (means.ndim() != 2) throw std::invalid_argument("GmmModel: means must have shape (K, d)");
    const int64_t K = means.shape(0), d = means.shape(1);
    if (weights.ndim() != 1 || weights.shape(0) != K) {
        throw std::invalid_argument("GmmModel: weights must have shape (" + std::to_string(K) + ",)");
    }
    GmmModel m(K, d, type);
    const std::vector<py::ssize_t> shape = model_variances_shape(m);
    if (variances.ndim() != py::ssize_t(shape.size()) ||
        !std::equal(shape.begin(), shape.end(), variances.shape())) {
        std::string want = "(" + std::to_string(K);
        for (size_t i = 1; i < shape.size(); i++) want += ", " + std::to_string(shape[i]);
        throw std::invalid_argument("GmmModel: variances must have shape " + want + (shape.size() == 1 ? ",)" : ")") +
                                    " for " + to_string(type) + " covariances" +
                                    (type == CovarianceType::Full ? " (the precisions' Cholesky factors, as "
                                                                    "scikit-learn's precisions_cholesky_)"
                                                                  : ""));
    }
    for (int64_t k = 0; k < K; k++) {
        const double w = weights.data()[k];
        if (!(w > 0) || !std::isfinite(w)) {
            throw std::invalid_argument("GmmModel: weight " + std::to_string(k) + " is " + std::to_string(w) +
                                        " (weights must be > 0 and finite)");
        }
        m.log_weights[k] = float(std::log(w));
    }
    for (int64_t i = 0; i < K * d; i++) m.means[i] = float(means.data()[i]);
    for (size_t i = 0; i < m.variances.size(); i++) m.variances[i] = float(variances.data()[i]);
    m.validate();
    return m;
}

/// A full-covariance model from covariance matrices (K, d, d): each factored by
/// GmmModel::set_covariance (its error names a component that is not positive definite).
GmmModel model_from_covariances(py::array_t<double, py::array::c_style | py::array::forcecast> weights,
                                py::array_t<double, py::array::c_style | py::array::forcecast> means,
                                py::array_t<double, py::array::c_style | py::array::forcecast> covariances) {
    if (means.ndim() != 2) throw std::invalid_argument("GmmModel: means must have shape (K, d)");
    const int64_t K = means.shape(0), d = means.shape(1);
    if (covariances.ndim() != 3 || covariances.shape(0) != K || covariances.shape(1) != d ||
        covariances.shape(2) != d) {
        throw std::invalid_argument("GmmModel: covariances must have shape (K, d, d) = (" + std::to_string(K) + ", " +
                                    std::to_string(d) + ", " + std::to_string(d) + ")");
    }
    // Weights and means checked as from_arrays does, with unit variances standing in for
    // the factors (d values, not d·d), then each factor from its covariance.
    py::array_t<double> ones(std::vector<py::ssize_t>{K, d});
    std::fill(ones.mutable_data(), ones.mutable_data() + K * d, 1.0);
    GmmModel m = model_from_arrays(weights, means, ones, CovarianceType::Diagonal);
    m.covariance_type = CovarianceType::Full;
    m.variances.assign(size_t(K * d * d), 0.0f);
    for (int64_t k = 0; k < K; k++) m.set_covariance(k, covariances.data() + k * d * d);
    m.validate();
    return m;
}

// ------------------------------------------------------------ posteriors ----

/// One of GmmPosteriors' outputs over x (predict, predict_proba, score_samples), computed
/// with the GIL released into a new array: (n, K) values when per_component, else n.
template <typename T>
py::array_t<T> posteriors_output(const GmmModel& model, const py::array& x, int block_size, const char* what,
                                 void (GmmPosteriors::*output)(const VectorSource&, T*) const, bool per_component) {
    Rows rows = check_rows(x, what);
    std::vector<py::ssize_t> shape{rows.n};
    if (per_component) shape.push_back(model.K);
    py::array_t<T> result(shape);
    T* out = result.mutable_data();
    auto src = make_source(rows);
    py::gil_scoped_release release;
    (GmmPosteriors(model, block_size).*output)(*src, out);
    return result;
}

// -------------------------------------------------- faiss index pointers ----

faiss::Index* as_index(std::uintptr_t ptr) {
    if (ptr == 0) throw std::invalid_argument("null faiss index pointer");
    return reinterpret_cast<faiss::Index*>(ptr);
}

GmmQuantizer* gmm_quantizer_of(std::uintptr_t ptr) {
    faiss::Index* index = as_index(ptr);
    if (GmmQuantizer* q = find_gmm_quantizer(index)) return q;
    return dynamic_cast<GmmQuantizer*>(index);
}

} // namespace

namespace {

/// See the GmmFileWriter binding.
struct PyGmmFileWriter {
    std::unique_ptr<AtomicFile> file;
    std::unique_ptr<faiss::IOWriter> sink;
    faiss::VectorIOWriter memory;
    std::unique_ptr<ChecksumIOWriter> cw;
    std::string error;

    struct FileSink : faiss::IOWriter {
        AtomicFile* f;
        size_t operator()(const void* p, size_t size, size_t n) override {
            f->write(p, size * n);
            return n;
        }
    };

    explicit PyGmmFileWriter(std::optional<std::string> path) {
        if (path) {
            file = std::make_unique<AtomicFile>(*path);
            auto s = std::make_unique<FileSink>();
            s->f = file.get();
            sink = std::move(s);
            cw = std::make_unique<ChecksumIOWriter>(sink.get());
        } else {
            cw = std::make_unique<ChecksumIOWriter>(&memory);
        }
    }
    void write(py::bytes b) {
        if (!cw) throw std::logic_error("GmmFileWriter: already finished");
        char* p = nullptr;
        Py_ssize_t n = 0;
        if (PyBytes_AsStringAndSize(b.ptr(), &p, &n) != 0) throw py::error_already_set();
        try {
            (*cw)(p, 1, size_t(n));
        } catch (const std::exception& e) {
            error = e.what(); // faiss's callback writer replaces the message by its own
            throw;
        }
    }
    py::object finish(std::uintptr_t index_ptr) {
        if (!cw) throw std::logic_error("GmmFileWriter: already finished");
        const GmmTrailer t = GmmTrailer::of(as_index(index_ptr));
        {
            py::gil_scoped_release release;
            try {
                write_gmm_trailer(t, cw.get());
                if (file) file->commit();
            } catch (const std::exception& e) {
                error = e.what();
                abort();
                throw;
            }
        }
        cw.reset();
        if (file) return py::none();
        py::array_t<uint8_t> out(py::ssize_t(memory.data.size()));
        if (!memory.data.empty()) std::memcpy(out.mutable_data(), memory.data.data(), memory.data.size());
        return std::move(out);
    }
    void abort() {
        cw.reset();
        if (file) file->abort();
    }
};

} // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "faiss_gmm C++ core (pybind11). Use the faiss_gmm package, not this module directly.";

    py::enum_<CovarianceType>(m, "CovarianceType")
            .value("Spherical", CovarianceType::Spherical)
            .value("Diagonal", CovarianceType::Diagonal)
            .value("Full", CovarianceType::Full);
    py::enum_<InitMethod>(m, "InitMethod")
            .value("FaissKMeans", InitMethod::FaissKMeans)
            .value("KMeansPlusPlus", InitMethod::KMeansPlusPlus)
            .value("Given", InitMethod::Given);
    py::enum_<Device>(m, "Device").value("Cpu", Device::Cpu).value("Cuda", Device::Cuda).value("Auto", Device::Auto);

    py::class_<GmmParams>(m, "GmmParams", "Parameters of GMM training (C++ faiss_gmm::GmmParams).")
            .def(py::init<>())
            .def_readwrite("covariance_type", &GmmParams::covariance_type)
            .def_readwrite("niter", &GmmParams::niter)
            .def_readwrite("tol", &GmmParams::tol)
            .def_readwrite("seed", &GmmParams::seed)
            .def_readwrite("init", &GmmParams::init)
            .def_readwrite("init_niter", &GmmParams::init_niter)
            .def_readwrite("max_points_per_centroid", &GmmParams::max_points_per_centroid)
            .def_readwrite("min_points_per_centroid", &GmmParams::min_points_per_centroid)
            .def_readwrite("min_variance_ratio", &GmmParams::min_variance_ratio)
            .def_readwrite("reg_covar", &GmmParams::reg_covar)
            .def_readwrite("min_component_weight", &GmmParams::min_component_weight)
            .def_readwrite("device", &GmmParams::device)
            .def_readwrite("fast_math", &GmmParams::fast_math)
            .def_readwrite("chunk_size", &GmmParams::chunk_size)
            .def_readwrite("block_size", &GmmParams::block_size)
            .def_readwrite("verbose", &GmmParams::verbose)
            .def("validate", &GmmParams::validate)
            .def("__copy__", [](const GmmParams& p) { return GmmParams(p); })
            .def("__deepcopy__", [](const GmmParams& p, py::dict) { return GmmParams(p); });

    py::class_<GmmIterationStats>(m, "GmmIterationStats")
            .def_readonly("iteration", &GmmIterationStats::iteration)
            .def_readonly("loglik", &GmmIterationStats::loglik)
            .def_readonly("time_s", &GmmIterationStats::time_s)
            .def_readonly("estep_time_s", &GmmIterationStats::estep_time_s)
            .def_readonly("imbalance_factor", &GmmIterationStats::imbalance_factor)
            .def_readonly("nsplit", &GmmIterationStats::nsplit)
            .def_readonly("nfloored", &GmmIterationStats::nfloored)
            .def(py::pickle(
                    [](const GmmIterationStats& s) {
                        return py::make_tuple(s.iteration, s.loglik, s.time_s, s.estep_time_s, s.imbalance_factor,
                                              s.nsplit, s.nfloored);
                    },
                    [](const py::tuple& t) {
                        if (t.size() != 7) throw std::invalid_argument("GmmIterationStats state: expected 7 fields");
                        GmmIterationStats s;
                        s.iteration = t[0].cast<int>();
                        s.loglik = t[1].cast<double>();
                        s.time_s = t[2].cast<double>();
                        s.estep_time_s = t[3].cast<double>();
                        s.imbalance_factor = t[4].cast<double>();
                        s.nsplit = t[5].cast<int>();
                        s.nfloored = t[6].cast<int>();
                        return s;
                    }))
            .def("__repr__", [](const GmmIterationStats& s) {
                return "GmmIterationStats(iteration=" + std::to_string(s.iteration) +
                       ", loglik=" + std::to_string(s.loglik) + ", time_s=" + std::to_string(s.time_s) + ")";
            });

    py::class_<GmmModel>(m, "GmmModel", "A trained mixture: weights, means, variances (copies as numpy arrays).")
            .def_static("from_arrays", &model_from_arrays, py::arg("weights"), py::arg("means"),
                        py::arg("variances"), py::arg("covariance_type"))
            .def_readonly("K", &GmmModel::K)
            .def_readonly("d", &GmmModel::d)
            .def_readonly("covariance_type", &GmmModel::covariance_type)
            .def_property_readonly("log_weights",
                                   [](const GmmModel& g) { return vec_to_array(g.log_weights, {g.K}); })
            .def_property_readonly("means", [](const GmmModel& g) { return vec_to_array(g.means, {g.K, g.d}); })
            .def_static("from_covariances", &model_from_covariances, py::arg("weights"), py::arg("means"),
                        py::arg("covariances"),
                        "A full-covariance model from covariance matrices (K, d, d), factored in double.")
            .def_property_readonly("variances",
                                   [](const GmmModel& g) { return vec_to_array(g.variances, model_variances_shape(g)); },
                                   "The covariance parameters: (K,) variances, (K, d) variances, or for full "
                                   "covariances (K, d, d) upper Cholesky factors of the precisions")
            .def_property_readonly("covariances", [](const GmmModel& g) {
                py::array_t<double> a(std::vector<py::ssize_t>{g.K, g.d, g.d});
                for (int64_t k = 0; k < g.K; k++) {
                    const std::vector<double> c = g.covariance(k);
                    std::copy(c.begin(), c.end(), a.mutable_data() + k * g.d * g.d);
                }
                return a;
            }, "Σ_k as (K, d, d) float64 matrices, for every covariance type")
            .def(py::pickle(&model_state, &model_from_state))
            .def("__repr__", [](const GmmModel& g) {
                return "GmmModel(K=" + std::to_string(g.K) + ", d=" + std::to_string(g.d) + ", " +
                       to_string(g.covariance_type) + ")";
            });

    // The faiss headers this module was compiled against: faiss objects are
    // shared by address with python3-faiss, so their layouts must be the same.
    m.attr("faiss_version") = std::to_string(FAISS_VERSION_MAJOR) + "." + std::to_string(FAISS_VERSION_MINOR) +
                              "." + std::to_string(FAISS_VERSION_PATCH);

    m.def("cuda_available", &cuda_available, "True when this build has the CUDA backend and a GPU is visible.");

    m.def("parse_ivf_description",
          [](const std::string& description) {
              const IvfDescription p = parse_ivf_description(description);
              py::dict r;
              r["found"] = p.found;
              r["faiss_description"] = p.faiss_description;
              r["nlist"] = p.nlist;
              r["token"] = p.token;
              r["option_items"] = p.option_items;
              r["gmm"] = p.options.gmm;
              r["covariance_type"] = p.options.covariance_type;
              r["spill"] = p.options.spill;
              r["spill_rule"] = std::string(to_string(p.options.spill_params.rule));
              r["faiss_ivf_token"] = p.faiss_ivf_token;
              return r;
          },
          py::arg("description"),
          "faiss_gmm::parse_ivf_description as a dict (the one parser of the IVF token); ValueError for a bad "
          "token.");

    m.def("parse_gmm_description",
          [](const std::string& description) -> py::object {
              std::string faiss_description;
              CovarianceType type;
              if (!parse_gmm_description(description, &faiss_description, &type)) return py::none();
              return py::make_tuple(faiss_description, type);
          },
          py::arg("description"),
          "(faiss description, covariance type) for a description with an IVF<n>_GMM token, else None.");

    // ---- faiss index objects owned by faiss's Python package ----
    m.def("install_gmm_quantizer",
          [](std::uintptr_t index_ptr, const GmmParams& params) {
              faiss::Index* index = as_index(index_ptr);
              py::gil_scoped_release release;
              install_gmm_quantizer(index, params);
          },
          py::arg("index_ptr"), py::arg("params"));

    m.def("has_gmm_quantizer", [](std::uintptr_t p) { return gmm_quantizer_of(p) != nullptr; });

    m.def("ivf_nlist",
          [](std::uintptr_t p) -> std::optional<int64_t> {
              const faiss::IndexIVF* ivf = find_ivf(as_index(p));
              if (!ivf) return std::nullopt;
              return int64_t(ivf->nlist);
          },
          "nlist of the IVF inside the index (faiss_gmm::find_ivf's walk), or None.");

    m.def("gmm_model_of_index",
          [](std::uintptr_t p) -> std::optional<GmmModel> {
              const GmmQuantizer* q = gmm_quantizer_of(p);
              if (!q || q->model.K == 0) return std::nullopt;
              return q->model;
          },
          "A copy of the trained GMM of the index's quantizer, or None.");

    m.def("gmm_params_of_index",
          [](std::uintptr_t p) -> std::optional<GmmParams> {
              const GmmQuantizer* q = gmm_quantizer_of(p);
              if (!q) return std::nullopt;
              return q->params;
          });

    m.def("iteration_stats_of_index", [](std::uintptr_t p) {
        const GmmQuantizer* q = gmm_quantizer_of(p);
        return q ? q->iteration_stats : std::vector<GmmIterationStats>();
    });

    // ---- files: the FAISS part is written and read by faiss's Python copy, the
    // ---- rest (trailers, checksum, atomic replacement) by gmm_io, here.
    py::class_<GmmTrailer>(m, "GmmTrailer", "What a file holds besides FAISS's bytes (C++ faiss_gmm::GmmTrailer).")
            .def_readonly("has_gmm", &GmmTrailer::has_gmm)
            .def_property_readonly("model",
                                   [](const GmmTrailer& t) -> std::optional<GmmModel> {
                                       if (!t.has_gmm) return std::nullopt;
                                       return t.model;
                                   })
            .def_property_readonly("params",
                                   [](const GmmTrailer& t) -> std::optional<GmmParams> {
                                       if (!t.has_gmm) return std::nullopt;
                                       return t.params;
                                   })
            .def_readonly("rank_by_posterior", &GmmTrailer::rank_by_posterior)
            .def_readonly("probe_variance_weight", &GmmTrailer::probe_variance_weight)
            .def_readonly("probe_variance_power", &GmmTrailer::probe_variance_power)
            .def_readonly("has_spill", &GmmTrailer::has_spill)
            .def_property_readonly("spill_rule", [](const GmmTrailer& t) { return std::string(to_string(t.spill.rule)); })
            .def_property_readonly("spill_max_copies", [](const GmmTrailer& t) { return t.spill.max_copies; })
            .def_property_readonly("spill_budget", [](const GmmTrailer& t) { return t.spill.budget; })
            .def_property_readonly("spill_tau", [](const GmmTrailer& t) { return t.spill.tau; })
            .def_property_readonly("spill_epsilon", [](const GmmTrailer& t) { return t.spill.epsilon; })
            .def_property_readonly("spill_soar_lambda", [](const GmmTrailer& t) { return t.spill.soar_lambda; })
            .def_property_readonly("spill_primary_by_posterior",
                                   [](const GmmTrailer& t) { return t.spill.primary_by_posterior; })
            .def_readonly("spill_threshold", &GmmTrailer::spill_threshold)
            .def_readonly("spill_threshold_set", &GmmTrailer::spill_threshold_set)
            .def_readonly("spill_ntotal", &GmmTrailer::spill_ntotal);

    py::class_<GmmFileInfo>(m, "GmmFileInfo", "What reading a file verified (C++ faiss_gmm::GmmFileInfo).")
            .def_readonly("verified", &GmmFileInfo::verified)
            .def_readonly("gmm_version", &GmmFileInfo::gmm_version)
            .def_readonly("spill_version", &GmmFileInfo::spill_version)
            .def_readonly("faiss_size", &GmmFileInfo::faiss_size)
            .def_readonly("note", &GmmFileInfo::note);

    py::class_<GmmFileCheck>(m, "GmmFileCheck")
            .def_readonly("info", &GmmFileCheck::info)
            .def_readonly("trailer", &GmmFileCheck::trailer)
            .def_readonly("has_footer", &GmmFileCheck::has_footer)
            .def_readonly("size", &GmmFileCheck::size);

    m.def("gmm_trailer_of_index", [](std::uintptr_t p) { return GmmTrailer::of(as_index(p)); },
          "The trailer gmm_io would write for the index (its GmmQuantizer's model, params, probing settings).");


    // Receives the FAISS part from faiss.PyCallbackIOWriter (faiss's Python copy
    // calls write(bytes) as it writes), checksums it on the way to an AtomicFile
    // (path given) or to memory, then finish() appends the trailers and the footer.
    py::class_<PyGmmFileWriter>(m, "GmmFileWriter")
            .def(py::init<std::optional<std::string>>(), py::arg("path") = py::none())
            .def("write", &PyGmmFileWriter::write)
            .def("finish", &PyGmmFileWriter::finish, py::arg("index_ptr"),
                 "Appends the trailers and the checksum footer; commits the file (returns None) or returns the bytes.")
            .def_readonly("error", &PyGmmFileWriter::error, "the message of the last failed write, else empty")
            .def("abort", &PyGmmFileWriter::abort);

    // Reading, step 1: verify before faiss parses anything (an open faiss.FileIOReader,
    // left at its start, or the bytes).
    m.def("check_file_reader",
          [](std::uintptr_t reader_ptr, const std::string& what) {
              auto* r = dynamic_cast<faiss::FileIOReader*>(reinterpret_cast<faiss::IOReader*>(reader_ptr));
              if (!r || !r->f) throw std::invalid_argument("check_file_reader: not an open faiss.FileIOReader");
              py::gil_scoped_release release;
              return check_gmm_file(r->f, what);
          },
          py::arg("reader_ptr"), py::arg("what"));
    m.def("check_bytes",
          [](py::array_t<uint8_t, py::array::c_style | py::array::forcecast> data, const std::string& what) {
              const uint8_t* p = data.data();
              const size_t n = size_t(data.size());
              py::gil_scoped_release release;
              return check_gmm_file(p, n, what);
          },
          py::arg("data"), py::arg("what"));
    // Step 3, after faiss read its part from the reader: the older formats' trailers,
    // then the GmmQuantizer put in place. Returns the GmmFileInfo.
    m.def("finish_read",
          [](std::uintptr_t index_ptr, std::uintptr_t reader_ptr, GmmFileCheck check, const std::string& what) {
              faiss::Index* index = as_index(index_ptr);
              auto* reader = reinterpret_cast<faiss::IOReader*>(reader_ptr);
              uint64_t position = 0;
              if (auto* fr = dynamic_cast<faiss::FileIOReader*>(reader)) {
                  const long pos = fr->f ? std::ftell(fr->f) : -1;
                  if (pos < 0) throw std::invalid_argument("finish_read: the faiss.FileIOReader is closed");
                  position = uint64_t(pos);
              } else if (auto* vr = dynamic_cast<faiss::VectorIOReader*>(reader)) {
                  position = vr->rp;
              } else {
                  throw std::invalid_argument("finish_read: not a faiss.FileIOReader or faiss.VectorIOReader");
              }
              py::gil_scoped_release release;
              read_gmm_trailer_after_faiss(reader, position, &check, what);
              const GmmTrailer& t = check.trailer;
              if (t.has_spill) {
                  throw std::invalid_argument(
                          what + ": holds an IndexIVFSpill (spill trailer), which is not a faiss Python object: "
                                 "read it with faiss_gmm.spill.IndexIVFSpill.read / .deserialize (faiss.read_index "
                                 "reads it as the plain IVF with every copy)");
              }
              if (t.has_gmm) {
                  faiss::IndexIVF* ivf = find_ivf(index);
                  if (!ivf) throw std::runtime_error(what + ": GMM trailer found after an index that is not an IVF index");
                  try {
                      install_gmm_trailer(ivf, t);
                  } catch (const std::exception& e) {
                      throw std::runtime_error(what + ": " + e.what());
                  }
              }
              return check.info;
          },
          py::arg("index_ptr"), py::arg("reader_ptr"), py::arg("check"), py::arg("what"));

    // The C++ library's own writer and reader (what C++ programs and
    // faiss-gmm-train-mpi use), on an index of faiss's Python package: for checks
    // that files pass between the two sides with every setting.
    m.def("cpp_write_gmm_index",
          [](std::uintptr_t index_ptr, const std::string& fname) {
              const faiss::Index* index = as_index(index_ptr);
              py::gil_scoped_release release;
              write_gmm_index(index, fname);
          },
          py::arg("index_ptr"), py::arg("fname"));
    m.def("cpp_read_gmm_trailer",
          [](const std::string& fname) {
              GmmFileInfo info;
              GmmTrailer t;
              {
                  py::gil_scoped_release release;
                  std::unique_ptr<faiss::Index> index(read_gmm_index(fname, &info));
                  t = GmmTrailer::of(index.get());
              }
              return py::make_tuple(t, info);
          },
          py::arg("fname"), "(GmmTrailer, GmmFileInfo) of the file as read_gmm_index (C++) reads it.");

    // ---- GaussianMixture engine ----
    m.def("fit",
          // initial by pointer and the result moved: no copies of the models (K·d² floats
          // each for full covariances) beside the trainer's own.
          [](const py::array& x, int64_t K, const GmmParams& params, const GmmModel* initial) {
              Rows rows = check_rows(x, "fit");
              auto src = make_source(rows, params.device != Device::Cpu);
              GmmTrainer trainer(params);
              GmmModel model;
              {
                  py::gil_scoped_release release;
                  model = trainer.fit(*src, K, initial);
              }
              py::dict r;
              r["model"] = py::cast(std::move(model));
              r["iteration_stats"] = trainer.iteration_stats;
              r["n_iter"] = trainer.n_iter;
              r["converged"] = trainer.converged;
              r["n_train"] = trainer.n_train;
              r["backend"] = trainer.backend;
              r["total_splits"] = trainer.total_splits;
              r["total_floored"] = trainer.total_floored;
              return r;
          },
          py::arg("x"), py::arg("K"), py::arg("params"), py::arg("initial") = py::none());

    // Weights and variances from the hard assignment of x to the given means
    // (scikit-learn's means_init without weights_init / precisions_init), read
    // chunk by chunk so that no float copy of the whole of x is made.
    m.def("model_from_means",
          [](const py::array& x, py::array_t<float, py::array::c_style | py::array::forcecast> means,
             CovarianceType type, double variance_floor) {
              Rows rows = check_rows(x, "means_init");
              const int64_t d = rows.d;
              if (means.ndim() != 2 || means.shape(1) != d) {
                  throw std::invalid_argument("means_init must have shape (n_components, " + std::to_string(d) +
                                              ")");
              }
              const int64_t K = means.shape(0);
              std::vector<float> mu(means.data(), means.data() + K * d);
              auto src = make_source(rows);
              py::gil_scoped_release release;
              return model_from_hard_assignment(*src, K, mu, type, variance_floor);
          },
          py::arg("x"), py::arg("means"), py::arg("covariance_type"), py::arg("variance_floor"));

    // scikit-learn's predict / predict_proba / score_samples: the library's GmmPosteriors
    // (rows centered on the mixture mean, as for the quantizer and the spill index).
    m.def("predict",
          [](const GmmModel& model, const py::array& x, int block_size) {
              return posteriors_output(model, x, block_size, "predict", &GmmPosteriors::predict, false);
          },
          py::arg("model"), py::arg("x"), py::arg("block_size") = 256);

    m.def("predict_proba",
          [](const GmmModel& model, const py::array& x, int block_size) {
              return posteriors_output(model, x, block_size, "predict_proba", &GmmPosteriors::predict_proba, true);
          },
          py::arg("model"), py::arg("x"), py::arg("block_size") = 256);

    m.def("score_samples",
          [](const GmmModel& model, const py::array& x, int block_size) {
              return posteriors_output(model, x, block_size, "score_samples", &GmmPosteriors::score_samples, false);
          },
          py::arg("model"), py::arg("x"), py::arg("block_size") = 256);

    // The posteriors of an index's GmmQuantizer (kept by the quantizer, as its spill rules use them).
    m.def("index_log_posteriors",
          [](std::uintptr_t index_ptr, const py::array& x) {
              Rows rows = check_rows(x, "index_log_posteriors");
              const GmmQuantizer* q = gmm_quantizer_of(index_ptr);
              if (!q) throw std::invalid_argument("index_log_posteriors: the index has no GMM quantizer");
              py::array_t<float> lr({rows.n, q->nlist});
              py::array_t<float> ll(rows.n);
              float* lr_out = lr.mutable_data();
              float* ll_out = ll.mutable_data();
              auto src = make_source(rows);
              {
                  py::gil_scoped_release release;
                  q->posteriors()->log_posteriors(*src, lr_out, ll_out);
              }
              return py::make_tuple(lr, ll);
          },
          py::arg("index_ptr"), py::arg("x"),
          "(log r (n, nlist), log p(x) (n)) from the index's GmmQuantizer::posteriors().");
}
