// faiss-gmm-eval: the old name of `faiss-gmm eval` (cli/EvalCommand.cpp), kept
// as an alias for one release; its --help says the new name.
#include "cli/Commands.h"

int main(int argc, char** argv) {
    return faiss_gmm::cli::eval_command(argc, argv, {"eval", "faiss-gmm-eval"});
}
