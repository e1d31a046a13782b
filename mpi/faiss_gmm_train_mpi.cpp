// faiss-gmm-train-mpi: the old name of `faiss-gmm train` (cli/TrainCommand.cpp),
// kept as an alias for one release; its --help says the new name. It always
// starts MPI (without mpirun: one rank), as it did.
#include "cli/Commands.h"
#include "mpi/MpiCommunicator.h"

int main(int argc, char** argv) {
    faiss_gmm::mpi::MpiSession session(&argc, &argv);
    faiss_gmm::mpi::MpiCommunicator comm;
    return faiss_gmm::cli::train_command(comm, argc, argv, {"train", "faiss-gmm-train-mpi"});
}
