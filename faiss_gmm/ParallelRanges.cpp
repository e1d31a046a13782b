// The thread pool behind parallel_ranges (ParallelRanges.h).
//
// One pool per process, started on first use with a worker per CPU the process may use but the
// caller's (polling workers sharing the caller's CPU would slow it down). A call publishes its
// pieces, wakes as many workers as it has pieces beyond its own, claims pieces itself, and waits
// until no worker is inside the call any more. After a call, workers poll for the next one for
// kPollMicros before they sleep on a condition variable: the calls come in bursts (a GPU's EM
// iteration: add_limbs() per device, then result()'s passes), and a sleeping worker is slow to
// help: on the 2-vCPU dev VM, Linux wakes it on the caller's own (busy) vCPU 85 % of the time
// (presumably the idle vCPU, halted, reads as preempted), where it only takes the caller's place
// until the load balancer moves it, often milliseconds later. The pool is never destroyed:
// detached workers asleep at exit touch nothing that exit destroys.
#include "ParallelRanges.h"

#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace faiss_gmm::detail {

namespace {

/// How long an idle worker polls for the next call before it sleeps: the gap between the passes
/// of one burst is microseconds; the CPU time polled is at most this per worker and burst.
constexpr double kPollMicros = 100.0;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

/// Polls done() for up to kPollMicros; returns its last answer.
template <class Done>
bool poll_for(const Done& done) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 1;; i++) {
        if (done()) return true;
        cpu_relax();
        if (i % 64 == 0 &&
            std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() > kPollMicros) {
            return done();
        }
    }
}

/// Set while a thread runs pieces: a call from inside one runs on that thread alone (its pool
/// is busy with the outer call, and waiting for it would deadlock).
thread_local bool in_pieces = false;

/// One call's pieces. It lives on the caller's stack: workers reach it only through
/// Pool::job_, which the caller clears before it waits for active == 0.
struct Job {
    void (*piece)(const void*, int64_t);
    const void* context;
    int64_t pieces;
    std::atomic<int64_t> next{0}; // the next piece to claim
    /// Workers inside the job: joined under Pool::mutex_ while job_ points here, left with a
    /// release (their pieces' writes reach the caller, which reads it with an acquire).
    std::atomic<int> active{0};
};

void run_claimed(Job& job) {
    const bool outer = in_pieces;
    in_pieces = true;
    for (int64_t t; (t = job.next.fetch_add(1, std::memory_order_relaxed)) < job.pieces;) {
        job.piece(job.context, t);
    }
    in_pieces = outer;
}

class Pool {
  public:
    explicit Pool(int workers) : workers_(workers) {
        for (int i = 0; i < workers; i++) std::thread([this] { work(); }).detach();
    }

    /// Runs the job with the workers; false (nothing run) while another thread's job holds them.
    bool run(Job& job) {
        std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
        if (!busy.owns_lock()) return false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = &job;
            generation_.store(generation_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        }
        const int64_t helpers = std::min<int64_t>(job.pieces - 1, workers_);
        for (int64_t i = 0; i < helpers; i++) wake_.notify_one(); // no system call for polling workers
        run_claimed(job);
        // Every piece is claimed: the ones not run here run on workers still inside. None joins
        // once job_ is cleared.
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = nullptr;
        }
        const auto left = [&] { return job.active.load(std::memory_order_acquire) == 0; };
        if (!poll_for(left)) {
            std::unique_lock<std::mutex> lock(mutex_);
            finished_.wait(lock, left);
        }
        return true;
    }

  private:
    void work() {
        uint64_t seen = 0;
        for (;;) {
            poll_for([&] { return generation_.load(std::memory_order_relaxed) != seen; });
            Job* job;
            {
                // Published and not yet finished (job_ cleared: wait for the next call).
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] {
                    return job_ != nullptr && generation_.load(std::memory_order_relaxed) != seen;
                });
                seen = generation_.load(std::memory_order_relaxed);
                job = job_;
                job->active.fetch_add(1, std::memory_order_relaxed);
            }
            run_claimed(*job);
            // The last one out wakes a caller asleep in finished_.wait (the job may be gone as
            // soon as active is 0: only the pool's members are touched after).
            if (job->active.fetch_sub(1, std::memory_order_release) == 1) {
                std::lock_guard<std::mutex> lock(mutex_);
                finished_.notify_one();
            }
        }
    }

    const int workers_;
    std::mutex busy_;  // held by the thread whose job the pool runs
    std::mutex mutex_; // guards job_ and generation_'s writes
    std::condition_variable wake_, finished_;
    Job* job_ = nullptr;
    /// Jobs published so far (written under mutex_; also read without it, to poll): a worker
    /// joins each at most once.
    std::atomic<uint64_t> generation_{0};
};

int usable_cpus() {
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
    return int(std::max(1u, std::thread::hardware_concurrency()));
}

/// The process's pool. A child of fork() has none of its parent's threads: it starts its own
/// (the parent's is left alone, leaked like the first).
Pool* the_pool() {
    static std::mutex mutex;
    static Pool* pool = nullptr;
    static pid_t owner = 0;
    std::lock_guard<std::mutex> lock(mutex);
    if (pool == nullptr || owner != getpid()) {
        pool = new Pool(pool_threads() - 1);
        owner = getpid();
    }
    return pool;
}

} // namespace

int pool_threads() {
    static const int threads = usable_cpus(); // the affinity when first asked: the pool's size
    return threads;
}

void run_pieces(int64_t pieces, void (*piece)(const void*, int64_t), const void* context) {
    Job job{piece, context, pieces};
    if (in_pieces || pieces <= 1 || !the_pool()->run(job)) run_claimed(job);
}

} // namespace faiss_gmm::detail
