"""Builds the faiss_gmm wheel: setuptools packages python/faiss_gmm and a
pybind11 module that CMake builds (the same CMake build as the C++ library).

Environment:
  FAISS_GMM_CMAKE_BUILD_DIR  reuse this already-configured CMake build directory
                             (only the module target is built; its cache is not
                             touched). Default: a private one under build-wheel/.
  FAISS_GMM_ENABLE_CUDA      AUTO | ON | OFF (default OFF: a CPU-only wheel)
  CMAKE_BUILD_PARALLEL_LEVEL jobs for `cmake --build` (default 2)
"""

import glob
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build_dir = os.environ.get("FAISS_GMM_CMAKE_BUILD_DIR")
        if not build_dir or not os.path.exists(os.path.join(build_dir, "CMakeCache.txt")):
            build_dir = build_dir or os.path.join(ROOT, "build-wheel", "cmake")
            subprocess.check_call([
                "cmake", "-S", ROOT, "-B", build_dir,
                "-DCMAKE_BUILD_TYPE=Release",
                "-DFAISS_GMM_BUILD_PYTHON=ON",
                "-DFAISS_GMM_BUILD_TESTS=OFF",
                "-DFAISS_GMM_BUILD_BENCH=OFF",
                "-DFAISS_GMM_BUILD_EVAL=OFF",
                "-DFAISS_GMM_ENABLE_CUDA=" + os.environ.get("FAISS_GMM_ENABLE_CUDA", "OFF"),
                # The interpreter pip runs under is the one the wheel is for.
                "-DPython_EXECUTABLE=" + sys.executable,
            ])
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")
        subprocess.check_call(["cmake", "--build", build_dir, "--target", "faiss_gmm_python", "-j", jobs])
        built = glob.glob(os.path.join(build_dir, "python", "faiss_gmm", "_core*.so"))
        if len(built) != 1:
            raise RuntimeError(f"expected one faiss_gmm/_core*.so in {build_dir}/python, found {built}")
        dest = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(built[0], dest)


setup(
    ext_modules=[CMakeExtension("faiss_gmm._core")],
    cmdclass={"build_ext": CMakeBuild},
    # setuptools' default "build/" is the project's CMake build directory.
    options={"build": {"build_base": os.path.join("build-wheel", "setuptools")},
             "egg_info": {"egg_base": "build-wheel"}},
)
