# The core of faiss-gmm as a target of its own: model, parameters, statistics
# (+ the float64 reference E-step), reproducible sums, data sources, the
# communicator interface of distributed training, checkpoints. It depends on
# nothing but the standard library, so gpu/ builds and links it without FAISS
# (standalone, on GPU machines) and faiss_gmm (FAISS integration, CPU E-step,
# trainer, make_estep) sits above both. Included once per build, by the
# top-level CMakeLists.txt or by gpu/CMakeLists.txt standalone.
if(TARGET faiss_gmm_core)
  return()
endif()
get_filename_component(FAISS_GMM_CORE_ROOT ${CMAKE_CURRENT_LIST_DIR}/.. ABSOLUTE)
add_library(faiss_gmm_core STATIC
    ${FAISS_GMM_CORE_ROOT}/faiss_gmm/GmmParams.cpp
    ${FAISS_GMM_CORE_ROOT}/faiss_gmm/GmmModel.cpp
    ${FAISS_GMM_CORE_ROOT}/faiss_gmm/SufficientStats.cpp
    ${FAISS_GMM_CORE_ROOT}/faiss_gmm/ExactLogDensity.cpp
    ${FAISS_GMM_CORE_ROOT}/faiss_gmm/ReproducibleSum.cpp
    ${FAISS_GMM_CORE_ROOT}/faiss_gmm/ParallelRanges.cpp
    ${FAISS_GMM_CORE_ROOT}/faiss_gmm/BlockAlignedRows.cpp
    ${FAISS_GMM_CORE_ROOT}/faiss_gmm/Checkpoint.cpp
    ${FAISS_GMM_CORE_ROOT}/faiss_gmm/VectorSource.cpp
    ${FAISS_GMM_CORE_ROOT}/faiss_gmm/Communicator.cpp
    ${FAISS_GMM_CORE_ROOT}/faiss_gmm/AtomicFile.cpp
    ${FAISS_GMM_CORE_ROOT}/faiss_gmm/Crc32c.cpp)
target_include_directories(faiss_gmm_core PUBLIC
    $<BUILD_INTERFACE:${FAISS_GMM_CORE_ROOT}>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
# std::thread (Float64VectorSource's conversion).
find_package(Threads REQUIRED)
target_link_libraries(faiss_gmm_core PUBLIC Threads::Threads)
set_target_properties(faiss_gmm_core PROPERTIES POSITION_INDEPENDENT_CODE ON)
# -fopenmp-simd: the "#pragma omp simd" loops vectorize without the OpenMP runtime.
target_compile_options(faiss_gmm_core PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -fopenmp-simd>)
add_library(faiss_gmm::core ALIAS faiss_gmm_core)
