// faiss-gmm: the command-line tool, `faiss-gmm <command> [options]`.
//   train    a vector file -> a GMM model or an IVF index (under mpirun: distributed)
//   eval     recall@k against distance computations, GMM-IVF vs k-means IVF
//   dataset  vector and id files: info, convert, ann-benchmarks, groundtruth, generate
//   info     what an index or model file holds
// `faiss-gmm <command> --help` gives each command's options.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cli/Commands.h"

#ifdef FAISS_GMM_HAVE_MPI
#include "mpi/MpiCommunicator.h"
#endif

using namespace faiss_gmm;

namespace {

struct Command {
    const char* name;
    const char* summary;
    int (*run)(int argc, char** argv, const cli::Invocation& inv);
};

/// The ranks mpirun started (its launchers put the count in the environment:
/// Open MPI OMPI_COMM_WORLD_SIZE, MPICH/Hydra PMI_SIZE); 1 when not under mpirun.
int launcher_world_size() {
    for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
        if (const char* v = std::getenv(var)) {
            const int n = std::atoi(v);
            if (n > 0) return n;
        }
    }
    return 1;
}

int run_train(int argc, char** argv, const cli::Invocation& inv) {
    const int ranks = launcher_world_size();
    if (ranks > 1) {
#ifdef FAISS_GMM_HAVE_MPI
        // Under mpirun with several ranks: the distributed trainer. One rank needs
        // no MPI at all, so `faiss-gmm train` alone never initializes it.
        mpi::MpiSession session(&argc, &argv);
        mpi::MpiCommunicator comm;
        return cli::train_command(comm, argc, argv, inv);
#else
        std::fprintf(stderr,
                     "%s: error: started by mpirun with %d ranks, but this faiss-gmm was built without MPI "
                     "(Debian: libopenmpi-dev openmpi-bin, then reconfigure)\n",
                     inv.prog().c_str(), ranks);
        return 1;
#endif
    }
    SingleProcessCommunicator comm;
    return cli::train_command(comm, argc, argv, inv);
}

const Command kCommands[] = {
        {"train", "train a GMM on a vector file: a model, or an IVF index (--index); under mpirun: distributed",
         run_train},
        {"eval", "recall@k against distance computations: GMM-IVF vs k-means IVF on a dataset", cli::eval_command},
        {"dataset", "vector and id files: info, convert, ann-benchmarks, groundtruth, generate", cli::dataset_command},
        {"info", "what an index or model file holds (type, d, ntotal, nlist, GMM, spill, checksum)", cli::info_command},
};

void print_usage(std::FILE* out) {
    std::fprintf(out,
                 "usage: faiss-gmm <command> [options]\n"
                 "       faiss-gmm <command> --help\n\n"
                 "faiss-gmm %s: FAISS IVF indexes whose coarse quantizer is trained by a Gaussian Mixture Model.\n\n"
                 "commands:\n",
                 FAISS_GMM_VERSION);
    for (const Command& c : kCommands) std::fprintf(out, "  %-8s %s\n", c.name, c.summary);
    std::fprintf(out, "\nthe demo: bash scripts/faiss-gmm.sh demo (k-means IVF vs GMM-IVF vs the recommended recipe)\n");
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "faiss-gmm: error: which command?\n");
        print_usage(stderr);
        return 2;
    }
    const std::string cmd = argv[1];
    if (cmd == "-h" || cmd == "--help" || cmd == "help") {
        if (cmd == "help" && argc > 2) {
            // `faiss-gmm help train` = `faiss-gmm train --help`
            for (const Command& c : kCommands) {
                if (argv[2] == std::string(c.name)) {
                    char help[] = "--help";
                    char* args[] = {argv[2], help, nullptr};
                    return c.run(2, args, cli::Invocation{c.name, ""});
                }
            }
        } else {
            print_usage(stdout);
            return 0;
        }
    } else if (cmd == "--version") {
        std::printf("faiss-gmm %s\n", FAISS_GMM_VERSION);
        return 0;
    } else {
        for (const Command& c : kCommands) {
            if (cmd == c.name) return c.run(argc - 1, argv + 1, cli::Invocation{c.name, ""});
        }
    }
    const std::string unknown = cmd == "help" ? argv[2] : cmd;
    std::string names;
    for (const Command& c : kCommands) names += std::string(names.empty() ? "" : ", ") + c.name;
    std::fprintf(stderr, "faiss-gmm: error: unknown command '%s' (commands: %s; faiss-gmm --help)\n", unknown.c_str(),
                 names.c_str());
    return 2;
}
