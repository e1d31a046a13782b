// faiss-gmm-dataset: the old name of `faiss-gmm dataset` (cli/DatasetCommand.cpp),
// kept as an alias for one release; its --help says the new name.
#include "cli/Commands.h"

int main(int argc, char** argv) {
    return faiss_gmm::cli::dataset_command(argc, argv, {"dataset", "faiss-gmm-dataset"});
}
