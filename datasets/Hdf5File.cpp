#include "Hdf5File.h"

#include <stdexcept>

#include "faiss_gmm/AtomicFile.h"

#include "VecsFile.h"

#ifdef FAISS_GMM_HAVE_HDF5
#include <hdf5.h>
#include <sys/stat.h>
#endif

namespace faiss_gmm {
namespace datasets {

#ifndef FAISS_GMM_HAVE_HDF5

namespace {
[[noreturn]] void no_hdf5(const std::string& path) {
    throw std::runtime_error(path + ": this build has no HDF5 support (install libhdf5-dev and reconfigure)");
}
} // namespace

bool hdf5_available() { return false; }
void hdf5_shape(const std::string& path, const std::string&, int64_t*, int64_t*) { no_hdf5(path); }
FloatMatrix read_hdf5_float(const std::string& path, const std::string&, int64_t, int64_t) { no_hdf5(path); }
IntMatrix read_hdf5_int(const std::string& path, const std::string&, int64_t, int64_t) { no_hdf5(path); }
std::string read_hdf5_attribute(const std::string& path, const std::string&) { no_hdf5(path); }
AnnBenchmarksData read_ann_benchmarks(const std::string& path, bool) { no_hdf5(path); }
void write_ann_benchmarks(const std::string& path, const AnnBenchmarksData&) { no_hdf5(path); }

#else

namespace {

// RAII for HDF5 handles, with the closing function of their kind.
struct Handle {
    hid_t id;
    herr_t (*close)(hid_t);
    Handle(hid_t id, herr_t (*close)(hid_t)) : id(id), close(close) {}
    ~Handle() {
        if (id >= 0) {
            close(id);
        }
    }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
};

void quiet_hdf5() {
    // HDF5 prints its own error stack to stderr by default; we report errors as exceptions.
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

hid_t open_file(const std::string& path, bool write = false) {
    quiet_hdf5();
    struct stat st;
    if (!write && stat(path.c_str(), &st) != 0) {
        throw std::runtime_error("cannot open " + path + ": no such file");
    }
    hid_t f = write ? H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)
                    : H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        throw std::runtime_error(path + (write ? ": cannot create HDF5 file"
                                               : ": not a readable HDF5 file (corrupt or truncated)"));
    }
    return f;
}

void dataset_shape(hid_t ds, const std::string& where, int64_t* n, int64_t* d) {
    Handle space(H5Dget_space(ds), H5Sclose);
    int rank = H5Sget_simple_extent_ndims(space.id);
    if (rank < 1 || rank > 2) {
        throw std::runtime_error(where + ": expected a 1-d or 2-d dataset, got rank " + std::to_string(rank));
    }
    hsize_t dims[2] = {0, 1};
    H5Sget_simple_extent_dims(space.id, dims, nullptr);
    // Extents come from the file (hsize_t, 64 bits): bound them before they are
    // used as int64 sizes.
    if (dims[0] > (hsize_t(1) << 40) || dims[1] > (hsize_t(1) << 40)) {
        throw std::runtime_error(where + ": implausible dataset extent " + std::to_string(dims[0]) + " x " +
                                 std::to_string(dims[1]));
    }
    *n = int64_t(dims[0]);
    *d = int64_t(rank == 2 ? dims[1] : 1);
}

template <typename T>
Matrix<T> read_dataset(const std::string& path, const std::string& name, int64_t i0, int64_t n, hid_t memtype) {
    Handle f(open_file(path), H5Fclose);
    std::string where = path + ":" + name;
    if (H5Lexists(f.id, name.c_str(), H5P_DEFAULT) <= 0) {
        throw std::runtime_error(where + ": no such dataset");
    }
    Handle ds(H5Dopen2(f.id, name.c_str(), H5P_DEFAULT), H5Dclose);
    if (ds.id < 0) {
        throw std::runtime_error(where + ": cannot open dataset");
    }
    size_t file_elem = 0;
    {
        Handle type(H5Dget_type(ds.id), H5Tclose);
        H5T_class_t cls = H5Tget_class(type.id);
        if (cls != H5T_FLOAT && cls != H5T_INTEGER) {
            throw std::runtime_error(where + ": not a numeric dataset");
        }
        file_elem = H5Tget_size(type.id);
    }
    int64_t ntotal, d;
    dataset_shape(ds.id, where, &ntotal, &d);
    if (d > kMaxFileDim) {
        throw std::runtime_error(where + ": implausible dimension " + std::to_string(d));
    }
    // A contiguous dataset (h5py's default, ann-benchmarks' files) stores every
    // element: an extent larger than its storage is a lying header, refused
    // before the matrix is allocated from it. (Chunked datasets may legitimately
    // leave chunks unwritten, read back as fill values: no such bound there.)
    {
        Handle dcpl(H5Dget_create_plist(ds.id), H5Pclose);
        if (dcpl.id >= 0 && H5Pget_layout(dcpl.id) == H5D_CONTIGUOUS) {
            const double claimed = double(ntotal) * double(d) * double(file_elem);
            const double stored = double(H5Dget_storage_size(ds.id));
            if (claimed > stored) {
                throw std::runtime_error(where + ": the dataset claims " + std::to_string(ntotal) + " x " +
                                         std::to_string(d) + " values but stores only " +
                                         std::to_string(H5Dget_storage_size(ds.id)) +
                                         " bytes (corrupt or truncated file)");
            }
        }
    }
    n = resolve_row_range(where, ntotal, i0, n);
    Matrix<T> m(n, d);
    if (n == 0) {
        return m;
    }
    Handle fspace(H5Dget_space(ds.id), H5Sclose);
    int rank = H5Sget_simple_extent_ndims(fspace.id);
    hsize_t start[2] = {hsize_t(i0), 0}, count[2] = {hsize_t(n), hsize_t(d)};
    H5Sselect_hyperslab(fspace.id, H5S_SELECT_SET, start, nullptr, count, nullptr);
    Handle mspace(H5Screate_simple(rank, count, nullptr), H5Sclose);
    if (H5Dread(ds.id, memtype, mspace.id, fspace.id, H5P_DEFAULT, m.data.data()) < 0) {
        throw std::runtime_error(where + ": read failed (corrupt or truncated file?)");
    }
    return m;
}

template <typename T>
void write_dataset(hid_t f, const std::string& name, const Matrix<T>& m, hid_t filetype, hid_t memtype) {
    hsize_t dims[2] = {hsize_t(m.n), hsize_t(m.d)};
    Handle space(H5Screate_simple(2, dims, nullptr), H5Sclose);
    Handle ds(H5Dcreate2(f, name.c_str(), filetype, space.id, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
    if (ds.id < 0 || H5Dwrite(ds.id, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, m.data.data()) < 0) {
        throw std::runtime_error("cannot write HDF5 dataset " + name);
    }
}

} // namespace

bool hdf5_available() { return true; }

void hdf5_shape(const std::string& path, const std::string& name, int64_t* n, int64_t* d) {
    Handle f(open_file(path), H5Fclose);
    if (H5Lexists(f.id, name.c_str(), H5P_DEFAULT) <= 0) {
        throw std::runtime_error(path + ":" + name + ": no such dataset");
    }
    Handle ds(H5Dopen2(f.id, name.c_str(), H5P_DEFAULT), H5Dclose);
    dataset_shape(ds.id, path + ":" + name, n, d);
}

FloatMatrix read_hdf5_float(const std::string& path, const std::string& name, int64_t i0, int64_t n) {
    return read_dataset<float>(path, name, i0, n, H5T_NATIVE_FLOAT);
}

IntMatrix read_hdf5_int(const std::string& path, const std::string& name, int64_t i0, int64_t n) {
    return read_dataset<int32_t>(path, name, i0, n, H5T_NATIVE_INT32);
}

std::string read_hdf5_attribute(const std::string& path, const std::string& name) {
    Handle f(open_file(path), H5Fclose);
    if (H5Aexists(f.id, name.c_str()) <= 0) {
        return "";
    }
    Handle attr(H5Aopen(f.id, name.c_str(), H5P_DEFAULT), H5Aclose);
    Handle type(H5Aget_type(attr.id), H5Tclose);
    if (H5Tget_class(type.id) != H5T_STRING) {
        throw std::runtime_error(path + ": attribute " + name + " is not a string");
    }
    std::string out;
    if (H5Tis_variable_str(type.id) > 0) {
        Handle mtype(H5Tcopy(H5T_C_S1), H5Tclose);
        H5Tset_size(mtype.id, H5T_VARIABLE);
        H5Tset_cset(mtype.id, H5Tget_cset(type.id));
        char* s = nullptr;
        if (H5Aread(attr.id, mtype.id, &s) < 0) {
            throw std::runtime_error(path + ": cannot read attribute " + name);
        }
        out = s ? s : "";
        H5free_memory(s);
    } else {
        size_t size = H5Tget_size(type.id);
        // The size comes from the file: bound it before allocating (a metric name is a few bytes).
        if (size == 0 || size > (size_t(1) << 20)) {
            throw std::runtime_error(path + ": attribute " + name + " has an implausible string size " +
                                     std::to_string(size));
        }
        std::string buf(size, '\0');
        if (H5Aread(attr.id, type.id, &buf[0]) < 0) {
            throw std::runtime_error(path + ": cannot read attribute " + name);
        }
        out = buf.substr(0, buf.find('\0'));
    }
    return out;
}

AnnBenchmarksData read_ann_benchmarks(const std::string& path, bool with_train) {
    AnnBenchmarksData data;
    if (with_train) {
        data.train = read_hdf5_float(path, "train");
    }
    data.test = read_hdf5_float(path, "test");
    data.neighbors = read_hdf5_int(path, "neighbors");
    data.distances = read_hdf5_float(path, "distances");
    data.distance = read_hdf5_attribute(path, "distance");
    if (data.neighbors.n != data.test.n || data.distances.n != data.test.n ||
        data.distances.d != data.neighbors.d) {
        throw std::runtime_error(path + ": inconsistent ann-benchmarks file: test, neighbors and distances "
                                        "disagree in shape");
    }
    if (with_train && data.train.d != data.test.d) {
        throw std::runtime_error(path + ": inconsistent ann-benchmarks file: train and test dimensions differ");
    }
    return data;
}

static void write_ann_benchmarks_to(const std::string& path, const AnnBenchmarksData& data) {
    Handle f(open_file(path, true), H5Fclose);
    if (!data.train.empty()) {
        write_dataset(f.id, "train", data.train, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT);
    }
    if (!data.test.empty()) {
        write_dataset(f.id, "test", data.test, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT);
    }
    if (!data.neighbors.empty()) {
        write_dataset(f.id, "neighbors", data.neighbors, H5T_STD_I32LE, H5T_NATIVE_INT32);
    }
    if (!data.distances.empty()) {
        write_dataset(f.id, "distances", data.distances, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT);
    }
    if (!data.distance.empty()) {
        Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
        H5Tset_size(type.id, H5T_VARIABLE);
        H5Tset_cset(type.id, H5T_CSET_UTF8);
        Handle space(H5Screate(H5S_SCALAR), H5Sclose);
        Handle attr(H5Acreate2(f.id, "distance", type.id, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
        const char* s = data.distance.c_str();
        if (attr.id < 0 || H5Awrite(attr.id, type.id, &s) < 0) {
            throw std::runtime_error(path + ": cannot write attribute distance");
        }
    }
    const hid_t id = f.id;
    f.id = -1;
    if (H5Fclose(id) < 0) throw std::runtime_error(path + ": writing the HDF5 file failed (disk full?)");
}

void write_ann_benchmarks(const std::string& path, const AnnBenchmarksData& data) {
    // libhdf5 writes the temporary file by name; commit() syncs and renames it.
    AtomicFile out(path);
    write_ann_benchmarks_to(out.temp_path(), data);
    out.commit();
}

#endif

} // namespace datasets
} // namespace faiss_gmm
