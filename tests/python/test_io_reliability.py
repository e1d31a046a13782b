"""Issue 13.2 / 13.3 / 15.6 from Python: faiss_gmm.write_index replaces a file
atomically (a size limit in a forked child, /dev/full), files carry a checksum
verified before faiss parses anything, older files read with a warning, and
files pass between the C++ library and Python with every setting (probing
settings, spill settings)."""

import os
import resource
import signal

import faiss
import numpy as np
import pytest

import faiss_gmm
from faiss_gmm import _core, spill

D = 8
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "data", "gmm_io_v3")


def _data(n, d=D, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((12, d)).astype(np.float32) * 5
    return centers[rng.integers(0, 12, n)] + rng.standard_normal((n, d)).astype(np.float32)


def _trained(n, desc="IVF8_GMM,Flat", d=D, seed=0):
    x = _data(n, d, seed)
    idx = faiss_gmm.index_factory(d, desc, niter=5, seed=1)
    idx.train(x)
    idx.add(x)
    return idx


@pytest.fixture(scope="module")
def small():
    return _trained(400)


def test_size_limit_leaves_the_previous_file(small, tmp_path):
    path = tmp_path / "gmm.index"
    faiss_gmm.write_index(small, path)
    good = path.read_bytes()
    big = _trained(8000, d=32, seed=2)  # ~1 MB of vectors
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a 64 KiB file-size limit, SIGXFSZ ignored (write() fails with EFBIG)
        code = 1
        msg = "no error"
        try:
            os.close(r)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))
            faiss_gmm.write_index(big, path)
        except RuntimeError as e:
            code, msg = 0, str(e)
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            code, msg = 2, repr(e)
        finally:
            os.write(w, msg.encode())
            os._exit(code)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 4096)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    msg = b"".join(chunks).decode()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, msg
    assert "File too large" in msg and str(path) in msg, msg
    assert path.read_bytes() == good
    assert faiss_gmm.is_gmm_index(faiss_gmm.read_index(path))
    assert sorted(os.listdir(tmp_path)) == ["gmm.index"], "temporary file left behind"


@pytest.mark.skipif(not (os.path.exists("/dev/full") and os.access("/dev/full", os.W_OK)), reason="no /dev/full")
def test_dev_full_is_a_clear_error(small):
    with pytest.raises(RuntimeError, match="No space left on device"):
        faiss_gmm.write_index(small, "/dev/full")


def test_missing_folder_is_a_clear_error(small, tmp_path):
    with pytest.raises(RuntimeError, match="creating a temporary file in .* failed: No such file or directory"):
        faiss_gmm.write_index(small, tmp_path / "no" / "such" / "x.index")


def test_every_flipped_byte_is_refused(small, tmp_path):
    full = np.asarray(faiss_gmm.serialize_index(small))
    prefix = faiss.serialize_index(small).size
    assert (faiss_gmm.serialize_index(faiss_gmm.deserialize_index(full)) == full).all()
    # A sample of positions in the FAISS part, every byte of the trailer and footer.
    positions = list(range(0, prefix, max(1, prefix // 200))) + list(range(prefix, full.size))
    for pos in positions:
        bad = full.copy()
        bad[pos] ^= 0x10
        with pytest.raises(RuntimeError, match="checksum") as e:
            faiss_gmm.deserialize_index(bad)
        assert "not a readable FAISS index" not in str(e.value), pos
    path = tmp_path / "bad.index"
    bad = full.copy()
    bad[prefix // 2] ^= 1
    path.write_bytes(bad.tobytes())
    with pytest.raises(RuntimeError, match="checksum mismatch"):
        faiss_gmm.read_index(path)
    # Truncated anywhere in the trailer or footer.
    for cut in range(prefix + 1, full.size):
        with pytest.raises(RuntimeError):
            faiss_gmm.deserialize_index(full[:cut])


def test_plain_faiss_still_reads_the_files(small, tmp_path):
    path = str(tmp_path / "x.index")
    faiss_gmm.write_index(small, path)
    plain = faiss.read_index(path)
    assert plain.ntotal == small.ntotal and not faiss_gmm.is_gmm_index(plain)


def warnings_ignored():
    import contextlib
    import warnings

    @contextlib.contextmanager
    def ctx():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    return ctx()


def test_old_files_read_with_a_warning():
    with pytest.warns(faiss_gmm.UnverifiedIndexWarning, match="version 3.*unverified"):
        idx = faiss_gmm.read_index(os.path.join(FIXTURES, "ivf8_gmm_v3.index"))
    t = _core.gmm_trailer_of_index(int(idx.this))
    assert t.has_gmm and not t.rank_by_posterior and t.probe_variance_weight == 0 and t.probe_variance_power == 0
    assert idx.ntotal > 0
    # Written again it is verified (no warning: warnings are errors here).
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = faiss_gmm.deserialize_index(faiss_gmm.serialize_index(idx))
    np.testing.assert_array_equal(faiss_gmm.get_gmm_model(back).means, faiss_gmm.get_gmm_model(idx).means)


def test_old_file_with_a_removed_probe_ranking_is_refused():
    # Version-3 file with rank_by_posterior / probe_variance_* on: those rankings were
    # removed (issue 14), so it is refused with a message; plain faiss still reads it.
    path = os.path.join(FIXTURES, "ivf8_gmmdiag_probe_v3.index")
    with pytest.raises(Exception, match="no longer has"):
        with warnings_ignored():
            faiss_gmm.read_index(path)
    assert faiss.read_index(path).ntotal == 40


def test_trailer_passes_between_cpp_and_python(tmp_path):
    idx = _trained(600, "IVF8_GMMdiag,Flat")
    # Python writes, C++ reads.
    py_file = str(tmp_path / "py.index")
    faiss_gmm.write_index(idx, py_file)
    t, info = _core.cpp_read_gmm_trailer(py_file)
    assert info.verified and info.gmm_version == 5
    assert (t.rank_by_posterior, t.probe_variance_weight, t.probe_variance_power) == (False, 0.0, 0.0)
    np.testing.assert_array_equal(t.model.variances, faiss_gmm.get_gmm_model(idx).variances)
    # C++ writes (the same bytes), Python reads.
    cpp_file = str(tmp_path / "cpp.index")
    _core.cpp_write_gmm_index(int(idx.this), cpp_file)
    with open(py_file, "rb") as a, open(cpp_file, "rb") as b:
        assert a.read() == b.read()
    back = faiss_gmm.read_index(cpp_file)
    np.testing.assert_array_equal(faiss_gmm.get_gmm_model(back).variances, faiss_gmm.get_gmm_model(idx).variances)
    xq = _data(20, seed=5)
    idx.nprobe = back.nprobe = 2
    np.testing.assert_array_equal(idx.search(xq, 5)[1], back.search(xq, 5)[1])


def test_spill_settings_pass_between_cpp_and_python(tmp_path):
    x = _data(3000, 16, seed=3)
    index = spill.spill_index_factory(16, "IVF16_GMM_spill1.3_max3,Flat", niter=5)
    index.train(x)
    index.add(x)
    fname = str(tmp_path / "s.index")
    index.write(fname)  # gmm_io, C++
    t, info = _core.cpp_read_gmm_trailer(fname)
    assert info.verified and info.spill_version == 2
    assert t.has_spill and t.spill_max_copies == 3 and t.spill_budget == 1.3 and t.spill_ntotal == 3000
    assert t.spill_threshold == index.threshold and t.probe_variance_power == 0.0
    # faiss_gmm.read_index cannot return a spill index as a faiss object: it says so
    # instead of silently dropping the spill settings.
    with pytest.raises(ValueError, match="IndexIVFSpill"):
        faiss_gmm.read_index(fname)
    back = spill.IndexIVFSpill.read(fname)
    assert (back.ntotal, back.max_copies, back.budget, back.threshold) == (3000, 3, 1.3, index.threshold)
