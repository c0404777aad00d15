// The processes of a run and what they exchange: MPI (Open MPI) starts and connects them and
// moves host memory. A process started by a launcher (mpirun, srun: it finds the launcher's
// environment) joins the world of its launch; any other process is a world of one and never
// initialises MPI, so a plain `./u2pl_train` needs no launcher (the MPI library is linked all the
// same). Every collective is called by all
// processes of the communicator in the same order; the results are the same on every process.
// Covered by tests/test_engine.cpp (one process) and tests/test_mpi.cpp (under mpirun).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace u2pl {

class Comm {
 public:
  virtual ~Comm() = default;
  int rank() const { return rank_; }
  int size() const { return size_; }
  bool root() const { return rank_ == 0; }
  // This process's index among the processes of its node (the shared-memory split): the GPU it takes.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }

  // In-place sums over the processes of host arrays (n elements each).
  virtual void allreduce_sum(float* data, int64_t n) = 0;
  virtual void allreduce_sum(double* data, int64_t n) = 0;
  virtual void allreduce_sum(int64_t* data, int64_t n) = 0;
  // Every process contributes `bytes` from `mine`; `all` receives size() · bytes, rank order.
  virtual void allgather(const void* mine, size_t bytes, void* all) = 0;
  // Contributions of different sizes: the concatenation in rank order (every process gets it).
  virtual std::vector<char> allgatherv(const void* mine, size_t bytes) = 0;
  // A sum like allreduce_sum that runs while this process goes on: started here, advanced by
  // progress() (MPI moves it only inside its calls), finished by wait_all(), after which `data`
  // holds the sum. Every process starts the same sums in the same order.
  virtual void start_allreduce_sum(float* data, int64_t n) = 0;
  virtual void progress() = 0;
  virtual void wait_all() = 0;
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // Ends every process of the run with exit status `code` (the caller prints its message first).
  [[noreturn]] virtual void abort(int code) = 0;
  // Bytes this process has handed to collectives since the start (benchmarks: volume per iteration).
  int64_t bytes_sent() const { return bytes_sent_; }

  // Typed helpers over allgather: one T per process, in rank order.
  template <class T>
  std::vector<T> gather_all(const T& mine) {
    std::vector<T> all(static_cast<size_t>(size_));
    allgather(&mine, sizeof(T), all.data());
    return all;
  }

 protected:
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  int64_t bytes_sent_ = 0;
};

// This process alone: every collective is the identity (a copy for allgather).
class SelfComm final : public Comm {
 public:
  void allreduce_sum(float*, int64_t) override {}
  void allreduce_sum(double*, int64_t) override {}
  void allreduce_sum(int64_t*, int64_t) override {}
  void allgather(const void* mine, size_t bytes, void* all) override;
  std::vector<char> allgatherv(const void* mine, size_t bytes) override;
  void start_allreduce_sum(float*, int64_t) override {}
  void progress() override {}
  void wait_all() override {}
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(int code) override;
};

// True when the environment shows a launcher started this process (Open MPI's mpirun sets
// OMPI_COMM_WORLD_SIZE; srun --mpi=pmix PMIX_RANK; srun --mpi=pmi2 and MPICH's hydra PMI_SIZE).
bool launched_by_mpi();

// The run's processes: MPI_COMM_WORLD when launched_by_mpi() (MPI initialised on first use,
// finalised at exit), else a SelfComm. Throws when the launch asks for MPI and it cannot start.
Comm& world();

// The world if world() has made it, else null (error handlers: they must not start MPI).
Comm* started_world();
// Ends the world made by world() (MPI_Finalize), at the normal end of a main: before the static
// destructors, which would otherwise do it. Nothing may use world() afterwards.
void finalize_world();

// A world of one for code that must run alone inside a multi-process launch (tests compare a
// one-process run with a two-process one inside the same mpirun).
Comm& self_comm();

// The figure and the rank prefix of messages: "" for one process, "rank 1 of 4: " otherwise.
std::string rank_prefix(const Comm& c);

}  // namespace u2pl
