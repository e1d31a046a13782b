// faiss_gmm._spill: Python access to faiss_gmm::IndexIVFSpill (issue 6).
//
// Unlike the indexes of faiss_gmm._core, a spill index is a type FAISS's SWIG
// layer does not know, so it cannot be one of faiss's Python objects: this
// module owns it (created by our copy of faiss) and exposes it as its own class
// with numpy in and out. Files it writes are faiss files plus trailers, so
// faiss.read_index still reads them (as the plain IVF with every copy in its
// lists, without deduplication). Every call into faiss releases the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <faiss/impl/IDSelector.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "faiss_gmm/GmmParams.h"
#include "faiss_gmm/GmmQuantizer.h"
#include "faiss_gmm/IndexIVFSpill.h"
#include "faiss_gmm/gmm_index_factory.h"
#include "faiss_gmm/gmm_io.h"

namespace py = pybind11;
using namespace faiss_gmm;
using idx_t = faiss::Index::idx_t;
using FloatRows = py::array_t<float, py::array::c_style | py::array::forcecast>;
using IdArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

namespace {

struct PySpillIndex {
    std::unique_ptr<faiss::Index> index; // an IndexIVFSpill

    IndexIVFSpill* sp() const { return as_spill_index(index.get()); }

    void check_rows(const FloatRows& x, const char* what) const {
        if (x.ndim() != 2 || x.shape(1) != sp()->d) {
            throw std::invalid_argument(std::string(what) + ": expected a 2-D array with d = " +
                                        std::to_string(sp()->d) + " columns");
        }
    }
};

PySpillIndex make(int d, const std::string& description, int niter, int64_t seed, bool verbose) {
    GmmParams p;
    if (niter > 0) p.niter = niter;
    p.seed = seed;
    p.verbose = verbose;
    std::unique_ptr<faiss::Index> index(gmm_index_factory(d, description, faiss::METRIC_L2, p));
    if (!as_spill_index(index.get())) {
        throw std::invalid_argument("SpillIndex: \"" + description +
                                    "\" has no spill option (_spill<B>, _tau<t>, _eps<e>): use "
                                    "faiss_gmm.index_factory, which returns a faiss object");
    }
    return PySpillIndex{std::move(index)};
}

PySpillIndex from_bytes(py::bytes b) {
    std::string s = b;
    std::unique_ptr<faiss::Index> index;
    {
        py::gil_scoped_release nogil;
        index.reset(deserialize_gmm_index(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
    }
    if (!as_spill_index(index.get())) throw std::invalid_argument("SpillIndex: the bytes do not hold a spill index");
    return PySpillIndex{std::move(index)};
}

} // namespace

PYBIND11_MODULE(_spill, m) {
    m.doc() = "faiss_gmm._spill: IndexIVFSpill (soft multi-assignment with deduplicated search)";
    py::class_<PySpillIndex>(m, "IndexIVFSpill")
            .def(py::init(&make), py::arg("d"), py::arg("description"), py::arg("niter") = 0,
                 py::arg("seed") = 1234, py::arg("verbose") = false)
            .def_property_readonly("d", [](const PySpillIndex& s) { return s.sp()->d; })
            .def_property_readonly("ntotal", [](const PySpillIndex& s) { return s.sp()->ntotal; },
                                   "distinct vectors added")
            .def_property_readonly("n_entries", [](const PySpillIndex& s) { return s.sp()->n_entries(); },
                                   "entries in the inverted lists, copies included")
            .def_property_readonly("nlist", [](const PySpillIndex& s) { return int64_t(s.sp()->ivf->nlist); })
            .def_property_readonly("is_trained", [](const PySpillIndex& s) { return s.sp()->is_trained; })
            .def_property("nprobe", [](const PySpillIndex& s) { return s.sp()->nprobe(); },
                          [](PySpillIndex& s, size_t v) {
                              if (v < 1) throw std::invalid_argument("nprobe must be >= 1");
                              s.sp()->set_nprobe(v);
                          })
            .def_property_readonly("threshold", [](const PySpillIndex& s) { return s.sp()->threshold; })
            .def_property_readonly("spill_rule", [](const PySpillIndex& s) { return std::string(to_string(s.sp()->spill.rule)); })
            .def_property_readonly("max_copies", [](const PySpillIndex& s) { return s.sp()->spill.max_copies; })
            .def_property_readonly("budget", [](const PySpillIndex& s) { return s.sp()->spill.budget; })
            .def_property_readonly("soar_lambda", [](const PySpillIndex& s) { return s.sp()->spill.soar_lambda; })
            .def("train", [](PySpillIndex& s, FloatRows x) {
                s.check_rows(x, "train");
                py::gil_scoped_release nogil;
                s.sp()->train(x.shape(0), x.data());
            })
            .def("add", [](PySpillIndex& s, FloatRows x) {
                s.check_rows(x, "add");
                py::gil_scoped_release nogil;
                s.sp()->add(x.shape(0), x.data());
            })
            .def("add_with_ids", [](PySpillIndex& s, FloatRows x, IdArray ids) {
                s.check_rows(x, "add_with_ids");
                if (ids.ndim() != 1 || ids.shape(0) != x.shape(0)) {
                    throw std::invalid_argument("add_with_ids: ids must be 1-D with one id per row");
                }
                py::gil_scoped_release nogil;
                s.sp()->add_with_ids(x.shape(0), x.data(), ids.data());
            })
            .def("search", [](PySpillIndex& s, FloatRows x, int64_t k) {
                s.check_rows(x, "search");
                if (k < 1) throw std::invalid_argument("search: k must be >= 1");
                const int64_t n = x.shape(0);
                py::array_t<float> D({n, k});
                py::array_t<int64_t> I({n, k});
                float* dp = D.mutable_data();
                int64_t* ip = I.mutable_data();
                {
                    py::gil_scoped_release nogil;
                    s.sp()->search(n, x.data(), k, dp, reinterpret_cast<idx_t*>(ip));
                }
                return py::make_tuple(D, I);
            }, py::arg("x"), py::arg("k"), "(D, I): each id at most once per row; -1 / inf padded")
            .def("remove_ids", [](PySpillIndex& s, IdArray ids) {
                if (ids.ndim() != 1) throw std::invalid_argument("remove_ids: ids must be 1-D");
                faiss::IDSelectorBatch sel(ids.shape(0), reinterpret_cast<const idx_t*>(ids.data()));
                py::gil_scoped_release nogil;
                return s.sp()->remove_ids(sel);
            }, "removes every copy; returns the number of distinct ids removed")
            .def("reconstruct", [](const PySpillIndex& s, int64_t key) {
                py::array_t<float> out(s.sp()->d);
                float* o = out.mutable_data();
                {
                    py::gil_scoped_release nogil;
                    s.sp()->reconstruct(key, o);
                }
                return out;
            })
            .def("serialize", [](const PySpillIndex& s) {
                std::vector<uint8_t> b;
                {
                    py::gil_scoped_release nogil;
                    b = serialize_gmm_index(s.index.get());
                }
                return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
            })
            .def_static("deserialize", &from_bytes)
            .def("write", [](const PySpillIndex& s, const std::string& fname) {
                py::gil_scoped_release nogil;
                write_gmm_index(s.index.get(), fname);
            })
            .def_static("read", [](const std::string& fname) {
                std::unique_ptr<faiss::Index> index;
                {
                    py::gil_scoped_release nogil;
                    index.reset(read_gmm_index(fname));
                }
                if (!as_spill_index(index.get())) {
                    throw std::invalid_argument("IndexIVFSpill.read: " + fname + " holds no spill index");
                }
                return PySpillIndex{std::move(index)};
            });
}
