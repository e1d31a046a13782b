#!/usr/bin/env bash
# Installs the built library into a temporary prefix and builds + runs a small
# outside project against it with find_package(faiss_gmm): the exported CMake
# package works for downstream users.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cmake --install "$BUILD_DIR" --prefix "$tmp/prefix" > /dev/null
mkdir -p "$tmp/consumer"
cat > "$tmp/consumer/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.24)
project(consumer LANGUAGES C CXX)
find_package(faiss_gmm REQUIRED)
add_executable(consumer main.cpp)
target_link_libraries(consumer PRIVATE faiss_gmm::faiss_gmm)
CMAKE
cat > "$tmp/consumer/main.cpp" <<'CPP'
#include <faiss_gmm/gmm_index_factory.h>
#include <faiss_gmm/GmmQuantizer.h>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>
int main() {
    const int d = 16, n = 2000;
    std::vector<float> x(n * d);
    std::mt19937 rng(1);
    std::normal_distribution<float> g;
    for (auto& v : x) v = g(rng);
    std::unique_ptr<faiss::Index> index(faiss_gmm::gmm_index_factory(d, "IVF8_GMM,Flat"));
    index->train(n, x.data());
    index->add(n, x.data());
    const auto* q = faiss_gmm::find_gmm_quantizer(index.get());
    if (!q || q->model.K != 8 || index->ntotal != n) return 1;
    std::printf("consumer: trained IVF8_GMM,Flat through find_package(faiss_gmm), %d EM iterations\n",
                int(q->iteration_stats.size()));
    return 0;
}
CPP
cmake -S "$tmp/consumer" -B "$tmp/consumer/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$tmp/consumer/build" > /dev/null
"$tmp/consumer/build/consumer"
