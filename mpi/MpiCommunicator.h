// faiss_gmm::Communicator over MPI, and the MPI session of a program. With
// them, GmmTrainer trains one rank of a distributed run:
//
//     faiss_gmm::mpi::MpiSession session(&argc, &argv);
//     faiss_gmm::mpi::MpiCommunicator comm;
//     trainer.set_communicator(&comm);
//     trainer.fit(my_rows, K);   // my_rows: this rank's range of the data
#pragma once

#include <mpi.h>

#include <string>
#include <vector>

#include <faiss_gmm/Communicator.h>

namespace faiss_gmm::mpi {

/// MPI_Init_thread on construction (FUNNELED: OpenMP threads compute, the main
/// thread communicates), MPI_Finalize on destruction.
class MpiSession {
  public:
    MpiSession(int* argc, char*** argv);
    ~MpiSession();
    MpiSession(const MpiSession&) = delete;
    MpiSession& operator=(const MpiSession&) = delete;
};

class MpiCommunicator : public Communicator {
  public:
    /// MPI must be initialized (MpiSession) for the communicator's lifetime.
    explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD);
    int rank() const override { return rank_; }
    int size() const override { return size_; }
    void allreduce(double* values, size_t n, ReduceOp op) override;
    void broadcast(void* data, size_t bytes, int root) override;
    void gather(const void* data, void* out, const std::vector<size_t>& counts, int root) override;
    [[noreturn]] void abort(int code, const std::string& message) override;

    /// seconds > 0: before each collective, every rank reports to rank 0, which
    /// waits at most `seconds` for all of them (the others wait for rank 0's go at
    /// most twice as long plus a second, so rank 0 speaks first); a rank that does
    /// not arrive (hung, stopped, deadlocked) ends the job with a message naming
    /// it and step(). 0: collectives wait as long as MPI does.
    void set_collective_timeout(double seconds) override { timeout_s_ = seconds; }

  private:
    void arrive();   // the arrival check before a collective (timeout > 0)
    void complete(std::vector<MPI_Request>& requests); // bounded wait for a collective's requests
    bool wait(std::vector<MPI_Request>& requests, double seconds);
    void answer_pings();
    std::string where() const;
    double timeout_s_ = 0;
    long long sequence_ = 0; // collectives so far: every rank counts the same
    MPI_Comm comm_;
    int rank_ = 0;
    int size_ = 1;
};

} // namespace faiss_gmm::mpi
