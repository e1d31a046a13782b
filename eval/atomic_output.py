"""Atomic replacement of an output file for the evaluation scripts (issue 13.2).

    with atomic_output("plot.png") as tmp:
        fig.savefig(tmp)

writes a temporary file in the target's folder (same extension, so tools that
infer the format from it still work), fsyncs it, renames it over the target and
fsyncs the folder; on any failure the temporary file is removed and the
previous target is left as it was. The C++ side does the same with
faiss_gmm::AtomicFile. A target that is a device or a pipe is written in place."""
import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_output(path):
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):
        # A device or pipe (/dev/stdout): written in place; renaming over it would
        # replace the device node itself.
        yield path
        return
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + base + ".tmp-", suffix=os.path.splitext(base)[1], dir=folder)
    except OSError as e:
        raise OSError(e.errno, f"cannot write {path}: creating a temporary file in {folder} failed: {e.strerror}") from e
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a plain open would give 0666 minus the umask
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise OSError(e.errno, f"cannot write {path}: {e.strerror}; {path} was left as it was") from e
        raise
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_text_atomically(path, text):
    with atomic_output(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
