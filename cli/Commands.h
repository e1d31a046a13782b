// The subcommands of the faiss-gmm command-line tool, as functions, so that the
// old tool names (faiss-gmm-train-mpi, faiss-gmm-eval, faiss-gmm-dataset) run
// the same code as `faiss-gmm train|eval|dataset`. Each takes the arguments
// after the command (argv[0] is the command or the old program name) and
// returns the exit status: 0 done, 1 failed (the message names the problem),
// 2 bad usage. Messages go to stderr, results and progress to stdout.
#pragma once

#include "cli/CommandLine.h"
#include "faiss_gmm/Communicator.h"

namespace faiss_gmm {
namespace cli {

/// Trains a GMM (and an IVF index from it) as one rank of `comm`: a
/// SingleProcessCommunicator in one process, an MpiCommunicator under mpirun.
int train_command(Communicator& comm, int argc, char** argv, const Invocation& inv);
/// The evaluation harness: recall@k against distance computations.
int eval_command(int argc, char** argv, const Invocation& inv);
/// Vector and id files: info, convert, ann-benchmarks, groundtruth, generate.
int dataset_command(int argc, char** argv, const Invocation& inv);
/// What an index or model file holds.
int info_command(int argc, char** argv, const Invocation& inv);

} // namespace cli
} // namespace faiss_gmm
